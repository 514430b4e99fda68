"""Thin evidence falls back to the best single LLM.

A router fitted on a small log reads per-task and per-neighbour differences between LLMs that are mostly noise, and
can then do worse than always sending every query to the LLM that is best on average. ``ThinEvidenceFallback``
measures, on validation queries predicted without their own outcomes, how much of the predicted *difference between
LLMs on a query* (each LLM's predicted effect less its mean over the log, centred over the LLMs) the observed
outcomes confirm, and keeps only that share. A large log confirms nearly all of it (the weight is near 1 and the
router is unchanged); a small one little, and the ranking moves towards the LLMs' means: the best single LLM's
ranking. How hard a query is (the level shared by all LLMs) is left as predicted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_PAIRS = 20  # fewer held-out comparisons than this say nothing: keep the predictions as they are


@dataclass
class ThinEvidenceFallback:
    """``weight`` in [0, 1]: the share of the predicted between-LLM differences kept; ``means``: each LLM's mean
    effect over the log it was fitted on (LLMs without one, such as onboarded ones, are left as predicted)."""

    weight: float = 1.0
    means: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(
        cls, names: Sequence[str], means: np.ndarray, predicted: np.ndarray, observed: np.ndarray
    ) -> ThinEvidenceFallback:
        """The least-squares slope of observed on predicted within-query deviations, clipped to [0, 1].

        Shapes: means (L,); predicted, observed (N, L), observed NaN where not logged. Only queries with at least
        two observed LLMs speak of differences between LLMs; both sides are centred over those LLMs.
        """
        seen = ~np.isnan(observed) & ~np.isnan(means)[None, :]
        rows = seen.sum(axis=1) >= 2
        seen, count = seen[rows], seen[rows].sum(axis=1, keepdims=True)
        if seen.sum() < MIN_PAIRS:
            return cls(1.0, _known(names, means))
        pred = np.where(seen, predicted[rows] - means, 0.0)
        obs = np.where(seen, np.nan_to_num(observed[rows]) - means, 0.0)
        pred = np.where(seen, pred - pred.sum(axis=1, keepdims=True) / count, 0.0)
        obs = np.where(seen, obs - obs.sum(axis=1, keepdims=True) / count, 0.0)
        spread = float((pred * pred).sum())
        slope = float((pred * obs).sum()) / spread if spread > 1e-12 else 1.0
        return cls(float(np.clip(slope, 0.0, 1.0)), _known(names, means))

    def rebased(self, names: Sequence[str], means: np.ndarray) -> ThinEvidenceFallback:
        """The same weight around other means: those of the log the fitted router keeps (train and validation)."""
        return ThinEvidenceFallback(self.weight, _known(names, means))

    def apply(self, effect: np.ndarray, names: Sequence[str]) -> None:
        """Shrink ``effect`` (N, L) in place over the LLMs that have a mean, clipped to [0, 1]."""
        if self.weight >= 1.0 or not self.means:
            return
        cols = [i for i, n in enumerate(names) if n in self.means]
        if len(cols) < 2:
            return
        means = np.array([self.means[names[i]] for i in cols])
        dev = effect[:, cols] - means
        level = dev.mean(axis=1, keepdims=True)
        effect[:, cols] = np.clip(means + level + self.weight * (dev - level), 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {"weight": self.weight, "means": self.means}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ThinEvidenceFallback:
        return cls(float(raw["weight"]), {str(k): float(v) for k, v in raw["means"].items()})


def _known(names: Sequence[str], means: np.ndarray) -> dict[str, float]:
    return {n: float(m) for n, m in zip(names, means, strict=True) if not np.isnan(m)}
