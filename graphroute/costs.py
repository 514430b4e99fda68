"""Cost: catalog estimates for calls a log did not price, and the per-task normalisation (docs/metrics.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from graphroute import schema as s
from graphroute.encoders import TextEncoder
from graphroute.schema import LLMProfile


def catalog_costs(
    tokens_in: np.ndarray, llms: Sequence[LLMProfile], tokens_out: float | np.ndarray | None = None
) -> np.ndarray:
    """USD per call from catalog prices. Shapes: tokens_in (N,) → (N, L)."""
    t_out = s.DEFAULT_OUTPUT_TOKENS if tokens_out is None else tokens_out
    price_in = np.array([m.input_price for m in llms])
    price_out = np.array([m.output_price for m in llms])
    t_in = np.asarray(tokens_in, dtype=float)[:, None]
    t_out_arr = np.asarray(t_out, dtype=float)
    if t_out_arr.ndim == 1:
        t_out_arr = t_out_arr[:, None]
    return (t_in * price_in[None, :] + t_out_arr * price_out[None, :]) / 1e6


def fill_costs(frame: pd.DataFrame, llms: Sequence[LLMProfile], encoder: TextEncoder) -> pd.DataFrame:
    """Return a copy whose `cost` and `tokens_in` are set on every row (catalog estimate where missing)."""
    out = frame.copy()
    if s.TOKENS_IN not in out.columns or out[s.TOKENS_IN].isna().any():
        queries = out[s.QUERY].tolist()
        unique = sorted(set(queries))
        counts = dict(zip(unique, encoder.count_tokens(unique).tolist(), strict=True))
        estimated = np.array([counts[q] for q in queries], dtype=float)
        given = out[s.TOKENS_IN] if s.TOKENS_IN in out.columns else pd.Series(np.nan, index=out.index)
        out[s.TOKENS_IN] = given.fillna(pd.Series(estimated, index=out.index))
    if s.COST not in out.columns or out[s.COST].isna().any():
        index = {m.name: i for i, m in enumerate(llms)}
        cols = out[s.LLM].map(index).to_numpy()
        t_out = out[s.TOKENS_OUT].fillna(s.DEFAULT_OUTPUT_TOKENS).to_numpy() if s.TOKENS_OUT in out.columns else None
        matrix = catalog_costs(out[s.TOKENS_IN].to_numpy(), llms, t_out)
        estimated = matrix[np.arange(len(out)), cols]
        given = out[s.COST] if s.COST in out.columns else pd.Series(np.nan, index=out.index)
        out[s.COST] = given.fillna(pd.Series(estimated, index=out.index))
    return out


@dataclass
class CostScaler:
    """Per-task min–max of cost fitted on the training split; unseen tasks use the global range."""

    ranges: dict[str, tuple[float, float]]
    global_range: tuple[float, float]

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> CostScaler:
        grouped = frame.groupby(s.TASK)[s.COST].agg(["min", "max"])
        ranges = {str(t): (float(r["min"]), float(r["max"])) for t, r in grouped.iterrows()}
        return cls(ranges, (float(frame[s.COST].min()), float(frame[s.COST].max())))

    def transform(self, cost: np.ndarray, tasks: Sequence[str | None]) -> np.ndarray:
        """Shapes: cost (N, L) or (N,), tasks (N,) → same shape, in [0, 1]."""
        bounds = [self.ranges.get(t, self.global_range) if t is not None else self.global_range for t in tasks]
        lo = np.array([b[0] for b in bounds])
        hi = np.array([b[1] for b in bounds])
        if cost.ndim == 2:
            lo, hi = lo[:, None], hi[:, None]
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        return np.clip((cost - lo) / span, 0.0, 1.0)

    def to_dict(self) -> dict[str, object]:
        return {"ranges": {k: list(v) for k, v in self.ranges.items()}, "global_range": list(self.global_range)}

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> CostScaler:
        ranges = {str(k): (float(v[0]), float(v[1])) for k, v in raw["ranges"].items()}  # type: ignore[attr-defined]
        g = raw["global_range"]
        return cls(ranges, (float(g[0]), float(g[1])))  # type: ignore[index]
