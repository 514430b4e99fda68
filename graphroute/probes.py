"""Per-query effects of an LLM onboarded with a few probes: the others' average, reshaped and lifted by its probes.

Without probes the new LLM *is* the average of the others, query by query, level included. The GNN's level for an
LLM it has no outcomes for comes from its description, prices and size alone, and on both benchmark catalogs those
predict an LLM's effect worse than the plain mean over LLMs does (leave-one-LLM-out); on routerdc-7llm, where every
LLM has one price, that level sent 29-31 % of dev queries to LLMs onboarded by description and lost 0.005-0.008
reward@0.5 against not onboarding them, where the average loses nothing. What a description does say is added by
the description prior (``graphroute.prior``), in proportion to what descriptions explain on the known LLMs.

Probes change two things. The shape: a ridge regression of the probe outcomes on the others' predicted effects
(centred, heavily shrunk towards 1/K each: ten rows for up to a dozen weights) finds the LLMs the new one ranks
queries like. The level: how far above or below the others' average the new LLM scores, overall and per task, is
the posterior mean of a hierarchical model whose variances are measured on the known LLMs themselves
(``LevelComponents``). Where the known LLMs differ little and outcomes are 0/1, ten probes move it little. Read
by the GNN instead (probe edges in the graph, task means shrunk by a fixed count), ten lucky probes lifted an LLM
below the average above the best known one: on a dev split of routerdc-7llm (a third held out at once, 10 or 50
probes each) the new LLMs took 36-66 % of the queries and lost 0.007-0.040 reward@0.5; with the measured spread
they take 0-32 % and lose 0.000-0.016, and moved back by half their posterior spread (``threshold`` 0.5)
0-24 % and at most 0.004. On llmrouter-9llm, where the held-out gemma-2-9b-it is worth having, the plain posterior
mean recovered more (dev: 92.2 % of full retrain with 10 probes against 90.9 % at 0.5), hence the default 0.
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
MIN_PROBES = 3  # fewer probes: the others' average alone (``ProbeMap.average``)
AVERAGE_SAMPLE = 512  # reference queries the others' mean is taken over when there are no probes to centre on


@dataclass
class ProbeMap:
    """Weights over other LLMs' predicted effects; ``mean`` is their mean over the reference queries, the centre
    the deviation is measured from."""

    others: list[str]
    mean: np.ndarray
    weights: np.ndarray
    replace: bool = False  # the new LLM's effect is built from the others' (the GNN's own prediction is dropped)
    offset: np.ndarray | None = None  # (T,) a replacing map's level over the weighted others, per task

    @classmethod
    def fit(cls, others: Sequence[str], predicted: np.ndarray, effect: np.ndarray, centre: np.ndarray) -> ProbeMap:
        """Shapes: predicted (n, K) effects of ``others`` on the probe queries, effect (n,) observed, centre (K,)
        the others' mean over the reference queries.

        The probes fit only the weights (the shape); the level is ``levels``'. Centred on the probes' own mean
        instead, probes from one task made every query look like that task: a new LLM probed on maths rose on
        reasoning because the others score higher there than on maths. A map from ``fit`` alone (the form of
        routers saved before ``levels`` existed) adds the deviation to the GNN's own prediction."""
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

    @classmethod
    def levels(
        cls,
        shape: ProbeMap,
        predicted: np.ndarray,
        effect: np.ndarray,
        task: np.ndarray,
        n_tasks: int,
        components: LevelComponents,
        threshold: float = 0.0,
    ) -> ProbeMap:
        """``shape`` (a map from ``fit``) made a replacing map: the others' average, plus the deviation its weights
        borrow beyond the average's, plus the new LLM's level over that, global and per task, as the posterior
        mean of a hierarchical model of the probe residuals (level + task part + noise; see ``LevelComponents``).
        A task without probes keeps the average (offset 0): what probes say about one task is not said of the others,
        so probes from maths leave the new LLM where onboarding put it on translation; the global level pools
        the evidence of the probed tasks only.
        ``threshold``: posterior standard deviations each probed task's level is moved back towards 0 (to 0
        where it would cross; ``OnboardingConfig.level_threshold``): the largest of many noisy levels are the
        luckiest. Shapes: predicted (n, K) effects of the others on the probe queries, effect (n,), task (n,)."""
        c = components
        blank = cls(shape.others, shape.mean, shape.weights, True, np.zeros(n_tasks))
        residual = effect - blank._replaced(predicted, task)
        same = (task[:, None] == task[None, :]).astype(float)
        cov = c.level_var + c.task_var * same + c.noise_var * np.eye(len(effect))
        cross = c.level_var + c.task_var * (np.arange(n_tasks)[:, None] == task[None, :])  # (T, n)
        solved = np.linalg.solve(cov, np.column_stack([residual, cross.T]))  # (n, 1 + T)
        mean = cross @ solved[:, 0]  # (T,) posterior mean of level + task part
        var = c.level_var + c.task_var - np.einsum("tn,nt->t", cross, solved[:, 1:])
        probed = np.bincount(task, minlength=n_tasks)[:n_tasks] > 0
        sd = np.sqrt(np.maximum(var, 0.0))
        mean = np.sign(mean) * np.maximum(np.abs(mean) - threshold * sd, 0.0)
        blank.offset = np.where(probed, mean, 0.0)
        return blank

    def _replaced(self, others: np.ndarray, task: np.ndarray | None, keep: Sequence[int] | None = None) -> np.ndarray:
        """A replacing map's effect from the others' (columns in ``self.others`` order, or ``keep``'s): their
        average plus the borrowed deviation beyond it, plus the level per task when the map has one."""
        keep = list(range(len(self.others))) if keep is None else list(keep)
        weights = self.weights[keep]
        value = others.mean(axis=1) + (others - self.mean[keep]) @ (weights - weights.mean())
        if self.offset is not None and task is not None:
            known = task < len(self.offset)  # a task added since onboarding has no probes
            value += np.where(known, self.offset[np.minimum(task, len(self.offset) - 1)], 0.0)
        return value

    def apply(self, effect: np.ndarray, names: Sequence[str], column: int, task: np.ndarray | None = None) -> None:
        """Add the borrowed deviation to ``effect[:, column]`` in place (or, for a map that replaces, set it to
        the others' average, reshaped and lifted), clipped to [0, 1]; LLMs removed since the fit drop out (a
        replacing map averages those left). ``task`` (N,) indexes each row's task, for the level per task.
        Shapes: effect (N, L)."""
        index = {n: i for i, n in enumerate(names)}
        keep = [i for i, n in enumerate(self.others) if n in index]
        if not keep:
            return
        cols = [index[self.others[i]] for i in keep]
        if self.replace:
            effect[:, column] = np.clip(self._replaced(effect[:, cols], task, keep), 0.0, 1.0)
            return
        shift = (effect[:, cols] - self.mean[keep]) @ self.weights[keep]
        effect[:, column] = np.clip(effect[:, column] + shift, 0.0, 1.0)

    def to_dict(self) -> dict[str, object]:
        return {
            "others": self.others,
            "mean": self.mean.tolist(),
            "weights": self.weights.tolist(),
            "replace": self.replace,
            "offset": None if self.offset is None else self.offset.tolist(),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ProbeMap:
        """``replace`` defaults to False: maps saved before it existed kept the GNN's level."""
        return cls(
            list(raw["others"]),
            np.asarray(raw["mean"], dtype=float),
            np.asarray(raw["weights"], dtype=float),
            bool(raw.get("replace", False)),
            None if raw.get("offset") is None else np.asarray(raw["offset"], dtype=float),
        )


@dataclass(frozen=True)
class LevelComponents:
    """Variances of a new LLM's level over the known LLMs' average, measured on the known LLMs themselves (each
    against the average of the others, on the reference queries): ``level_var`` of the global level,
    ``task_var`` of its part per task, ``noise_var`` of one outcome around level and task part. Their ratio is
    how far probes may move the level: where the known LLMs differ little and outcomes are 0/1, ten probes say
    little, and the posterior stays near the average."""

    level_var: float
    task_var: float
    noise_var: float


def level_components(predicted: np.ndarray, observed: np.ndarray, task: np.ndarray) -> LevelComponents:
    """Shapes: predicted (N, L) effects of the known LLMs on reference queries, observed (N, L) their logged
    outcomes (NaN where none), task (N,) indices."""
    k = predicted.shape[1]
    if k < 2:
        return LevelComponents(0.0, 0.0, 1.0)
    others = (predicted.sum(axis=1, keepdims=True) - predicted) / (k - 1)  # each LLM's average of the others
    gap = predicted - others  # (N, L)
    level = gap.mean(axis=0)  # (L,)
    tasks, inverse, sizes = np.unique(task, return_inverse=True, return_counts=True)
    by_task = np.zeros((len(tasks), k))
    np.add.at(by_task, inverse, gap)
    part = by_task / sizes[:, None] - level[None, :]  # (T', L)
    task_var = float((sizes[:, None] * part**2).sum() / (sizes.sum() * k))
    residual = observed - others - level[None, :] - part[inverse]
    seen = ~np.isnan(residual)
    noise_var = float(np.mean(residual[seen] ** 2)) if seen.any() else 0.25
    return LevelComponents(float(np.mean(level**2)), task_var, max(noise_var, 1e-6))


def _average_weights(k: int) -> np.ndarray:
    """1/K on each of K others: the new LLM's deviation is their average deviation."""
    return np.full(k, 1.0 / max(k, 1))
