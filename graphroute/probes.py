"""Per-query effects of an LLM onboarded with a few probes, borrowed from the LLMs it agrees with on them.

Ten probe outcomes pin down a new LLM's mean well, but spread over many tasks they say almost nothing about
*which* queries it is good at: on llmrouter-9llm the GNN's predictions for an LLM onboarded with 10 probes had
a mean within 0.01 of the truth and a per-query correlation near 0. The trained LLMs' predicted effects carry
that per-query shape, so a ridge regression of the probe outcomes on them (centred, heavily shrunk: ten rows
for up to a dozen weights) gives the new LLM's deviation from its own mean on any query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PROBE_RIDGE = 3.0  # chosen on a dev split of llmrouter-9llm's train set among 0.1, 0.3, 1 and 3 (never on test)
MIN_PROBES = 3  # fewer probes leave the GNN's prediction as it is


@dataclass
class ProbeMap:
    """Weights over other LLMs' predicted effects; ``mean`` is their mean on the probes (the centring)."""

    others: list[str]
    mean: np.ndarray
    weights: np.ndarray

    @classmethod
    def fit(cls, others: Sequence[str], predicted: np.ndarray, effect: np.ndarray) -> ProbeMap:
        """Shapes: predicted (n, K) effects of ``others`` on the probe queries, effect (n,) observed."""
        mean = predicted.mean(axis=0)
        x = predicted - mean
        y = effect - effect.mean()
        weights = np.linalg.solve(x.T @ x + PROBE_RIDGE * np.eye(len(others)), x.T @ y)
        return cls(list(others), mean, weights)

    def apply(self, effect: np.ndarray, names: Sequence[str], column: int) -> None:
        """Add the borrowed deviation to ``effect[:, column]`` in place, clipped to [0, 1]; LLMs removed since
        the fit drop out of the sum. Shapes: effect (N, L)."""
        index = {n: i for i, n in enumerate(names)}
        keep = [i for i, n in enumerate(self.others) if n in index]
        if not keep:
            return
        cols = [index[self.others[i]] for i in keep]
        shift = (effect[:, cols] - self.mean[keep]) @ self.weights[keep]
        effect[:, column] = np.clip(effect[:, column] + shift, 0.0, 1.0)

    def to_dict(self) -> dict[str, object]:
        return {"others": self.others, "mean": self.mean.tolist(), "weights": self.weights.tolist()}

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> ProbeMap:
        return cls(list(raw["others"]), np.asarray(raw["mean"], dtype=float), np.asarray(raw["weights"], dtype=float))  # type: ignore[arg-type, call-overload]
