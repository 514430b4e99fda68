"""P1 routing: llmrouter-9llm train → test, and routerdc-7llm in-distribution and OOD; and unseen
tasks on the train logs alone, each task held out in turn, where design choices for unseen tasks can be made
without looking at the OOD test files."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from graphroute import schema as s
from graphroute.base import BaseRouter
from graphroute.baselines import ROUTERS
from graphroute.bench.report import format_table, plot_frontiers
from graphroute.config import RouterConfig
from graphroute.data.adapters import Benchmark, load_llmrouter, load_routerdc
from graphroute.data.split import sparsify, subsample_queries
from graphroute.evaluation import evaluate
from graphroute.metrics import REPORT_ALPHAS
from graphroute.schema import LLMProfile

logger = logging.getLogger(__name__)
DATASETS = {"llmrouter-9llm": load_llmrouter, "routerdc-7llm": load_routerdc}
SMALL_LOG_SEEDS = (0, 1, 2, 3, 4)


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
    sparse: Sequence[int] = (),
) -> dict[str, Any]:
    """Fit every router on each dataset's train log and score it on each test log.

    ``sparse``: also fit on bandit-style variants of each train log that keep k random outcomes per query
    (``data.split.sparsify``, seeded by the config's seed), one variant per k; the test logs stay dense.
    Returns a JSON-able dict: per dataset (and variant) and test split, a row per router, and bootstrap
    comparisons of the GNN against every other router at the report alphas.
    """
    results: dict[str, Any] = {}
    for dataset in datasets:
        folder = data_root / dataset
        full = DATASETS[dataset](folder)
        variants = {dataset: full} | {
            f"{dataset}-k{k}": Benchmark(sparsify(full.train, k, config.train.seed), full.tests, full.llms)
            for k in sparse
        }
        for name, bench in variants.items():
            results |= _score_variant(name, bench, config, routers, out_dir)
    return results


def _score_variant(
    dataset: str, bench: Benchmark, config: RouterConfig, routers: Sequence[str], out_dir: Path | None
) -> dict[str, Any]:
    results: dict[str, Any] = {}
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
                    } | {"aiq": [round(v, 4) for v in ev.compare_aiq("graphroute", other)]}
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


def format_results(results: dict[str, Any]) -> str:
    parts = []
    cols = [
        "router", "quality@1.0", "reward@1.0", "reward@0.5", "reward@0.2", "gap@1.0", "gap@0.5", "aiq", "effect_r",
        "effect_mae", "cover80",
    ]  # fmt: skip
    for key, res in results.items():
        parts.append(f"## {key} ({res['n_queries']} queries)")
        parts.append(format_table(res["rows"], cols))
        paired = res.get("graphroute_minus_other_reward_ci95", {})
        if paired:
            rows = [
                {"graphroute minus": other} | {m: f"{v[0]:+.4f} [{v[1]:+.4f}, {v[2]:+.4f}]" for m, v in ci.items()}
                for other, ci in paired.items()
                if other != "oracle"
            ]
            parts.append(format_table(rows))
    return "\n\n".join(parts)


def held_out_tasks(
    train: pd.DataFrame, llms: Sequence[LLMProfile], names: Sequence[str], config: RouterConfig
) -> dict[str, Any]:
    """Each task of ``train`` held out in turn: every router fitted on the other tasks, scored on that one.

    Returns quality at alpha 1 per held-out task and router, the mean over tasks (each task one vote: a whole
    unseen task follows whichever known task it resembles, so tasks, not queries, are the units of chance here)
    and, for the GNN, on how many tasks it beats each other router.
    """
    rows: list[dict[str, Any]] = []
    for task in sorted(train[s.TASK].unique()):
        held = (train[s.TASK] == task).to_numpy()
        fitted, _ = fit_routers(Benchmark(train[~held].reset_index(drop=True), {}, list(llms)), names, config)
        ev = evaluate(fitted, train[held].reset_index(drop=True))
        rows.append(
            {
                "held-out task": task,
                "queries": ev.n_queries,
                **{n: round(sc.quality[1.0], 4) for n, sc in ev.scores.items()},
            }
        )
    routers = [c for c in rows[0] if c not in ("held-out task", "queries")]
    mean = {n: round(float(np.mean([r[n] for r in rows])), 4) for n in routers}
    wins = {
        n: sum(float(r["graphroute"]) > float(r[n]) for r in rows)
        for n in routers
        if "graphroute" in routers and n != "graphroute"
    }
    return {"rows": rows, "mean_over_tasks": mean, "graphroute_wins_of_tasks": wins, "n_tasks": len(rows)}


def run_held_out_tasks(
    data_root: Path, config: RouterConfig, datasets: Sequence[str], routers: Sequence[str]
) -> dict[str, Any]:
    """``held_out_tasks`` on each dataset's train log; its test files are never read into a fit or a score."""
    results: dict[str, Any] = {}
    for dataset in datasets:
        bench = DATASETS[dataset](data_root / dataset)
        results[dataset] = held_out_tasks(bench.train, bench.llms, routers, config)
    return results


def format_held_out(results: dict[str, Any]) -> str:
    parts = []
    for dataset, res in results.items():
        rows = [*res["rows"], {"held-out task": "mean over tasks", **res["mean_over_tasks"]}]
        parts.append(f"## {dataset}: quality@1.0 on each train task held out in turn")
        parts.append(format_table(rows))
        parts.append(f"graphroute wins (of {res['n_tasks']} tasks): {res['graphroute_wins_of_tasks']}")
    return "\n\n".join(parts)


def run_small_logs(
    data_root: Path,
    config: RouterConfig,
    datasets: Sequence[str],
    routers: Sequence[str],
    size: int = 200,
    seeds: Sequence[int] = SMALL_LOG_SEEDS,
) -> dict[str, Any]:
    """Every router fitted on ``size`` random train queries (one draw per seed, which also seeds the fit) and
    scored on the full test logs: a new deployment's first log. Per dataset and test split, a row per seed with
    each router's reward at alpha 1 and the GNN's paired difference from the best single LLM at alpha 1 and 0.5;
    the summary counts the seeds where that difference's interval lies wholly below or above 0."""
    results: dict[str, Any] = {}
    for dataset in datasets:
        full = DATASETS[dataset](data_root / dataset)
        for seed in seeds:
            seeded = config.with_seed(seed)
            small = Benchmark(subsample_queries(full.train, size, seed), {}, full.llms)
            fitted, _ = fit_routers(small, routers, seeded)
            for split, test in full.tests.items():
                ev = evaluate(fitted, test)
                row: dict[str, Any] = {"seed": seed} | {n: round(sc.reward[1.0], 4) for n, sc in ev.scores.items()}
                if "graphroute" in fitted and "best-single" in fitted:
                    for alpha in (1.0, 0.5):
                        diff = ev.compare("graphroute", "best-single", alpha)
                        row[f"gnn-best@{alpha}"] = [round(v, 4) for v in diff]
                results.setdefault(f"{dataset}/{split}", {"size": size, "rows": []})["rows"].append(row)
    for res in results.values():
        diffs = [r["gnn-best@1.0"] for r in res["rows"] if "gnn-best@1.0" in r]
        res["gnn_minus_best_single@1.0"] = {
            "mean": round(float(np.mean([d[0] for d in diffs])), 4) if diffs else None,
            "seeds_below": sum(d[2] < 0 for d in diffs),
            "seeds_above": sum(d[1] > 0 for d in diffs),
        }
    return results


def format_small_logs(results: dict[str, Any]) -> str:
    parts = []
    for key, res in results.items():
        parts.append(f"## {key}: reward@1.0 after {res['size']} train queries")
        rows = [
            {k: (f"{v[0]:+.4f} [{v[1]:+.4f}, {v[2]:+.4f}]" if isinstance(v, list) else v) for k, v in r.items()}
            for r in res["rows"]
        ]
        parts.append(format_table(rows))
        parts.append(f"graphroute minus best-single at alpha 1: {res['gnn_minus_best_single@1.0']}")
    return "\n\n".join(parts)
