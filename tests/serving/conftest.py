"""Serving fixtures: a saved router folder, an in-process app, and a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from graphroute import Router
from graphroute.bench.http import free_port
from serving.app import create_app
from serving.settings import ServeSettings

KEY = "test-write-key"


@pytest.fixture(scope="session")
def run_dir(fitted_router: Router, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("serve") / "router"
    fitted_router.save(folder)
    return folder


@pytest.fixture()
def client(run_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = ServeSettings(router_dir=run_dir, api_key=KEY, store_url=str(tmp_path / "store.sqlite"))
    with TestClient(create_app(settings)) as c:
        yield c


class ThreadServer:
    """uvicorn in a thread of this process (for apps built in the test, e.g. a fake upstream)."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class ProcessServer:
    """`graphroute serve` as a separate process, which a test may kill -9. ``store`` None: the default location."""

    def __init__(
        self, run_dir: Path, store: Path | str | None, port: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.run_dir, self.store, self.port = run_dir, store, port or free_port()
        self.extra = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        env = {k: v for k, v in os.environ.items() if k != "GRAPHROUTE_STORE_URL"}
        env.update({"GRAPHROUTE_API_KEY": KEY, **self.extra})
        if self.store is not None:
            env["GRAPHROUTE_STORE_URL"] = str(self.store)
        self.log = Path(tempfile.mkstemp(prefix="graphroute-serve-", suffix=".log")[1])
        with self.log.open("wb") as out:  # a file, not a pipe: nobody reads the pipe while the server runs
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "graphroute.cli", "serve", str(self.run_dir), "--port", str(self.port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server died: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)
        raise RuntimeError("server not ready")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
