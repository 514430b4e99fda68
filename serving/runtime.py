"""What the app holds at run time: the served router (swapped atomically) and its lock, the threads that run
model and store calls, and metrics. Scheduling is in ``serving.scheduler``, following the store in
``serving.follower``."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from graphroute import Router
from graphroute.config import ExplorationConfig
from graphroute.encoders import MemoryCache, make_encoder, model_folder
from graphroute.errors import GraphRouteError
from graphroute.events import Event, FeedbackEvent
from graphroute.exploration import Explorer
from graphroute.replay import ReplayReport, apply_events, valid_rows
from graphroute.schema import Recommendation, RouteRequest

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
        rows = valid_rows(event, self.router.state.llm_names, report)
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
    def load(cls, folder: Path, cache_items: int = 20_000, exploration: ExplorationConfig | None = None) -> Served:
        """Load a router folder for serving: its encoder gets a bounded in-memory cache (never the on-disk one);
        ``exploration`` replaces the router config's."""
        router = Router.load(folder)
        if exploration is not None:
            router.explorer = Explorer(exploration)
        bare = make_encoder(router.config.encoder, cache_vectors=False, model_dir=model_folder(router.state.encoder))
        router.state.encoder = MemoryCache(bare, cache_items)
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
