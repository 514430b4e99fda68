"""What can change a served router: outcome feedback, an onboarded LLM, an LLM disabled or enabled.

Each change is an event with a store-assigned id. The store appends events before a write is acknowledged, and
loading a router replays the events newer than the ones it was trained with, so what is learned while serving
survives restarts, reloads and a retrain into a new folder. Events are plain data here; ``graphroute.replay``
applies them to a router.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

FEEDBACK = "feedback"
LLM_ADDED = "llm_added"
LLM_ENABLED = "llm_enabled"


@dataclass(frozen=True)
class FeedbackEvent:
    """Outcome rows received in one request (each a dict of ``schema.Interaction`` fields)."""

    rows: tuple[dict[str, Any], ...]
    id: int = 0
    kind: str = field(default=FEEDBACK, init=False)

    def payload(self) -> dict[str, Any]:
        return {}  # the rows live in the store's interactions table, linked by event id


@dataclass(frozen=True)
class LLMAdded:
    """An LLM onboarded from its catalog profile, with optional probe outcomes on known queries."""

    profile: dict[str, Any]
    probes: tuple[dict[str, Any], ...] | None = None
    id: int = 0
    kind: str = field(default=LLM_ADDED, init=False)

    def payload(self) -> dict[str, Any]:
        return {"profile": self.profile, "probes": None if self.probes is None else list(self.probes)}


@dataclass(frozen=True)
class LLMEnabled:
    """Routing to an LLM stopped (``enabled`` False) or resumed."""

    name: str
    enabled: bool
    id: int = 0
    kind: str = field(default=LLM_ENABLED, init=False)

    def payload(self) -> dict[str, Any]:
        return {"name": self.name, "enabled": self.enabled}


Event = FeedbackEvent | LLMAdded | LLMEnabled


def from_record(event_id: int, kind: str, payload: str, rows: tuple[dict[str, Any], ...] = ()) -> Event:
    """The event a store row describes; an unknown kind (a newer writer) is an error the caller reports."""
    raw = json.loads(payload) if payload else {}
    if kind == FEEDBACK:
        return FeedbackEvent(rows, id=event_id)
    if kind == LLM_ADDED:
        probes = raw.get("probes")
        return LLMAdded(raw["profile"], None if probes is None else tuple(probes), id=event_id)
    if kind == LLM_ENABLED:
        return LLMEnabled(str(raw["name"]), bool(raw["enabled"]), id=event_id)
    raise ValueError(f"event {event_id}: unknown kind {kind!r}")


@dataclass(frozen=True)
class EventCursor:
    """The last event of one store that a router already includes (trained on or replayed)."""

    store_id: str
    last_event: int

    def after(self, store_id: str) -> int:
        """The id to replay after for a store: this cursor's for the same store, 0 (everything) for another."""
        return self.last_event if store_id == self.store_id else 0

    def to_dict(self) -> dict[str, object]:
        return {"store_id": self.store_id, "last_event": self.last_event}

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> EventCursor:
        return cls(str(raw["store_id"]), int(raw["last_event"]))  # type: ignore[call-overload]
