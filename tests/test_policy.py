from __future__ import annotations

import numpy as np

from graphroute import policy


def test_ties_go_to_the_cheaper_llm() -> None:
    u = policy.utilities(np.array([[0.7, 0.7]]), np.array([[0.9, 0.1]]), 1.0)
    assert policy.choose(u).tolist() == [1]


def test_alpha_trades_effect_against_cost() -> None:
    effect, cost = np.array([[0.9, 0.6]]), np.array([[1.0, 0.0]])
    assert policy.choose(policy.utilities(effect, cost, 1.0)).tolist() == [0]
    assert policy.choose(policy.utilities(effect, cost, 0.2)).tolist() == [1]


def test_allowed_mask_and_budget() -> None:
    u = np.array([[3.0, 2.0, 1.0]])
    assert policy.choose(u, np.array([False, True, True])).tolist() == [1]
    cost = np.array([[5.0, 4.0, 1.0]])
    assert policy.choose(u, None, max_cost=4.5, cost=cost).tolist() == [1]
    assert policy.choose(u, None, max_cost=0.5, cost=cost).tolist() == [2]  # none fits: the cheapest
    assert policy.rank(u, np.array([True, False, True])).tolist() == [[0, 2, 1]]
