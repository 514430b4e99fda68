"""Thin evidence falls back to what the log says plainly: each LLM's mean per task, then its mean overall.

A router fitted on a small or sparse log reads per-query differences between LLMs that are partly noise, and can
then rank LLMs worse than the simplest rules do: always the best single LLM, or the best LLM of the query's task.
``ThinEvidenceFallback`` splits each predicted *difference between LLMs on a query* (each LLM's predicted effect
less its mean over the log, centred over the LLMs) into two parts: the task part (its mean on the query's task, pulled
towards its overall mean where the task has few outcomes, less its overall mean) and the rest (the prediction less
that task mean). On validation queries predicted without their own outcomes it measures how much of each part the
observed outcomes confirm, and keeps only that share of each. A large log confirms nearly all of both (the router is
unchanged); where the per-query rest is noise it ranks like the best LLM per task; where the task means are noise
too, like the best single LLM. How hard a query is (the level shared by all LLMs) is left as predicted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_PAIRS = 20  # fewer held-out comparisons than this say nothing: keep the predictions as they are


@dataclass
class ThinEvidenceFallback:
    """``weight`` in [0, 1]: the share of the predicted differences beyond each LLM's task mean kept;
    ``task_weight``: the share of the task means' differences from the overall means kept; ``means``: each LLM's
    mean effect over the log it was fitted on; ``task_means``: per task, each LLM's (pulled) mean on it. LLMs
    without a mean, such as onboarded ones, are left as predicted; a task without a row falls back to ``means``."""

    weight: float = 1.0
    means: dict[str, float] = field(default_factory=dict)
    task_weight: float | None = None  # None: the same as ``weight`` (no task part, as routers saved before it)
    task_means: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        names: Sequence[str],
        means: np.ndarray,
        predicted: np.ndarray,
        observed: np.ndarray,
        anchor: np.ndarray | None = None,
    ) -> ThinEvidenceFallback:
        """Box-constrained least squares ([0, 1] each) of observed on predicted within-query deviations, the
        task part and the rest apart; without ``anchor`` one slope for both.

        Shapes: means (L,); predicted, observed, anchor (N, L): observed NaN where not logged, anchor each LLM's
        task mean on the query's task. Only queries with at least two observed LLMs speak of differences between
        LLMs; every side is centred over those LLMs.
        """
        seen = ~np.isnan(observed) & ~np.isnan(means)[None, :]
        rows = seen.sum(axis=1) >= 2
        seen = seen[rows]
        if seen.sum() < MIN_PAIRS:
            return cls(1.0, _known(names, means), 1.0)
        count = seen.sum(axis=1, keepdims=True)

        def centred(values: np.ndarray) -> np.ndarray:
            values = np.where(seen, np.nan_to_num(values[rows]) - means, 0.0)
            return np.where(seen, values - values.sum(axis=1, keepdims=True) / count, 0.0)

        obs, pred = centred(observed), centred(predicted)
        if anchor is None:
            slope = _slopes(obs.ravel(), pred.ravel()[:, None])[0]
            return cls(slope, _known(names, means), slope)
        task = centred(anchor)
        task_weight, weight = _slopes(obs.ravel(), np.stack([task.ravel(), (pred - task).ravel()], axis=1))
        return cls(weight, _known(names, means), task_weight)

    def rebased(
        self, names: Sequence[str], means: np.ndarray, task_names: Sequence[str] = (), table: np.ndarray | None = None
    ) -> ThinEvidenceFallback:
        """The same weights around other means: those of the log the fitted router keeps (train and validation).
        ``table`` (T, L): each LLM's task mean per task of ``task_names``."""
        rows = {} if table is None else {t: _known(names, row) for t, row in zip(task_names, table, strict=True)}
        return ThinEvidenceFallback(self.weight, _known(names, means), self.task_weight, rows)

    def apply(
        self,
        effect: np.ndarray,
        names: Sequence[str],
        task: np.ndarray | None = None,
        task_names: Sequence[str] = (),
        task_share: np.ndarray | None = None,
    ) -> None:
        """Shrink ``effect`` (N, L) in place over the LLMs that have a mean, clipped to [0, 1]; ``task`` (N,)
        indexes ``task_names``, the task of each row; ``task_share`` (N,) how far a row's task mean is its task's
        (a query of a task the router never saw borrows the nearest one's only as far as it resembles it; the rest
        is the overall mean)."""
        task_weight = self.weight if self.task_weight is None else self.task_weight
        if (self.weight >= 1.0 and task_weight >= 1.0) or not self.means:
            return
        cols = [i for i, n in enumerate(names) if n in self.means]
        if len(cols) < 2:
            return
        means = np.array([self.means[names[i]] for i in cols])
        rows = np.broadcast_to(means, (len(effect), len(cols))).copy()
        if task is not None and self.task_means:
            for t in np.unique(task):
                row = self.task_means.get(task_names[t]) if 0 <= t < len(task_names) else None
                if row is not None:
                    rows[task == t] = [row.get(names[i], m) for i, m in zip(cols, means, strict=True)]
        part = task_anchor(means, rows, task_share) - means  # the task part of each LLM's deviation from its mean
        rest = effect[:, cols] - means - part
        level = part.mean(axis=1, keepdims=True) + rest.mean(axis=1, keepdims=True)
        kept = task_weight * (part - part.mean(axis=1, keepdims=True)) + self.weight * (
            rest - rest.mean(axis=1, keepdims=True)
        )
        effect[:, cols] = np.clip(means + level + kept, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "means": self.means,
            "task_weight": self.task_weight,
            "task_means": self.task_means,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ThinEvidenceFallback:
        task_weight = raw.get("task_weight")
        return cls(
            float(raw["weight"]),
            {str(k): float(v) for k, v in raw["means"].items()},
            None if task_weight is None else float(task_weight),
            {str(t): {str(k): float(v) for k, v in row.items()} for t, row in raw.get("task_means", {}).items()},
        )


def task_anchor(means: np.ndarray, rows: np.ndarray, share: np.ndarray | None) -> np.ndarray:
    """Each query's task means, read only as far as its task evidence reads its task's table (``share``; the rest
    is the overall means): what the fallback's task part is measured from. Shapes: (L,), (N, L), (N,) → (N, L)."""
    return rows if share is None else means + share[:, None] * (rows - means)


def _slopes(target: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Least squares of ``target`` (P,) on ``features`` (P, K) without intercept, each coefficient in [0, 1]:
    the best of the free solution (when inside the box) and those with some coefficients at 0 or 1."""
    k = features.shape[1]
    gram, cross = features.T @ features, features.T @ target
    best, best_loss = np.ones(k), np.inf
    for fixed in np.ndindex(*(3,) * k):  # per coefficient: free, 0 or 1
        coef = np.array([np.nan if f == 0 else float(f - 1) for f in fixed])
        free = np.isnan(coef)
        if free.any():
            rhs = cross[free] - gram[np.ix_(free, ~free)] @ coef[~free]
            sub = gram[np.ix_(free, free)]
            if np.linalg.matrix_rank(sub) < free.sum():
                continue
            coef[free] = np.linalg.solve(sub, rhs)
            if ((coef < 0) | (coef > 1)).any():
                continue
        loss = float(coef @ gram @ coef - 2 * coef @ cross)
        if loss < best_loss - 1e-12:
            best, best_loss = coef, loss
    return best


def _known(names: Sequence[str], means: np.ndarray) -> dict[str, float]:
    return {n: float(m) for n, m in zip(names, means, strict=True) if not np.isnan(m)}
