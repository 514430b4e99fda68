"""Per-user preferences: a trade-off alpha and LLM affinities, fitted from the user's own choices.

A user's utility for LLM l on query q is alpha·effect − (1−alpha)·ĉ + affinity[l]; a user who picked one LLM
among those shown reveals which utility was highest. The fit is a few gradient steps on the user's own
parameters (shrunk towards the population), never on the GNN: onboarding a user costs milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from graphroute import schema as s

CHOICE_TEMPERATURE = 0.1  # utilities live in [-1, 1]; users choose with some noise


@dataclass
class UserPreference:
    """alpha in [0, 1]; affinity (L,) added to the user's utility; n_choices it was fitted from."""

    alpha: float
    affinity: np.ndarray
    n_choices: int

    def to_dict(self) -> dict[str, object]:
        return {"alpha": self.alpha, "affinity": self.affinity.tolist(), "n_choices": self.n_choices}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> UserPreference:
        return cls(float(raw["alpha"]), np.asarray(raw["affinity"], dtype=float), int(raw["n_choices"]))


@dataclass
class Choices:
    """One row per choice a user made. Shapes: effect, norm_cost, shown (C, L); chosen, user (C,).

    ``user`` numbers the users of a batched fit (0 for all rows when one user is fitted).
    """

    effect: np.ndarray
    norm_cost: np.ndarray
    shown: np.ndarray
    chosen: np.ndarray
    user: np.ndarray | None = None

    def users(self) -> np.ndarray:
        return np.zeros(len(self.chosen), dtype=np.int64) if self.user is None else self.user


def choices_of(
    rows: pd.DataFrame, effect: np.ndarray, norm_cost: np.ndarray, n_llms: int, user: np.ndarray | None = None
) -> Choices:
    """Group rows by (user, query); groups where exactly one of at least two shown LLMs was chosen are choices.

    Vectorised over all users at once: fitting a million-row log's users must not loop in Python per user.

    Args:
        rows: log rows with columns query_id, l (LLM index) and chosen.
        effect, norm_cost: per row, the effect the user saw (logged, or predicted where missing) and ĉ.
        user: per row, the user's number in the batch (None: all rows are one user's).
    """
    n = len(rows)
    user = np.zeros(n, dtype=np.int64) if user is None else np.asarray(user, dtype=np.int64)
    if s.CHOSEN not in rows or n == 0:
        empty = np.zeros((0, n_llms))
        return Choices(empty, empty.copy(), np.zeros((0, n_llms), bool), np.zeros(0, int), np.zeros(0, np.int64))
    picked = rows[s.CHOSEN].astype(float).to_numpy() == 1
    keys = pd.MultiIndex.from_arrays([user, rows[s.QUERY_ID].to_numpy()])
    group, uniques = pd.factorize(keys)
    size = np.bincount(group, minlength=len(uniques))
    n_picked = np.bincount(group, weights=picked, minlength=len(uniques))
    valid = (size >= 2) & (n_picked == 1)
    new_id = np.cumsum(valid) - 1  # dense numbering of the valid groups
    keep = valid[group]
    g, llm = new_id[group[keep]], rows["l"].to_numpy()[keep]
    n_choices = int(valid.sum())
    e, c, m = np.zeros((n_choices, n_llms)), np.zeros((n_choices, n_llms)), np.zeros((n_choices, n_llms), bool)
    e[g, llm], c[g, llm], m[g, llm] = np.asarray(effect)[keep], np.asarray(norm_cost)[keep], True
    chosen, owner = np.zeros(n_choices, dtype=np.int64), np.zeros(n_choices, dtype=np.int64)
    chosen[g[picked[keep]]] = llm[picked[keep]]
    owner[g] = user[keep]
    return Choices(e, c, m, chosen, owner)


def fit_preference(
    choices: Choices, default_alpha: float, n_llms: int, shrinkage: float = 1.0, steps: int = 150
) -> UserPreference:
    """One user's preference (see ``fit_preferences``)."""
    return fit_preferences(choices, 1, default_alpha, n_llms, shrinkage, steps)[0]


def fit_preferences(
    choices: Choices, n_users: int, default_alpha: float, n_llms: int, shrinkage: float = 1.0, steps: int = 150
) -> list[UserPreference]:
    """Maximum a-posteriori alpha and affinities per user under a softmax choice model over the shown LLMs.

    All users are fitted in one batched problem: the loss is a sum of per-user terms over disjoint parameters
    and Adam updates element-wise, so this is exactly the per-user fit, at the cost of one.
    A user with no choices gets the population default (alpha = default_alpha, no affinity), so a new user
    is never given another user's profile.
    """
    owner = torch.as_tensor(choices.users())
    counts = np.bincount(choices.users(), minlength=n_users)
    prior = float(np.log(default_alpha + 1e-3) - np.log1p(-default_alpha + 1e-3))
    raw_alpha = torch.full((n_users,), prior, requires_grad=True)
    affinity = torch.zeros(n_users, n_llms, requires_grad=True)
    if len(choices.chosen):
        e = torch.as_tensor(choices.effect, dtype=torch.float32)
        c = torch.as_tensor(choices.norm_cost, dtype=torch.float32)
        mask = torch.as_tensor(choices.shown)
        target = torch.as_tensor(choices.chosen)
        rows = torch.arange(len(target))
        opt = torch.optim.Adam([raw_alpha, affinity], lr=0.1)
        for _ in range(steps):
            alpha = torch.sigmoid(raw_alpha)[owner, None]
            utility = (alpha * e - (1 - alpha) * c + affinity[owner]) / CHOICE_TEMPERATURE
            logp = torch.log_softmax(utility.masked_fill(~mask, -1e9), dim=1)
            nll = -logp[rows, target].sum()
            penalty = shrinkage * (affinity.pow(2).sum() * 10 + (raw_alpha - prior).pow(2).sum() * 0.5)
            opt.zero_grad()
            (nll + penalty).backward()
            opt.step()
    alphas = torch.sigmoid(raw_alpha.detach()).numpy()
    affinities = affinity.detach().numpy().astype(float)
    return [
        UserPreference(float(alphas[i]), affinities[i], int(counts[i]))
        if counts[i]
        else UserPreference(default_alpha, np.zeros(n_llms), 0)
        for i in range(n_users)
    ]
