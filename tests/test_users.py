from __future__ import annotations

import numpy as np

from graphroute.users import Choices, fit_preference


def simulated(alpha: float, n: int, seed: int = 0, favourite: int | None = None) -> Choices:
    rng = np.random.default_rng(seed)
    effect, cost = rng.random((n, 4)), np.tile(np.array([0.0, 0.3, 0.6, 1.0]), (n, 1))
    effect[:, 3] = np.clip(effect[:, 3] + 0.4, 0, 1)  # the dear LLM is the best one
    utility = alpha * effect - (1 - alpha) * cost + (0.3 * (np.arange(4) == favourite) if favourite is not None else 0)
    return Choices(effect, cost, np.ones((n, 4), bool), utility.argmax(1))


def test_no_choices_is_the_population_default() -> None:
    pref = fit_preference(Choices(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3), bool), np.zeros(0, int)), 0.4, 3)
    assert pref.alpha == 0.4 and not pref.affinity.any() and pref.n_choices == 0


def test_recovers_opposite_trade_offs() -> None:
    quality = fit_preference(simulated(0.9, 40), 0.5, 4)
    thrifty = fit_preference(simulated(0.15, 40), 0.5, 4)
    assert quality.alpha > 0.7 > 0.35 > thrifty.alpha


def test_affinity_for_a_favourite() -> None:
    pref = fit_preference(simulated(0.5, 60, favourite=1), 0.5, 4)
    assert int(np.argmax(pref.affinity)) == 1
