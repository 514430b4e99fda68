"""What the app holds at run time: the served router (swapped atomically), its lock, the batcher, metrics."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram

from graphroute import Router
from graphroute.base import RouteRequest
from graphroute.schema import Recommendation

T = TypeVar("T")


class RWLock:
    """Many readers (routing) or one writer (feedback, onboarding) at a time."""

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
    """One loaded router and its lock; a reload builds a new one and replaces the reference."""

    router: Router
    version: str
    lock: RWLock = field(default_factory=RWLock)

    def recommend(self, requests: list[RouteRequest]) -> list[list[Recommendation]]:
        """Rankings for a batch of requests, under the read lock (writers wait)."""
        with self.lock.read():
            return self.router.recommend_many(requests)

    @classmethod
    def load(cls, folder: Path) -> Served:
        router = Router.load(folder)
        digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()[:12]
        router.predict_outcomes(["warm-up"])  # build the inference cache before the first request
        return cls(router, f"{folder.name}:{digest}")


class ModelThread:
    """The one OS thread on which the app runs every router call: load, warm-up, routing, feedback, onboarding.

    PyTorch's OpenMP runtime (libgomp) gives each calling thread its own team of worker threads; once a second
    thread has run torch operations, more threads exist than cores and libgomp falls back to short spins and
    sleeps for good, so every later call is slower (measured on 2 cores: recommend 8.9 → 15 ms, embedding
    7 → 13 ms). Routing from a thread pool, which hands calls to whichever thread is free, does exactly that.
    One thread keeps one team; the event loop never waits on it.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphroute-model")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


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


class Batcher:
    """Route requests that arrive while a batch is being computed share the next batch: one embedding call and
    one prediction for all of them. A lone request starts at once (no waiting window by default); under load
    (the last batch held several requests) the next batch waits ``load_window_s`` for the clients that are
    still sending, so batches stay large instead of alternating between two halves of the clients."""

    def __init__(
        self,
        served: Callable[[], Served],
        model: ModelThread,
        window_s: float = 0.0,
        max_batch: int = 64,
        load_window_s: float = 0.0,
    ) -> None:
        self._served, self._model, self._window, self._max = served, model, window_s, max_batch
        self._load_window, self._last_size = load_window_s, 0
        self._queue: asyncio.Queue[tuple[RouteRequest, asyncio.Future[tuple[list[Recommendation], str]]]] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def submit(self, request: RouteRequest) -> tuple[list[Recommendation], str]:
        assert self._queue is not None, "batcher not started"
        future: asyncio.Future[tuple[list[Recommendation], str]] = asyncio.get_running_loop().create_future()
        await self._queue.put((request, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            items = [await self._queue.get()]
            wait = max(self._window, self._load_window if self._last_size > 1 else 0.0)
            if wait:
                await asyncio.sleep(wait)
            while not self._queue.empty() and len(items) < self._max:
                items.append(self._queue.get_nowait())
            self._last_size = len(items)
            served = self._served()
            try:
                results = await self._model.run(served.recommend, [r for r, _ in items])
            except Exception:  # one bad request must not fail the others: retry them one by one
                results = [await self._model.run(_recommend_or_error, served, r) for r, _ in items]
            for (_, future), result in zip(items, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result((result, served.version))


def _recommend_or_error(served: Served, request: RouteRequest) -> list[Recommendation] | Exception:
    try:
        return served.recommend([request])[0]
    except Exception as exc:
        return exc
