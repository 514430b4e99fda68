from __future__ import annotations

from pathlib import Path

import pytest

from graphroute import Router, RouterConfig
from graphroute.data.io import read_interactions
from graphroute.data.store import open_store

ROWS = [
    {"user_id": "u1", "query": "What is 2+2?", "llm": "math-13b", "effect": 1.0, "chosen": True},
    {"user_id": "u1", "query": "What is 2+2?", "llm": "tiny-fast", "effect": 0.0, "chosen": False},
    {"user_id": "u2", "query": "Say hi", "llm": "writer-8b", "effect": None, "chosen": True, "cost": 0.001},
]


def check_round_trip(url: str) -> None:
    store = open_store(url)
    before = len(store.read()) if "postgres" in url else 0
    assert store.add(ROWS) == 3
    frame = store.read().iloc[before:]
    assert frame["query"].tolist() == ["What is 2+2?", "What is 2+2?", "Say hi"]
    assert frame["chosen"].tolist() == [True, False, True]
    assert frame["effect"].isna().tolist() == [False, False, True]
    assert frame["cost"].iloc[2] == 0.001


def test_sqlite_round_trip_and_train_from_the_store(tmp_path: Path, demo: tuple) -> None:  # type: ignore[type-arg]
    url = f"sqlite:///{tmp_path / 'fb.sqlite'}"
    check_round_trip(url)
    logs, llms = demo
    open_store(url).add(logs.head(300).drop(columns=["timestamp"]).to_dict("records"))
    log = read_interactions(url, llms)
    assert len(log) == 303 and {"user_id", "query", "llm", "effect", "chosen"} <= set(log.columns)
    cfg = RouterConfig(encoder={"kind": "hashing", "dim": 32}, train={"epochs": 1})
    assert Router(cfg).fit(log, llms).recommend("What is 3+3?", k=1)  # logs → store → retrain closes the loop


def test_postgres_round_trip() -> None:
    psycopg = pytest.importorskip("psycopg")
    url = "postgresql://postgres@127.0.0.1:5432/test"
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except Exception as exc:  # no server here: say so instead of failing
        pytest.skip(f"no PostgreSQL answers at 127.0.0.1:5432 ({type(exc).__name__})")
    with psycopg.connect(url) as con:
        con.execute("DROP TABLE IF EXISTS interactions")
    check_round_trip(url)


def test_bad_store_url() -> None:
    from graphroute.errors import DataValidationError

    with pytest.raises(DataValidationError, match="unsupported scheme in 'mysql'"):
        open_store("mysql://x")
