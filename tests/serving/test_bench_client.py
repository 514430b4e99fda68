"""The P4 load generator speaks enough HTTP/1.1 to be trusted: every request answered, failures counted."""

from __future__ import annotations

import asyncio
from pathlib import Path

from graphroute.bench.service import _post_all
from serving.app import create_app
from serving.settings import ServeSettings
from tests.serving.conftest import ThreadServer


def test_load_client_gets_every_answer_and_counts_failures(run_dir: Path, tmp_path: Path) -> None:
    app = create_app(ServeSettings(router_dir=run_dir, store_url=str(tmp_path / "s.sqlite")))
    bodies: list[dict[str, object]] = [{"query": f"Solve {i} + {i}", "user_id": "user001"} for i in range(9)]
    bodies.append({"query": ""})  # empty query: a 422, which must be counted, not hang the connection
    with ThreadServer(app) as url:
        port = int(url.rsplit(":", 1)[1])
        seconds, failures = asyncio.run(_post_all(port, bodies, clients=3))
    assert len(seconds) == len(bodies) and all(s > 0 for s in seconds)
    assert failures == 1
