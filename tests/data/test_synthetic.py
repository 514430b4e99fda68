from __future__ import annotations

import pandas as pd

from graphroute.data.io import validate_interactions
from graphroute.data.synthetic import make_demo_logs


def test_seeded_sparse_and_valid() -> None:
    a, llms = make_demo_logs(n_queries=200, seed=5)
    b, _ = make_demo_logs(n_queries=200, seed=5)
    pd.testing.assert_frame_equal(a, b)
    validate_interactions(a, llms)
    per_query = a.groupby("query")["llm"].nunique()
    assert per_query.max() <= 2 < len(llms)
    assert (a.groupby("query")["chosen"].sum() == 1).all()


def test_llms_have_distinct_strengths_and_users_distinct_choices() -> None:
    dense, llms = make_demo_logs(n_queries=1500, per_query=None, seed=0)
    best = dense.groupby(["task", "llm"])["effect"].mean().unstack().idxmax(axis=1)
    assert best.nunique() >= 3  # different tasks have different best LLMs
    prices = {m.input_price for m in llms}
    assert len(prices) >= 4
    chosen = dense[dense["chosen"]]
    assert chosen.groupby("user_id")["llm"].agg(lambda s: s.value_counts().index[0]).nunique() >= 2
