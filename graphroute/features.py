"""Node features from content only (so new LLMs and users need no retraining): embeddings of texts, prices,
and aggregates of interactions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from graphroute import schema as s
from graphroute.encoders import TextEncoder
from graphroute.schema import LLMProfile

USER_DIM = 5


def llm_features(llms: Sequence[LLMProfile], encoder: TextEncoder) -> np.ndarray:
    """Description embedding ⊕ log prices and size. Shapes: → (L, D + 3)."""
    emb = encoder.encode([m.profile_text() for m in llms])
    numeric = np.array(
        [[np.log1p(m.input_price), np.log1p(m.output_price), np.log1p(m.size or 0.0) / 5] for m in llms],
        dtype=np.float32,
    )
    return np.concatenate([emb, numeric], axis=1)


def task_features(task_names: Sequence[str], centroids: np.ndarray, encoder: TextEncoder) -> np.ndarray:
    """Task-name embedding ⊕ centroid of its training queries. Shapes: → (T, 2D)."""
    names = encoder.encode([f"Task: {t}" for t in task_names])
    return np.concatenate([names, centroids], axis=1).astype(np.float32)


def query_features(emb: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Query embedding ⊕ log length. Shapes: (N, D), (N,) → (N, D + 1)."""
    out = np.empty((len(emb), emb.shape[1] + 1), dtype=np.float32)  # no float64 temporary (500k × 385 at 1M)
    out[:, :-1] = emb
    out[:, -1] = np.log1p(tokens) / 8
    return out


def user_features(frame: pd.DataFrame, user_ids: Sequence[str], cost_z: np.ndarray) -> np.ndarray:
    """Per user: log count, mean effect, mean standardised cost, choice rate, share of rated rows.

    The last row is the cold-start user: the mean over users, given to every unknown user id. Sums by bincount
    (no pandas groupby): served routers recompute these at every fold of feedback.
    Shapes: frame (E rows), cost_z (E,) → (U + 1, USER_DIM).
    """
    index = {u: i for i, u in enumerate(user_ids)}
    n = len(user_ids)
    row = np.array([index.get(u, n) for u in frame[s.USER_ID].tolist()], dtype=np.int64)  # n: not a listed user
    effect = frame[s.EFFECT].to_numpy(dtype=float)
    chosen = frame[s.CHOSEN].astype(float).to_numpy() if s.CHOSEN in frame else np.full(len(frame), np.nan)
    rated, has_choice = ~np.isnan(effect), ~np.isnan(chosen)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(row, weights=values, minlength=n + 1)[:n]

    count, n_rated, n_chosen = total(np.ones(len(row))), total(rated.astype(float)), total(has_choice.astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_effect = total(np.where(rated, effect, 0.0)) / n_rated
        mean_cost = total(np.asarray(cost_z, dtype=float)) / count
        choice_rate = total(np.where(has_choice, chosen, 0.0)) / n_chosen
        rated_share = n_rated / count
    default_effect = float(np.nanmean(effect)) if rated.any() else 0.5
    rows = np.stack(
        [
            np.log1p(count) / 5,
            np.where(n_rated > 0, mean_effect, default_effect),
            np.where(count > 0, mean_cost, 0.0),
            np.where(n_chosen > 0, choice_rate, 0.5),
            np.where(count > 0, rated_share, 0.0),
        ],
        axis=1,
    ).astype(np.float32)
    return np.concatenate([rows, rows.mean(axis=0, keepdims=True)], axis=0)
