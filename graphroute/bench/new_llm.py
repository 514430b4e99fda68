"""P2 new LLM: how much of what a new LLM brings does onboarding recover without retraining?

Two protocols, both scored against the router trained with every LLM (``full``) and the router trained without the
new ones (``without``): recovered = (onboarded − without) / (full − without), 0 when onboarding adds nothing and 1
when it matches retraining. ``single`` holds out each LLM of llmrouter-9llm in turn; ``multi`` holds out a third of
a catalog at once (stratified by mean effect on train, the best LLM always among them), per seed. Every router is
scored on the same truth (the full router's catalog and cost scale), so routers with different catalogs compare
query by query.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from graphroute import policy
from graphroute import schema as s
from graphroute.bench.routing import DATASETS
from graphroute.config import RouterConfig
from graphroute.costs import catalog_costs
from graphroute.data.adapters import Benchmark
from graphroute.data.tables import QueryBatch
from graphroute.evaluation import test_tables, truth_of
from graphroute.metrics import REPORT_ALPHAS, SWEEP_ALPHAS, Truth, aiq, paired_bootstrap, score_choices
from graphroute.prior import TaskPrior
from graphroute.router import Router
from graphroute.schema import LLMProfile

logger = logging.getLogger(__name__)
PROBES = (0, 10, 50)
DRAWS = 5  # random probe sets per n > 0 in the single-LLM protocol
SEEDS = (0, 1, 2)
PRIORS = ("average", "description")  # onboarding.prior, compared on the same trained routers
MIN_GAP = 1e-3  # below this reward gap between full and without, recovery is not defined (nothing to recover)
N_BOOT = 2000
TASK_ORACLE = "task-oracle"  # ceiling: a task prior that knows the new LLMs' true task means (see _task_oracle)


@dataclass
class Scorer:
    """One test set laid out on the full router's catalog: any router's choices scored on the same truth."""

    names: list[str]
    batch: QueryBatch
    truth: Truth
    max_cost: float

    @classmethod
    def of(cls, full: Router, test: pd.DataFrame) -> Scorer:
        tables = test_tables(full, test)
        truth = truth_of(full, tables)
        return cls(full.state.llm_names, tables.queries, truth, float(np.nanmean(truth.cost, axis=0).max()))

    def score(self, router: Router, new: Sequence[str] = ()) -> dict[str, Any]:
        """Rewards (and per-query reward at 0.5), AIQ, and the share of queries sent to the ``new`` LLMs."""
        choices = self._choices(router)
        sc = score_choices("r", self.truth, choices)
        sc.aiq = aiq(sc.points, self.max_cost)
        mask = np.isin(np.array(self.names), list(new))
        return {
            "reward@0.5": sc.reward[0.5],
            "reward@1.0": sc.reward[1.0],
            "aiq": sc.aiq,
            "share_new@0.5": float(mask[sc.choice[0.5]].mean()),
            "per_query@0.5": sc.per_query[0.5],
        }

    def oracle_share(self, new: Sequence[str]) -> float:
        mask = np.isin(np.array(self.names), list(new))
        return float(mask[self.truth.oracle_choice(0.5)].mean())

    def _choices(self, router: Router) -> dict[float, np.ndarray]:
        """The router's pick at each alpha by its own utilities, among the LLMs it knows and the test observed."""
        own = router.state.llm_names
        b = self.batch
        batch = QueryBatch(b.texts, b.tasks, b.user_ids, b.emb, b.tokens, catalog_costs(b.tokens, router.state.llms))
        effect, cost = router.predict_outcomes(batch)
        norm = router.state.cost_scaler.transform(cost, batch.tasks)
        cols = [self.names.index(n) for n in own]
        e, c = np.zeros((len(b), len(self.names))), np.zeros((len(b), len(self.names)))
        e[:, cols], c[:, cols] = effect, norm
        known = np.isin(np.array(self.names), own)
        allowed = self.truth.observed & known[None, :]
        alphas = sorted(set(REPORT_ALPHAS) | set(SWEEP_ALPHAS))
        return {a: policy.choose(policy.utilities(e, c, a), allowed) for a in alphas}


def recovery(onboarded: dict[str, Any], without: dict[str, Any], full: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Recovered share of the full router's gain over ``without`` at alpha 0.5 and in AIQ; None where full and
    without are level (nothing to recover). The interval is the paired-bootstrap interval of onboarded − without
    over test queries, divided by the observed gap (a ratio of two resampled means explodes where the resampled gap
    nears 0)."""
    on, wo, fu = (x["per_query@0.5"] for x in (onboarded, without, full))
    gap = fu.mean() - wo.mean()
    out: dict[str, Any] = {"recovered@0.5": None, "recovered@0.5_ci": None, "recovered_aiq": None}
    if gap > MIN_GAP:
        _, low, high = paired_bootstrap(on, wo, n_boot=N_BOOT, seed=seed)
        out["recovered@0.5"] = round(float((on.mean() - wo.mean()) / gap), 3)
        out["recovered@0.5_ci"] = [round(low / gap, 3), round(high / gap, 3)]
    aiq_gap = full["aiq"] - without["aiq"]
    if aiq_gap > MIN_GAP:
        out["recovered_aiq"] = round(float((onboarded["aiq"] - without["aiq"]) / aiq_gap), 3)
    return out


def _public(score: dict[str, Any]) -> dict[str, Any]:
    return {k: round(float(v), 4) for k, v in score.items() if k != "per_query@0.5"}


def _onboard(
    without_dir: Path,
    profiles: Sequence[LLMProfile],
    train: pd.DataFrame,
    n: int,
    rng: np.random.Generator,
    prior: str,
) -> Router:
    """The router trained without ``profiles``, each onboarded with ``n`` probes drawn from its train outcomes and
    the given ``onboarding.prior``."""
    router = Router.load(without_dir)
    onboarding = {**router.config.onboarding.model_dump(), "prior": prior}
    router.config = RouterConfig.model_validate({**router.config.model_dump(), "onboarding": onboarding})
    known = set(router.state.tables.queries.texts)
    for profile in profiles:
        truth = train[train[s.LLM] == profile.name].groupby(s.QUERY)[s.EFFECT].mean()
        pool = sorted(q for q in truth.index if q in known)
        picked = rng.choice(pool, size=min(n, len(pool)), replace=False).tolist() if n else []
        router.add_llm(profile, probes=[{s.QUERY: q, s.EFFECT: float(truth[q])} for q in picked] or None)
    return router


def _task_oracle(without_dir: Path, profiles: Sequence[LLMProfile], train: pd.DataFrame) -> Router:
    """The router trained without ``profiles``, each onboarded by description with a task prior that knows its
    true mean effect per task on the train log: the most any task-level prior (from descriptions or probes)
    could know, so the ceiling that tells missing information from a wasteful model."""
    router = _onboard(without_dir, profiles, train, 0, np.random.default_rng(0), "average")
    st = router.state
    queries = st.tables.queries
    effect = router.predict_outcomes(queries)[0]
    task = st.task_index(queries.tasks, queries.emb)
    for profile in profiles:
        truth = train[train[s.LLM] == profile.name].groupby(s.QUERY)[s.EFFECT].mean()
        observed = pd.Series(queries.texts).map(truth).to_numpy(dtype=float)
        seen = ~np.isnan(observed)
        predicted = effect[:, st.llm_position(profile.name)]
        shift = np.zeros(len(st.task_names))
        for t in np.unique(task[seen]):
            rows = seen & (task == t)
            shift[t] = observed[rows].mean() - predicted[rows].mean()
        st.task_priors[profile.name] = TaskPrior(shift, np.zeros(len(shift)), float("inf"), 0.0)
    return router


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of each number over runs (probe draws or seeds), with the range of recovered@0.5."""
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = [r[key] for r in runs if isinstance(r[key], int | float) and r[key] is not None]
        if values and not isinstance(runs[0][key], list):
            out[key] = round(float(np.mean(values)), 4)
    rec = [r["recovered@0.5"] for r in runs if r.get("recovered@0.5") is not None]
    if rec:
        out["recovered@0.5_range"] = [round(min(rec), 3), round(max(rec), 3)]
    if len(runs) == 1 and runs[0].get("recovered@0.5_ci"):
        out["recovered@0.5_ci"] = runs[0]["recovered@0.5_ci"]
    out["runs"] = len(runs)
    return out


def _without(
    bench: Benchmark, config: RouterConfig, scorer: Scorer, full: Router, held: Sequence[str]
) -> tuple[Router, dict[str, dict[str, Any]], dict[str, Any]]:
    """The router trained without ``held``, the full and without scores (with per-query rewards, for recovery)
    and their public figures beside the oracle's share to the held-out LLMs."""
    others = [m for m in bench.llms if m.name not in held]
    without = Router(config).fit(bench.train[~bench.train[s.LLM].isin(list(held))], others)
    base = {"full": scorer.score(full, held), "without": scorer.score(without, held)}
    scores = {**{k: _public(v) for k, v in base.items()}, "oracle_share_new@0.5": scorer.oracle_share(held)}
    return without, base, scores


def run_single(
    bench: Benchmark,
    config: RouterConfig,
    probes: Sequence[int] = PROBES,
    seed: int = 0,
    draws: int = DRAWS,
    priors: Sequence[str] = PRIORS,
) -> dict[str, Any]:
    """Each LLM held out of training in turn, onboarded with n probes (``draws`` random probe sets per n > 0)."""
    test = next(iter(bench.tests.values()))
    full = Router(config).fit(bench.train, bench.llms)
    scorer = Scorer.of(full, test)
    rows = []
    for i, profile in enumerate(bench.llms):
        without, base, scores = _without(bench, config, scorer, full, [profile.name])
        row: dict[str, Any] = {"llm": profile.name, **scores}
        with tempfile.TemporaryDirectory() as tmp:
            without.save(Path(tmp) / "without")
            for prior in priors:
                for n in probes:
                    runs = []
                    for draw in range(draws if n else 1):
                        rng = np.random.default_rng([seed, i, n, draw])
                        router = _onboard(Path(tmp) / "without", [profile], bench.train, n, rng, prior)
                        onboarded = scorer.score(router, [profile.name])
                        pct = 100 * onboarded["reward@0.5"] / base["full"]["reward@0.5"]
                        rec = recovery(onboarded, base["without"], base["full"])
                        runs.append({**_public(onboarded), "pct_reward@0.5": pct, **rec})
                    row[f"{prior}:probes={n}"] = _summarise(runs)
        logger.info("%s: %s", profile.name, row)
        rows.append(row)
    summary = {
        key: {
            "mean_pct_reward@0.5": round(float(np.mean([r[key]["pct_reward@0.5"] for r in rows])), 1),
            "min_pct_reward@0.5": round(float(np.min([r[key]["pct_reward@0.5"] for r in rows])), 1),
        }
        for key in (f"{prior}:probes={n}" for prior in priors for n in probes)
    }
    return {"full": _public(scorer.score(full)), "per_llm": rows, "summary": summary}


def held_out_set(train: pd.DataFrame, llms: Sequence[LLMProfile], seed: int) -> list[str]:
    """A third of the catalog (rounded, at least 1): the LLM with the best mean train effect, and one drawn from
    each of the equal strata of the others by mean effect."""
    means = train.groupby(s.LLM)[s.EFFECT].mean().reindex([m.name for m in llms]).fillna(0.0)
    ranked = means.sort_values(ascending=False, kind="stable").index.tolist()
    count = max(1, round(len(ranked) / 3))
    rng = np.random.default_rng(seed)
    strata = np.array_split(np.array(ranked[1:], dtype=object), count - 1) if count > 1 else []
    return [ranked[0], *(str(rng.choice(stratum)) for stratum in strata if len(stratum))]


def run_multi(
    bench: Benchmark,
    config: RouterConfig,
    seeds: Sequence[int] = SEEDS,
    probes: Sequence[int] = PROBES,
    priors: Sequence[str] = PRIORS,
) -> dict[str, Any]:
    """Per seed: a third of the catalog held out at once and onboarded together with n probes each."""
    test = next(iter(bench.tests.values()))
    full = Router(config).fit(bench.train, bench.llms)
    scorer = Scorer.of(full, test)
    per_seed = []
    for seed in seeds:
        held = held_out_set(bench.train, bench.llms, seed)
        profiles = [m for m in bench.llms if m.name in held]
        without, base, scores = _without(bench, config, scorer, full, held)
        row: dict[str, Any] = {"seed": seed, "held_out": held, **scores}
        with tempfile.TemporaryDirectory() as tmp:
            without.save(Path(tmp) / "without")
            for prior in priors:
                for n in probes:
                    rng = np.random.default_rng([seed, n])
                    router = _onboard(Path(tmp) / "without", profiles, bench.train, n, rng, prior)
                    onboarded = scorer.score(router, held)
                    rec = recovery(onboarded, base["without"], base["full"], seed=seed)
                    row[f"{prior}:probes={n}"] = {**_public(onboarded), **rec}
            oracle = scorer.score(_task_oracle(Path(tmp) / "without", profiles, bench.train), held)
            row[TASK_ORACLE] = {**_public(oracle), **recovery(oracle, base["without"], base["full"], seed=seed)}
        logger.info("seed %d: %s", seed, row)
        per_seed.append(row)
    keys = ["full", "without", *(f"{prior}:probes={n}" for prior in priors for n in probes), TASK_ORACLE]
    summary: dict[str, Any] = {k: _summarise([r[k] for r in per_seed]) for k in keys}
    for prior in priors:
        by_probes = [summary[f"{prior}:probes={n}"].get("recovered@0.5") for n in probes]
        summary[f"{prior}:recovery_non_decreasing"] = all(
            a is not None and b is not None and b >= a - 1e-9 for a, b in zip(by_probes, by_probes[1:], strict=False)
        )
    return {"per_seed": per_seed, "summary": summary}


def run_new_llm(
    data_root: Path, config: RouterConfig, datasets: Sequence[str] = tuple(DATASETS), seeds: Sequence[int] = SEEDS
) -> dict[str, Any]:
    """Both protocols: ``single`` on llmrouter-9llm, ``multi`` on each of ``datasets``."""
    out: dict[str, Any] = {"single": run_single(DATASETS["llmrouter-9llm"](data_root / "llmrouter-9llm"), config)}
    out["multi"] = {name: run_multi(DATASETS[name](data_root / name), config, seeds) for name in datasets}
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def format_new_llm(results: dict[str, Any]) -> str:
    """The single-LLM table (reward as % of full, recovered, share of routes) and one multi-LLM table per set."""
    from graphroute.bench.report import format_table

    rows = []
    for row in results["single"]["per_llm"]:
        out: dict[str, Any] = {"held-out LLM": row["llm"], "without %": _pct_of(row["without"], row["full"])}
        for k in (k for k in row if ":probes=" in k):
            short = k.replace("description", "desc").replace("average", "avg").replace(":probes=", " ")
            out[f"{short} %"] = round(row[k]["pct_reward@0.5"], 1)
            out[f"{short} rec"] = _pct(row[k].get("recovered@0.5"))
        shares = [row["full"]["share_new@0.5"], *(row[k]["share_new@0.5"] for k in row if ":probes=" in k)]
        out["share full/" + "/".join(k.split(":")[0][:4] + k.split("=")[1] for k in row if ":probes=" in k)] = " ".join(
            f"{v:.2f}" for v in shares
        )
        rows.append(out)
    text = ["single LLM held out (llmrouter-9llm): reward@0.5 as % of full, recovered@0.5", format_table(rows)]
    for name, res in results["multi"].items():
        summary = res["summary"]
        lines = []
        for key in [k for k in summary if not k.endswith("recovery_non_decreasing")]:
            s_ = summary[key]
            lines.append(
                {
                    "router": key,
                    "reward@0.5": s_.get("reward@0.5"),
                    "aiq": s_.get("aiq"),
                    "recovered@0.5": _pct(s_.get("recovered@0.5")),
                    "range over seeds": s_.get("recovered@0.5_range", "–"),
                    "recovered AIQ": _pct(s_.get("recovered_aiq")),
                    "share to new@0.5": s_.get("share_new@0.5"),
                }
            )
        oracle = np.mean([r["oracle_share_new@0.5"] for r in res["per_seed"]])
        held = "; ".join(", ".join(r["held_out"]) for r in res["per_seed"])
        text += [f"\n{name}: a third held out (seeds: {held}); oracle share to new {oracle:.2f}", format_table(lines)]
    return "\n".join(text)


def _pct_of(score: dict[str, Any], full: dict[str, Any]) -> float:
    return round(100 * score["reward@0.5"] / full["reward@0.5"], 1)


def plot_new_llm(results: dict[str, Any], path: Path) -> None:
    """Recovered@0.5 versus probes: each held-out set (multi, per seed) and its mean."""
    from graphroute.bench.report import saved_figure

    with saved_figure(path, legend_size=7) as ax:
        for name, res in results["multi"].items():
            for prior, style in zip(PRIORS, ("--", "-"), strict=True):
                keys = [k for k in res["summary"] if k.startswith(f"{prior}:probes=")]
                xs = [int(k.split("=")[1]) for k in keys]
                for row in res["per_seed"]:
                    ax.plot(xs, [_nan(row[k]["recovered@0.5"]) for k in keys], ls=style, color="grey", alpha=0.3, lw=1)
                means = [_nan(res["summary"][k].get("recovered@0.5")) for k in keys]
                ax.plot(xs, means, marker="o", ls=style, label=f"{name}, prior: {prior}")
        ax.axhline(1.0, ls="--", color="k", lw=1)
        ax.set_xlabel("probe outcomes per new LLM")
        ax.set_ylabel("recovered@0.5 (share of the retrained gain)")


def _nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)
