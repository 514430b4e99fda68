"""Seeded splits by query, so no prompt is on both sides of a split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from graphroute import schema as s


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


def split_by_query(frame: pd.DataFrame, val: float = 0.1, test: float = 0.0, seed: int = 0) -> Splits:
    """Split rows by ``query_id``: every row of a query lands in the same part.

    The permutation is over sorted query ids, so the result does not depend on row order.
    """
    ids = _shuffled_ids(frame, seed)
    n_val, n_test = int(round(len(ids) * val)), int(round(len(ids) * test))
    if val > 0 and n_val == 0 and len(ids) - n_test >= 2:
        n_val = 1  # a small log still gets a validation query (and keeps one to train on)
    val_ids, test_ids = set(ids[:n_val]), set(ids[n_val : n_val + n_test])
    part = _query_keys(frame).map(lambda q: "val" if q in val_ids else "test" if q in test_ids else "train")
    return Splits(
        train=frame[part == "train"].reset_index(drop=True),
        val=frame[part == "val"].reset_index(drop=True),
        test=frame[part == "test"].reset_index(drop=True),
    )


def subsample_queries(frame: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """Every row of ``n`` seeded random queries (all of them when the log has fewer): the small log a new
    deployment starts from."""
    if n < 1:
        raise ValueError(f"n: must be at least 1 (value {n!r})")
    kept = set(_shuffled_ids(frame, seed)[:n])
    return frame[_query_keys(frame).isin(kept)].reset_index(drop=True)


def _query_keys(frame: pd.DataFrame) -> pd.Series:
    """What tells queries apart: ``query_id``, or the text in a log not validated yet."""
    return frame[s.QUERY_ID] if s.QUERY_ID in frame.columns else frame[s.QUERY]


def _shuffled_ids(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """The log's query keys, sorted then shuffled: the order does not depend on row order."""
    ids = np.array(sorted(_query_keys(frame).unique()))
    np.random.default_rng(seed).shuffle(ids)
    return ids


def sparsify(frame: pd.DataFrame, k: int, seed: int = 0) -> pd.DataFrame:
    """Keep ``k`` outcomes per query, drawn uniformly without replacement and seeded: the log a router would have
    if it had tried k random LLMs per query instead of all of them. ``propensity`` is each kept row's chance of
    being kept (k / outcomes of its query), so off-policy estimators can reweight it.
    """
    if k < 1:
        raise ValueError(f"k: must be at least 1 (value {k!r})")
    ids = _query_keys(frame)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(frame))
    shuffled = frame.iloc[order].assign(_id=ids.to_numpy()[order])
    rank = shuffled.groupby("_id", sort=False).cumcount().to_numpy()
    size = shuffled.groupby("_id", sort=False)["_id"].transform("size").to_numpy()
    kept = shuffled[rank < k].assign(**{s.PROPENSITY: np.minimum(k / size[rank < k], 1.0)})
    return kept.drop(columns="_id").sort_index().reset_index(drop=True)
