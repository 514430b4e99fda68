"""Exploration: the budget holds over many requests, propensities are the real chances of each choice, and no
method picks a disabled or over-budget LLM."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from graphroute import Router, RouterConfig
from graphroute.config import ExplorationConfig
from graphroute.exploration import Explorer
from graphroute.schema import LLMProfile, RouteRequest

METHODS = ("epsilon", "thompson", "ucb")


def _requests(n: int, n_llms: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    utility = rng.normal(0.5, 0.15, size=(n, n_llms))
    spread = rng.uniform(0.0, 0.3, size=(n, n_llms))
    allowed = rng.random((n, n_llms)) > 0.2
    allowed[:, 0] = True
    return utility, spread, allowed


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("budget", [0.005, 0.03])
def test_realised_loss_stays_within_budget_over_10k_requests(method: str, budget: float) -> None:
    explorer = Explorer(ExplorationConfig(method=method, budget=budget, seed=1))
    utility, spread, allowed = _requests(10_000)
    lost, explored = 0.0, 0
    for u, sp, ok in zip(utility, spread, allowed, strict=True):
        pick = explorer.pick(u, sp, ok)
        assert ok[pick.index], "explored a disallowed LLM"
        best = np.max(np.where(ok, u, -np.inf))
        lost += best - u[pick.index]
        explored += pick.exploratory
    assert lost / 10_000 <= budget + 1e-12
    assert explored > 100, f"{method} hardly explored ({explored} of 10,000)"
    assert lost / 10_000 > budget / 4, "the budget was barely used"


def test_propensities_are_the_frequencies_of_the_choices() -> None:
    utility = np.array([0.60, 0.55, 0.50, 0.20])
    spread = np.array([0.05, 0.10, 0.20, 0.01])
    allowed = np.ones(4, dtype=bool)
    for method in ("epsilon", "thompson"):
        explorer = Explorer(ExplorationConfig(method=method, budget=1.0, max_share=0.5, seed=3))
        picks = [explorer.pick(utility, spread, allowed) for _ in range(4_000)]
        counts = np.bincount([p.index for p in picks], minlength=4) / len(picks)
        mean_probs = np.mean([p.probabilities for p in picks], axis=0)
        assert np.abs(counts - mean_probs).max() < 0.03, (method, counts, mean_probs)
        for p in picks:
            assert p.propensity == pytest.approx(p.probabilities[p.index])
            assert p.exploratory == (p.index != 0)
    # Thompson tries the uncertain LLM (2) more than the nearly-as-good certain one would earn by its mean alone
    ts = Explorer(ExplorationConfig(method="thompson", budget=1.0, max_share=1.0, seed=3))
    probs = np.mean([ts.pick(utility, spread, allowed).probabilities for _ in range(200)], axis=0)
    assert probs[2] > 0.1 and probs[3] < 0.01


def test_ucb_tries_an_uncertain_close_second_deterministically() -> None:
    explorer = Explorer(ExplorationConfig(method="ucb", budget=0.1, ucb_beta=1.0))
    pick = explorer.pick(np.array([0.60, 0.55, 0.10]), np.array([0.0, 0.2, 0.9]), np.ones(3, dtype=bool))
    assert (pick.index, pick.propensity, pick.exploratory) == (1, 1.0, True)  # 2 would give up more than allowed


def test_no_exploration_is_greedy_with_propensity_one() -> None:
    explorer = Explorer(ExplorationConfig())
    utility, spread, allowed = _requests(200)
    for u, sp, ok in zip(utility, spread, allowed, strict=True):
        pick = explorer.pick(u, sp, ok)
        assert pick.index == int(np.argmax(np.where(ok, u, -np.inf))) and pick.propensity == 1.0


@pytest.fixture(scope="module")
def router_one_disabled(demo: tuple[pd.DataFrame, list[LLMProfile]], fast_config: RouterConfig) -> Router:
    logs, llms = demo
    router = Router(fast_config).fit(logs, llms)
    router.disable_llm(router.state.llm_names[0])
    return router


@pytest.mark.parametrize("method", METHODS)
def test_router_exploration_respects_disabled_llms_and_max_cost(
    method: str, router_one_disabled: Router, demo: tuple[pd.DataFrame, list[LLMProfile]]
) -> None:
    router = router_one_disabled
    names = router.state.llm_names
    queries = demo[0]["query"].drop_duplicates().head(60).tolist()
    _, cost = router.predict_outcomes(queries)
    budget = float(np.median(cost))
    requests = [RouteRequest(q, max_cost=budget, k=len(names)) for q in queries]
    assert all(r[0].propensity == 1.0 and not r[0].exploratory for r in router.recommend_many(requests))
    router.explorer = Explorer(ExplorationConfig(method=method, budget=0.2, max_share=0.5, ucb_beta=5.0))
    try:
        results = router.recommend_many(requests)
    finally:
        router.explorer = Explorer(ExplorationConfig())
    explored = 0
    for i, recs in enumerate(results):
        first = recs[0]
        assert first.llm != names[0]
        if (cost[i][1:] <= budget).any():
            assert first.cost <= budget + 1e-12, (method, first)
        assert 0 < first.propensity <= 1
        explored += first.exploratory
        assert len({r.llm for r in recs}) == len(recs)
    if method != "ucb":  # ucb explores only where a worse LLM's bonus outgrows the best one's
        assert explored > 0, f"{method}: no request explored"
