"""Scheduling work on the model thread: route requests share steps of bounded size, single routes before batch
items, and background work (feedback uploads, folding) waits for a pause in routing."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from graphroute.schema import Recommendation, RouteRequest
from serving.runtime import ModelThread, Overloaded, Served

logger = logging.getLogger(__name__)


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
