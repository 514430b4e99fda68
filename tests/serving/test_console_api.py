"""The explanation over HTTP and the JSON the console reads: traffic, users, its own page and assets."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import ServeSettings
from tests.serving.conftest import KEY

WRITE = {"Authorization": f"Bearer {KEY}"}
QUERY = "Solve for x: 12x + 5 = 41."


def test_route_with_explain_adds_up(client: TestClient) -> None:
    plain = client.post("/v1/route", json={"query": QUERY, "user_id": "user001"}).json()
    assert plain["explanation"] is None
    answer = client.post("/v1/route", json={"query": QUERY, "user_id": "user001", "explain": True}).json()
    ex = answer["explanation"]
    assert [r["llm"] for r in ex["ranking"][:3]] == [r["llm"] for r in answer["ranking"]]
    for r in ex["ranking"]:
        assert r["quality"] + r["cost"] + r["affinity"] == pytest.approx(r["utility"], abs=1e-9)
        assert sum(r["effect_terms"].values()) == pytest.approx(r["effect_logit"], abs=1e-5)
    assert ex["user_id"] == "user001" and len(ex["neighbours"]) == 5 and ex["task"]


def test_traffic_counts_routes_and_reported_outcomes(client: TestClient) -> None:
    for _ in range(3):
        answer = client.post("/v1/route", json={"query": QUERY, "user_id": "ann", "alpha": 1.0}).json()
    chosen = answer["llm"]
    stored = client.post(
        "/v1/feedback", headers=WRITE, json={"interactions": [{"request_id": answer["request_id"], "effect": 0.25}]}
    )
    assert stored.status_code == 200, stored.text
    traffic = client.get("/v1/traffic", params={"window": "hour"}).json()
    assert traffic["routes"] == 3
    row = next(r for r in traffic["llms"] if r["llm"] == chosen)
    assert row["routes"] == 3 and row["share"] == 1.0 and row["outcomes"] == 1
    assert row["observed_effect"] == pytest.approx(0.25) and row["predicted_effect"] > 0 and row["predicted_spend"] > 0
    others = [r for r in traffic["llms"] if r["llm"] != chosen]
    assert others and all(r["routes"] == 0 and r["predicted_effect"] is None for r in others)
    assert client.get("/v1/traffic", params={"window": "week"}).status_code == 422


def test_users_most_interactions_first(client: TestClient) -> None:
    users = client.get("/v1/users", params={"limit": 3}).json()
    assert len(users) == 3
    counts = [u["interactions"] for u in users]
    assert counts == sorted(counts, reverse=True) and counts[0] > 0
    assert all(0.0 <= u["alpha"] <= 1.0 and u["affinity"] for u in users)
    assert all(not u["user_id"].startswith("__") for u in client.get("/v1/users").json())


def test_console_page_and_assets_ship_with_the_package(client: TestClient) -> None:
    page = client.get("/console")
    assert page.status_code == 200 and "GraphRoute console" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from elsewhere
    for name, kind in (("console.js", "javascript"), ("console.css", "css")):
        asset = client.get(f"/console/assets/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"] and len(asset.text) > 500
    assert client.get("/console/assets/../app.py").status_code == 404
    assert client.get("/console/assets/index.htm").status_code == 404


def test_console_views_follow_the_read_key(run_dir: Path, tmp_path: Path) -> None:
    settings = ServeSettings(
        router_dir=run_dir, api_key=KEY, read_api_key="reader", store_url=str(tmp_path / "store.sqlite")
    )
    with TestClient(create_app(settings)) as c:
        assert c.get("/console").status_code == 200  # the page itself asks for the key
        for path in ("/v1/traffic", "/v1/users", "/v1/llms"):
            assert c.get(path).status_code == 401
            assert c.get(path, headers={"Authorization": "Bearer reader"}).status_code == 200
        reader = {"Authorization": "Bearer reader"}
        assert c.post("/v1/llms/tiny-fast/disable", headers=reader).status_code == 403  # writes need the write key
