"""A real server process on 127.0.0.1: kill -9 under feedback load loses nothing acknowledged; a reload under
load fails no request."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from graphroute import Router, RouterConfig
from graphroute.data.store import open_store
from tests.serving.conftest import KEY, ProcessServer

pytestmark = pytest.mark.slow  # kill -9 and reloads of real servers under load

Q = "Solve for x: 3x + 4 = 19."


def test_kill_9_during_feedback_loses_nothing_acknowledged_and_retries_duplicate_nothing(
    run_dir: Path, tmp_path: Path
) -> None:
    """Clients send feedback (with feedback ids) and routes; the server is killed -9 mid-load. Every row that got
    a 2xx is stored; clients then retry every request that got no answer against the restarted server, and
    every row is stored exactly once, though some of those requests had been committed before the kill."""
    store = tmp_path / "feedback.sqlite"
    server = ProcessServer(run_dir, store)
    url = server.start()
    acked: list[str] = []
    unanswered: list[list[dict[str, object]]] = []
    stop = threading.Event()

    def send(worker: int) -> None:
        n = 0
        with httpx.Client(timeout=10) as client:
            while not stop.is_set() and n < 400:
                rows = [
                    {"user_id": f"load{worker}", "query": f"{Q} #w{worker}-{n}-{j}", "llm": "math-13b", "effect": 1.0}
                    for j in range(2)
                ]
                rows = [{**r, "feedback_id": str(r["query"]).split("#")[1]} for r in rows]
                try:
                    client.post(f"{url}/v1/route", json={"query": f"{Q} {n}"})
                    r = client.post(f"{url}/v1/feedback", json={"interactions": rows}, headers={"X-API-Key": KEY})
                    if r.status_code == 200:
                        acked.extend(str(row["feedback_id"]) for row in rows)
                except httpx.HTTPError:
                    unanswered.append(rows)
                    return
                n += 1

    workers = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    deadline = time.time() + 60
    while len(acked) < 40 and time.time() < deadline:
        time.sleep(0.05)
    server.kill()
    stop.set()
    for w in workers:
        w.join()
    assert len(acked) >= 40 and unanswered
    url = server.start()
    try:
        for rows in unanswered:  # the client's retry: same rows, same feedback ids
            r = httpx.post(f"{url}/v1/feedback", json={"interactions": rows}, headers={"X-API-Key": KEY})
            assert r.status_code == 200 and r.json()["stored"] + r.json()["duplicates"] == len(rows)
        stored = [q.split("#")[1] for q in open_store(store).read()["query"]]
        assert set(acked) <= set(stored)
        assert len(stored) == len(set(stored)), "a retried row was stored twice"
        assert {str(row["feedback_id"]) for rows in unanswered for row in rows} <= set(stored)
        assert httpx.get(f"{url}/readyz").json()["store_cursor"] == open_store(store).last_event()
    finally:
        server.stop()


def test_reload_under_load_fails_no_request(run_dir: Path, tmp_path: Path, demo: tuple) -> None:  # type: ignore[type-arg]
    folder = tmp_path / "live"
    Router.load(run_dir).save(folder)
    server = ProcessServer(folder, tmp_path / "s.sqlite")
    url = server.start()
    statuses: list[int] = []
    versions: set[str] = set()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                r = client.post(f"{url}/v1/route", json={"query": Q, "user_id": "user001"})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.add(r.json()["model_version"])

    try:
        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        logs, llms = demo
        cfg = RouterConfig(
            encoder={"kind": "hashing", "dim": 64}, model={"hidden_channels": 32}, train={"epochs": 2, "seed": 11}
        )
        Router(cfg).fit(logs, llms).save(folder)  # a newly trained router lands in the folder
        r = httpx.post(f"{url}/v1/admin/reload", headers={"X-API-Key": KEY})
        assert r.status_code == 202
        deadline = time.time() + 60
        while len(versions) < 2 and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
        server.stop()
    assert len(versions) == 2, versions
    assert statuses and all(code == 200 for code in statuses), {c for c in statuses if c != 200}
