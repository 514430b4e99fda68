"""P4 service: real HTTP against `graphroute serve` on 127.0.0.1, beside the bare embedding cost measured in the
same run. The router is trained on demo logs with the real MiniLM encoder and no embedding cache, so
every request pays for its embedding, as in production."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from graphroute.bench import feedback as fb
from graphroute.bench.http import free_port, post_all
from graphroute.config import EncoderConfig, RouterConfig
from graphroute.data.store import open_store
from graphroute.data.synthetic import make_demo_logs

BATCH_SIZES = (16, 32, 64)  # batched-embedding throughput is the best of these


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def run_service(
    n_single: int = 200,
    n_concurrent: int = 640,
    clients: int = 16,
    rounds: int = 3,
    seed: int = 0,
    feedback_routes: int = 1440,
    encoder: EncoderConfig | None = None,
) -> dict[str, Any]:
    """Latency and throughput of /v1/route next to bare embedding time and batched-embedding throughput.

    This machine's speed drifts by 20-40 % within minutes, so each comparison is interleaved rather than run as
    two phases: single queries alternate in blocks of ``BLOCK`` (embedded in-process, then routed over HTTP back
    to back), and again one by one (each request then finds the server idle: "after idle"); the burst alternates
    batched embedding and concurrent routing ``rounds`` times, and the ratio is the median of the rounds' ratios.
    Then the feedback phase (``graphroute.bench.feedback``) on the same server: ``feedback_routes`` fresh queries
    for the route-then-feedback rounds, a feedback burst, and a batch of long texts beside single routes.
    ``encoder`` chooses MiniLM's runtime (default: the config's default) for the server and the bare embedding.
    """
    from graphroute.encoders import make_encoder
    from graphroute.router import Router

    encoder_config = (encoder or EncoderConfig()).model_copy(update={"kind": "minilm", "cache_dir": None})
    logs, llms = make_demo_logs(n_queries=1500, seed=seed)
    seen = set(logs["query"])
    pool = make_demo_logs(n_queries=2 * (n_single + n_concurrent), per_query=1, seed=seed + 99)[0]["query"]
    queries = [q for q in dict.fromkeys(pool) if q not in seen]
    # every phase routes queries the server has not seen: it keeps their embeddings in memory once routed
    need = 2 * n_single + rounds * n_concurrent + 2 * feedback_routes
    fresh = [f"{q} (case {i})" for i, q in enumerate(queries * (1 + need // len(queries)))]
    single, idle = fresh[:n_single], fresh[n_single : 2 * n_single]
    bursts = [fresh[2 * n_single + r * n_concurrent : 2 * n_single + (r + 1) * n_concurrent] for r in range(rounds)]
    rest = fresh[2 * n_single + rounds * n_concurrent :]
    deploy, beside = rest[:feedback_routes], rest[feedback_routes : 2 * feedback_routes]
    key = secrets.token_hex(8)
    with tempfile.TemporaryDirectory() as tmp:
        Router(RouterConfig(encoder=encoder_config)).fit(logs, llms).save(Path(tmp) / "r")
        port = free_port()
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "GRAPHROUTE_STORE_URL": str(Path(tmp) / "s.sqlite"),
            "GRAPHROUTE_API_KEY": key,
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "graphroute.cli", "serve", str(Path(tmp) / "r"), "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait(f"http://127.0.0.1:{port}")
            bare = make_encoder(encoder_config, cache_vectors=False)
            bare.encode(["warm up"])
            asyncio.run(post_all(port, [{"query": "warm up"}], 1))
            embed, route = _single(bare, port, single, BLOCK)
            idle_embed, idle_route = _single(bare, port, idle, 1)
            rounds_out = [_round(bare, port, burst, clients) for burst in bursts]
            headers = {"X-API-Key": key}
            feedback = {
                "deployment": fb.deployment_rounds(port, deploy, headers, rounds=rounds),
                "burst": fb.feedback_burst(port, headers),
                "long_batch": fb.batch_interference(port, beside, fb.long_texts(256, 3_700)),
            }
            feedback["burst"]["rows_in_store"] = len(open_store(Path(tmp) / "s.sqlite").read())
        finally:
            server.terminate()
            server.wait(timeout=30)
    ratios = [r["route_requests_per_s"] / r["batched_embedding_per_s"] for r in rounds_out]
    middle = rounds_out[int(np.argsort(ratios)[len(ratios) // 2])]
    return {
        "single": _latency(embed, route),
        "single_after_idle": _latency(idle_embed, idle_route),
        "concurrent": {
            "clients": clients,
            "requests": n_concurrent,
            "rounds": rounds,
            "failures": sum(int(r["failures"]) for r in rounds_out),
            "route_requests_per_s": middle["route_requests_per_s"],
            "batched_embedding_per_s": middle["batched_embedding_per_s"],
            "batched_embedding_batch_size": middle["batch_size"],
            "ratio_to_batched_embedding": round(float(np.median(ratios)), 3),
            "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        },
        **feedback,
        "cpu_count": os.cpu_count(),
    }


def _latency(embed: list[float], route: list[float]) -> dict[str, Any]:
    """p50/p99 of paired embedding and route seconds, and the route's overhead over the embedding."""
    p50_embed, p50_route = _pct(embed, 50), _pct(route, 50)
    return {
        "requests": len(route),
        "embed_p50_ms": round(p50_embed, 2),
        "embed_p99_ms": round(_pct(embed, 99), 2),
        "route_p50_ms": round(p50_route, 2),
        "route_p99_ms": round(_pct(route, 99), 2),
        "route_overhead_p50_pct": round((p50_route / p50_embed - 1) * 100, 1),
        "paired_overhead_p50_ms": round(_pct([r - e for r, e in zip(route, embed, strict=True)], 50), 2),
    }


SETTLE_S = 0.003  # pause between the two processes' measurements: OpenMP threads stop spinning before the other runs
BLOCK = 20  # queries per block of the steady single-client measurement


def _single(encoder: object, port: int, queries: list[str], block: int) -> tuple[list[float], list[float]]:
    """Seconds to embed each query in-process and to route it over one keep-alive connection.

    ``block`` queries are embedded back to back, then the same ones routed back to back, block after block: a
    client that sends its next request as soon as it has the answer, with drift between the two cancelled by
    the alternation. With ``block`` 1 every request finds a server that has been idle for an embedding's time.
    """
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port)
    embed, route = [], []
    try:
        for start in range(0, len(queries), block):
            part = queries[start : start + block]
            for q in part:
                began = time.perf_counter()
                encoder.encode([q])  # type: ignore[attr-defined]
                embed.append(time.perf_counter() - began)
            time.sleep(SETTLE_S)
            for q in part:
                body = json.dumps({"query": q, "user_id": "user001"})
                began = time.perf_counter()
                connection.request("POST", "/v1/route", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                route.append(time.perf_counter() - began)
                if response.status != 200:
                    raise RuntimeError(f"single /v1/route request failed with {response.status}")
            time.sleep(SETTLE_S)
    finally:
        connection.close()
    return embed, route


def _round(encoder: object, port: int, burst: list[str], clients: int) -> dict[str, float | int]:
    """One round: the best batched-embedding throughput over ``BATCH_SIZES``, then the burst over HTTP."""
    batched = {}  # the best batch size of this machine is the fair baseline, not the default one
    for size in BATCH_SIZES:
        encoder.batch_size = size  # type: ignore[attr-defined]
        start = time.perf_counter()
        encoder.encode(burst)  # type: ignore[attr-defined]
        batched[size] = len(burst) / (time.perf_counter() - start)
    best = max(batched, key=lambda b: batched[b])
    time.sleep(SETTLE_S)
    start = time.perf_counter()
    _, failures = asyncio.run(post_all(port, [{"query": q} for q in burst], clients))
    return {
        "route_requests_per_s": round(len(burst) / (time.perf_counter() - start), 1),
        "batched_embedding_per_s": round(batched[best], 1),
        "batch_size": best,
        "failures": failures,
    }


def _wait(url: str) -> None:
    import httpx

    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError("server did not become ready")


def format_service(results: dict[str, Any]) -> str:
    from graphroute.bench.report import format_table

    keys = ("single", "single_after_idle", "concurrent", "deployment", "burst", "long_batch")
    parts = [f"{key}:\n" + format_table([results[key]]) for key in keys if key in results]
    return "\n\n".join(parts)
