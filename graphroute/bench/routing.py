"""P1 routing: llmrouter-9llm train → test, and routerdc-7llm in-distribution and OOD (GUIDE §5)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from graphroute.base import BaseRouter
from graphroute.baselines import ROUTERS
from graphroute.bench.report import format_table, plot_frontiers
from graphroute.config import RouterConfig
from graphroute.data.adapters import Benchmark, load_llmrouter, load_routerdc
from graphroute.evaluation import evaluate
from graphroute.metrics import REPORT_ALPHAS

logger = logging.getLogger(__name__)
DATASETS = {"llmrouter-9llm": load_llmrouter, "routerdc-7llm": load_routerdc}


def fit_routers(
    bench: Benchmark, names: Sequence[str], config: RouterConfig
) -> tuple[dict[str, BaseRouter], dict[str, float]]:
    """Fit each named router on the benchmark's train log; returns the routers and their fit seconds."""
    routers: dict[str, BaseRouter] = {}
    seconds: dict[str, float] = {}
    for name in names:
        start = time.perf_counter()
        routers[name] = ROUTERS[name](config).fit(bench.train, bench.llms)
        seconds[name] = round(time.perf_counter() - start, 2)
        logger.info("fitted %s in %.1fs", name, seconds[name])
    return routers, seconds


def run_routing(
    data_root: Path,
    config: RouterConfig,
    datasets: Sequence[str] = tuple(DATASETS),
    routers: Sequence[str] = tuple(ROUTERS),
    out_dir: Path | None = None,
) -> dict[str, object]:
    """Fit every router on each dataset's train log and score it on each test log.

    Returns a JSON-able dict: per dataset and test split, a row per router, and bootstrap comparisons of the
    GNN against every other router at the report alphas.
    """
    results: dict[str, object] = {}
    for dataset in datasets:
        folder = data_root / dataset
        bench = DATASETS[dataset](folder)
        fitted, seconds = fit_routers(bench, routers, config)
        for split, test in bench.tests.items():
            ev = evaluate(fitted, test)
            key = f"{dataset}/{split}"
            comparisons = {}
            if "graphroute" in fitted:
                for other in ev.scores:
                    if other != "graphroute":
                        comparisons[other] = {
                            str(a): [round(v, 4) for v in ev.compare("graphroute", other, a)] for a in REPORT_ALPHAS
                        }
            results[key] = {
                "n_queries": ev.n_queries,
                "rows": ev.table_rows(),
                "fit_seconds": seconds,
                "graphroute_minus_other_reward_ci95": comparisons,
            }
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                plot_frontiers(ev, out_dir / f"frontier_{dataset}_{split}.png", f"{key}: quality vs cost")
    return results


def format_results(results: dict[str, object]) -> str:
    parts = []
    cols = ["router", "quality@1.0", "reward@1.0", "reward@0.5", "reward@0.2", "gap@1.0", "gap@0.5", "aiq"]
    for key, res in results.items():
        parts.append(f"## {key} ({res['n_queries']} queries)")  # type: ignore[index]
        parts.append(format_table(res["rows"], cols))  # type: ignore[index]
    return "\n\n".join(parts)
