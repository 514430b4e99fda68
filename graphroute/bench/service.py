"""P4 service: real HTTP against `graphroute serve` on 127.0.0.1, beside the bare embedding cost measured in the
same run (GUIDE §5). The router is trained on demo logs with the real MiniLM encoder and no embedding cache, so
every request pays for its embedding, as in production."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from graphroute.config import RouterConfig
from graphroute.data.synthetic import make_demo_logs


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (servers started by benchmarks and tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def run_service(n_single: int = 200, n_concurrent: int = 640, clients: int = 16, seed: int = 0) -> dict[str, object]:
    """Latency and throughput of /v1/route next to bare embedding time and batched-embedding throughput."""
    import httpx

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
            start = time.perf_counter()
            encoder.encode(burst)
            batched_qps = len(burst) / (time.perf_counter() - start)
            with httpx.Client(timeout=60) as client:
                client.post(f"{url}/v1/route", json={"query": "warm up"})
                route = []
                for q in single:
                    start = time.perf_counter()
                    r = client.post(f"{url}/v1/route", json={"query": q, "user_id": "user001"})
                    route.append(time.perf_counter() - start)
                    r.raise_for_status()
            concurrent_qps, failures = _burst(url, burst, clients)
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


def _burst(url: str, queries: list[str], clients: int) -> tuple[float, int]:
    import httpx

    chunks = [queries[i::clients] for i in range(clients)]

    def worker(part: list[str]) -> int:
        failed = 0
        with httpx.Client(timeout=120) as client:
            for q in part:
                failed += client.post(f"{url}/v1/route", json={"query": q}).status_code != 200
        return failed

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        failures = sum(pool.map(worker, chunks))
    return len(queries) / (time.perf_counter() - start), failures


def format_service(results: dict[str, object]) -> str:
    from graphroute.bench.report import format_table

    return format_table([results["single"]]) + "\n\n" + format_table([results["concurrent"]])  # type: ignore[list-item]
