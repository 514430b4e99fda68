from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from graphroute.data.io import validate_interactions
from graphroute.data.split import sparsify, split_by_query, subsample_queries
from graphroute.data.synthetic import make_demo_logs


def test_split_is_by_query_seeded_and_order_free(demo: tuple[pd.DataFrame, list]) -> None:
    logs = validate_interactions(demo[0])
    a = split_by_query(logs, val=0.2, test=0.1, seed=3)
    assert not set(a.train.query_id) & set(a.val.query_id)
    assert not set(a.val.query_id) & set(a.test.query_id)
    assert len(a.train) + len(a.val) + len(a.test) == len(logs)
    shuffled = split_by_query(logs.sample(frac=1, random_state=1), val=0.2, test=0.1, seed=3)
    assert set(shuffled.val.query_id) == set(a.val.query_id)
    other = split_by_query(logs, val=0.2, test=0.1, seed=4)
    assert set(other.val.query_id) != set(a.val.query_id)


def test_sparsify_keeps_k_random_outcomes_per_query_with_their_propensity() -> None:
    dense = validate_interactions(make_demo_logs(n_queries=200, n_users=4, per_query=None, seed=2)[0])
    per_query = dense.groupby("query_id").size()
    for k in (1, 2):
        sparse = sparsify(dense, k, seed=0)
        kept = sparse.groupby("query_id").size()
        assert set(kept.index) == set(per_query.index) and (kept == np.minimum(k, per_query[kept.index])).all()
        assert not sparse.duplicated(["query_id", "llm"]).any()
        expected = (k / per_query[sparse["query_id"]]).clip(upper=1.0).to_numpy()
        assert np.allclose(sparse["propensity"].to_numpy(), expected)
        assert sparse.equals(sparsify(dense, k, seed=0)) and not sparse.equals(sparsify(dense, k, seed=1))
    # every LLM keeps about its share of rows: the draw is uniform, not the first rows of each query
    shares = sparsify(dense, 1, seed=0)["llm"].value_counts(normalize=True)
    assert shares.max() - shares.min() < 0.1
    with pytest.raises(ValueError, match="k"):
        sparsify(dense, 0)


def test_subsample_keeps_every_row_of_n_seeded_queries_whatever_the_row_order() -> None:
    logs = validate_interactions(make_demo_logs(n_queries=120, n_users=4, seed=3)[0])
    small = subsample_queries(logs, 30, seed=1)
    assert small["query_id"].nunique() == 30
    assert len(small) == logs["query_id"].isin(set(small["query_id"])).sum()  # whole queries, never part of one
    shuffled = logs.sample(frac=1.0, random_state=0)
    assert set(subsample_queries(shuffled, 30, seed=1)["query_id"]) == set(small["query_id"])
    assert set(subsample_queries(logs, 30, seed=2)["query_id"]) != set(small["query_id"])
    assert subsample_queries(logs, 10_000, seed=0)["query_id"].nunique() == logs["query_id"].nunique()
    with pytest.raises(ValueError, match="n"):
        subsample_queries(logs, 0)
