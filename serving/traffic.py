"""Where traffic and money go: the server's recent routing decisions and the outcomes reported for them, summed per
LLM over a window (what the console's traffic view shows). In memory and bounded, like the decisions feedback can
name: a restart starts the view afresh; the event store keeps the outcomes themselves."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from graphroute.schema import Recommendation

MAX_EVENTS = 200_000  # routes and outcomes kept (the oldest are dropped first)
WINDOWS = {"hour": 3600.0, "day": 86_400.0}


@dataclass(frozen=True)
class _Route:
    at: float
    llm: str
    effect: float | None  # predicted (None: an LLM named directly, not routed)
    cost: float | None  # predicted, USD


@dataclass(frozen=True)
class _Outcome:
    at: float
    llm: str
    effect: float | None  # observed (None: a choice without a rating)
    cost: float | None


class Traffic:
    """Routes and reported outcomes of the last ``MAX_EVENTS`` of each, with the time they happened."""

    def __init__(self, max_events: int = MAX_EVENTS) -> None:
        self._routes: deque[_Route] = deque(maxlen=max_events)
        self._outcomes: deque[_Outcome] = deque(maxlen=max_events)
        self._lock = threading.Lock()
        self._now = time.time

    def routed(self, llm: str, effect: float | None, cost: float | None) -> None:
        with self._lock:
            self._routes.append(_Route(self._now(), llm, effect, cost))

    def observed(self, llm: str, effect: float | None, cost: float | None) -> None:
        with self._lock:
            self._outcomes.append(_Outcome(self._now(), llm, effect, cost))

    def summary(self, window: str, llms: list[str]) -> list[dict[str, object]]:
        """Per LLM over the last ``window`` ("hour" or "day"): routes and their share, mean predicted effect,
        predicted spend, and, where outcomes were reported, their count, mean observed effect and reported spend."""
        since = self._now() - WINDOWS[window]
        with self._lock:
            routes = [r for r in self._routes if r.at >= since]
            outcomes = [o for o in self._outcomes if o.at >= since]
        total = len(routes)
        mine: dict[str, list[_Route]] = {name: [] for name in llms}
        seen: dict[str, list[_Outcome]] = {name: [] for name in llms}
        for r in routes:
            mine.setdefault(r.llm, []).append(r)
        for o in outcomes:
            seen.setdefault(o.llm, []).append(o)
        out = []
        for name in dict.fromkeys([*llms, *mine]):
            rated = [o.effect for o in seen.get(name, []) if o.effect is not None]
            costs = [o.cost for o in seen.get(name, []) if o.cost is not None]
            picked = mine[name]
            out.append(
                {
                    "llm": name,
                    "routes": len(picked),
                    "share": len(picked) / total if total else 0.0,
                    "predicted_effect": _mean([r.effect for r in picked if r.effect is not None]),
                    "predicted_spend": math.fsum(r.cost for r in picked if r.cost is not None),
                    "outcomes": len(seen.get(name, [])),
                    "observed_effect": _mean(rated),
                    "reported_spend": math.fsum(costs) if costs else None,
                }
            )
        return out


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def note_route(state: Any, user_id: str, query: str, llm: str, chosen: Recommendation | None) -> str:
    """Everything a server keeps of one routing decision (the decision feedback may name, the chosen-LLM counter,
    the traffic view); returns the decision's request id."""
    state.metrics.chosen.labels(llm).inc()
    state.traffic.routed(llm, chosen.effect if chosen else None, chosen.cost if chosen else None)
    drawn = chosen is not None and chosen.llm == llm and chosen.propensity > 0
    propensity = chosen.propensity if drawn and chosen is not None else None
    request_id: str = state.decisions.record(user_id, query, llm, propensity)
    return request_id
