"""Query embedding speed per runtime: single queries (p50) and batches (queries/s), with the vectors' agreement to
sentence-transformers'.

Each runtime is measured in a process of its own (two runtimes in one process share the cores through two thread
pools that spin for each other), and the processes alternate over ``rounds``, so a drift of the machine's speed
hits every runtime alike; figures are the medians over rounds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RUNTIMES: dict[str, dict[str, Any]] = {
    "torch": {"runtime": "torch"},
    "onnx": {"runtime": "onnx"},
    "onnx-int8": {"runtime": "onnx", "quantize": True},
}


def _queries(seed: int, n: int) -> list[str]:
    from graphroute.data.synthetic import make_demo_logs

    pool = list(dict.fromkeys(make_demo_logs(n_queries=2000, per_query=1, seed=seed)[0]["query"]))
    return [f"{q} (case {seed}-{i})" for i, q in enumerate(pool * (1 + n // len(pool)))][:n]


def measure(runtime: str, cache_dir: str, seed: int, n_single: int, n_batch: int, batch_size: int) -> dict[str, float]:
    """One runtime in this process: single-query p50, batched throughput, and the largest difference to the
    reference vectors and the smallest cosine to them."""
    from graphroute.encoders import SentenceTransformerEncoder

    options = RUNTIMES[runtime]
    encoder = SentenceTransformerEncoder(batch_size=batch_size, cache_dir=cache_dir, cache_vectors=False, **options)
    queries = _queries(seed, n_single + n_batch)
    encoder.encode(queries[:2])  # load, export or check once
    seconds = []
    for query in queries[:n_single]:
        start = time.perf_counter()
        encoder.encode([query])
        seconds.append(time.perf_counter() - start)
        time.sleep(0.002)
    start = time.perf_counter()
    vectors = encoder.encode(queries[n_single:])
    batched = n_batch / (time.perf_counter() - start)
    reference = encoder._load().encode(queries[n_single : n_single + 64], normalize_embeddings=True)
    return {
        "single_p50_ms": float(np.median(seconds) * 1000),
        "batched_per_s": float(batched),
        "max_abs_diff": float(np.abs(vectors[:64] - reference).max()),
        "min_cosine": float(np.einsum("nd,nd->n", vectors[:64], reference).min()),
    }


def run_embedding(
    cache_dir: str | Path, rounds: int = 3, n_single: int = 150, n_batch: int = 1024, batch_size: int = 32
) -> dict[str, Any]:
    """Every runtime in its own process, alternating over ``rounds``; medians and the speed-ups over torch."""
    per: dict[str, list[dict[str, float]]] = {name: [] for name in RUNTIMES}
    for r in range(rounds):
        for name in RUNTIMES:
            args = [name, str(cache_dir), str(r), str(n_single), str(n_batch), str(batch_size)]
            done = subprocess.run(
                [sys.executable, "-m", "graphroute.bench.embedding", *args],
                capture_output=True,
                text=True,
                check=True,
                timeout=1800,
            )
            per[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    rows = {
        name: {key: round(float(np.median([m[key] for m in runs])), 7 if "diff" in key else 3) for key in runs[0]}
        for name, runs in per.items()
    }
    base = rows["torch"]
    for row in rows.values():
        row["single_speedup"] = round(base["single_p50_ms"] / row["single_p50_ms"], 2)
        row["batched_speedup"] = round(row["batched_per_s"] / base["batched_per_s"], 2)
    return {"rounds": rounds, "n_single": n_single, "n_batch": n_batch, "batch_size": batch_size, "runtimes": rows}


def format_embedding(results: dict[str, Any]) -> str:
    from graphroute.bench.report import format_table

    rows = results["runtimes"]
    return format_table([{"runtime": name, **row} for name, row in rows.items()])


if __name__ == "__main__":
    name, folder, seed, n_single, n_batch, batch_size = sys.argv[1:7]
    # the parent reads this process's figures as one JSON line on stdout
    sys.stdout.write(json.dumps(measure(name, folder, int(seed), int(n_single), int(n_batch), int(batch_size))) + "\n")
