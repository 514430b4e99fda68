"""Turn predicted effect and cost into utilities and rankings; the trade-off arrives with each request."""

from __future__ import annotations

import numpy as np

TIE_EPSILON = 1e-6  # cost breaks ties between equal predicted utilities: the cheaper LLM wins


def check_alpha(alpha: float | None) -> None:
    """A request's trade-off must lie in [0, 1] (None = the user's or the default)."""
    from graphroute.errors import DataValidationError

    if alpha is not None and not (isinstance(alpha, int | float) and 0.0 <= float(alpha) <= 1.0):
        raise DataValidationError(f"alpha: must lie in [0, 1] (value {alpha!r})")


def utilities(effect: np.ndarray, normalized_cost: np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
    """alpha·effect − (1−alpha)·ĉ, minus a hair of cost so ties go to the cheaper LLM.

    Shapes: effect, normalized_cost (N, L); alpha scalar or (N,) → (N, L).
    """
    a = np.asarray(alpha, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    return a * effect - (1.0 - a) * normalized_cost - TIE_EPSILON * normalized_cost


def choose(
    utility: np.ndarray,
    allowed: np.ndarray | None = None,
    max_cost: float | None = None,
    cost: np.ndarray | None = None,
) -> np.ndarray:
    """Index of the best allowed LLM per row. Shapes: utility (N, L), allowed bool (N, L) or (L,) → (N,).

    With ``max_cost``, LLMs predicted to cost more are skipped unless none is cheap enough, in which case the
    cheapest allowed one is chosen.
    """
    masked = np.where(_allowed(utility, allowed), utility, -np.inf)
    if max_cost is not None and cost is not None:
        fits = cost <= max_cost
        within = np.where(fits, masked, -np.inf)
        cheapest = np.where(np.isfinite(masked), -cost, -np.inf)
        masked = np.where(
            fits.any(axis=1, keepdims=True) & np.isfinite(within).any(axis=1, keepdims=True), within, cheapest
        )
    return np.argmax(masked, axis=1)


def rank(utility: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """LLM indices by descending utility, disallowed last. Shapes: (N, L) → (N, L)."""
    masked = np.where(_allowed(utility, allowed), utility, -np.inf)
    return np.argsort(-masked, axis=1, kind="stable")


def _allowed(utility: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    if allowed is None:
        return np.ones_like(utility, dtype=bool)
    return np.broadcast_to(allowed, utility.shape)
