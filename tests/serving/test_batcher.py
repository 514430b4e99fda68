"""The route batcher: a lone request goes at once; under load the next batch waits for the clients still sending."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from graphroute.base import RouteRequest
from serving.runtime import Batcher, ModelThread


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
