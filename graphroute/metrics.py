"""Routing metrics (defined in docs/metrics.md): quality, cost, reward@alpha, gap recovered, the frontier and
AIQ, and paired bootstrap intervals so a difference can be told from the noise of a small test set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from graphroute import policy

REPORT_ALPHAS = (1.0, 0.5, 0.2)
SWEEP_ALPHAS = tuple(np.round(np.linspace(0, 1, 21), 3).tolist())


@dataclass
class Truth:
    """Observed outcomes of a test set. Shapes: effect, cost, norm_cost (N, L); NaN effect = not observed."""

    effect: np.ndarray
    cost: np.ndarray
    norm_cost: np.ndarray

    def reward(self, choice: np.ndarray, alpha: float) -> np.ndarray:
        """Per-query reward of the chosen LLMs. Shapes: (N,) → (N,)."""
        rows = np.arange(len(choice))
        return alpha * self.effect[rows, choice] - (1 - alpha) * self.norm_cost[rows, choice]

    def oracle_choice(self, alpha: float) -> np.ndarray:
        return policy.choose(policy.utilities(np.nan_to_num(self.effect), self.norm_cost, alpha), self.observed)

    @property
    def observed(self) -> np.ndarray:
        return ~np.isnan(self.effect)


@dataclass
class RouterScore:
    """One router on one test set: choices and per-query rewards at the reported alphas, and its frontier."""

    name: str
    quality: dict[float, float] = field(default_factory=dict)
    cost: dict[float, float] = field(default_factory=dict)
    reward: dict[float, float] = field(default_factory=dict)
    per_query: dict[float, np.ndarray] = field(default_factory=dict)
    choice: dict[float, np.ndarray] = field(default_factory=dict)  # index of the chosen LLM per query
    points: list[tuple[float, float]] = field(default_factory=list)  # (cost, quality) over the sweep
    # per query, the true effect and cost of the pick at each sweep alpha (what AIQ's bootstrap resamples)
    sweep: dict[float, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    aiq: float = float("nan")
    effect_r: float = float("nan")  # correlation of predicted and observed effect over observed (query, LLM) pairs
    effect_mae: float = float("nan")
    coverage80: float = float("nan")  # share of observed effects inside the router's 80 % outcome interval


def score_choices(name: str, truth: Truth, choices: dict[float, np.ndarray]) -> RouterScore:
    """Score a router from its choice at each alpha (the report alphas and the sweep)."""
    out = RouterScore(name)
    rows = np.arange(truth.effect.shape[0])
    for alpha, choice in choices.items():
        quality = float(np.nanmean(truth.effect[rows, choice]))
        cost = float(np.mean(truth.cost[rows, choice]))
        if alpha in SWEEP_ALPHAS:
            out.points.append((cost, quality))
            out.sweep[alpha] = (truth.effect[rows, choice], truth.cost[rows, choice])
        if alpha in REPORT_ALPHAS:
            per_query = truth.reward(choice, alpha)
            out.quality[alpha], out.cost[alpha] = quality, cost
            out.reward[alpha], out.per_query[alpha] = float(np.nanmean(per_query)), per_query
            out.choice[alpha] = choice
    return out


def effect_fit(predicted: np.ndarray, truth: Truth) -> tuple[float, float]:
    """Pearson r and mean absolute error of predicted effects against the observed ones (observed pairs only):
    how well a router predicts, apart from how it ranks. Shapes: predicted (N, L)."""
    seen = truth.observed
    p, y = predicted[seen], truth.effect[seen]
    if len(p) < 2 or p.std() == 0 or y.std() == 0:
        return float("nan"), float(np.mean(np.abs(p - y))) if len(p) else float("nan")
    return float(np.corrcoef(p, y)[0, 1]), float(np.mean(np.abs(p - y)))


def interval_coverage(low: np.ndarray, high: np.ndarray, truth: Truth) -> float:
    """Share of observed effects within [low, high]: a calibrated 80 % interval covers about 0.8. Shapes: (N, L)."""
    seen = truth.observed
    inside = (truth.effect >= low - 1e-9) & (truth.effect <= high + 1e-9)
    return float(inside[seen].mean()) if seen.any() else float("nan")


def choices_from_predictions(
    effect: np.ndarray, norm_cost: np.ndarray, truth: Truth, alphas: Sequence[float] = REPORT_ALPHAS + SWEEP_ALPHAS
) -> dict[float, np.ndarray]:
    """The LLM a router picks at each alpha, among the LLMs observed for each query."""
    return {a: policy.choose(policy.utilities(effect, norm_cost, a), truth.observed) for a in sorted(set(alphas))}


def frontier(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Non-decreasing upper convex hull of (cost, quality) points, from the cheapest point."""
    pts = sorted(set(points))
    hull: list[tuple[float, float]] = []
    for p in pts:
        if hull and p[1] <= hull[-1][1]:
            continue  # not better than a cheaper point: off the non-decreasing frontier
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) >= 0:
            hull.pop()
        hull.append(p)
    return hull


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def aiq(points: Sequence[tuple[float, float]], max_cost: float) -> float:
    """Area under the frontier extended flat to ``max_cost``, zero left of the cheapest point, / max_cost."""
    hull = frontier(points)
    if not hull or max_cost <= 0 or max_cost - min(c for c, _ in points) <= 1e-9 * max_cost:
        return float("nan")  # every choice costs the same (uniform prices): there is no frontier to integrate
    xs = [c for c, _ in hull] + [max(max_cost, hull[-1][0])]
    ys = [q for _, q in hull] + [hull[-1][1]]
    return float(np.trapezoid(ys, xs) / max_cost)


def gap_recovered(router: float, best_single: float, oracle: float) -> float:
    """(router − best single) / (oracle − best single)."""
    span = oracle - best_single
    return float((router - best_single) / span) if abs(span) > 1e-12 else float("nan")


def paired_aiq_bootstrap(
    a: RouterScore, b: RouterScore, max_cost: float, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """AIQ of a − AIQ of b with a 95 % interval from resampling the test queries (both routers on the same
    resample, each resample's frontiers drawn afresh)."""
    alphas = sorted(set(a.sweep) & set(b.sweep))
    if not alphas:
        return float("nan"), float("nan"), float("nan")
    n = len(a.sweep[alphas[0]][0])
    rng = np.random.default_rng(seed)

    def diff(rows: np.ndarray) -> float:
        value = []
        for score in (a, b):
            effect_cost = [score.sweep[x] for x in alphas]
            points = [(float(np.mean(c[rows])), float(np.nanmean(e[rows]))) for e, c in effect_cost]
            value.append(aiq(points, max_cost))
        return value[0] - value[1]

    point = diff(np.arange(n))
    if np.isnan(point):  # no frontier (every LLM costs the same): nothing to compare
        return float("nan"), float("nan"), float("nan")
    boots = np.array([diff(rng.integers(0, n, size=n)) for _ in range(n_boot)])
    low, high = np.nanquantile(boots, [0.025, 0.975])
    return float(point), float(low), float(high)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a − b over queries with a 95 % paired-bootstrap interval."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(axis=1)
    return float(diff.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))
