"""P4 service: real HTTP against `graphroute serve` on 127.0.0.1, beside the bare embedding cost measured in the
same run (GUIDE §5). The router is trained on demo logs with the real MiniLM encoder and no embedding cache, so
every request pays for its embedding, as in production."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from graphroute.config import RouterConfig
from graphroute.data.synthetic import make_demo_logs

BATCH_SIZES = (16, 32, 64)  # batched-embedding throughput is the best of these


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (servers started by benchmarks and tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def run_service(n_single: int = 200, n_concurrent: int = 640, clients: int = 16, seed: int = 0) -> dict[str, object]:
    """Latency and throughput of /v1/route next to bare embedding time and batched-embedding throughput."""
    from graphroute.encoders import SentenceTransformerEncoder
    from graphroute.router import Router

    logs, llms = make_demo_logs(n_queries=1500, seed=seed)
    queries = make_demo_logs(n_queries=n_single + n_concurrent + 200, per_query=1, seed=seed + 99)[0]["query"]
    queries = [q for q in dict.fromkeys(queries) if q not in set(logs["query"])]
    single, burst = queries[:n_single], queries[n_single : n_single + n_concurrent]
    with tempfile.TemporaryDirectory() as tmp:
        Router(RouterConfig(encoder={"kind": "minilm", "cache_dir": None})).fit(logs, llms).save(Path(tmp) / "r")
        port = free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRAPHROUTE_STORE_URL": str(Path(tmp) / "s.sqlite")}
        server = subprocess.Popen(
            [sys.executable, "-m", "graphroute.cli", "serve", str(Path(tmp) / "r"), "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait(url)
            encoder = SentenceTransformerEncoder()
            encoder.encode(["warm up"])
            embed = []
            for q in single:
                start = time.perf_counter()
                encoder.encode([q])
                embed.append(time.perf_counter() - start)
            batched = {}  # the best batch size of this machine is the fair baseline, not the default one
            for size in BATCH_SIZES:
                encoder.batch_size = size
                start = time.perf_counter()
                encoder.encode(burst)
                batched[size] = len(burst) / (time.perf_counter() - start)
            best_size = max(batched, key=lambda b: batched[b])
            batched_qps = batched[best_size]
            asyncio.run(_post_all(port, [{"query": "warm up"}], 1))
            route, failed_single = asyncio.run(_post_all(port, [{"query": q, "user_id": "user001"} for q in single], 1))
            if failed_single:
                raise RuntimeError(f"{failed_single} single /v1/route requests failed")
            start = time.perf_counter()
            _, failures = asyncio.run(_post_all(port, [{"query": q} for q in burst], clients))
            concurrent_qps = len(burst) / (time.perf_counter() - start)
        finally:
            server.terminate()
            server.wait(timeout=30)
    p50_embed, p50_route = _pct(embed, 50), _pct(route, 50)
    return {
        "single": {
            "requests": len(single),
            "embed_p50_ms": round(p50_embed, 2),
            "embed_p99_ms": round(_pct(embed, 99), 2),
            "route_p50_ms": round(p50_route, 2),
            "route_p99_ms": round(_pct(route, 99), 2),
            "route_overhead_p50_pct": round((p50_route / p50_embed - 1) * 100, 1),
        },
        "concurrent": {
            "clients": clients,
            "requests": len(burst),
            "failures": failures,
            "route_requests_per_s": round(concurrent_qps, 1),
            "batched_embedding_per_s": round(batched_qps, 1),
            "batched_embedding_batch_size": best_size,
            "ratio_to_batched_embedding": round(concurrent_qps / batched_qps, 3),
        },
        "cpu_count": os.cpu_count(),
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


async def _post_all(port: int, bodies: list[dict[str, object]], clients: int) -> tuple[list[float], int]:
    """POST each body to /v1/route over ``clients`` keep-alive HTTP/1.1 connections; per-request seconds and
    the number of non-200 answers.

    A minimal client on purpose: the server and the load share this machine's cores, and httpx spends about
    2.6 ms of CPU per request (measured) that would be taken from the server being measured.
    """
    head = "POST /v1/route HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    requests = [
        f"{head}Content-Length: {len(p)}\r\n\r\n".encode() + p for p in (json.dumps(b).encode() for b in bodies)
    ]
    seconds: list[float] = []
    failures = 0

    async def connection(part: list[bytes]) -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for request in part:
                start = time.perf_counter()
                writer.write(request)
                status = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                seconds.append(time.perf_counter() - start)
                failures += status != 200
        finally:
            writer.close()

    await asyncio.gather(*(connection(requests[i::clients]) for i in range(clients)))
    return seconds, failures


def format_service(results: dict[str, object]) -> str:
    from graphroute.bench.report import format_table

    return format_table([results["single"]]) + "\n\n" + format_table([results["concurrent"]])  # type: ignore[list-item]
