"""The route batcher: a lone request goes at once; under load the next batch waits for the clients still sending."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest

from graphroute.schema import RouteRequest
from serving.runtime import ModelThread, Overloaded
from serving.scheduler import Batcher, Budget


def batch_sizes(load_window_s: float) -> list[int]:
    sizes: list[int] = []

    def recommend(requests: list[RouteRequest]) -> list[list[object]]:
        sizes.append(len(requests))
        time.sleep(0.01)
        return [[] for _ in requests]

    served = SimpleNamespace(recommend=recommend, version="v")

    async def scenario() -> None:
        model = ModelThread()
        batcher = Batcher(lambda: served, model, load_window_s=load_window_s)  # type: ignore[arg-type, return-value]
        batcher.start()
        ask = lambda: batcher.submit(RouteRequest("q"))  # noqa: E731
        await asyncio.gather(*(ask() for _ in range(4)))  # four at once: one batch
        late = asyncio.gather(*(ask() for _ in range(2)))
        await asyncio.sleep(0.005)  # two more clients answer a moment later
        await asyncio.gather(late, *(ask() for _ in range(2)))
        await ask()  # alone again, after a batch of several: may wait, still one
        await ask()  # alone after a lone one: goes at once
        await batcher.stop()
        model.shutdown()

    asyncio.run(scenario())
    return sizes


def test_under_load_the_next_batch_waits_for_the_late_clients() -> None:
    assert batch_sizes(load_window_s=0.05) == [4, 4, 1, 1]
    assert batch_sizes(load_window_s=0.0) == [4, 2, 2, 1, 1]


def test_single_routes_go_before_bulk_work_in_short_steps() -> None:
    """A long batch request is split into steps of at most ``bulk_step_tokens``; a single route that arrives
    meanwhile takes the next step; past ``max_queue`` queued requests new ones are refused."""
    steps: list[list[str]] = []
    first_step_may_end = threading.Event()

    def recommend(requests: list[RouteRequest]) -> list[list[object]]:
        steps.append([r.query[:6] for r in requests])
        first_step_may_end.wait(5)
        return [[] for _ in requests]

    served = SimpleNamespace(recommend=recommend, version="v")
    long = "x" * 1200  # about 300 estimated tokens: one per bulk step of 512

    async def scenario() -> None:
        model = ModelThread()
        budget = Budget(bulk_step_tokens=512, max_queue=8)
        batcher = Batcher(lambda: served, model, budget=budget)  # type: ignore[arg-type, return-value]
        batcher.start()
        bulk = asyncio.create_task(batcher.submit_many([RouteRequest(f"bulk{i} {long}") for i in range(6)]))
        while not steps:  # the first bulk step is running
            await asyncio.sleep(0.001)
        single = asyncio.create_task(batcher.submit(RouteRequest("single")))
        await asyncio.sleep(0.001)
        with pytest.raises(Overloaded):
            await batcher.submit_many([RouteRequest("more")] * 3)  # 5 bulk items and 1 single queued: 6 + 3 > 8
        first_step_may_end.set()
        await asyncio.gather(bulk, single)
        await batcher.stop()
        model.shutdown()

    asyncio.run(scenario())
    assert steps[0] == ["bulk0 "] and steps[1] == ["single"], steps
    assert all(len(step) == 1 for step in steps) and len(steps) == 7
