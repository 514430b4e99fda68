from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from graphroute import RouterConfig
from graphroute.baselines import ROUTERS
from graphroute.data.io import validate_interactions
from graphroute.data.split import sparsify
from graphroute.data.synthetic import make_demo_logs
from graphroute.errors import NotFittedError
from graphroute.evaluation import evaluate
from graphroute.schema import LLMProfile

QUERIES = ["Write a SQL query that selects the unique rows from table t12.", "Who wrote the novel about the whale?"]


@pytest.fixture(scope="module")
def fitted(demo: tuple[pd.DataFrame, list], fast_config: RouterConfig) -> dict:
    logs, llms = demo
    return {name: cls(fast_config).fit(logs, llms) for name, cls in ROUTERS.items()}


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_conformance(name: str, fitted: dict, fast_config: RouterConfig) -> None:
    """Every router: NotFittedError before fit, fit returns self, shapes, effect in [0, 1], cost > 0."""
    with pytest.raises(NotFittedError):
        ROUTERS[name](fast_config).predict_outcomes(QUERIES)
    router = fitted[name]
    effect, cost = router.predict_outcomes(QUERIES, tasks=["code", None])
    assert effect.shape == cost.shape == (2, len(router.state.llms))
    assert np.all((effect >= 0) & (effect <= 1)) and np.all(cost > 0)
    assert len(router.route(QUERIES, alpha=0.5)) == 2
    assert router.recommend(QUERIES[0], k=2)[0].rank == 1


def test_knn_predicts_the_mean_of_its_neighbours(fitted: dict) -> None:
    router = fitted["knn"]
    batch = router.prepare(QUERIES)
    effect, _ = router.predict_outcomes(batch)
    from graphroute.graph.knn import nearest_neighbors

    idx, _ = nearest_neighbors(batch.emb, router.ref_emb_, router.k_)
    neighbours = router.ref_effect_[idx[0]]
    for j in range(neighbours.shape[1]):
        column = neighbours[:, j][~np.isnan(neighbours[:, j])]
        expected = column.mean() if len(column) else router.prior_[j]
        assert effect[0, j] == pytest.approx(expected)


def test_routers_beat_random_on_demo(fitted: dict, dense_test: pd.DataFrame) -> None:
    ev = evaluate(fitted, dense_test)
    oracle, rnd = ev.scores["oracle"].reward[1.0], ev.scores["random"].reward[1.0]
    assert oracle > ev.scores["graphroute"].reward[1.0] > rnd
    assert ev.scores["task-best"].reward[1.0] > rnd
    assert ev.scores["cheapest"].cost[0.2] <= min(sc.cost[0.2] for n, sc in ev.scores.items() if n != "oracle")
    rows = ev.table_rows()
    assert {r["router"] for r in rows} == set(ROUTERS) | {"oracle"}
    assert all(0 <= float(r["aiq"]) <= 1 for r in rows)
    fit = {r["router"]: (r["effect_r"], r["effect_mae"]) for r in rows}
    assert np.isnan(fit["oracle"][0]) and np.isnan(fit["cheapest"][0])  # no predictions; constant predictions
    assert fit["graphroute"][0] > max(fit["random"][0], 0.3) and fit["graphroute"][1] < fit["random"][1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp", "mf", "graphrouter-onehot"])
def test_learned_baseline_depends_only_on_its_seed(
    name: str, demo: tuple[pd.DataFrame, list], fast_config: RouterConfig
) -> None:
    """Whatever ran before (other routers draw from torch's global generator), one seed gives one model."""
    import torch

    logs, llms = demo
    torch.manual_seed(1)
    a = ROUTERS[name](fast_config).fit(logs, llms).predict_outcomes(QUERIES)[0]
    torch.manual_seed(2)
    b = ROUTERS[name](fast_config).fit(logs, llms).predict_outcomes(QUERIES)[0]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_every_router_fits_a_log_with_one_outcome_per_query(
    name: str, demo: tuple[pd.DataFrame, list[LLMProfile]], fast_config: RouterConfig
) -> None:
    logs, llms = demo
    dense = validate_interactions(make_demo_logs(n_queries=300, n_users=8, per_query=None, seed=3)[0])
    bandit = sparsify(dense, 1, seed=0)
    assert bandit.groupby("query_id").size().max() == 1
    effect, cost = ROUTERS[name](fast_config).fit(bandit, llms).predict_outcomes(QUERIES)
    assert effect.shape == (len(QUERIES), len(llms)) and np.isfinite(effect).all() and np.isfinite(cost).all()


def test_linucb_spread_shrinks_with_an_llms_outcomes(
    demo: tuple[pd.DataFrame, list[LLMProfile]], fast_config: RouterConfig
) -> None:
    logs, llms = demo
    dense = validate_interactions(make_demo_logs(n_queries=300, n_users=8, per_query=None, seed=3)[0])
    rare = llms[0].name
    keep = (dense["llm"] != rare) | (dense["query_id"].isin(dense["query_id"].unique()[:10]))
    router = ROUTERS["linucb"](fast_config).fit(dense[keep], llms)
    _, _, spread = router.predict_spread(QUERIES)
    assert (spread[:, 0] > 1.5 * np.delete(spread, 0, axis=1).max(axis=1)).all()
