from __future__ import annotations

import numpy as np
import pandas as pd

from graphroute import schema as s
from graphroute.users import Choices, choices_of, fit_preference, fit_preferences


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


def test_batched_fit_equals_one_fit_per_user() -> None:
    """Users are fitted together at scale; that must give each user what fitting it alone gives."""
    parts = [simulated(0.9, 40, seed=1), simulated(0.15, 25, seed=2), simulated(0.5, 60, seed=3, favourite=2)]
    stacked = Choices(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("effect", "norm_cost", "shown", "chosen")),
        user=np.repeat([0, 2, 3], [len(p.chosen) for p in parts]),  # user 1 has no choices
    )
    together = fit_preferences(stacked, 4, 0.5, 4)
    alone = [fit_preference(p, 0.5, 4) for p in parts]
    for got, want in zip([together[0], together[2], together[3]], alone, strict=True):
        assert got.n_choices == want.n_choices
        assert abs(got.alpha - want.alpha) < 1e-4 and np.allclose(got.affinity, want.affinity, atol=1e-4)
    assert together[1].alpha == 0.5 and together[1].n_choices == 0


def test_choices_keep_only_groups_with_one_pick_among_several() -> None:
    rows = pd.DataFrame(
        {
            s.QUERY_ID: ["a", "a", "b", "b", "c", "a", "a"],
            "l": [0, 1, 0, 2, 1, 0, 2],
            s.CHOSEN: [True, False, True, True, True, False, True],
        }
    )
    user = np.array([0, 0, 0, 0, 0, 1, 1])
    got = choices_of(rows, np.arange(7) / 10, np.zeros(7), 3, user=user)
    # (0, a): one pick of two; (0, b): two picks; (0, c): alone; (1, a): one pick of two
    assert got.user.tolist() == [0, 1] and got.chosen.tolist() == [0, 2]
    assert got.shown.tolist() == [[True, True, False], [True, False, True]]
    assert np.allclose(got.effect[1], [0.5, 0, 0.6])
