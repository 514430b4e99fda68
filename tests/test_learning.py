"""Continuous learning on a real event store: the first router is served, a candidate trained on new outcomes is
checked off-policy on the newest ones and swapped in only when it is not worse, nothing acknowledged is left out
of a swapped-in router, and every decision is logged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from graphroute import Router, RouterConfig
from graphroute.data.io import validate_interactions, write_catalog, write_interactions
from graphroute.data.split import sparsify
from graphroute.data.store import open_store
from graphroute.data.synthetic import make_demo_logs
from graphroute.learning import CURRENT, DECISIONS, learn_once, new_feedback_rows, served_cursor
from tests.test_cli import in_process


def bandit_rows(n_queries: int, seed: int) -> list[dict[str, object]]:
    dense = validate_interactions(make_demo_logs(n_queries=n_queries, n_users=8, per_query=None, seed=seed)[0])
    rows = sparsify(dense, 1, seed=seed).drop(columns=["query_id"])
    return [{k: v for k, v in r.items() if pd.notna(v)} for r in rows.to_dict("records")]


def test_learn_swaps_in_a_checked_candidate_and_keeps_every_outcome(fast_config: RouterConfig, tmp_path: Path) -> None:
    base, llms = make_demo_logs(n_queries=20, n_users=8, per_query=None, seed=0)
    store = open_store(tmp_path / "store.sqlite")
    root = tmp_path / "deploy"
    first = learn_once(root, base, llms, store, fast_config)
    assert first.swapped and first.router == "router-1" and os.readlink(root / CURRENT) == "router-1"
    unlogged = [{k: v for k, v in r.items() if k != "propensity"} for r in bandit_rows(40, seed=5)]
    store.append_feedback(unlogged)  # outcomes without propensities cannot check a candidate
    blind = learn_once(root, base, llms, store, fast_config)
    assert not blind.swapped and "propensity" in blind.reason and os.readlink(root / CURRENT) == "router-1"
    rows = bandit_rows(800, seed=4)
    store.append_feedback(rows)
    assert new_feedback_rows(store, served_cursor(root, store)) == len(unlogged) + len(rows)
    second = learn_once(root, base, llms, store, fast_config, holdout=0.2)
    assert second.held_out == round(0.2 * len(rows)) and second.candidate_dr and second.current_dr
    assert second.difference_dr and second.swapped == (second.difference_dr[2] >= 0)
    # trained on 540 more outcomes, the candidate is far better on dense data (reward@0.5 0.27 against 0.17):
    # a check that keeps the old router here is broken
    assert second.swapped and os.readlink(root / CURRENT) == "router-2", second.reason
    served = Router.load(root / CURRENT)
    logged = set(zip(served.state.tables.frame["query"], served.state.tables.frame["llm"], strict=True))
    assert {(r["query"], r["llm"]) for r in rows} <= logged  # the held-out outcomes were folded in too
    assert served_cursor(root, store) == second.store_event
    decisions = [json.loads(line) for line in (root / DECISIONS).read_text().splitlines()]
    assert [d["swapped"] for d in decisions] == [True, False, second.swapped]


def test_learn_command_trains_once_when_due(
    fast_config: RouterConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, llms = make_demo_logs(n_queries=60, n_users=8, per_query=None, seed=0)
    write_interactions(base, tmp_path / "base.csv")
    write_catalog(llms, tmp_path / "llms.yaml")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(fast_config.model_dump()))
    store = tmp_path / "store.sqlite"
    args = [
        "learn", tmp_path / "deploy", tmp_path / "base.csv", "--llms", tmp_path / "llms.yaml", "--store", store,
        "--config", tmp_path / "config.yaml", "--once", "--every", "100",
    ]  # fmt: skip
    result = in_process(capsys, *args)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["router"] == "router-1"
    open_store(store).append_feedback(bandit_rows(50, seed=6))  # fewer than --every: nothing to do yet
    result = in_process(capsys, *args)
    assert result.returncode == 0 and result.stdout.strip() == ""
    assert len((tmp_path / "deploy" / DECISIONS).read_text().splitlines()) == 1
    missing = in_process(capsys, "learn", tmp_path / "d", tmp_path / "base.csv", "--llms", tmp_path / "llms.yaml")
    assert missing.returncode == 2 and "--store" in missing.stderr
