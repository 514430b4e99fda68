"""P2 new LLM: hold each LLM out of training, onboard it from its description alone and with 10 and 50 probe
outcomes, and compare with the router trained with it."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from graphroute import schema as s
from graphroute.config import RouterConfig
from graphroute.data.adapters import load_llmrouter
from graphroute.evaluation import evaluate
from graphroute.router import Router

logger = logging.getLogger(__name__)
PROBES = (0, 10, 50)
DRAWS = 5  # random probe sets per n > 0


def _score(router: Router, test: object, llm: str | None = None) -> dict[str, float]:
    """Reward, AIQ, and with ``llm`` the share of test queries sent to it at alpha 0.5 (0 when it is not in the
    router: a high reward with a share near 0 means the router did well by leaving the new LLM out)."""
    sc = evaluate({"r": router}, test).scores["r"]  # type: ignore[arg-type]
    out = {"reward@0.5": round(sc.reward[0.5], 4), "reward@1.0": round(sc.reward[1.0], 4), "aiq": round(sc.aiq, 4)}
    if llm is not None:
        chosen = sc.choice[0.5] == router.state.llm_names.index(llm) if llm in router.state.llm_names else np.zeros(1)
        out["share@0.5"] = round(float(np.mean(chosen)), 3)
    return out


def run_new_llm(
    data_root: Path,
    config: RouterConfig,
    held_out: Sequence[str] | None = None,
    probes: Sequence[int] = PROBES,
    seed: int = 0,
    draws: int = DRAWS,
) -> dict[str, Any]:
    """Per held-out LLM: reward@0.5 and AIQ after onboarding with n probes, as % of the router trained with it.

    Which ten queries are probed moves a result by several points, so each n > 0 is scored over ``draws``
    independent random probe sets (seeded per LLM and draw); rows give their mean and range.
    """
    bench = load_llmrouter(data_root / "llmrouter-9llm")
    test = bench.tests["test"]
    trained = Router(config).fit(bench.train, bench.llms)
    reference = _score(trained, test)
    rows: list[dict[str, Any]] = []
    names = [m.name for m in bench.llms]
    for llm in held_out or names:
        profile = next(m for m in bench.llms if m.name == llm)
        others = [m for m in bench.llms if m.name != llm]
        router = Router(config).fit(bench.train[bench.train[s.LLM] != llm], others)
        truth = bench.train[bench.train[s.LLM] == llm].set_index(s.QUERY)[s.EFFECT]
        known = [q for q in router.state.tables.queries.texts if q in truth.index]
        with tempfile.TemporaryDirectory() as tmp:
            router.save(Path(tmp) / "without")
            row: dict[str, Any] = {
                "llm": llm,
                "without_it": _score(router, test[test[s.LLM] != llm], llm),
                "share@0.5_trained_with_it": _score(trained, test, llm)["share@0.5"],
            }
            for n in probes:
                runs = []
                for draw in range(draws if n else 1):
                    rng = np.random.default_rng([seed, names.index(llm), n, draw])
                    onboarded = Router.load(Path(tmp) / "without")
                    picked = rng.choice(known, size=n, replace=False).tolist() if n else []
                    onboarded.add_llm(profile, probes=[{s.QUERY: q, s.EFFECT: float(truth[q])} for q in picked] or None)
                    runs.append(_score(onboarded, test, llm))
                pct = [r["reward@0.5"] / reference["reward@0.5"] * 100 for r in runs]
                row[f"probes={n}"] = {
                    **{k: round(float(np.mean([r[k] for r in runs])), 4) for k in runs[0]},
                    "pct_reward@0.5": round(float(np.mean(pct)), 1),
                    "pct_reward@0.5_range": [round(min(pct), 1), round(max(pct), 1)],
                    "pct_aiq": round(float(np.mean([r["aiq"] for r in runs])) / reference["aiq"] * 100, 1),
                    "draws": len(runs),
                }
            logger.info("%s: %s", llm, row)
            rows.append(row)
    summary = {
        f"probes={n}": {
            "mean_pct_reward@0.5": round(float(np.mean([r[f"probes={n}"]["pct_reward@0.5"] for r in rows])), 1),
            "min_pct_reward@0.5": round(float(np.min([r[f"probes={n}"]["pct_reward@0.5"] for r in rows])), 1),
        }
        for n in probes
    }
    return {"reference_trained_with_all": reference, "per_llm": rows, "summary": summary}


def format_new_llm(results: dict[str, Any]) -> str:
    """One row per held-out LLM: % of the reference reward@0.5 per number of probes."""
    from graphroute.bench.report import format_table

    rows = []
    for row in results["per_llm"]:
        rows.append(
            {
                "held-out LLM": row["llm"],
                "without it (reward@0.5)": row["without_it"]["reward@0.5"],
                **{f"{k} % (mean of draws)": v["pct_reward@0.5"] for k, v in row.items() if k.startswith("probes")},
                "share@0.5 trained with it": row["share@0.5_trained_with_it"],
                **{f"share@0.5 {k}": v["share@0.5"] for k, v in row.items() if k.startswith("probes")},
            }
        )
    ref = results["reference_trained_with_all"]
    return f"reference reward@0.5 {ref['reward@0.5']}, AIQ {ref['aiq']}\n{format_table(rows)}"


def plot_new_llm(results: dict[str, Any], path: Path) -> None:
    """% of the reference reward@0.5 versus probes, one line per held-out LLM."""
    from graphroute.bench.report import saved_figure

    with saved_figure(path, legend_size=6) as ax:
        for row in results["per_llm"]:
            keys = [k for k in row if k.startswith("probes")]
            ax.plot(
                [int(k.split("=")[1]) for k in keys],
                [row[k]["pct_reward@0.5"] for k in keys],
                marker="o",
                label=row["llm"][:22],
                alpha=0.8,
            )
        ax.axhline(90, ls="--", color="k", lw=1)
        ax.set_xlabel("probe outcomes given at onboarding")
        ax.set_ylabel("reward@0.5, % of the router trained with it")
