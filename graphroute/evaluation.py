"""Score fitted routers on one test log: every router is asked once per alpha, on the same truth."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from graphroute import schema as s
from graphroute.base import BaseRouter
from graphroute.costs import fill_costs
from graphroute.data.io import validate_interactions
from graphroute.data.tables import LogTables
from graphroute.metrics import (
    REPORT_ALPHAS,
    SWEEP_ALPHAS,
    RouterScore,
    Truth,
    aiq,
    choices_from_predictions,
    effect_fit,
    gap_recovered,
    interval_coverage,
    paired_aiq_bootstrap,
    paired_bootstrap,
    score_choices,
)

ORACLE = "oracle"
BEST_SINGLE = "best-single"


@dataclass
class Evaluation:
    """Scores of several routers on one test set, with the oracle, and AIQ on a common cost axis."""

    scores: dict[str, RouterScore]
    n_queries: int
    max_cost: float = float("nan")  # the right end of every router's frontier (AIQ's common cost axis)

    def table_rows(self) -> list[dict[str, object]]:
        """One flat row per router: quality/cost/reward at the report alphas, gap recovered, AIQ."""
        base, oracle = self.scores.get(BEST_SINGLE), self.scores[ORACLE]
        rows = []
        for name, sc in self.scores.items():
            row: dict[str, object] = {
                "router": name,
                "aiq": round(sc.aiq, 4),
                "effect_r": round(sc.effect_r, 4),
                "effect_mae": round(sc.effect_mae, 4),
                "cover80": round(sc.coverage80, 4),
            }
            for a in REPORT_ALPHAS:
                row[f"quality@{a}"] = round(sc.quality[a], 4)
                row[f"cost@{a}"] = float(f"{sc.cost[a]:.3g}")
                row[f"reward@{a}"] = round(sc.reward[a], 4)
                if base is not None:
                    row[f"gap@{a}"] = round(gap_recovered(sc.reward[a], base.reward[a], oracle.reward[a]), 3)
            rows.append(row)
        return rows

    def compare(self, a: str, b: str, alpha: float) -> tuple[float, float, float]:
        """Paired-bootstrap difference of per-query reward, a − b, at alpha."""
        return paired_bootstrap(self.scores[a].per_query[alpha], self.scores[b].per_query[alpha])

    def compare_aiq(self, a: str, b: str, n_boot: int = 1000) -> tuple[float, float, float]:
        """AIQ of a − AIQ of b with a paired-bootstrap interval over test queries."""
        return paired_aiq_bootstrap(self.scores[a], self.scores[b], self.max_cost, n_boot)


def test_tables(router: BaseRouter, test: pd.DataFrame) -> LogTables:
    """Validate a test log against a fitted router's catalog and lay it out as tables."""
    frame = fill_costs(
        validate_interactions(test, router.state.llms, source="test"), router.state.llms, router.state.encoder
    )
    return router.state.to_tables(frame)


def truth_of(router: BaseRouter, tables: LogTables) -> Truth:
    n_llms = len(router.state.llms)
    effect = tables.outcome_matrix(n_llms)
    cost = tables.outcome_matrix(n_llms, s.COST)
    cost = np.where(np.isnan(cost), tables.queries.base_cost, cost)
    return Truth(effect, cost, router.state.cost_scaler.transform(cost, tables.queries.tasks))


def evaluate(routers: Mapping[str, BaseRouter], test: pd.DataFrame) -> Evaluation:
    """Score every router (all fitted on the same log) and the oracle on ``test``."""
    first = next(iter(routers.values()))
    tables = test_tables(first, test)
    truth = truth_of(first, tables)
    batch = tables.queries
    scores: dict[str, RouterScore] = {}
    for name, router in routers.items():
        effect, cost, spread = router.predict_spread(batch)
        norm = router.state.cost_scaler.transform(cost, batch.tasks)
        scores[name] = score_choices(name, truth, choices_from_predictions(effect, norm, truth))
        scores[name].effect_r, scores[name].effect_mae = effect_fit(effect, truth)
        low, high = router.interval_calibration().interval(effect, spread, 0.8)
        scores[name].coverage80 = interval_coverage(low, high, truth)
    oracle_choices = {a: truth.oracle_choice(a) for a in sorted(set(REPORT_ALPHAS) | set(SWEEP_ALPHAS))}
    scores[ORACLE] = score_choices(ORACLE, truth, oracle_choices)
    single_llm_costs = np.nanmean(truth.cost, axis=0)  # the frontier extends to the dearest single LLM too
    max_cost = max(max(c for sc in scores.values() for c, _ in sc.points), float(single_llm_costs.max()))
    for sc in scores.values():
        sc.aiq = aiq(sc.points, max_cost)
    return Evaluation(scores, len(batch), max_cost)
