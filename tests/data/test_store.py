from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from graphroute import Router, RouterConfig
from graphroute.data.io import read_interactions
from graphroute.data.store import open_store
from graphroute.errors import DataValidationError
from graphroute.events import FeedbackEvent, LLMAdded, LLMEnabled

ROWS = [
    {"user_id": "u1", "query": "What is 2+2?", "llm": "math-13b", "effect": 1.0, "chosen": True},
    {"user_id": "u1", "query": "What is 2+2?", "llm": "tiny-fast", "effect": 0.0, "chosen": False},
    {"user_id": "u2", "query": "Say hi", "llm": "writer-8b", "chosen": True, "cost": 0.001, "propensity": 0.25},
]


def check_round_trip(url: str) -> None:
    store = open_store(url)
    receipt = store.append_feedback(ROWS)
    assert receipt.event_id == 1 and len(receipt.stored) == 3 and receipt.duplicates == 0
    frame = store.read()
    assert frame["query"].tolist() == ["What is 2+2?", "What is 2+2?", "Say hi"]
    assert frame["chosen"].tolist() == [True, False, True]
    assert frame["effect"].isna().tolist() == [False, False, True]
    assert frame["cost"].iloc[2] == 0.001
    assert frame["propensity"].isna().tolist() == [True, True, False] and frame["propensity"].iloc[2] == 0.25
    assert store.append(LLMAdded({"name": "new"}, ({"query": "q", "effect": 1.0},))) == 2
    assert store.append(LLMEnabled("tiny-fast", False)) == 3
    events = store.events_after(0)
    assert [type(e) for e in events] == [FeedbackEvent, LLMAdded, LLMEnabled]
    assert list(events[0].rows) == ROWS  # type: ignore[union-attr]
    assert events[1].probes == ({"query": "q", "effect": 1.0},)  # type: ignore[union-attr]
    assert [e.id for e in store.events_after(1)] == [2, 3]  # type: ignore[union-attr]
    assert open_store(url).store_id == store.store_id != ""  # one id per store, kept


def test_sqlite_events_in_order(tmp_path: Path) -> None:
    check_round_trip(f"sqlite:///{tmp_path / 'fb.sqlite'}")


def test_postgres_events_in_order(pg_url: str) -> None:
    check_round_trip(pg_url)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_retried_feedback_ids_are_stored_once(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_url") if kind == "postgres" else str(tmp_path / "s.sqlite")
    store = open_store(url)
    rows = [{**r, "feedback_id": f"id-{i}"} for i, r in enumerate(ROWS)]
    assert len(store.append_feedback(rows[:2]).stored) == 2
    again = store.append_feedback(rows)  # a client retries the whole request, with one new row
    assert [r["feedback_id"] for r in again.stored] == ["id-2"] and again.duplicates == 2
    assert store.append_feedback(rows).event_id is None  # nothing new: no event either
    twice = store.append_feedback([{**ROWS[0], "feedback_id": "x"}, {**ROWS[1], "feedback_id": "x"}])
    assert len(twice.stored) == 1 and twice.duplicates == 1
    no_ids = store.append_feedback(ROWS)  # rows without an id are always new
    assert len(no_ids.stored) == 3
    assert len(store.read()) == 3 + 1 + 3


def test_store_written_before_events_is_upgraded(tmp_path: Path) -> None:
    """An older store held bare interaction rows: they become one feedback event, nothing is lost."""
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE interactions (id INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT NULL, user_id TEXT, "
        "query TEXT, llm TEXT, effect REAL, chosen INTEGER, cost REAL, task TEXT, tokens_in REAL, tokens_out REAL)"
    )
    con.execute("INSERT INTO interactions (received_at, user_id, query, llm, effect) VALUES ('t', 'u', 'q', 'a', 1)")
    con.commit()
    con.close()
    store = open_store(f"sqlite:///{path}")
    (event,) = store.events_after(0)
    assert isinstance(event, FeedbackEvent) and event.rows == (
        {"user_id": "u", "query": "q", "llm": "a", "effect": 1.0},
    )
    assert store.append_feedback(ROWS[:1]).event_id == 2


def test_train_from_the_store_alone(tmp_path: Path, demo: tuple) -> None:  # type: ignore[type-arg]
    url = f"sqlite:///{tmp_path / 'fb.sqlite'}"
    logs, llms = demo
    open_store(url).append_feedback(logs.head(300).drop(columns=["timestamp"]).to_dict("records"))
    log = read_interactions(url, llms)
    assert len(log) == 300 and {"user_id", "query", "llm", "effect", "chosen"} <= set(log.columns)
    cfg = RouterConfig(encoder={"kind": "hashing", "dim": 32}, train={"epochs": 1})
    assert Router(cfg).fit(log, llms).recommend("What is 3+3?", k=1)  # logs → store → retrain closes the loop
    tiny = Router(cfg).fit(log.head(4), llms)  # a handful of queries still gets a validation split
    assert tiny.recommend("What is 3+3?", k=1)


def test_bad_store_url(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="unsupported scheme in 'mysql'"):
        open_store("mysql://x")
    with pytest.raises(DataValidationError, match="is a folder"):
        open_store(tmp_path)
