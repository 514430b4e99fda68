"""Served changes as events: replayed onto a loaded router, folded into a retrain, never applied twice; feedback
taken at once and folded into the graph later, with the same result however the folds were batched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphroute import Router
from graphroute.data.store import EventStore, open_store
from graphroute.errors import DataValidationError
from graphroute.events import LLMAdded, LLMEnabled
from graphroute.replay import fit_with_store, replay_store

QUERY = "Who wrote the novel about the whale?"


@pytest.fixture()
def router(fitted_router: Router, tmp_path: Path) -> Router:
    fitted_router.save(tmp_path / "copy")
    return Router.load(tmp_path / "copy")


def served_changes(store: EventStore, known_query: str) -> None:
    """What a day of serving leaves in a store: a user's choice, an onboarded LLM with a probe, a disabled LLM, and
    rows that must never be trained on."""
    store.append_feedback(
        [
            {"user_id": "ann", "query": known_query, "llm": "tiny-fast", "effect": 0.4, "chosen": True},
            {"user_id": "ann", "query": known_query, "llm": "reasoner-405b", "effect": 0.9, "chosen": False},
            {"user_id": "bob", "query": "A question nobody logged before?", "llm": "coder-7b", "effect": 1.0},
        ]
    )
    store.append_feedback([{"user_id": "eve", "query": "q", "llm": "coder-7b", "effect": 0.5, "cost": float("inf")}])
    store.append_feedback([{"user_id": "eve", "query": "q", "llm": "gpt-nope", "effect": 0.5}])
    profile = {"name": "math-pro", "description": "Strong at algebra.", "input_price": 0.1, "output_price": 0.1}
    store.append(LLMAdded(profile, ({"query": known_query, "effect": 1.0},)))
    store.append(LLMEnabled("writer-8b", False))


def test_replay_applies_every_change_once_and_skips_bad_rows(router: Router, tmp_path: Path) -> None:
    store = open_store(tmp_path / "events.sqlite")
    served_changes(store, router.state.tables.queries.texts[0])
    report = replay_store(router, store)
    assert report.applied == 5 and report.rows == 3 and report.skipped == 2 and report.last_event == 5
    assert "finite" in report.reasons[0] and "gpt-nope" in report.reasons[1]
    ann = router.user_profile("ann")
    assert ann["known"] and ann["interactions"] == 2 and ann["n_choices"] == 1
    assert router.user_profile("bob")["known"] and "bob" in router.state.user_ids and not router.feedback
    assert (
        router.state.llm_names[-1] == "math-pro" and not router.state.enabled[router.state.llm_names.index("writer-8b")]
    )
    assert "eve" not in router.state.user_ids
    effect, cost = router.predict_outcomes([QUERY, "q"], user_ids=["ann", "eve"])
    assert np.isfinite(effect).all() and np.isfinite(cost).all()
    again = replay_store(router, store)  # the cursor moved: nothing applies twice
    assert again.applied == 0 and router.user_profile("ann")["interactions"] == 2
    router.save(tmp_path / "served")
    assert replay_store(Router.load(tmp_path / "served"), store).applied == 0


@pytest.mark.slow
def test_a_router_trained_with_the_store_replays_only_newer_events(router: Router, demo: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    store = open_store(tmp_path / "events.sqlite")
    served_changes(store, router.state.tables.queries.texts[0])
    logs, llms = demo
    retrained = Router(router.config)
    report = fit_with_store(retrained, logs, llms, store)
    assert report.skipped == 2 and retrained.state.events_cursor is not None
    assert retrained.state.events_cursor.last_event == 5 and retrained.state.events_cursor.store_id == store.store_id
    assert "math-pro" in retrained.state.llm_names and {"ann", "bob"} <= set(retrained.state.user_ids)
    assert not retrained.state.enabled[retrained.state.llm_names.index("writer-8b")]
    store.append(LLMEnabled("writer-8b", True))
    later = replay_store(retrained, store)
    assert later.applied == 1 and retrained.state.enabled[retrained.state.llm_names.index("writer-8b")]
    other = open_store(tmp_path / "other.sqlite")  # another store: its events are all new to this router
    other.append(LLMEnabled("coder-7b", False))
    assert replay_store(retrained, other).applied == 1


def test_feedback_is_taken_at_once_and_folded_later(router: Router) -> None:
    rows = [
        {"user_id": f"u{i}", "query": f"Compute {i} squared, please.", "llm": "math-13b", "effect": 1.0}
        for i in range(20)
    ]
    graph = router.state.graph
    assert router.add_feedback(rows) == sorted(r["user_id"] for r in rows)
    assert router.state.graph is graph and len(router.feedback) == 20  # no rebuild per feedback
    assert router.user_profile("u3") == {**router.user_profile("u3"), "known": True, "interactions": 1}
    n = len(router.state.tables.query_ids)
    assert router.fold(max_new_queries=8) == 20 and router.fold(max_new_queries=8) == 20  # bounded steps
    assert router.fold(max_new_queries=8) == 0 and len(router.state.tables.query_ids) == n + 20
    assert router.state.graph is not graph and {"u0", "u19"} <= set(router.state.user_ids)


def test_folds_give_the_same_router_however_they_are_batched(fitted_router: Router, tmp_path: Path) -> None:
    fitted_router.save(tmp_path / "r")
    one, many = Router.load(tmp_path / "r"), Router.load(tmp_path / "r")
    rows = [
        {"user_id": f"u{i % 3}", "query": f"Translate 'house {i}' into French.", "llm": "writer-8b", "effect": 0.8}
        for i in range(12)
    ]
    one.add_feedback(rows)
    one.fold()
    for row in rows:
        many.add_feedback([row])
        many.fold()
    probe = [QUERY, "Translate 'house 3' into French.", "Translate 'garden' into French."]
    np.testing.assert_allclose(
        one.predict_outcomes(probe, user_ids=["u1"] * 3)[0], many.predict_outcomes(probe, user_ids=["u1"] * 3)[0]
    )


def test_bad_feedback_names_row_and_column(router: Router) -> None:
    good = {"user_id": "u", "query": "q", "llm": "coder-7b", "effect": 0.5}
    for bad, needle in [
        ({"cost": float("-inf")}, "row 2, column 'cost'"),
        ({"effect": float("inf")}, "row 2, column 'effect'"),
        ({"tokens_in": 1e12}, "row 2, column 'tokens_in'"),
        ({"llm": "gpt-nope"}, "row 2, column 'llm'"),
        ({"effect": None}, "row 2, column 'effect': Value error, effect or chosen is required"),
        ({"colour": "red"}, "row 2, column 'colour': unknown column"),
    ]:
        with pytest.raises(DataValidationError, match=needle.replace("(", r"\(")):
            router.add_feedback([good, {**good, **bad}])
    assert not router.feedback  # nothing half-taken
    frame = pd.DataFrame([good, {**good, "timestamp": 3, "query_id": "x"}])  # log columns feedback ignores
    assert router.add_feedback(frame) == ["u"]
