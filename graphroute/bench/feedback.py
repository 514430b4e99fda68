"""The feedback phase of the service benchmark: the loop a deployment lives on (route, call the LLM, report the
outcome), a burst of feedback on new queries, and a long batch request beside single routes.

Each comparison is made in one run on one server, interleaved where the machine's speed could drift between two
phases: route-only and route-then-feedback rounds alternate, and the single routes measured alone are taken before
and after the ones measured beside the batch.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from graphroute.bench.http import Connection

FEEDBACK_USERS = 50


def _p50_ms(seconds: Sequence[float]) -> float:
    return round(float(np.median(seconds)) * 1000, 2)


async def _deployment(
    port: int, queries: list[str], clients: int, headers: dict[str, str], feedback: bool
) -> tuple[float, list[float], list[float], int]:
    """``clients`` connections each route their share of ``queries`` (and, with ``feedback``, then report an
    outcome of the chosen LLM on that query). Returns routes per second, route and feedback seconds, failures."""
    route_seconds: list[float] = []
    feedback_seconds: list[float] = []
    failures = 0
    rng = np.random.default_rng(len(queries))

    async def client(part: list[str], number: int) -> None:
        nonlocal failures
        conn = await Connection.open(port)
        try:
            for i, query in enumerate(part):
                user = f"bench-user-{(number + i * clients) % FEEDBACK_USERS}"
                status, body, took = await conn.call("POST", "/v1/route", {"query": query, "user_id": user})
                route_seconds.append(took)
                failures += status != 200
                if feedback and status == 200:
                    row = {"user_id": user, "query": query, "llm": json.loads(body)["llm"], "effect": rng.random()}
                    status, _, took = await conn.call("POST", "/v1/feedback", {"interactions": [row]}, headers)
                    feedback_seconds.append(took)
                    failures += status != 200
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(queries[i::clients], i) for i in range(clients)))
    return len(queries) / (time.perf_counter() - start), route_seconds, feedback_seconds, failures


def deployment_rounds(
    port: int, queries: list[str], headers: dict[str, str], clients: int = 8, rounds: int = 3
) -> dict[str, Any]:
    """Route-only and route-then-feedback rounds, alternating, each on fresh queries (nothing cached)."""
    per_phase = len(queries) // (2 * rounds)
    out: list[dict[str, float]] = []
    failures = 0
    for r in range(rounds):
        part = queries[2 * r * per_phase : (2 * r + 2) * per_phase]
        only, only_s, _, f1 = asyncio.run(_deployment(port, part[:per_phase], clients, headers, feedback=False))
        both, both_s, fb_s, f2 = asyncio.run(_deployment(port, part[per_phase:], clients, headers, feedback=True))
        failures += f1 + f2
        out.append(
            {
                "route_only_per_s": round(only, 1),
                "with_feedback_per_s": round(both, 1),
                "throughput_ratio": round(both / only, 3),
                "route_p50_only_ms": _p50_ms(only_s),
                "route_p50_with_feedback_ms": _p50_ms(both_s),
                "p50_ratio": round(float(np.median(both_s) / np.median(only_s)), 3),
                "feedback_p50_ms": _p50_ms(fb_s),
            }
        )
    middle = out[int(np.argsort([o["throughput_ratio"] for o in out])[len(out) // 2])]
    return {
        "clients": clients,
        "routes_per_phase": per_phase,
        "rounds": rounds,
        "failures": failures,
        **middle,
        "throughput_ratio": round(float(np.median([o["throughput_ratio"] for o in out])), 3),
        "p50_ratio": round(float(np.median([o["p50_ratio"] for o in out])), 3),
        "throughput_ratio_range": [min(o["throughput_ratio"] for o in out), max(o["throughput_ratio"] for o in out)],
    }


async def _burst(port: int, clients: int, seconds: float, headers: dict[str, str]) -> tuple[int, int, float]:
    """Each client sends one-row feedback on a new query until ``seconds`` have passed."""
    acked, failed = 0, 0
    deadline = time.perf_counter() + seconds

    async def client(number: int) -> None:
        nonlocal acked, failed
        conn = await Connection.open(port)
        try:
            i = 0
            while time.perf_counter() < deadline:
                row = {
                    "user_id": f"burst-{number}-{i % 20}",
                    "query": f"Burst question {number}-{i}: how many ways are there to tile a {i} by 3 board?",
                    "llm": "tiny-fast",
                    "effect": (i % 10) / 10,
                }
                status, _, _ = await conn.call("POST", "/v1/feedback", {"interactions": [row]}, headers)
                acked += status == 200
                failed += status != 200
                i += 1
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return acked, failed, time.perf_counter() - start


def feedback_burst(port: int, headers: dict[str, str], clients: int = 4, seconds: float = 5.0) -> dict[str, Any]:
    acked, failed, took = asyncio.run(_burst(port, clients, seconds, headers))
    return {"clients": clients, "seconds": round(took, 2), "rows_acked": acked, "failures": failed,
            "durable_rows_per_s": round(acked / took, 1)}  # fmt: skip


async def _singles(port: int, queries: list[str], until: asyncio.Task[object] | None = None) -> list[float]:
    """Route ``queries`` one after another (while ``until`` runs, when given) on one connection."""
    conn = await Connection.open(port)
    seconds = []
    try:
        for query in queries:
            if until is not None and until.done():
                break
            status, _, took = await conn.call("POST", "/v1/route", {"query": query})
            if status != 200:
                raise RuntimeError(f"single /v1/route request failed with {status}")
            seconds.append(took)
    finally:
        conn.close()
    return seconds


async def _beside_batch(port: int, singles: list[str], batch: list[str]) -> tuple[list[float], float, int]:
    async def send_batch() -> int:
        conn = await Connection.open(port)
        try:
            status, _, _ = await conn.call("POST", "/v1/route/batch", {"requests": [{"query": q} for q in batch]})
            return status
        finally:
            conn.close()

    start = time.perf_counter()
    task = asyncio.create_task(send_batch())
    await asyncio.sleep(0.05)  # the batch is in flight
    seconds = await _singles(port, singles, until=task)
    status = await task
    return seconds, time.perf_counter() - start, status


def batch_interference(port: int, singles: list[str], long_texts: list[str], n_alone: int = 40) -> dict[str, Any]:
    """Single-route p50 alone (before and after) and while a batch of long texts is in flight."""
    before = asyncio.run(_singles(port, singles[:n_alone]))
    beside, batch_s, status = asyncio.run(_beside_batch(port, singles[n_alone:-n_alone], long_texts))
    after = asyncio.run(_singles(port, singles[-n_alone:]))
    alone = _p50_ms(before + after)
    return {
        "batch_queries": len(long_texts),
        "batch_chars_each": len(long_texts[0]),
        "batch_seconds": round(batch_s, 2),
        "batch_status": status,
        "singles_beside_batch": len(beside),
        "single_p50_alone_ms": alone,
        "single_p50_beside_batch_ms": _p50_ms(beside),
        "added_p50_ms": round(_p50_ms(beside) - alone, 2),
    }


def long_texts(n: int, chars: int) -> list[str]:
    """``n`` distinct prompts of about ``chars`` characters of varied words."""
    rng = np.random.default_rng(n)
    words = "graph route model query answer cost quality user task token latency budget provider".split()
    return [(f"Document {i}: " + " ".join(rng.choice(words, chars // 4)))[:chars] for i in range(n)]
