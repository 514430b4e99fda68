from __future__ import annotations

import numpy as np
import pytest

from graphroute.metrics import (
    SWEEP_ALPHAS,
    Truth,
    aiq,
    frontier,
    gap_recovered,
    paired_aiq_bootstrap,
    paired_bootstrap,
    score_choices,
)


def test_frontier_is_upper_hull_non_decreasing() -> None:
    pts = [(1, 0.5), (2, 0.4), (3, 0.8), (2.5, 0.6), (4, 0.81)]
    assert frontier(pts) == [(1, 0.5), (3, 0.8), (4, 0.81)]


def test_aiq_of_a_flat_frontier_and_degenerate_costs() -> None:
    # one point at cost 1, quality 0.6, extended flat to cost 2: area 0.6 over [1, 2] / 2
    assert aiq([(1.0, 0.6)], 2.0) == pytest.approx(0.3)
    assert np.isnan(aiq([(1.0, 0.6), (1.0, 0.7)], 1.0))


def test_gap_and_bootstrap() -> None:
    assert gap_recovered(0.6, 0.5, 0.7) == pytest.approx(0.5)
    mean, lo, hi = paired_bootstrap(np.ones(100), np.zeros(100))
    assert mean == lo == hi == 1.0
    rng = np.random.default_rng(0)
    mean, lo, hi = paired_bootstrap(rng.random(400), rng.random(400))
    assert lo < mean < hi and lo < 0 < hi


def test_score_choices_rewards() -> None:
    effect = np.array([[1.0, 0.0], [0.0, 1.0]])
    cost = np.array([[1.0, 2.0], [1.0, 2.0]])
    truth = Truth(effect, cost, np.array([[0.0, 1.0], [0.0, 1.0]]))
    oracle = {a: truth.oracle_choice(a) for a in (1.0, 0.5, 0.2)}
    sc = score_choices("oracle", truth, oracle)
    assert sc.quality[1.0] == 1.0 and sc.cost[1.0] == 1.5
    assert oracle[0.2].tolist() == [0, 0]  # at alpha 0.2 the cheap LLM wins even where it fails
    assert sc.reward[0.5] == pytest.approx(0.25)


def test_effect_fit_reads_only_observed_pairs() -> None:
    from graphroute.metrics import Truth, effect_fit

    effect = np.array([[0.2, np.nan], [0.8, 0.5], [0.4, 0.9]])
    truth = Truth(effect, np.ones_like(effect), np.ones_like(effect))
    exact = np.nan_to_num(effect, nan=123.0)  # the unobserved cell must not count
    assert effect_fit(exact, truth) == (pytest.approx(1.0), pytest.approx(0.0))
    r, mae = effect_fit(np.where(np.isnan(effect), 0.0, 1.0 - np.nan_to_num(effect)), truth)
    assert r == pytest.approx(-1.0) and mae == pytest.approx(np.mean(np.abs(1 - 2 * effect[~np.isnan(effect)])))
    r, mae = effect_fit(np.full_like(effect, 0.5), truth)
    assert np.isnan(r) and mae == pytest.approx(np.mean(np.abs(0.5 - effect[~np.isnan(effect)])))


def test_paired_aiq_bootstrap_finds_a_clear_difference_and_a_tie() -> None:
    rng = np.random.default_rng(1)
    n, n_llms = 300, 3
    effect = rng.random((n, n_llms))
    effect[:, 2] = np.clip(effect[:, 2] + 0.3, 0, 1)  # the dear LLM is better
    cost = np.tile(np.array([1.0, 2.0, 4.0]), (n, 1))
    truth = Truth(effect, cost, cost / 4.0)
    alphas = [float(a) for a in SWEEP_ALPHAS]
    oracle = score_choices("oracle", truth, {a: truth.oracle_choice(a) for a in alphas})
    cheap = score_choices("cheap", truth, {a: np.zeros(n, dtype=int) for a in alphas})
    mean, low, high = paired_aiq_bootstrap(oracle, cheap, max_cost=4.0, n_boot=200)
    assert mean == pytest.approx(aiq(oracle.points, 4.0) - aiq(cheap.points, 4.0))
    assert 0 < low < mean < high
    same = paired_aiq_bootstrap(oracle, oracle, max_cost=4.0, n_boot=50)
    assert same == (0.0, 0.0, 0.0)
