"""What a served router learns survives kill -9, restart, reload and a retrain into a new folder; replicas on one
PostgreSQL see each other's changes; reads during onboarding and reloads never fail. Real servers on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from graphroute import Router
from graphroute.data.io import write_catalog, write_interactions
from serving.settings import DEFAULT_STORE_NAME
from tests.serving.conftest import KEY, ProcessServer

pytestmark = pytest.mark.slow  # real server processes restarted, killed and reloaded; PostgreSQL replicas

W = {"X-API-Key": KEY}
Q = "Who wrote the novel about the whale?"


def changes(url: str, known: str) -> None:
    """Adapt a user, onboard an LLM with a probe, disable another: one of each kind of served change."""
    rows = [
        {"user_id": "ann", "query": known, "llm": "tiny-fast", "effect": 0.4, "chosen": True, "feedback_id": "a1"},
        {"user_id": "ann", "query": known, "llm": "reasoner-405b", "effect": 0.9, "chosen": False, "feedback_id": "a2"},
    ]
    assert httpx.post(f"{url}/v1/feedback", json={"interactions": rows}, headers=W).json()["stored"] == 2
    llm = {
        "name": "math-pro",
        "description": "Excellent at mathematics.",
        "input_price": 0.05,
        "output_price": 0.05,
        "probes": [{"query": known, "effect": 1.0}],
    }
    assert httpx.post(f"{url}/v1/llms", json=llm, headers=W).status_code == 201
    assert httpx.post(f"{url}/v1/llms/writer-8b/disable", headers=W).json()["enabled"] is False


def state(url: str) -> dict[str, Any]:
    ann = httpx.get(f"{url}/v1/users/ann").json()
    llms = {m["name"]: m["enabled"] for m in httpx.get(f"{url}/v1/llms").json()}
    ranking = httpx.post(f"{url}/v1/route", json={"query": Q, "user_id": "ann", "k": 10}).json()["ranking"]
    return {
        "ann": (ann["known"], ann["interactions"], ann["n_choices"], round(ann["alpha"], 3)),
        "llms": llms,
        "ranked": [r["llm"] for r in ranking],
    }


def reload(url: str) -> None:
    """Ask for a reload and wait until the new router serves."""
    before = httpx.get(f"{url}/readyz").json()["loaded_at"]
    assert httpx.post(f"{url}/v1/admin/reload", headers=W).status_code == 202
    deadline = time.time() + 60
    while httpx.get(f"{url}/readyz").json()["loaded_at"] == before:
        assert time.time() < deadline, "reload did not finish"
        time.sleep(0.1)


def test_served_changes_survive_kill_restart_reload_and_a_retrain(
    run_dir: Path, tmp_path: Path, demo: tuple[Any, Any]
) -> None:
    runs = tmp_path / "runs"
    folder = runs / "live"
    Router.load(run_dir).save(folder)
    known = Router.load(folder).state.tables.queries.texts[0]
    server = ProcessServer(folder, None)  # the default store: beside the run folder, not in it
    url = server.start()
    try:
        changes(url, known)
        before = state(url)
        assert before["ann"][:3] == (True, 2, 1) and "math-pro" in before["llms"]
        assert before["llms"]["writer-8b"] is False and "writer-8b" not in before["ranked"]
        store = runs / DEFAULT_STORE_NAME
        assert store.is_file() and not (folder / DEFAULT_STORE_NAME).exists()
        server.kill()
        url = server.start()
        assert state(url) == before
        reload(url)
        assert state(url) == before

        # a router retrained from scratch replaces the folder: the store's changes are replayed onto it
        logs, llms = demo
        write_interactions(logs, tmp_path / "logs.parquet")
        write_catalog(llms, tmp_path / "llms.yaml")
        train = [sys.executable, "-m", "graphroute.cli", "train", tmp_path / "logs.parquet", "--llms"]
        fresh = [*train, tmp_path / "llms.yaml", "--encoder", "hashing", "--epochs", "2", "--out", tmp_path / "new"]
        assert subprocess.run([str(a) for a in fresh], capture_output=True, timeout=600).returncode == 0
        shutil.rmtree(folder)
        shutil.copytree(tmp_path / "new", folder)
        reload(url)
        after = state(url)
        assert after["ann"][:3] == (True, 2, 1) and after["llms"] == before["llms"]

        # retrained *with* the store, it includes those changes already: nothing is applied twice
        with_store = [*fresh[:-1], tmp_path / "with-store", "--feedback", f"sqlite:///{store}"]
        result = subprocess.run([str(a) for a in with_store], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0 and "3 events" in result.stdout, result.stdout + result.stderr
        shutil.rmtree(folder)
        shutil.copytree(tmp_path / "with-store", folder)
        reload(url)
        retrained = state(url)
        assert retrained["ann"][:3] == (True, 2, 1) and retrained["llms"] == before["llms"]
        assert httpx.get(f"{url}/readyz").json()["store_cursor"] == 3
    finally:
        server.stop()


def ranking(url: str, query: dict[str, Any]) -> list[dict[str, Any]]:
    return list(httpx.post(f"{url}/v1/route", json=query).json()["ranking"])


def test_two_replicas_on_one_postgres_see_each_other(run_dir: Path, pg_url: str) -> None:
    a, b = ProcessServer(run_dir, pg_url), ProcessServer(run_dir, pg_url)
    url_a, url_b = a.start(), b.start()
    try:
        known = Router.load(run_dir).state.tables.queries.texts
        query = {"query": Q, "user_id": "zed", "k": 6, "alpha": None}
        base = httpx.post(f"{url_b}/v1/route", json=query).json()["ranking"]
        cheapest = min(base, key=lambda r: r["cost"])["llm"]
        dearest = max(base, key=lambda r: r["cost"])["llm"]
        rows = []
        for q in known[:12]:  # zed always takes the cheap answer over the good one
            rows.append({"user_id": "zed", "query": q, "llm": cheapest, "effect": 0.3, "chosen": True})
            rows.append({"user_id": "zed", "query": q, "llm": dearest, "effect": 0.9, "chosen": False})
        sent = time.monotonic()
        assert httpx.post(f"{url_a}/v1/feedback", json={"interactions": rows}, headers=W).status_code == 200
        while httpx.get(f"{url_b}/v1/users/zed").json()["n_choices"] < 12:
            assert time.monotonic() - sent < 2.0, "replica b did not see the feedback within 2 s"
            time.sleep(0.05)
        seen_after = time.monotonic() - sent
        on_b = httpx.post(f"{url_b}/v1/route", json=query).json()["ranking"]
        assert [r["llm"] for r in on_b] != [r["llm"] for r in base], "the user's ranking did not change on b"
        assert [r["llm"] for r in on_b] == [
            r["llm"] for r in httpx.post(f"{url_a}/v1/route", json=query).json()["ranking"]
        ]
        deadline = time.monotonic() + 5  # once both have folded the feedback into their graphs, they agree exactly
        while ranking(url_b, query) != ranking(url_a, query):
            assert time.monotonic() < deadline, "the replicas' predictions did not converge"
            time.sleep(0.2)

        sent = time.monotonic()
        assert httpx.post(f"{url_b}/v1/llms/coder-7b/disable", headers=W).status_code == 200
        while {m["name"]: m["enabled"] for m in httpx.get(f"{url_a}/v1/llms").json()}["coder-7b"]:
            assert time.monotonic() - sent < 2.0, "replica a did not see the disable within 2 s"
            time.sleep(0.05)
        assert seen_after < 2.0
    finally:
        a.stop()
        b.stop()


def test_reads_during_onboarding_and_reloads_never_fail(run_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "live"
    Router.load(run_dir).save(folder)
    server = ProcessServer(folder, tmp_path / "events.sqlite")
    url = server.start()
    statuses: list[int] = []
    stop = threading.Event()

    def read(path: str) -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                statuses.append(client.get(f"{url}{path}").status_code)

    readers = [threading.Thread(target=read, args=(p,)) for p in ("/v1/users/user001", "/v1/llms", "/readyz")]
    try:
        for t in readers:
            t.start()
        for i in range(6):
            llm = {"name": f"new-{i}", "description": "A new model.", "input_price": 0.1, "output_price": 0.1}
            assert httpx.post(f"{url}/v1/llms", json=llm, headers=W, timeout=60).status_code == 201
            if i % 2:
                assert httpx.post(f"{url}/v1/admin/reload", headers=W).status_code == 202
        time.sleep(1.0)
    finally:
        stop.set()
        for t in readers:
            t.join()
        server.stop()
    assert len(statuses) > 100 and all(code == 200 for code in statuses), {c for c in statuses if c != 200}


ROW = '{"user_id": "u", "query": "hi", "llm": "coder-7b", %s}'
LLM = '{"name": "n", "description": "d", "input_price": 1, "output_price": 1, %s}'


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/feedback", '{"interactions": [%s]}' % (ROW % '"effect": 0.5, "cost": 1e309'), "interactions.0.cost"),
        ("/v1/feedback", '{"interactions": [%s]}' % (ROW % '"effect": 0.5, "cost": Infinity'), "interactions.0.cost"),
        ("/v1/feedback", '{"interactions": [%s]}' % (ROW % '"effect": NaN'), "interactions.0.effect"),
        ("/v1/feedback", '{"interactions": [%s]}' % (ROW % '"chosen": true, "tokens_in": -Infinity'), "tokens_in"),
        ("/v1/route", '{"query": "hi", "alpha": NaN}', "alpha"),
        ("/v1/route", '{"query": "hi", "max_cost": 1e309}', "max_cost"),
        ("/v1/llms", LLM % '"size": 1e309', "size"),
        ("/v1/llms", LLM % '"latency_ms": Infinity', "latency_ms"),
        ("/v1/llms", '{"name": "n", "description": "d", "input_price": NaN, "output_price": 1}', "input_price"),
    ],
)
def test_non_finite_numbers_get_422_naming_the_field(client: Any, path: str, body: str, field: str) -> None:
    r = client.post(path, content=body, headers={**W, "content-type": "application/json"})
    assert r.status_code == 422 and field in r.json()["detail"], r.text
    assert client.post("/v1/route", json={"query": Q}).json()["ranking"][0]["effect"] is not None
