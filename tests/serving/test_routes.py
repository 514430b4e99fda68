from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from graphroute import Router
from graphroute.data.store import open_store
from graphroute.schema import RouteRequest
from serving.app import create_app
from serving.runtime import Served
from serving.settings import ServeSettings
from tests.serving.conftest import KEY

W = {"X-API-Key": KEY}
Q = "Write a Python function that returns the median of a list of integers."


def test_route_ranked_with_version(client: TestClient) -> None:
    body = client.post("/v1/route", json={"query": Q, "user_id": "user001", "k": 3, "alpha": 0.8}).json()
    assert body["model_version"].startswith("router:") and len(body["ranking"]) == 3
    assert body["llm"] == body["ranking"][0]["llm"]
    assert [r["rank"] for r in body["ranking"]] == [1, 2, 3]
    assert body["ranking"][0]["utility"] >= body["ranking"][1]["utility"]


def test_candidates_budget_and_batch(client: TestClient) -> None:
    only = client.post("/v1/route", json={"query": Q, "candidates": ["writer-8b", "tiny-fast"], "k": 5}).json()
    assert {r["llm"] for r in only["ranking"]} == {"writer-8b", "tiny-fast"}
    cheap = client.post("/v1/route", json={"query": Q, "max_cost": 1e-9, "k": 5}).json()
    assert cheap["llm"] == "tiny-fast" and len(cheap["ranking"]) == 1
    batch = client.post("/v1/route/batch", json={"requests": [{"query": Q}, {"query": "Who discovered radium?"}]})
    assert batch.status_code == 200 and len(batch.json()["results"]) == 2


def test_bad_requests_are_4xx_naming_the_field(client: TestClient) -> None:
    r = client.post("/v1/route", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "body" in r.json()["detail"]
    r = client.post("/v1/route", json={"query": Q, "candidates": ["gpt-9"]})
    assert r.status_code == 404 and "candidates" in r.json()["detail"] and "gpt-9" in r.json()["detail"]
    r = client.post("/v1/route", json={"query": ""})
    assert r.status_code == 422 and "query" in r.json()["detail"]
    for blank in ("   ", "\u2003\x85"):
        r = client.post("/v1/route", json={"query": blank})
        assert r.status_code == 422 and "query" in r.json()["detail"]
    r = client.post("/v1/route", json={"query": Q, "alpha": 2})
    assert r.status_code == 422 and "alpha" in r.json()["detail"]
    r = client.post("/v1/route", json={"query": "x" * 2_000_000})
    assert r.status_code == 413 and "body" in r.json()["detail"]
    r = client.post("/v1/route", json={"query": Q, "surprise": 1})
    assert r.status_code == 422 and "surprise" in r.json()["detail"]


def test_write_endpoints_need_the_key(client: TestClient) -> None:
    row = {"user_id": "u1", "query": Q, "llm": "coder-7b", "effect": 1.0}
    assert client.post("/v1/feedback", json={"interactions": [row]}).status_code == 401
    assert client.post("/v1/feedback", json={"interactions": [row]}, headers={"X-API-Key": "wrong"}).status_code == 403
    llm = {"name": "n", "description": "d", "input_price": 1, "output_price": 1}
    assert client.post("/v1/llms", json=llm).status_code == 401
    assert client.post("/v1/admin/reload").status_code == 401
    assert client.post("/v1/llms/coder-7b/disable").status_code == 401


def test_feedback_stored_then_user_adapted(client: TestClient, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = [
        {"user_id": "fresh", "query": Q, "llm": "tiny-fast", "effect": 0.9, "chosen": True},
        {"user_id": "fresh", "query": Q, "llm": "reasoner-405b", "effect": 0.9, "chosen": False},
    ]
    r = client.post("/v1/feedback", json={"interactions": rows}, headers=W)
    assert r.status_code == 200 and r.json() == {"stored": 2, "duplicates": 0, "users_adapted": ["fresh"]}
    stored = open_store(tmp_path / "store.sqlite").read()
    assert len(stored) == 2 and set(stored["llm"]) == {"tiny-fast", "reasoner-405b"}
    user = client.get("/v1/users/fresh").json()
    assert user["known"] and user["interactions"] == 2 and user["n_choices"] == 1
    bad = client.post("/v1/feedback", json={"interactions": [{**rows[0], "llm": "gpt-9"}]}, headers=W)
    assert bad.status_code == 422 and "gpt-9" in bad.json()["detail"]
    assert len(open_store(tmp_path / "store.sqlite").read()) == 2  # nothing stored from a rejected request


def test_llm_onboarding_and_disable(client: TestClient, demo: tuple) -> None:  # type: ignore[type-arg]
    known = demo[0]["query"].iloc[0]
    unknown = {
        "name": "x",
        "description": "d",
        "input_price": 1,
        "output_price": 1,
        "probes": [{"query": Q, "effect": 1}],
    }
    r = client.post("/v1/llms", json=unknown, headers=W)
    assert r.status_code == 422 and "field 'query'" in r.json()["detail"]
    new = {
        "name": "cheap-coder",
        "description": "Writes Python code, very cheap.",
        "input_price": 0.01,
        "output_price": 0.01,
        "probes": [{"query": known, "effect": 1.0}],
    }
    assert client.post("/v1/llms", json=new, headers=W).status_code == 201
    names = [m["name"] for m in client.get("/v1/llms").json()]
    assert "cheap-coder" in names
    ranked = client.post("/v1/route", json={"query": Q, "k": 10}).json()["ranking"]
    assert "cheap-coder" in {r["llm"] for r in ranked}
    dup = client.post("/v1/llms", json=new, headers=W)
    assert dup.status_code == 422 and "duplicate" in dup.json()["detail"]
    blank = client.post("/v1/llms", json={**new, "name": "\x85"}, headers=W)  # NEL: Unicode whitespace, found by fuzz
    assert blank.status_code == 422 and "name" in blank.json()["detail"]
    assert client.post("/v1/llms/cheap-coder/disable", headers=W).json()["enabled"] is False
    ranked = client.post("/v1/route", json={"query": Q, "k": 10}).json()["ranking"]
    assert "cheap-coder" not in {r["llm"] for r in ranked}
    assert client.post("/v1/llms/nope/disable", headers=W).status_code == 404


def test_ops_endpoints(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["llms"] == 6
    client.post("/v1/route", json={"query": Q})
    text = client.get("/metrics").text
    assert 'graphroute_requests_total{method="POST",path="/v1/route",status="200"}' in text
    assert "graphroute_request_seconds_bucket" in text and "graphroute_chosen_llm_total" in text
    assert client.get("/v1/users/nobody").json()["known"] is False
    assert "/v1/route" in client.get("/openapi.json").json()["paths"]


def test_chunked_body_without_length_is_limited(client: TestClient) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"query": "'
        for _ in range(1200):
            yield b"x" * 1000
        yield b'"}'

    r = client.post("/v1/route", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "body" in r.json()["detail"]


def test_every_router_call_runs_on_the_one_model_thread(client: TestClient, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Torch work from a second thread makes libgomp oversubscribe the cores and every later call slower
    (README, P4), so routing, batches, feedback and onboarding all run on the app's single model thread."""
    import threading

    from graphroute.router import Router

    seen: set[str] = set()
    for name in ("recommend_many", "update_user", "add_llm"):
        original = getattr(Router, name)

        def spy(self, *args, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            seen.add(threading.current_thread().name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Router, name, spy)
    assert client.post("/v1/route", json={"query": Q}).status_code == 200
    assert client.post("/v1/route/batch", json={"requests": [{"query": Q}]}).status_code == 200
    row = {"user_id": "t1", "query": Q, "llm": "coder-7b", "effect": 1.0}
    assert client.post("/v1/feedback", json={"interactions": [row]}, headers=W).status_code == 200
    llm = {"name": "thread-test", "description": "a small model", "input_price": 1, "output_price": 1}
    assert client.post("/v1/llms", json=llm, headers=W).status_code == 201
    assert len(seen) == 1 and next(iter(seen)).startswith("graphroute-model"), seen


def test_a_full_queue_answers_503_with_retry_after(run_dir: Path, tmp_path: Path) -> None:
    settings = ServeSettings(router_dir=run_dir, api_key=KEY, store_url=str(tmp_path / "s.sqlite"), max_queue=2)
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/route/batch", json={"requests": [{"query": Q}] * 3})
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "overloaded" in r.json()["detail"]
        assert c.post("/v1/route/batch", json={"requests": [{"query": Q}] * 2}).status_code == 200


def test_serving_caches_embeddings_in_bounded_memory_never_on_disk(fitted_router: Router, tmp_path: Path) -> None:
    disk = tmp_path / "disk-cache"
    encoder = fitted_router.config.encoder.model_copy(update={"cache_dir": str(disk)})
    fitted_router.save(tmp_path / "r")
    router = Router.load(tmp_path / "r")
    router.config = router.config.model_copy(update={"encoder": encoder})
    router.save(tmp_path / "r")
    served = Served.load(tmp_path / "r", cache_items=5)
    for i in range(20):
        served.recommend([RouteRequest(f"A new question number {i}?")])
    assert len(served.router.state.encoder) <= 5  # type: ignore[arg-type]
    assert not disk.exists()


def test_the_default_store_lives_beside_the_run_folder(tmp_path: Path) -> None:
    settings = ServeSettings(router_dir=tmp_path / "runs" / "r1")
    assert Path(settings.store_location()) == (tmp_path / "runs" / "graphroute-events.sqlite").resolve()
