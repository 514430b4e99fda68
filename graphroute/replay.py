"""Served changes applied to a router: replaying a store's events onto a loaded router, and folding them into a
training log for a retrain.

Both paths read the same events and check every row the same way: a row or event that cannot be applied (a number
that is not finite, an LLM the catalog lacks, a kind from a newer writer) is skipped and reported, never trained
on, and the rest still applies.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from graphroute import schema as s
from graphroute.data.io import interaction_rows, validate_interactions
from graphroute.data.store import EventStore
from graphroute.errors import GraphRouteError
from graphroute.events import Event, EventCursor, FeedbackEvent, LLMAdded
from graphroute.onboarding import PROBE_USER
from graphroute.schema import LLMProfile

if TYPE_CHECKING:
    from graphroute.router import Router

logger = logging.getLogger(__name__)
MAX_REPORTED = 100  # skipped items kept with their reason (the count covers all)


@dataclass
class ReplayReport:
    """What a replay did: events applied, rows and events skipped (with the first reasons), the last event."""

    applied: int = 0
    rows: int = 0
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)
    last_event: int = 0
    failed: dict[int, str] = field(default_factory=dict)  # events that could not be applied at all, by id

    def skip(self, why: str) -> None:
        self.skipped += 1
        if len(self.reasons) < MAX_REPORTED:
            self.reasons.append(why)
        logger.warning("skipped %s", why)

    def summary(self) -> str:
        return (
            f"{self.applied} events ({self.rows} feedback rows) applied up to event {self.last_event}, "
            f"{self.skipped} skipped"
        )


def valid_rows(event: FeedbackEvent, llm_names: Sequence[str], report: ReplayReport) -> list[dict[str, Any]]:
    """The event's rows that pass the feedback checks; each other row is reported."""
    good = []
    for i, row in enumerate(event.rows):
        try:
            good.extend(interaction_rows([row], llm_names, source=f"event {event.id}", first_row=i))
        except GraphRouteError as exc:
            report.skip(str(exc))
    return good


def apply_events(router: Router, events: Iterable[Event | tuple[int, str]], report: ReplayReport) -> None:
    """Apply events in order: feedback joins the router's pending rows (``Router.fold`` merges them), onboarded
    LLMs are added, enable/disable states set. An LLM already in the catalog (a router retrained with it) is
    left as it is."""
    for event in events:
        if isinstance(event, tuple):
            report.skip(f"event {event[0]}: {event[1]}")
            report.last_event = max(report.last_event, event[0])
            continue
        try:
            _apply(router, event, report)
            report.applied += 1
        except GraphRouteError as exc:
            report.failed[event.id] = str(exc)
            report.skip(f"event {event.id} ({event.kind}): {exc}")
        report.last_event = max(report.last_event, event.id)


def _apply(router: Router, event: Event, report: ReplayReport) -> None:
    if isinstance(event, FeedbackEvent):
        rows = valid_rows(event, router.state.llm_names, report)
        if rows:
            router.add_feedback(rows)
            report.rows += len(rows)
    elif isinstance(event, LLMAdded):
        name = str(event.profile.get("name", ""))
        if name in router.state.llm_names:
            logger.info("event %d: LLM %r is already in the catalog", event.id, name)
            return
        router.add_llm(event.profile, probes=None if event.probes is None else list(event.probes))
    else:
        router.disable_llm(event.name, disabled=not event.enabled)


def replay_store(router: Router, store: EventStore, batch: int = 5_000) -> ReplayReport:
    """Apply every event of ``store`` newer than what ``router`` includes, fold the feedback into its graph, and
    move its cursor to the store's last event."""
    cursor = router.state.events_cursor.after(store.store_id) if router.state.events_cursor else 0
    report = ReplayReport(last_event=cursor)
    while events := store.events_after(report.last_event, batch):
        apply_events(router, events, report)
    router.fold()
    router.state.events_cursor = EventCursor(store.store_id, report.last_event)
    return report


@dataclass
class StoreLog:
    """A store's served changes as training input: extra log rows, onboarded LLMs, enable states, its cursor."""

    rows: pd.DataFrame
    llms: list[LLMProfile]
    enabled: dict[str, bool]
    cursor: EventCursor
    report: ReplayReport
    row_events: list[int] = field(default_factory=list)  # the event id of each row of ``rows``
    location: str = "store"  # where it was read (error messages name it)


def store_log(store: EventStore, llms: Sequence[LLMProfile]) -> StoreLog:
    """Everything ``store`` holds, ready to train on beside a base log and catalog: feedback rows that pass the
    checks, onboarded LLMs that the catalog lacks (their probes become log rows), and the last enable state of each
    LLM."""
    catalog, rows, enabled = list(llms), [], {}
    row_events: list[int] = []
    report = ReplayReport()
    while events := store.events_after(report.last_event):
        for event in events:
            if isinstance(event, tuple):
                report.skip(f"event {event[0]}: {event[1]}")
                report.last_event = event[0]
                continue
            if isinstance(event, FeedbackEvent):
                rows.extend(valid_rows(event, [m.name for m in catalog], report))
            elif isinstance(event, LLMAdded):
                _add_to_catalog(event, catalog, rows, report)
            else:
                enabled[event.name] = event.enabled
            row_events.extend([event.id] * (len(rows) - len(row_events)))
            report.applied += 1
            report.last_event = event.id
    report.rows = len(rows)
    frame = pd.DataFrame(rows).drop(columns=[s.FEEDBACK_ID], errors="ignore")
    cursor = EventCursor(store.store_id, report.last_event)
    return StoreLog(frame, catalog, enabled, cursor, report, row_events, store.location)


def _add_to_catalog(
    event: LLMAdded, catalog: list[LLMProfile], rows: list[dict[str, Any]], report: ReplayReport
) -> None:
    try:
        profile = LLMProfile.model_validate(event.profile)
    except ValueError as exc:
        report.skip(f"event {event.id} (llm_added): {exc}")
        return
    if profile.name in {m.name for m in catalog}:
        return
    catalog.append(profile)
    probes = [{**p, s.LLM: profile.name, s.USER_ID: PROBE_USER} for p in event.probes or ()]
    rows.extend(valid_rows(FeedbackEvent(tuple(probes), id=event.id), [m.name for m in catalog], report))


def fit_with_store(router: Router, logs: pd.DataFrame, llms: Sequence[LLMProfile], store: EventStore) -> ReplayReport:
    """Fit on a base log plus everything the store holds (feedback, onboarded LLMs and their probes), set the
    stored enable states, and remember the store's last event so that serving replays only newer ones."""
    extra = store_log(store, llms)
    fit_with_store_log(router, logs, extra)
    return extra.report


def fit_with_store_log(router: Router, logs: pd.DataFrame, extra: StoreLog) -> None:
    """``fit_with_store`` on a store already read (``extra.rows`` may be a part of what it holds)."""
    if len(extra.rows):
        served = validate_interactions(extra.rows, extra.llms, source=extra.location)
        logs = pd.concat([validate_interactions(logs, extra.llms, source="logs"), served])
    router.fit(logs.reset_index(drop=True), extra.llms)
    for name, enabled in extra.enabled.items():
        if name in router.state.llm_names:
            router.disable_llm(name, disabled=not enabled)
    router.state.events_cursor = extra.cursor
