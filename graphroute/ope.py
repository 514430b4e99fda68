"""Off-policy evaluation: what reward a router would have earned, estimated from a log of another policy's choices.

A deployed router's log holds, per query, only the outcome of the LLM it chose (bandit feedback), and the choices
are biased towards what it already believed. Scoring a new router on that log by "its choice's outcome where it
happens to be logged" is biased too. With the logging policy's probability of each logged choice (the
``propensity`` column) three standard estimators are unbiased or nearly so:

- IPS (inverse propensity scoring): the logged reward, weighted by 1 / propensity where the router would have
  made the logged choice, 0 elsewhere;
- SNIPS (self-normalised IPS): IPS divided by the mean weight: a little bias, much less variance;
- DR (doubly robust): the router's own predicted reward for its choice, corrected by the IPS-weighted error of
  its prediction on the logged choice: unbiased when either the propensities or the predictions are right.

The unit is the query: a query with several logged outcomes (k random LLMs each with its own propensity) adds its
rows' weighted terms. Intervals are 95 % bootstrap intervals over queries. Definitions in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from graphroute import policy
from graphroute import schema as s
from graphroute.base import BaseRouter
from graphroute.costs import fill_costs
from graphroute.data.io import validate_interactions
from graphroute.data.tables import LogTables
from graphroute.errors import DataValidationError
from graphroute.metrics import paired_bootstrap

ESTIMATORS = ("ips", "snips", "dr")


@dataclass(frozen=True)
class Estimate:
    """One estimate of a router's mean reward per query, with its 95 % bootstrap interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class LoggedRewards:
    """A bandit log reduced to what the estimators read, one row per logged outcome. Shapes: (R,) each, except
    ``n_queries``; ``query`` indexes the query of each row."""

    query: np.ndarray
    llm: np.ndarray
    reward: np.ndarray
    propensity: np.ndarray
    n_queries: int


def estimates(
    logged: LoggedRewards,
    choice: np.ndarray,
    predicted: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Estimate]:
    """IPS, SNIPS and DR estimates of the mean reward of a deterministic policy.

    Shapes: choice (Q,) the policy's LLM per query; predicted (Q, L) the policy's own predicted reward of every LLM
    (the DR model).
    """
    terms = per_query_terms(logged, choice, predicted)
    n = logged.n_queries
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))

    def snips(rows: np.ndarray) -> np.ndarray:
        total = terms["weight"][rows].sum(axis=-1)
        return np.where(total > 0, terms["ips"][rows].sum(axis=-1) / np.maximum(total, 1e-12), np.nan)

    out = {}
    for name, point, boot in (
        ("ips", terms["ips"].mean(), terms["ips"][draws].mean(axis=1)),
        ("snips", float(snips(np.arange(n))), snips(draws)),
        ("dr", terms["dr"].mean(), terms["dr"][draws].mean(axis=1)),
    ):
        low, high = np.nanquantile(boot, [0.025, 0.975])
        out[name] = Estimate(float(point), float(low), float(high))
    return out


def per_query_terms(logged: LoggedRewards, choice: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Each query's IPS term, importance weight and DR term (their means are the estimates). Shapes: → (Q,)."""
    q = logged.query
    weight = (choice[q] == logged.llm).astype(float) / logged.propensity
    n = logged.n_queries
    correction = np.bincount(q, weight * (logged.reward - predicted[q, logged.llm]), minlength=n)
    return {
        "ips": np.bincount(q, weight * logged.reward, minlength=n),
        "weight": np.bincount(q, weight, minlength=n),
        "dr": predicted[np.arange(n), choice] + correction,
    }


def logged_rewards(router: BaseRouter, log: pd.DataFrame, alpha: float) -> tuple[LoggedRewards, LogTables]:
    """The rated rows of a log with propensities, as rewards at ``alpha`` on the router's cost scale, with the
    log's tables (whose query rows ``query`` indexes). Rows without a propensity or an effect are left out."""
    st = router.state
    frame = fill_costs(validate_interactions(log, st.llms, source="log"), st.llms, st.encoder)
    if s.PROPENSITY not in frame.columns or frame[s.PROPENSITY].isna().all():
        raise DataValidationError(
            "log: off-policy evaluation needs a propensity column (the logging policy's chance of each logged choice)"
        )
    frame = frame[frame[s.PROPENSITY].notna() & frame[s.EFFECT].notna()].reset_index(drop=True)
    if frame.empty:
        raise DataValidationError("log: no row has both an effect and a propensity")
    tables = st.to_tables(frame)
    f = tables.frame
    q, llm = f["q"].to_numpy(dtype=int), f["l"].to_numpy(dtype=int)
    tasks = [tables.queries.tasks[i] for i in q]
    norm = st.cost_scaler.transform(f[s.COST].to_numpy(dtype=float)[:, None], tasks)[:, 0]
    reward = alpha * f[s.EFFECT].to_numpy(dtype=float) - (1.0 - alpha) * norm
    rewards = LoggedRewards(q, llm, reward, f[s.PROPENSITY].to_numpy(dtype=float), len(tables.query_ids))
    return rewards, tables


def evaluate_off_policy(
    routers: Mapping[str, BaseRouter],
    log: pd.DataFrame,
    alpha: float = 0.5,
    n_boot: int = 2000,
    seed: int = 0,
    differences: dict[str, Estimate] | None = None,
) -> dict[str, dict[str, Estimate]]:
    """Each router's estimated mean reward per query at ``alpha`` on a log with propensities. The log is read with
    the first router's catalog; the others may know fewer LLMs (a router trained before one was onboarded) but
    must not choose one the first does not know. ``differences``, when given, receives for every other router the
    paired DR estimate of (first − other) over the same queries: far narrower than the two intervals apart."""
    policy.check_alpha(alpha)
    first = next(iter(routers.values()))
    logged, tables = logged_rewards(first, log, alpha)
    names = first.state.llm_names
    out, dr_terms = {}, {}
    for name, router in routers.items():
        effect, cost = router.predict_outcomes(tables.queries)
        norm = router.state.cost_scaler.transform(cost, tables.queries.tasks)
        utility = policy.utilities(effect, norm, alpha)
        # the router's LLMs at their place in the first router's catalog (-1: one the first does not know)
        place = np.array([names.index(llm) if llm in names else -1 for llm in router.state.llm_names])
        choice = place[policy.choose(utility, router.state.enabled)]
        # its predicted rewards in the first router's catalog order (0 for an LLM it does not know)
        predicted = np.zeros((len(tables.query_ids), len(names)))
        known = place >= 0
        predicted[:, place[known]] = (alpha * effect - (1.0 - alpha) * norm)[:, known]
        out[name] = estimates(logged, choice, predicted, n_boot, seed)
        dr_terms[name] = per_query_terms(logged, choice, predicted)["dr"]
    if differences is not None:
        names_ = list(routers)
        for other in names_[1:]:
            diff = dr_terms[names_[0]] - dr_terms[other]
            mean, low, high = paired_bootstrap(diff, np.zeros_like(diff), n_boot, seed)
            differences[other] = Estimate(mean, low, high)
    return out


def estimates_table(results: Mapping[str, Mapping[str, Estimate]]) -> list[dict[str, object]]:
    """One row per router: each estimator's value and interval."""
    rows: list[dict[str, object]] = []
    for name, found in results.items():
        row: dict[str, object] = {"router": name}
        for estimator in ESTIMATORS:
            e = found[estimator]
            row[estimator] = round(e.value, 4)
            row[f"{estimator} 95%"] = f"[{e.low:.4f}, {e.high:.4f}]"
        rows.append(row)
    return rows
