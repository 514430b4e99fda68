"""Off-policy estimates on dense logs, where every LLM's outcome is known and so is each router's true reward:
a bandit log is drawn from the dense one by a logging policy, and the estimates must find the truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from graphroute import Router, RouterConfig, policy
from graphroute import schema as s
from graphroute.base import BaseRouter
from graphroute.baselines import ROUTERS
from graphroute.data.io import validate_interactions
from graphroute.data.synthetic import make_demo_logs
from graphroute.errors import DataValidationError
from graphroute.evaluation import test_tables as tables_of
from graphroute.evaluation import truth_of
from graphroute.ope import estimates_table, evaluate_off_policy
from graphroute.schema import LLMProfile

ALPHA = 0.5


@pytest.fixture(scope="module")
def dense_log() -> pd.DataFrame:
    return validate_interactions(make_demo_logs(n_queries=600, n_users=8, per_query=None, seed=5)[0])


def true_reward(router: BaseRouter, dense: pd.DataFrame) -> float:
    tables = tables_of(router, dense)
    truth = truth_of(router, tables)
    effect, cost = router.predict_outcomes(tables.queries)
    norm = router.state.cost_scaler.transform(cost, tables.queries.tasks)
    choice = policy.choose(policy.utilities(effect, norm, ALPHA), router.state.enabled)
    return float(truth.reward(choice, ALPHA).mean())


def bandit_log(dense: pd.DataFrame, chances: dict[str, float], seed: int) -> pd.DataFrame:
    """One logged outcome per query, drawn with the given chance per LLM (renormalised over the query's rows)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _, group in dense.groupby(s.QUERY_ID, sort=True):
        p = group[s.LLM].map(chances).to_numpy(dtype=float)
        p = p / p.sum()
        i = rng.choice(len(group), p=p)
        rows.append(group.iloc[i].to_dict() | {s.PROPENSITY: p[i]})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("skewed", [False, True])
def test_doubly_robust_interval_covers_the_true_reward(
    skewed: bool,
    dense_log: pd.DataFrame,
    fitted_router: Router,
    demo: tuple[pd.DataFrame, list[LLMProfile]],
    fast_config: RouterConfig,
) -> None:
    logs, llms = demo
    routers: dict[str, BaseRouter] = {
        "graphroute": fitted_router,
        "task-best": ROUTERS["task-best"](fast_config).fit(logs, llms),
        "cheapest": ROUTERS["cheapest"](fast_config).fit(logs, llms),
    }
    names = [m.name for m in llms]
    chances = {n: (0.5**i if skewed else 1.0) + 0.05 for i, n in enumerate(names)}
    runs = [evaluate_off_policy(routers, bandit_log(dense_log, chances, seed), ALPHA, n_boot=500) for seed in range(20)]
    for name, router in routers.items():
        truth = true_reward(router, dense_log)
        dr = [run[name]["dr"] for run in runs]
        covered = np.mean([e.low <= truth <= e.high for e in dr])
        values = np.array([e.value for e in dr])
        assert covered >= 0.85, (name, skewed, truth, covered)
        assert abs(values.mean() - truth) <= 3 * values.std() / np.sqrt(len(values)) + 1e-9, (name, values.mean())
        ips = [run[name]["ips"] for run in runs]
        if name != "cheapest":  # a router that predicts effects takes variance out (cheapest predicts none)
            assert np.mean([e.high - e.low for e in dr]) < np.mean([e.high - e.low for e in ips])
    rows = estimates_table(runs[0])
    assert [r["router"] for r in rows] == list(routers) and set(rows[0]) >= {"ips", "snips", "dr", "dr 95%"}


def test_a_log_without_propensities_is_refused(fitted_router: Router, dense_log: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match="propensity"):
        evaluate_off_policy({"graphroute": fitted_router}, dense_log.head(20), ALPHA)
