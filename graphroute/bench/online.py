"""P6 online: a simulated deployment that learns only from its own choices.

Each run starts from a seed log (a share of the train queries with every LLM's outcome), then streams the other
train queries in a seeded order. For each query the policy picks one LLM (exploring as it was configured); only
that LLM's logged outcome is revealed, with the policy's propensity, and every ``retrain_every`` queries the
router is fitted again on the seed log plus everything revealed. After each retrain the router is scored on the
fixed test set (reward at alpha and AIQ); online, each pick earns its reward and its regret against the best LLM
for that query. Policies, all on the same stream and retrain schedule:

- ``full-info``: every LLM's outcome of each streamed query is revealed (the upper bound);
- ``greedy``: the GNN, no exploration;
- ``epsilon``, ``thompson``, ``ucb``: the GNN exploring under a utility budget (``graphroute.exploration``);
- ``linucb``: LinUCB on the query embedding with a cost-aware reward (the standard bandit baseline);
- ``uniform``: a uniformly random LLM per query (random logging), the GNN fitted on that log.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd

from graphroute import schema as s
from graphroute.base import BaseRouter
from graphroute.baselines import ROUTERS
from graphroute.bench.report import format_table
from graphroute.config import ExplorationConfig, RouterConfig
from graphroute.data.adapters import Benchmark
from graphroute.data.io import validate_interactions
from graphroute.evaluation import evaluate, test_tables, truth_of
from graphroute.exploration import Explorer
from graphroute.metrics import Truth
from graphroute.router import Router
from graphroute.schema import LLMProfile, RouteRequest

logger = logging.getLogger(__name__)
FULL = "full-info"
# a policy's position seeds its random draws: new policies go last, so the others' runs stay as they were
POLICIES = (FULL, "greedy", "epsilon", "thompson", "linucb", "uniform", "ucb")
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class OnlineSetup:
    """The simulated deployment: seed share, stream length, retrain schedule, trade-off and exploration."""

    seed_share: float = 0.1
    retrain_every: int = 1000
    max_stream: int | None = None  # stream at most this many queries (None: every train query not in the seed)
    alpha: float = 0.5
    budget: float = 0.03
    max_share: float = 0.3
    linucb_beta: float = 1.0
    # an LLM left out of the seed log and the catalog, onboarded mid-stream by description ("auto": the best single
    # LLM at alpha on the seed log)
    onboard: str | None = None

    def exploration(self, policy: str, seed: int) -> ExplorationConfig:
        if policy in ("epsilon", "thompson", "ucb"):
            return ExplorationConfig(
                method=cast(Literal["epsilon", "thompson", "ucb"], policy),
                budget=self.budget,
                max_share=self.max_share,
                seed=seed,
            )
        if policy == "linucb":  # LinUCB as it is usually run: no budget on what its bonus gives up
            return ExplorationConfig(method="ucb", budget=1.0, ucb_beta=self.linucb_beta, seed=seed)
        return ExplorationConfig(seed=seed)


@dataclass
class Stream:
    """A seed log and the streamed queries, with every LLM's logged outcome of each (revealed one by one)."""

    seed_log: pd.DataFrame
    order: list[str]  # query ids in stream order
    rows: dict[str, pd.DataFrame]  # query id → its dense rows

    @classmethod
    def split(cls, train: pd.DataFrame, setup: OnlineSetup, seed: int) -> Stream:
        frame = validate_interactions(train, source="train")
        ids = np.array(sorted(frame[s.QUERY_ID].unique()))
        np.random.default_rng(seed).shuffle(ids)
        n_seed = max(2, int(round(len(ids) * setup.seed_share)))
        seed_ids, stream_ids = set(ids[:n_seed]), list(ids[n_seed:])
        if setup.max_stream is not None:
            stream_ids = stream_ids[: setup.max_stream]
        streamed = frame[frame[s.QUERY_ID].isin(set(stream_ids))]
        rows = {str(q): group for q, group in streamed.groupby(s.QUERY_ID, sort=False)}
        return cls(frame[frame[s.QUERY_ID].isin(seed_ids)].reset_index(drop=True), stream_ids, rows)


def demo_benchmark(n_train: int = 2000, n_test: int = 300) -> Benchmark:
    """Dense generated logs (every LLM answers every query): the project's own data for the online protocol."""
    from graphroute.data.synthetic import make_demo_logs

    train, llms = make_demo_logs(n_queries=n_train, n_users=8, per_query=None, seed=0)
    test = make_demo_logs(n_queries=n_test, n_users=8, per_query=None, seed=1)[0]
    return Benchmark(train, {"test": test}, llms)


@dataclass(frozen=True)
class StreamTruth:
    """Every LLM's true outcome on the streamed queries (rows in ``position`` order) and each query's oracle reward."""

    truth: Truth
    position: dict[str, int]  # query id → row
    oracle: np.ndarray  # (N,)


def stream_truth(stream: Stream, config: RouterConfig, llms: Sequence[LLMProfile], alpha: float) -> StreamTruth:
    """One reward scale for every policy of a stream: costs normalised as a router fitted on the seed log with the
    whole catalog normalises them."""
    reference = ROUTERS["best-single"](config).fit(stream.seed_log, llms)
    tables = test_tables(reference, pd.concat([stream.rows[q] for q in stream.order], ignore_index=True))
    truth = truth_of(reference, tables)
    position = {q: i for i, q in enumerate(tables.query_ids)}
    return StreamTruth(truth, position, truth.reward(truth.oracle_choice(alpha), alpha))


def run_policy(
    bench: Benchmark,
    stream: Stream,
    truth: StreamTruth,
    policy: str,
    seed: int,
    config: RouterConfig,
    setup: OnlineSetup,
    start: Path | None = None,
) -> dict[str, Any]:
    """One policy on one stream: a checkpoint per retrain (queries seen, test reward and AIQ, cumulative online
    reward and regret, share of exploratory picks). ``start``: a saved GNN fitted on the seed log (shared by the
    GNN policies of a stream, so they start from the same router)."""
    rng = np.random.default_rng([seed, POLICIES.index(policy)])
    llms = list(bench.llms)
    names = [m.name for m in llms]
    onboard = setup.onboard
    catalog = [m for m in llms if m.name != onboard]
    seed_log = stream.seed_log[stream.seed_log[s.LLM] != onboard] if onboard else stream.seed_log
    name = "linucb" if policy == "linucb" else "graphroute"
    explorer = Explorer(setup.exploration(policy, seed))
    router = _fitted(name, config, seed_log, catalog, explorer, start)
    test_split = next(iter(bench.tests.values()))
    revealed: list[pd.DataFrame] = []
    online_reward = online_regret = explored = 0.0
    joins_at = _joins_at(len(stream.order), setup.retrain_every) if onboard else None
    checkpoints = [_checkpoint(router, test_split, 0, 0.0, 0.0, 0.0, setup.alpha, onboard)]
    for begin in range(0, len(stream.order), setup.retrain_every):
        if joins_at is not None and begin == joins_at:  # the new LLM is onboarded from its description alone
            catalog = llms
            profile = next(m for m in llms if m.name == onboard)
            if isinstance(router, Router):
                router.add_llm(profile)
            else:
                log = pd.concat([seed_log, *revealed], ignore_index=True)
                router = _fitted(name, config, log, catalog, explorer)
        known = {m.name for m in catalog}
        chunk = stream.order[begin : begin + setup.retrain_every]
        index = np.array([truth.position[q] for q in chunk])
        picks, propensity, exploratory = _picks(policy, router, stream, chunk, catalog, llms, rng, setup.alpha)
        rewards = _rewards(truth.truth, index, picks, setup.alpha)
        online_reward += float(rewards.sum())
        online_regret += float((truth.oracle[index] - rewards).sum())
        explored += float(exploratory.sum())
        for q, pick, p in zip(chunk, picks, propensity, strict=True):
            rows = stream.rows[q]
            if policy == FULL:
                revealed.append(rows[rows[s.LLM].isin(known)].assign(**{s.PROPENSITY: 1.0}))
            else:
                revealed.append(rows[rows[s.LLM] == names[pick]].assign(**{s.PROPENSITY: p}))
        log = pd.concat([seed_log, *revealed], ignore_index=True)
        router = _fitted(name, config, log, catalog, explorer)
        seen = begin + len(chunk)
        checkpoints.append(
            _checkpoint(router, test_split, seen, online_reward, online_regret, explored / seen, setup.alpha, onboard)
        )
        logger.info("%s seed %d: %d/%d queries, %s", policy, seed, seen, len(stream.order), checkpoints[-1])
    return {"policy": policy, "seed": seed, "onboard": onboard, "checkpoints": checkpoints}


def _joins_at(n: int, every: int) -> int:
    """Where a mid-stream LLM joins: the first retrain boundary at or past half the stream."""
    return min(range(0, n, every), key=lambda b: (b < n / 2, abs(b - n / 2)))


def _fitted(
    name: str,
    config: RouterConfig,
    log: pd.DataFrame,
    llms: list[LLMProfile],
    explorer: Explorer,
    start: Path | None = None,
) -> BaseRouter[Any]:
    router: BaseRouter[Any] = Router.load(start) if start is not None else ROUTERS[name](config).fit(log, llms)
    router.explorer = explorer  # one budget account across retrains
    return router


def _picks(
    policy: str,
    router: BaseRouter[Any],
    stream: Stream,
    chunk: Sequence[str],
    catalog: Sequence[LLMProfile],
    llms: Sequence[LLMProfile],
    rng: np.random.Generator,
    alpha: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The LLM picked for each query of the chunk (its index in ``llms``; only ``catalog``'s LLMs are routable
    yet), its propensity, and whether it explored."""
    index = {m.name: i for i, m in enumerate(llms)}
    if policy == "uniform":
        picks = np.array([index[catalog[j].name] for j in rng.integers(0, len(catalog), size=len(chunk))])
        return picks, np.full(len(chunk), 1.0 / len(catalog)), np.ones(len(chunk), dtype=bool)
    first = [stream.rows[q].iloc[0] for q in chunk]
    # no user: the reward here is the same for everyone (a user's affinity for an LLM is not in it)
    requests = [RouteRequest(r[s.QUERY], None, r[s.TASK], k=1, alpha=alpha) for r in first]
    recs = [ranked[0] for ranked in router.recommend_many(requests)]
    return (
        np.array([index[r.llm] for r in recs]),
        np.array([r.propensity for r in recs]),
        np.array([r.exploratory for r in recs], dtype=bool),
    )


def _rewards(truth: Truth, index: np.ndarray, picks: np.ndarray, alpha: float) -> np.ndarray:
    return alpha * truth.effect[index, picks] - (1.0 - alpha) * truth.norm_cost[index, picks]


def _checkpoint(
    router: BaseRouter[Any],
    test: pd.DataFrame,
    seen: int,
    online_reward: float,
    online_regret: float,
    explored_share: float,
    alpha: float,
    onboard: str | None = None,
) -> dict[str, float]:
    # evaluation reads predictions, never the explorer: the test set is scored greedily
    score = evaluate({"router": router}, test[test[s.LLM].isin(router.state.llm_names)]).scores["router"]
    out = {
        "queries_seen": seen,
        "test_reward": round(score.reward[alpha], 5),
        "test_aiq": round(score.aiq, 5),
        "online_reward": round(online_reward, 4),
        "regret": round(online_regret, 4),
        "explored_share": round(explored_share, 4),
    }
    if onboard is not None:  # share of the test queries routed (greedily, at alpha) to the LLM onboarded mid-stream
        names = router.state.llm_names
        out["onboarded_share"] = (
            round(float(np.mean(score.choice[alpha] == names.index(onboard))), 4) if onboard in names else 0.0
        )
    return out


def run_online(
    benches: dict[str, Benchmark],
    config: RouterConfig,
    setup: OnlineSetup,
    seeds: Sequence[int] = SEEDS,
    policies: Sequence[str] = POLICIES,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Every policy on every data set and seed; returns the runs and a summary per data set (mean and spread over
    seeds of the final test reward, its share of full-info's, AIQ and cumulative regret)."""
    results: dict[str, Any] = {"setup": setup.__dict__, "sets": {}}
    for dataset, bench in benches.items():
        runs = []
        for seed in seeds:
            stream = Stream.split(bench.train, setup, seed)
            seed_config = config.with_seed(seed)
            chosen = setup
            if setup.onboard == "auto":
                chosen = replace(setup, onboard=best_single(seed_config, stream.seed_log, bench.llms, setup.alpha))
            seed_log = stream.seed_log[stream.seed_log[s.LLM] != chosen.onboard]
            catalog = [m for m in bench.llms if m.name != chosen.onboard]
            with tempfile.TemporaryDirectory() as folder:
                start_path = Path(folder) / "seed-router"
                started = time.perf_counter()
                Router(seed_config).fit(seed_log, catalog).save(start_path)
                logger.info("%s seed %d: seed router in %.0fs", dataset, seed, time.perf_counter() - started)
                truth = stream_truth(stream, seed_config, bench.llms, setup.alpha)
                for policy in policies:
                    begin = time.perf_counter()
                    start = start_path if policy != "linucb" else None
                    run = run_policy(bench, stream, truth, policy, seed, seed_config, chosen, start)
                    run["seconds"] = round(time.perf_counter() - begin, 1)
                    runs.append(run)
        results["sets"][dataset] = {"runs": runs, "summary": summarise(runs, policies)}
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            plot_online(runs, policies, out_dir / f"online_{dataset}.png", dataset)
    return results


def best_single(config: RouterConfig, log: pd.DataFrame, llms: Sequence[LLMProfile], alpha: float) -> str:
    """The LLM with the best mean utility at ``alpha`` on a log: the one whose absence a router would miss most."""
    reference = ROUTERS["best-single"](config).fit(log, llms)
    queries = log.drop_duplicates(s.QUERY)[s.QUERY].tolist()
    return reference.state.llm_names[int(np.argmax(reference.predict_utility(queries, alpha).mean(axis=0)))]


def summarise(runs: Sequence[dict[str, Any]], policies: Sequence[str]) -> list[dict[str, object]]:
    """Per policy, the last checkpoint's figures as mean ± standard deviation over seeds."""
    final = {p: [r["checkpoints"][-1] for r in runs if r["policy"] == p] for p in policies}
    full_ends = {r["seed"]: r["checkpoints"][-1] for r in runs if r["policy"] == FULL}
    full = {seed: end["test_reward"] for seed, end in full_ends.items()}
    full_share = {seed: end.get("onboarded_share") for seed, end in full_ends.items()}
    rows: list[dict[str, object]] = []
    for policy, ends in final.items():
        if not ends:
            continue
        seeds = [r["seed"] for r in runs if r["policy"] == policy]
        share = [e["test_reward"] / full[sd] for e, sd in zip(ends, seeds, strict=True) if full.get(sd)]
        row: dict[str, object] = {"policy": policy}
        onboarded = [e["onboarded_share"] for e in ends if "onboarded_share" in e]
        of_full = [
            100 * e["onboarded_share"] / full_share[sd]
            for e, sd in zip(ends, seeds, strict=True)
            if full_share.get(sd) and "onboarded_share" in e
        ]
        for key, values in (
            ("new LLM's share", onboarded),
            ("% of full-info's share", of_full),
            ("test reward", [e["test_reward"] for e in ends]),
            ("% of full-info", [100 * v for v in share]),
            ("test AIQ", [e["test_aiq"] for e in ends]),
            ("regret", [e["regret"] for e in ends]),
            ("explored", [e["explored_share"] for e in ends]),
        ):
            if values or not key.startswith(("new", "% of full-info's")):
                row[key] = f"{np.mean(values):.4g} ± {np.std(values):.2g}" if values else ""
        rows.append(row)
    return rows


def plot_online(runs: Sequence[dict[str, Any]], policies: Sequence[str], path: Path, title: str) -> None:
    """Test reward and cumulative regret against queries seen, mean over seeds per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for policy in policies:
        mine = [r["checkpoints"] for r in runs if r["policy"] == policy]
        if not mine:
            continue
        x = [c["queries_seen"] for c in mine[0]]
        for ax, key in zip(axes, ("test_reward", "regret"), strict=True):
            values = np.array([[c[key] for c in run] for run in mine])
            ax.plot(x, values.mean(axis=0), marker=".", lw=2.2 if policy == "thompson" else 1.2, label=policy)
            if len(values) > 1:
                ax.fill_between(x, values.min(axis=0), values.max(axis=0), alpha=0.12)
    axes[0].set_ylabel("test reward at alpha (mean over seeds)")
    axes[1].set_ylabel("cumulative regret against the per-query best")
    for ax in axes:
        ax.set_xlabel("streamed queries seen")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_online(results: dict[str, Any]) -> str:
    parts = []
    for dataset, res in results["sets"].items():
        parts.append(f"## {dataset}: end of stream (mean ± sd over seeds)")
        parts.append(format_table(res["summary"]))
    return "\n\n".join(parts)
