"""Simulated users on dense benchmark data (the users benchmark, P3).

A dense benchmark scores every LLM on every query but has no users. This turns it into the sparse, per-user logs
production sees: each user has a trade-off alpha and affinities for a few LLMs; each query is asked by one user,
who is shown a few LLMs and picks, with Gumbel noise, the one that maximises their own utility

    utility(l) = alpha·effect(l) − (1 − alpha)·ĉ(l) + affinity(l),   ĉ = per-task min–max normalised cost.

Seeded and documented so anyone can rebuild the exact logs; the demo data can use it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from graphroute import schema as s


@dataclass(frozen=True)
class SimulatedUsers:
    """The users' hidden truth. alpha (U,), affinity (U, L), ids (U,), llm names (L,)."""

    ids: list[str]
    alpha: np.ndarray
    affinity: np.ndarray
    llms: list[str]

    def utility(self, user_rows: np.ndarray, effect: np.ndarray, norm_cost: np.ndarray) -> np.ndarray:
        """True utility of every LLM for the given users. Shapes: (N,), (N, L), (N, L) → (N, L)."""
        a = self.alpha[user_rows][:, None]
        return a * effect - (1 - a) * norm_cost + self.affinity[user_rows]


def make_users(llms: Sequence[str], n_users: int = 200, seed: int = 0) -> SimulatedUsers:
    """Users with alpha spread over [0.1, 1] and a liking (+0.05…0.2) for two LLMs and a dislike for one."""
    rng = np.random.default_rng(seed)
    alpha = rng.uniform(0.1, 1.0, n_users)
    affinity = np.zeros((n_users, len(llms)))
    for u in range(n_users):
        liked = rng.choice(len(llms), size=min(3, len(llms)), replace=False)
        affinity[u, liked[:2]] = rng.uniform(0.05, 0.2, size=len(liked[:2]))
        if len(liked) > 2:
            affinity[u, liked[2]] = -rng.uniform(0.05, 0.2)
    return SimulatedUsers([f"sim{u:04d}" for u in range(n_users)], alpha, affinity, list(llms))


def normalized_costs(dense: pd.DataFrame) -> pd.Series:
    """Per-task min–max of the cost column (the ĉ users weigh)."""
    grouped = dense.groupby(s.TASK)[s.COST]
    lo, hi = grouped.transform("min"), grouped.transform("max")
    return ((dense[s.COST] - lo) / (hi - lo).where(hi > lo, 1.0)).clip(0, 1)


def dense_matrices(dense: pd.DataFrame, llms: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Queries (sorted) and their effect and ĉ per LLM. Shapes: → (N,), (N, L), (N, L)."""
    frame = dense.assign(_c=normalized_costs(dense))
    effect = frame.pivot_table(index=s.QUERY, columns=s.LLM, values=s.EFFECT, aggfunc="mean")[list(llms)]
    cost = frame.pivot_table(index=s.QUERY, columns=s.LLM, values="_c", aggfunc="mean")[list(llms)]
    return effect.index.tolist(), effect.to_numpy(), cost.to_numpy()


def simulate_logs(
    dense: pd.DataFrame, users: SimulatedUsers, shown: int = 3, noise: float = 0.05, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray]:
    """Sparse log from a dense one (columns query, llm, effect, cost, task).

    Each query goes to one random user, who sees ``shown`` random LLMs and chooses one. Returns the log (query,
    llm, effect, cost, task, user_id, chosen) and, per query in sorted order, the index of its user.
    """
    rng = np.random.default_rng(seed)
    queries, effect, norm = dense_matrices(dense, users.llms)
    owner = rng.integers(len(users.ids), size=len(queries))
    utility = users.utility(owner, effect, norm)
    first = dense.drop_duplicates(s.QUERY).set_index(s.QUERY)
    cost = dense.pivot_table(index=s.QUERY, columns=s.LLM, values=s.COST, aggfunc="mean")[users.llms].to_numpy()
    rows = []
    for i, query in enumerate(queries):
        seen = np.sort(rng.choice(len(users.llms), size=min(shown, len(users.llms)), replace=False))
        pick = seen[int(np.argmax(utility[i, seen] + rng.gumbel(0, noise, len(seen))))]
        for j in seen:
            rows.append(
                {
                    s.QUERY: query,
                    s.LLM: users.llms[j],
                    s.EFFECT: float(effect[i, j]),
                    s.COST: float(cost[i, j]),
                    s.TASK: first.at[query, s.TASK],
                    s.USER_ID: users.ids[owner[i]],
                    s.CHOSEN: bool(j == pick),
                }
            )
    return pd.DataFrame(rows), owner
