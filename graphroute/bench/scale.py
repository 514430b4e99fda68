"""P5 scale: generated logs of 10k, 100k and 1M interactions; read, prepare, graph build, one training epoch,
inference and peak RSS per size, each size in its own process so its peak memory is its own.

The hashing encoder stands in for MiniLM here: embedding is a fixed per-query cost that the embedding cache
pays once per log, and the benchmark measures what grows with the graph. Training runs one epoch with the
default ``sampling="auto"`` (neighbour-sampled mini-batches past 200k outcomes).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from graphroute.bench.report import format_table, saved_figure

SIZES = (10_000, 100_000, 1_000_000)
PHASES = ("read", "prepare", "graph", "train", "finish", "inference_setup")


def measure(n_interactions: int, seed: int = 0) -> dict[str, float]:
    """One size, in this process: seconds per phase, per-query inference latency and peak RSS."""
    from graphroute.config import RouterConfig
    from graphroute.data.io import read_interactions, write_interactions
    from graphroute.data.synthetic import make_scale_logs
    from graphroute.router import Router

    logs, llms = make_scale_logs(n_interactions, seed=seed)
    config = RouterConfig.model_validate({"encoder": {"kind": "hashing"}, "train": {"epochs": 1, "seed": seed}})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "logs.parquet"
        write_interactions(logs, path)
        del logs
        start = time.perf_counter()
        frame = read_interactions(path, llms)  # streamed in chunks
        read = time.perf_counter() - start
    router = Router(config).fit(frame, llms)
    queries = make_scale_logs(200, seed=seed + 1)[0]["query"].str.replace("ticket", "case").tolist()
    start = time.perf_counter()
    router.recommend(queries[0])  # builds the inference cache over the whole reference graph
    setup = time.perf_counter() - start
    start = time.perf_counter()
    router.predict_outcomes(router.prepare(queries[1:]))
    per_query = (time.perf_counter() - start) / (len(queries) - 1)
    t = router.timings_
    return {
        "interactions": n_interactions,
        "queries": int(frame["query_id"].nunique()),
        "sampled_training": router.history_.sampled,
        "read": round(read, 2),
        **{k: round(t[k], 2) for k in ("prepare", "graph", "train", "finish")},
        "build_and_epoch": round(read + t["prepare"] + t["graph"] + t["train"], 1),
        "fit_total": round(sum(t.values()), 1),
        "inference_setup": round(setup, 2),
        "inference_ms_per_query": round(per_query * 1000, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),  # Linux: KiB
    }


def run_scale(sizes: Sequence[int] = SIZES, seed: int = 0) -> list[dict[str, float]]:
    """Each size in a fresh interpreter (``python -m graphroute.bench.scale N``)."""
    rows = []
    for n in sizes:
        done = subprocess.run(
            [sys.executable, "-m", "graphroute.bench.scale", str(n), str(seed)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"scale benchmark at {n} interactions failed:\n{done.stderr[-2000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def format_scale(rows: list[dict[str, float]]) -> str:
    columns = ["interactions", "queries", *PHASES, "build_and_epoch", "inference_ms_per_query", "peak_rss_gb"]
    return format_table(rows, columns)


def plot_scale(rows: list[dict[str, float]], path: str | Path) -> None:
    """Seconds per phase against log size, log-log, with a linear-growth guide through the 100k point."""
    sizes = [r["interactions"] for r in rows]
    with saved_figure(path, size=(7, 4.5)) as ax:
        for phase in (*PHASES[:5], "build_and_epoch"):
            width = 2.5 if phase == "build_and_epoch" else 1.2
            ax.plot(sizes, [max(r[phase], 1e-3) for r in rows], marker="o", label=phase, lw=width)
        ref = next((r for r in rows if r["interactions"] == 100_000), rows[0])
        ax.plot(
            sizes,
            [ref["build_and_epoch"] * n / ref["interactions"] for n in sizes],
            ls="--",
            color="grey",
            label="linear growth",
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interactions in the log")
        ax.set_ylabel("seconds (2-core CPU)")
        ax.set_title("P5: build and one training epoch vs log size")


if __name__ == "__main__":
    # the parent reads this line: the child's measurements, as JSON
    sys.stdout.write(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0)) + "\n")
