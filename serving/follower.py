"""Keeping the served router in step with the event store: changes committed and applied in id order, other
replicas' changes polled, feedback folded into the graph, bulk uploads batched, and the decisions feedback refers to."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from graphroute.data.store import EventStore, FeedbackReceipt, StoreBusy
from graphroute.events import Event, EventCursor, FeedbackEvent
from graphroute.replay import ReplayReport
from serving.runtime import ModelThread, Served, SingleThread
from serving.scheduler import Foreground

T = TypeVar("T")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """One routing decision: who asked what, and which LLM was chosen."""

    user_id: str
    query: str
    llm: str
    propensity: float | None = None  # the chance the router had of choosing llm (None: not the router's draw)


class Decisions:
    """The latest routing decisions (bounded, least recently made dropped), by request id and by (user, query).

    They tie an outcome to the choice that caused it: feedback may name a request id instead of repeating the
    query, and feedback on a query just routed for that user is the serving loop itself (not a bulk upload), so
    it is never held back for routing."""

    def __init__(self, max_items: int = 100_000) -> None:
        self.max_items = max_items
        self._by_id: OrderedDict[str, Decision] = OrderedDict()
        self._by_query: dict[tuple[str, str], str] = {}

    def record(self, user_id: str, query: str, llm: str, propensity: float | None = None) -> str:
        request_id = uuid.uuid4().hex
        self._by_id[request_id] = Decision(user_id, query, llm, propensity)
        self._by_query[(user_id, query)] = request_id
        while len(self._by_id) > self.max_items:
            old_id, old = self._by_id.popitem(last=False)
            if self._by_query.get((old.user_id, old.query)) == old_id:
                del self._by_query[(old.user_id, old.query)]
        return request_id

    def get(self, request_id: str) -> Decision | None:
        return self._by_id.get(request_id)

    def routed(self, user_id: str, query: str) -> bool:
        return (user_id, query) in self._by_query

    def __len__(self) -> int:
        return len(self._by_id)


class EventFollower:
    """Keeps the served router in step with the store.

    Every change made while serving is first committed to the store as an event and then applied (``commit``);
    other replicas' events are found by polling every ``poll_s`` (``sync``). Both deliver events one at a time in
    id order and skip what the cursor has passed, so nothing is applied twice or out of order. Feedback is only
    queued (on the event loop, never waiting for the model thread); other changes apply on the model thread.
    Pending feedback is folded into the graph every ``fold_s`` in bounded steps (``fold_queries`` new queries
    embedded per step), so neither feedback nor routing waits for a graph rebuild.
    """

    def __init__(
        self,
        served: Callable[[], Served],
        store: EventStore,
        model: ModelThread,
        poll_s: float = 0.5,
        fold_s: float = 1.0,
        fold_queries: int = 16,
        foreground: Foreground | None = None,
    ) -> None:
        self._served, self.store, self._model = served, store, model
        self._io = SingleThread("graphroute-store")  # store calls, on one connection of their own
        self.poll_s, self.fold_s, self.fold_queries = poll_s, fold_s, fold_queries
        self.foreground = foreground or Foreground()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def replay(self, served: Served) -> ReplayReport:
        """Bring a freshly loaded router up to the store (start-up and reload), in bounded model steps."""
        cursor = (
            served.router.state.events_cursor.after(self.store.store_id) if served.router.state.events_cursor else 0
        )
        served.cursor = cursor
        total = ReplayReport(last_event=cursor)
        while events := await self._io.run(self.store.events_after, served.cursor, 500):
            report = await self._model.run(served.apply, events)
            total.applied, total.rows, total.skipped = (
                total.applied + report.applied,
                total.rows + report.rows,
                total.skipped + report.skipped,
            )
            total.reasons.extend(report.reasons)
            total.last_event = served.cursor
        await self.fold(served)
        served.router.state.events_cursor = EventCursor(self.store.store_id, served.cursor)
        return total

    async def sync(self) -> Served:
        """Apply the store's events newer than the served router's cursor (other replicas' changes; after a
        reload, what was stored while the new router replayed)."""
        return await self._deliver(None)

    async def commit(self, write: Callable[[bool], T], event_of: Callable[[T], Event | None]) -> tuple[T, Served]:
        """Write to the store and apply the event it stored, then return. ``write(wait)`` commits and returns its
        receipt: first tried on the event loop with ``wait`` False (a local SQLite write), on the store thread
        when it would wait (``StoreBusy``: another writer, or PostgreSQL's network). ``event_of(receipt)`` is
        the event stored (None: nothing new). Applications run one at a time in id order; an event that is not
        the very next one (another request or replica wrote in between) makes the store be read from the cursor
        instead."""
        try:
            receipt = write(False)
        except StoreBusy:
            receipt = await self._io.run(write, True)
        event = event_of(receipt)
        served = await self._deliver(event) if event is not None else self._served()
        return receipt, served

    async def _deliver(self, event: Event | None) -> Served:
        async with self._lock:
            served = self._served()
            if event is not None and event.id <= served.cursor:
                return served  # applied already, by a read that found it
            if event is not None and event.id == served.cursor + 1:
                events: list[Event | tuple[int, str]] = [event]
            else:
                events = await self._io.run(self.store.events_after, served.cursor)
            for item in events:
                await self._apply(served, item)
            return served

    async def _apply(self, served: Served, event: Event | tuple[int, str]) -> None:
        """Feedback is queued on the event loop (a refit, when a choice completes, on the model thread); other
        changes are applied on the model thread."""
        if isinstance(event, FeedbackEvent):
            refit = served.take(event)
            if refit:
                await self._model.run(served.refit, refit)
        else:
            await self._model.run(served.apply, [event])

    async def fold(self, served: Served) -> None:
        """Fold all pending feedback, one bounded model step at a time, each in a pause of routing if one comes
        within ``fold_s``."""
        while True:
            await self.foreground.quiet(self.fold_s)
            if not await self._model.run(served.fold_step, self.fold_queries):
                return

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._io.shutdown()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(min(self.poll_s, self.fold_s))
            try:
                served = await self.sync()
                if served.router.feedback and time.monotonic() - served.last_fold >= self.fold_s:
                    await self.fold(served)
            except asyncio.CancelledError:
                raise
            except Exception:  # the store may be briefly unreachable: try again next round
                logger.exception("following the event store failed")


class BulkFeedback:
    """Feedback on queries this server did not just route (a bulk upload of outcomes) is background work: it waits
    for a pause in routing (at most ``yield_s``), then every such request waiting is committed in one
    transaction and applied as one event. Routing in flight goes first, and a flood of uploads costs the server
    one commit per pause, not one per request."""

    def __init__(self, follower: EventFollower, store: EventStore, foreground: Foreground, yield_s: float) -> None:
        self.follower, self.store, self.foreground, self.yield_s = follower, store, foreground, yield_s
        self._waiting: list[tuple[list[dict[str, Any]], asyncio.Future[FeedbackReceipt]]] = []
        self._turn = asyncio.Lock()

    async def submit(self, rows: list[dict[str, Any]]) -> FeedbackReceipt:
        future: asyncio.Future[FeedbackReceipt] = asyncio.get_running_loop().create_future()
        self._waiting.append((rows, future))
        async with self._turn:
            if not future.done():
                await self.foreground.quiet(self.yield_s)
                batch, self._waiting = self._waiting, []
                await self._commit(batch)
        return await future

    async def _commit(self, batch: list[tuple[list[dict[str, Any]], asyncio.Future[FeedbackReceipt]]]) -> None:
        groups = [rows for rows, _ in batch]
        try:
            receipts, _ = await self.follower.commit(
                lambda wait: self.store.append_feedback_groups(groups, wait), _feedback_event
            )
        except Exception as exc:
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), receipt in zip(batch, receipts, strict=True):
            future.set_result(receipt)


def _feedback_event(receipts: list[FeedbackReceipt]) -> FeedbackEvent | None:
    """The one event a batch of feedback receipts stored (None: every row was a duplicate)."""
    stored = [row for receipt in receipts for row in receipt.stored]
    return FeedbackEvent(tuple(stored), id=receipts[0].event_id) if receipts[0].event_id is not None else None
