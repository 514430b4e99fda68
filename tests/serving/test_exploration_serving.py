"""Exploration while serving: route answers say whether a choice explored and its propensity, feedback that names
the request stores that propensity with the outcome, and the service never explores into a disabled LLM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from graphroute.data.store import open_store
from serving.app import create_app
from serving.settings import ServeSettings
from tests.serving.conftest import KEY

QUERIES = [f"Explain topic number {i} in two sentences." for i in range(80)]


@pytest.fixture()
def exploring(run_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = ServeSettings(
        router_dir=run_dir,
        api_key=KEY,
        store_url=str(tmp_path / "store.sqlite"),
        exploration={"method": "epsilon", "budget": 0.5, "max_share": 0.5},
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_route_answers_carry_propensity_and_feedback_stores_it(exploring: TestClient, tmp_path: Path) -> None:
    answers = [exploring.post("/v1/route", json={"query": q, "user_id": "u1"}).json() for q in QUERIES]
    explored = [a for a in answers if a["exploratory"]]
    greedy = [a for a in answers if not a["exploratory"]]
    assert explored and greedy
    for a in answers:
        assert a["llm"] == a["ranking"][0]["llm"] and a["propensity"] == a["ranking"][0]["propensity"]
        assert 0 < a["propensity"] <= 1
    assert all(a["propensity"] < 0.5 for a in explored) and all(a["propensity"] >= 0.5 for a in greedy)
    rows = [{"request_id": a["request_id"], "effect": 0.5} for a in answers[:10]]
    assert exploring.post("/v1/feedback", json={"interactions": rows}, headers={"x-api-key": KEY}).status_code == 200
    stored = open_store(tmp_path / "store.sqlite").read()
    assert stored["propensity"].tolist() == pytest.approx([a["propensity"] for a in answers[:10]])


def test_exploration_skips_a_disabled_llm(exploring: TestClient) -> None:
    first = exploring.post("/v1/route", json={"query": QUERIES[0]}).json()
    names = [r["llm"] for r in first["ranking"]]
    off = names[1]
    assert exploring.post(f"/v1/llms/{off}/disable", headers={"x-api-key": KEY}).status_code == 200
    chosen = {exploring.post("/v1/route", json={"query": q}).json()["llm"] for q in QUERIES}
    assert off not in chosen and len(chosen) > 1


def test_greedy_service_reports_propensity_one(client: TestClient) -> None:
    answer = client.post("/v1/route", json={"query": QUERIES[0], "k": 3}).json()
    assert answer["propensity"] == 1.0 and answer["exploratory"] is False
    assert [r["propensity"] for r in answer["ranking"]] == [1.0, 0.0, 0.0]
