from __future__ import annotations

import pandas as pd

from graphroute.data.io import validate_interactions
from graphroute.data.split import split_by_query


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
