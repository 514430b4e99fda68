"""Node features from content only (GUIDE §4): embeddings of texts, prices, and aggregates of interactions."""

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

    The last row is the cold-start user: the mean over users, given to every unknown user id.
    Shapes: frame (E rows), cost_z (E,) → (U + 1, USER_DIM).
    """
    f = pd.DataFrame(
        {
            "user": frame[s.USER_ID].to_numpy(),
            "effect": frame[s.EFFECT].to_numpy(dtype=float),
            "cost_z": cost_z,
            "chosen": frame[s.CHOSEN].astype(float).to_numpy() if s.CHOSEN in frame else np.nan,
        }
    )
    f["rated"] = (~f["effect"].isna()).astype(float)
    g = f.groupby("user").agg(
        n=("effect", "size"),
        effect=("effect", "mean"),
        cost_z=("cost_z", "mean"),
        chosen=("chosen", "mean"),
        rated=("rated", "mean"),
    )
    g = g.reindex(list(user_ids))
    g["n"] = np.log1p(g["n"].fillna(0)) / 5
    g["effect"] = g["effect"].fillna(float(np.nanmean(f["effect"])) if f["rated"].any() else 0.5)
    g = g.fillna({"cost_z": 0.0, "chosen": 0.5, "rated": 0.0})
    rows = g[["n", "effect", "cost_z", "chosen", "rated"]].to_numpy(dtype=np.float32)
    return np.concatenate([rows, rows.mean(axis=0, keepdims=True)], axis=0)
