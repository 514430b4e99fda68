"""What the app holds at run time: the served router (swapped atomically), its lock, the model thread, the route
scheduler, the event follower that keeps the router in step with the store, and metrics."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from graphroute import Router
from graphroute.base import RouteRequest
from graphroute.data.store import EventStore, FeedbackReceipt, StoreBusy
from graphroute.encoders import MemoryCache, make_encoder
from graphroute.errors import GraphRouteError
from graphroute.events import Event, EventCursor, FeedbackEvent
from graphroute.replay import ReplayReport, apply_events, valid_rows
from graphroute.schema import Recommendation

T = TypeVar("T")
logger = logging.getLogger(__name__)
FAILURES_KEPT = 1_000  # failed events remembered for the requests that wrote them


class Overloaded(Exception):
    """More work queued than the server takes: answered 503 with Retry-After."""


class RWLock:
    """Many readers (routing, reads of router state) or one writer (feedback, onboarding, folding) at a time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._readers:
                self._cond.wait()
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


@dataclass
class Served:
    """One loaded router, its lock, and how far it has followed the store; a reload builds a new one and
    replaces the reference."""

    router: Router
    version: str
    lock: RWLock = field(default_factory=RWLock)
    cursor: int = 0  # the last store event applied
    failed: OrderedDict[int, str] = field(default_factory=OrderedDict)
    last_fold: float = field(default_factory=time.monotonic)
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def recommend(self, requests: Sequence[RouteRequest]) -> list[list[Recommendation] | Exception]:
        """Rankings for a batch of requests, under the read lock; a request the router rejects (an unknown
        candidate) gets its error in its place and costs the others nothing."""
        with self.lock.read():
            out: list[list[Recommendation] | Exception] = []
            valid = []
            for i, request in enumerate(requests):
                try:
                    self.router.check_request(request)
                    valid.append(i)
                    out.append([])
                except GraphRouteError as exc:
                    out.append(exc)
            for i, ranking in zip(valid, self.router.recommend_many([requests[i] for i in valid]), strict=True):
                out[i] = ranking
            return out

    def read(self, fn: Callable[[Router], T]) -> T:
        """``fn(router)`` under the read lock: endpoints that read router state never see it half-changed."""
        with self.lock.read():
            return fn(self.router)

    def apply(self, events: Sequence[Event | tuple[int, str]]) -> ReplayReport:
        """Apply store events (on the model thread) and advance the cursor; failed events are remembered."""
        report = ReplayReport(last_event=self.cursor)
        with self.lock.write():
            apply_events(self.router, [e for e in events if _event_id(e) > self.cursor], report)
        self.cursor = report.last_event
        for event_id, reason in report.failed.items():
            self.failed[event_id] = reason
            while len(self.failed) > FAILURES_KEPT:
                self.failed.popitem(last=False)
        return report

    def take(self, event: FeedbackEvent) -> list[str]:
        """Queue a feedback event's rows for the next fold, from the event loop: no model work, no wait for the
        model thread (which may be routing a batch). Returns the users whose preference needs a refit (on the
        model thread, ``refit``)."""
        report = ReplayReport(last_event=self.cursor)
        rows = valid_rows(event, self.router.llm_names_, report)
        _, choosers = self.router.take_feedback(rows) if rows else ([], [])
        self.cursor = event.id
        return choosers

    def refit(self, users: Sequence[str]) -> None:
        with self.lock.write():
            self.router.refit_users(users)

    def fold_step(self, max_new_queries: int) -> int:
        """One bounded step of folding pending feedback into the graph; returns the rows still pending."""
        with self.lock.write():
            left = self.router.fold(max_new_queries)
        if not left:
            self.last_fold = time.monotonic()
        return left

    @classmethod
    def load(cls, folder: Path, cache_items: int = 20_000) -> Served:
        """Load a router folder for serving: its encoder gets a bounded in-memory cache (never the on-disk one)."""
        router = Router.load(folder)
        serving = router.config.encoder.model_copy(update={"cache_dir": None})
        router.encoder_ = MemoryCache(make_encoder(serving), cache_items)
        digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()[:12]
        router.predict_outcomes(["warm-up"])  # build the inference cache before the first request
        return cls(router, f"{folder.name}:{digest}")


def _event_id(event: Event | tuple[int, str]) -> int:
    return event[0] if isinstance(event, tuple) else event.id


class SingleThread:
    """One OS thread that runs the calls given to it, one at a time, in order; the event loop never waits on it."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class ModelThread(SingleThread):
    """The one OS thread on which the app runs every router call: load, warm-up, routing, folding, onboarding.

    PyTorch's OpenMP runtime (libgomp) gives each calling thread its own team of worker threads; once a second
    thread has run torch operations, more threads exist than cores and libgomp falls back to short spins and
    sleeps for good, so every later call is slower (measured on 2 cores: recommend 8.9 → 15 ms, embedding
    7 → 13 ms). Routing from a thread pool, which hands calls to whichever thread is free, does exactly that.
    One thread keeps one team; the event loop never waits on it.
    """

    def __init__(self) -> None:
        super().__init__("graphroute-model")


class Metrics:
    """Prometheus series of one app (its own registry, so several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "graphroute_requests_total", "HTTP requests", ["path", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "graphroute_request_seconds",
            "Request latency",
            ["path"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2, 5),
        )
        self.chosen = Counter(
            "graphroute_chosen_llm_total", "Top-1 LLM of route answers", ["llm"], registry=self.registry
        )
        self.feedback = Counter("graphroute_feedback_rows_total", "Feedback rows stored", registry=self.registry)
        self.pending = Gauge("graphroute_pending_rows", "Feedback rows not yet in the graph", registry=self.registry)
        self.events = Gauge("graphroute_store_cursor", "Last store event applied", registry=self.registry)


class Foreground:
    """Requests a client is waiting on for its answer (routing), counted from the moment they enter the app.

    Background work (storing and applying feedback) waits for a moment without them before it runs, so under a
    flood of feedback the one Python interpreter the server has (its event loop and model thread share the GIL)
    goes to routing first. The wait is bounded: feedback is delayed, never starved.
    """

    def __init__(self) -> None:
        self.active = 0
        self._quiet: asyncio.Event | None = None
        self._left_at = 0.0

    def _event(self) -> asyncio.Event:
        if self._quiet is None:
            self._quiet = asyncio.Event()
            self._quiet.set()
        return self._quiet

    def enter(self) -> None:
        self.active += 1
        self._event().clear()

    def leave(self) -> None:
        self.active -= 1
        self._left_at = time.monotonic()
        if not self.active:
            self._event().set()

    async def quiet(self, at_most_s: float, grace_s: float = 0.001) -> None:
        """Return once no foreground request has been in flight for ``grace_s`` (a client sending its next request
        right after an answer goes first), or after ``at_most_s``."""
        deadline = time.monotonic() + at_most_s
        while self.active or self.recent(grace_s):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                if self.active:
                    await asyncio.wait_for(self._event().wait(), left)
                else:
                    await asyncio.sleep(min(grace_s, left))
            except TimeoutError:
                return

    def recent(self, seconds: float) -> bool:
        return time.monotonic() - self._left_at < seconds


@dataclass(frozen=True)
class Decision:
    """One routing decision: who asked what, and which LLM was chosen."""

    user_id: str
    query: str
    llm: str


class Decisions:
    """The latest routing decisions (bounded, least recently made dropped), by request id and by (user, query).

    They tie an outcome to the choice that caused it: feedback may name a request id instead of repeating the
    query, and feedback on a query just routed for that user is the serving loop itself (not a bulk upload), so
    it is never held back for routing."""

    def __init__(self, max_items: int = 100_000) -> None:
        self.max_items = max_items
        self._by_id: OrderedDict[str, Decision] = OrderedDict()
        self._by_query: dict[tuple[str, str], str] = {}

    def record(self, user_id: str, query: str, llm: str) -> str:
        request_id = uuid.uuid4().hex
        self._by_id[request_id] = Decision(user_id, query, llm)
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


def estimated_tokens(text: str) -> int:
    """A cheap bound on a query's encoder work: about 4 characters a token, at most the model's 256 kept."""
    return min(len(text) // 4 + 2, 258)


@dataclass
class _Job:
    request: RouteRequest
    cost: int
    future: asyncio.Future[tuple[list[Recommendation], str]]


@dataclass
class Budget:
    """How much work one model step may take: requests, and estimated tokens for interactive and bulk steps."""

    max_batch: int = 64
    step_tokens: int = 2_048
    bulk_step_tokens: int = 512
    max_queue: int = 512


class Batcher:
    """Route requests share model steps: one embedding call and one prediction per step.

    Two queues: interactive requests (single routes, chat) and bulk ones (the items of a batch request). A step
    takes interactive requests first, up to ``Budget.step_tokens`` of estimated encoder work; bulk items only
    when no interactive request waits, and only ``Budget.bulk_step_tokens`` at a time, so a long batch is split
    into short steps with single routes between them. A lone request starts at once (no waiting window by
    default); under load (the last step held several requests) the next step waits ``load_window_s`` for the
    clients still sending, so steps stay large. More than ``Budget.max_queue`` queued requests: ``Overloaded``.
    """

    def __init__(
        self,
        served: Callable[[], Served],
        model: ModelThread,
        window_s: float = 0.0,
        load_window_s: float = 0.0,
        budget: Budget | None = None,
    ) -> None:
        self._served, self._model, self._window = served, model, window_s
        self._load_window, self._last_size = load_window_s, 0
        self.budget = budget or Budget()
        self._interactive: deque[_Job] = deque()
        self._bulk: deque[_Job] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    @property
    def queued(self) -> int:
        return len(self._interactive) + len(self._bulk)

    def _enqueue(self, requests: Sequence[RouteRequest], queue: deque[_Job]) -> list[_Job]:
        assert self._wake is not None, "batcher not started"
        if self.queued + len(requests) > self.budget.max_queue:
            raise Overloaded(f"{self.queued} route requests queued (limit {self.budget.max_queue}); retry shortly")
        loop = asyncio.get_running_loop()
        jobs = [_Job(r, estimated_tokens(r.query), loop.create_future()) for r in requests]
        queue.extend(jobs)
        self._wake.set()
        return jobs

    async def submit(self, request: RouteRequest) -> tuple[list[Recommendation], str]:
        """Route one interactive request."""
        (job,) = self._enqueue([request], self._interactive)
        return await job.future

    async def submit_many(self, requests: Sequence[RouteRequest]) -> list[tuple[list[Recommendation], str]]:
        """Route the items of a batch request as bulk work (admitted whole or not at all)."""
        jobs = self._enqueue(requests, self._bulk)
        return list(await asyncio.gather(*(job.future for job in jobs)))

    def _take(self) -> list[_Job]:
        queue, limit = (
            (self._interactive, self.budget.step_tokens)
            if self._interactive
            else (
                self._bulk,
                self.budget.bulk_step_tokens,
            )
        )
        jobs: list[_Job] = []
        tokens = 0
        while queue and len(jobs) < self.budget.max_batch and (not jobs or tokens + queue[0].cost <= limit):
            job = queue.popleft()
            tokens += job.cost
            if not job.future.done():  # a client that went away
                jobs.append(job)
        return jobs

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            if not self.queued:
                self._wake.clear()
                continue
            wait = max(self._window, self._load_window if self._last_size > 1 else 0.0)
            if wait and self._interactive:
                await asyncio.sleep(wait)
            jobs = self._take()
            if not jobs:
                continue
            self._last_size = len(jobs)
            served = self._served()
            try:
                results = await self._model.run(served.recommend, [job.request for job in jobs])
            except Exception as exc:  # unexpected: fail this step's requests, keep serving
                logger.exception("route step failed")
                results = [exc] * len(jobs)
            for job, result in zip(jobs, results, strict=True):
                if job.future.done():
                    continue
                if isinstance(result, Exception):
                    job.future.set_exception(result)
                else:
                    job.future.set_result((result, served.version))


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
        cursor = served.router.events_cursor_.after(self.store.store_id) if served.router.events_cursor_ else 0
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
        served.router.events_cursor_ = EventCursor(self.store.store_id, served.cursor)
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
                if served.router.pending_ and time.monotonic() - served.last_fold >= self.fold_s:
                    await self.fold(served)
            except asyncio.CancelledError:
                raise
            except Exception:  # the store may be briefly unreachable: try again next round
                logger.exception("following the event store failed")
