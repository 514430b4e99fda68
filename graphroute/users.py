"""Per-user preferences: a trade-off alpha and LLM affinities, fitted from the user's own choices.

A user's utility for LLM l on query q is alpha·effect − (1−alpha)·ĉ + affinity[l]; a user who picked one LLM
among those shown reveals which utility was highest. The fit is a few gradient steps on the user's own
parameters (shrunk towards the population), never on the GNN: onboarding a user costs milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    def from_dict(cls, raw: dict[str, object]) -> UserPreference:
        return cls(float(raw["alpha"]), np.asarray(raw["affinity"], dtype=float), int(raw["n_choices"]))  # type: ignore[arg-type]


@dataclass
class Choices:
    """One row per choice the user made. Shapes: effect, norm_cost, shown (C, L); chosen (C,)."""

    effect: np.ndarray
    norm_cost: np.ndarray
    shown: np.ndarray
    chosen: np.ndarray


def choices_of(rows: pd.DataFrame, effect: np.ndarray, norm_cost: np.ndarray, n_llms: int) -> Choices:
    """Group one user's rows by query; queries where exactly one shown LLM was chosen become choices.

    Args:
        rows: the user's log rows with columns query_id, l (LLM index) and chosen.
        effect, norm_cost: per row, the effect the user saw (logged, or predicted where missing) and ĉ.
    """
    if s.CHOSEN not in rows or rows.empty:
        return Choices(np.zeros((0, n_llms)), np.zeros((0, n_llms)), np.zeros((0, n_llms), bool), np.zeros(0, int))
    frame = rows.assign(_e=effect, _c=norm_cost, _k=rows[s.CHOSEN].astype(float))
    eff, cost, shown, chosen = [], [], [], []
    for _, group in frame.groupby(s.QUERY_ID, sort=True):
        picked = group[group["_k"] == 1]
        if len(picked) != 1 or len(group) < 2:
            continue
        e, c, m = np.zeros(n_llms), np.zeros(n_llms), np.zeros(n_llms, bool)
        idx = group["l"].to_numpy()
        e[idx], c[idx], m[idx] = group["_e"].to_numpy(), group["_c"].to_numpy(), True
        eff.append(e), cost.append(c), shown.append(m), chosen.append(int(picked["l"].iloc[0]))
    if not chosen:
        return choices_of(rows.iloc[0:0], effect[:0], norm_cost[:0], n_llms)
    return Choices(np.array(eff), np.array(cost), np.array(shown), np.array(chosen))


def fit_preference(
    choices: Choices, default_alpha: float, n_llms: int, shrinkage: float = 1.0, steps: int = 150
) -> UserPreference:
    """Maximum a-posteriori alpha and affinities under a softmax choice model over the shown LLMs.

    With no choices the result is the population default (alpha = default_alpha, no affinity), so a new user
    is never given another user's profile.
    """
    n = len(choices.chosen)
    if n == 0:
        return UserPreference(default_alpha, np.zeros(n_llms), 0)
    prior = float(np.log(default_alpha + 1e-3) - np.log1p(-default_alpha + 1e-3))
    raw_alpha = torch.tensor(prior, requires_grad=True)
    affinity = torch.zeros(n_llms, requires_grad=True)
    e, c = torch.as_tensor(choices.effect, dtype=torch.float32), torch.as_tensor(choices.norm_cost, dtype=torch.float32)
    mask = torch.as_tensor(choices.shown)
    target = torch.as_tensor(choices.chosen)
    opt = torch.optim.Adam([raw_alpha, affinity], lr=0.1)
    for _ in range(steps):
        alpha = torch.sigmoid(raw_alpha)
        utility = (alpha * e - (1 - alpha) * c + affinity) / CHOICE_TEMPERATURE
        logp = torch.log_softmax(utility.masked_fill(~mask, -1e9), dim=1)
        nll = -logp[torch.arange(n), target].sum()
        penalty = shrinkage * (affinity.pow(2).sum() * 10 + (raw_alpha - prior) ** 2 * 0.5)
        opt.zero_grad()
        (nll + penalty).backward()
        opt.step()
    return UserPreference(float(torch.sigmoid(raw_alpha.detach())), affinity.detach().numpy().astype(float), n)
