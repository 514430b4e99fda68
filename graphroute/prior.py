"""What a new LLM's description says about its effect on each task, learned from the LLMs the router knows.

A new LLM with no outcomes gets from the GNN about the overall level on every task: routable, but never chosen for
what it is good at. Its description does carry information when LLMs alike in description score alike (two
ChatQA models, two Nemotrons): the prior here predicts the new LLM's mean effect per task as a similarity-weighted
mean of the known LLMs' task means, with the temperature of that weighting chosen by leave-one-LLM-out over the
known LLMs (the situation of a new LLM, replayed for each known one). An infinite temperature (the plain mean over
LLMs, no information from the description) is among the candidates, so a catalog whose descriptions say nothing
falls back to it. The prior shifts the new LLM's effect per task by what its description adds to the plain mean, in
proportion to how much descriptions explain on the known LLMs, and fades on a task as probes there give evidence of
their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

TEMPERATURES = (0.02, 0.05, 0.1, 0.2, float("inf"))
FADE_PROBES = 5.0  # probes on a task that halve the prior's shift there


@dataclass
class TaskPrior:
    """Per-task shift of one new LLM's effect (T,), and what it was fitted with."""

    shift: np.ndarray
    probes: np.ndarray  # probe outcomes per task when onboarded (the shift fades with them)
    temperature: float
    spread: float  # leave-one-LLM-out RMSE of predicted task means at that temperature

    def apply(self, effect: np.ndarray, task: np.ndarray, column: int) -> None:
        """Add the (faded) shift of each row's task to ``effect[:, column]`` in place, clipped to [0, 1].
        Shapes: effect (N, L), task (N,)."""
        fade = FADE_PROBES / (FADE_PROBES + self.probes)
        effect[:, column] = np.clip(effect[:, column] + (self.shift * fade)[task], 0.0, 1.0)

    def to_dict(self) -> dict[str, object]:
        return {
            "shift": self.shift.tolist(),
            "probes": self.probes.tolist(),
            "temperature": self.temperature if np.isfinite(self.temperature) else None,
            "spread": self.spread,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TaskPrior:
        temperature = float("inf") if raw["temperature"] is None else float(raw["temperature"])
        return cls(
            np.asarray(raw["shift"], dtype=float), np.asarray(raw["probes"], dtype=float), temperature, raw["spread"]
        )


def similarity_weights(sims: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of similarities at ``temperature`` (uniform when infinite). Shapes: (K,) → (K,)."""
    if not np.isfinite(temperature):
        return np.full(len(sims), 1.0 / len(sims))
    z = np.exp((sims - sims.max()) / temperature)
    return z / z.sum()


def _weighted_means(means: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """NaN-aware weighted mean over LLMs per task. Shapes: means (K, T), weights (K,) → (T,)."""
    seen = ~np.isnan(means)
    w = weights[:, None] * seen
    total = w.sum(axis=0)
    return np.where(total > 0, (np.nan_to_num(means) * w).sum(axis=0) / np.maximum(total, 1e-12), np.nan)


def fit_task_prior(
    known_desc: np.ndarray, known_means: np.ndarray, new_desc: np.ndarray, probes: np.ndarray
) -> TaskPrior:
    """The prior for one new LLM. Shapes: known_desc (K, D) unit description embeddings of the known LLMs,
    known_means (K, T) their mean effect per task (NaN: not seen there), new_desc (D,), probes (T,) its probe
    outcomes per task.

    The shift is what the description adds to the plain mean over LLMs (the GNN already gives a new LLM about that
    level), scaled by the share of the leave-one-LLM-out error the description removes: descriptions that tell task
    means apart only a little move a new LLM only a little (a full-strength prior from weakly informative
    descriptions sent 12-18 % of llmrouter-9llm's traffic to held-out LLMs that deserved none)."""
    sims = known_desc @ known_desc.T
    losses = {}
    for temperature in TEMPERATURES:
        errors = []
        for k in range(len(known_desc)):
            others = np.arange(len(known_desc)) != k
            guess = _weighted_means(known_means[others], similarity_weights(sims[k, others], temperature))
            ok = ~np.isnan(guess) & ~np.isnan(known_means[k])
            errors.extend((guess[ok] - known_means[k, ok]) ** 2)
        losses[temperature] = float(np.mean(errors)) if errors else float("inf")
    best = min(losses, key=lambda t: (losses[t], -t))  # ties go to the smoother weighting
    plain = losses[float("inf")]
    weight = max(0.0, 1.0 - losses[best] / plain) if np.isfinite(plain) and plain > 0 else 0.0
    uniform = _weighted_means(known_means, similarity_weights(np.zeros(len(known_desc)), float("inf")))
    prior = _weighted_means(known_means, similarity_weights(known_desc @ new_desc, best))
    shift = np.where(np.isnan(prior) | np.isnan(uniform), 0.0, weight * (prior - uniform))
    return TaskPrior(shift, probes.astype(float), best, float(np.sqrt(losses[best])))
