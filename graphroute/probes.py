"""Per-query effects of an LLM onboarded with a few probes, borrowed from the LLMs it agrees with on them.

Ten probe outcomes pin down a new LLM's mean well, but spread over many tasks they say almost nothing about
*which* queries it is good at: on llmrouter-9llm the GNN's predictions for an LLM onboarded with 10 probes had
a mean within 0.01 of the truth and a per-query correlation near 0. The trained LLMs' predicted effects carry
that per-query shape, so a ridge regression of the probe outcomes on them (centred, heavily shrunk: ten rows
for up to a dozen weights) gives the new LLM's deviation from its own mean on any query.

The weights shrink towards 1/K each (the new LLM varies from query to query as the others do on average: hard
queries are hard for every LLM), not towards zero: the GNN alone gives a new LLM nearly the same effect on every
query (its probes fix the level, not the shape), so zero weights left it routed as well on trivia_qa, where every
LLM scores about 0.2, as on gsm8k.

Without probes the new LLM *is* the average of the others, level included. The GNN's level for an LLM it has no
outcomes for comes from its description, prices and size alone, and on both benchmark catalogs those predict an
LLM's effect worse than the plain mean over LLMs does (leave-one-LLM-out); on routerdc-7llm, where every LLM has one
price, that level sent 29-31 % of dev queries to LLMs onboarded by description and lost 0.005-0.008 reward@0.5
against not onboarding them, where the average loses nothing. What a description does say is added by the
description prior (``graphroute.prior``), in proportion to what descriptions explain on the known LLMs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Chosen on a dev split of llmrouter-9llm's train set (never on test): shrinking towards the average of the others
# beat shrinking towards zero (10 probes: mean 99.3 % vs 98.7 %, worst LLM 96.4 % vs 94.8 %); 30, 100 and 1000
# scored alike, 3 and 10 worse.
PROBE_RIDGE = 30.0
MIN_PROBES = 3  # fewer probes: the others' average shape alone (``ProbeMap.average``)
AVERAGE_SAMPLE = 512  # reference queries the others' mean is taken over when there are no probes to centre on


@dataclass
class ProbeMap:
    """Weights over other LLMs' predicted effects; ``mean`` is their mean over the reference queries, the centre
    the deviation is measured from."""

    others: list[str]
    mean: np.ndarray
    weights: np.ndarray
    replace: bool = False  # the new LLM's effect is the weighted others' (no probes: no level of its own)

    @classmethod
    def fit(cls, others: Sequence[str], predicted: np.ndarray, effect: np.ndarray, centre: np.ndarray) -> ProbeMap:
        """Shapes: predicted (n, K) effects of ``others`` on the probe queries, effect (n,) observed, centre (K,)
        the others' mean over the reference queries.

        The probes fit only the weights (the shape); the level stays the GNN's, which reads the probes as
        evidence near the queries they were asked on. Centred on the probes' own mean instead, probes from one
        task made every query look like that task: a new LLM probed on maths rose on reasoning because the
        others score higher there than on maths."""
        x = predicted - predicted.mean(axis=0)
        y = effect - effect.mean()
        prior = _average_weights(len(others))
        weights = np.linalg.solve(x.T @ x + PROBE_RIDGE * np.eye(len(others)), x.T @ y + PROBE_RIDGE * prior)
        return cls(list(others), np.asarray(centre, dtype=float), weights)

    @classmethod
    def average(cls, others: Sequence[str], predicted: np.ndarray) -> ProbeMap:
        """The prior alone, for an LLM onboarded from its description: the average of the others, query by query.
        Shapes: predicted (n, K) on reference queries."""
        return cls(list(others), predicted.mean(axis=0), _average_weights(len(others)), replace=True)

    def apply(self, effect: np.ndarray, names: Sequence[str], column: int) -> None:
        """Add the borrowed deviation to ``effect[:, column]`` in place (or, for a map that replaces, set it to
        the weighted others' effect), clipped to [0, 1]; LLMs removed since the fit drop out of the sum and the
        weights of a replacing map are renormalised over those left. Shapes: effect (N, L)."""
        index = {n: i for i, n in enumerate(names)}
        keep = [i for i, n in enumerate(self.others) if n in index]
        if not keep:
            return
        cols = [index[self.others[i]] for i in keep]
        if self.replace:
            weights = self.weights[keep] / self.weights[keep].sum()
            effect[:, column] = np.clip(effect[:, cols] @ weights, 0.0, 1.0)
            return
        shift = (effect[:, cols] - self.mean[keep]) @ self.weights[keep]
        effect[:, column] = np.clip(effect[:, column] + shift, 0.0, 1.0)

    def to_dict(self) -> dict[str, object]:
        return {
            "others": self.others,
            "mean": self.mean.tolist(),
            "weights": self.weights.tolist(),
            "replace": self.replace,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ProbeMap:
        """``replace`` defaults to False: maps saved before it existed kept the GNN's level."""
        return cls(
            list(raw["others"]),
            np.asarray(raw["mean"], dtype=float),
            np.asarray(raw["weights"], dtype=float),
            bool(raw.get("replace", False)),
        )


def _average_weights(k: int) -> np.ndarray:
    """1/K on each of K others: the new LLM's deviation is their average deviation."""
    return np.full(k, 1.0 / max(k, 1))
