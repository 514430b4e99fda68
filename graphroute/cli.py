"""`graphroute` command line: train, eval, bench, export-graph, demo. Errors print one line and exit 2."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from graphroute import progress
from graphroute.config import RouterConfig
from graphroute.errors import GraphRouteError

DEFAULT_CACHE = Path(os.environ.get("GRAPHROUTE_CACHE", Path.home() / ".cache" / "graphroute"))
DEFAULT_DATA = Path(os.environ["GRAPHROUTE_DATA"]) if os.environ.get("GRAPHROUTE_DATA") else None


def _config(args: argparse.Namespace) -> RouterConfig:
    cfg = RouterConfig.from_yaml(args.config) if args.config else RouterConfig()
    updates: dict[str, dict[str, object]] = {"encoder": {"cache_dir": str(args.cache_dir)}}
    if args.encoder:
        updates["encoder"]["kind"] = args.encoder
    if getattr(args, "epochs", None):
        updates["train"] = {"epochs": args.epochs}
    if getattr(args, "seed", None) is not None:
        updates.setdefault("train", {})["seed"] = args.seed
    merged = cfg.model_dump()
    for section, values in updates.items():
        merged[section].update(values)
    return RouterConfig.model_validate(merged)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML router config (see training/configs/base.yaml).")
    p.add_argument("--encoder", choices=["minilm", "hashing"], help="Override the text encoder of the config.")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"Embedding cache folder (default {DEFAULT_CACHE}; env GRAPHROUTE_CACHE).",
    )
    p.add_argument("--seed", type=int, help="Override the training seed.")


def _add_run_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="Folder written by `graphroute train`.")


def _add_log_source(p: argparse.ArgumentParser) -> None:
    """The log, catalog and config options that train and tune share."""
    p.add_argument(
        "logs", help="Interaction log (CSV, Parquet, JSONL) or a feedback store URL (sqlite:///…, postgresql://…)."
    )
    p.add_argument("--llms", type=Path, required=True, help="LLM catalog, YAML or JSON.")
    p.add_argument(
        "--epochs", type=_positive, help="Override the maximum number of epochs (per trial when tuning; at least 1)."
    )
    _add_common(p)


def cmd_train(args: argparse.Namespace) -> int:
    from graphroute import Router, distributed
    from graphroute.data.io import read_catalog, read_interactions

    llms = read_catalog(args.llms)
    router = Router(_config(args))
    if args.feedback:
        from graphroute.data.store import open_store
        from graphroute.replay import fit_with_store

        logs = read_interactions(args.logs, None)  # the store may onboard LLMs the catalog file lacks
        report = fit_with_store(router, logs, llms, open_store(args.feedback))
        print(f"served changes from {args.feedback.split('@')[-1]}: {report.summary()}")
        for reason in report.reasons[:10]:
            print(f"  skipped {reason}")
    else:
        logs = read_interactions(args.logs, llms)
        router.fit(logs, llms)
    team = distributed.current()  # under torchrun, every rank trains and rank 0 saves
    if team.is_main:
        router.save(args.out)
        h = router.history_
        print(f"trained on {len(logs)} rows in {team.world} process(es); best epoch {h.best_epoch}, ", end="")
        print(f"validation loss {h.best_val_loss:.4f}")
        print(f"saved to {args.out}")
    distributed.leave()
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from graphroute import Router
    from graphroute.base import BaseRouter
    from graphroute.baselines import ROUTERS
    from graphroute.bench.report import dump_json, format_table, plot_frontiers
    from graphroute.data.io import read_interactions
    from graphroute.evaluation import evaluate
    from graphroute.schema import PROPENSITY

    router = Router.load(args.run_dir)
    test = read_interactions(args.logs, router.state.llms)
    routers: dict[str, BaseRouter] = {"graphroute": router}
    if args.baselines:
        if args.train_logs is None:
            raise GraphRouteError("--baselines needs --train-logs (the log the router was trained on)")
        train = read_interactions(args.train_logs, router.state.llms)
        for name in args.baselines:
            routers[name] = ROUTERS[name](router.config).fit(train, router.state.llms)
    if PROPENSITY in test.columns and test[PROPENSITY].notna().any():
        from graphroute.ope import estimates_table, evaluate_off_policy

        alpha = router.config.policy.alpha if args.alpha is None else args.alpha
        rows = estimates_table(evaluate_off_policy(routers, test, alpha))
        print(f"off-policy estimates of mean reward per query at alpha {alpha} (the log's propensities):")
        print(format_table(rows))
        if args.json:
            dump_json(rows, args.json)
        return 0
    ev = evaluate(routers, test)
    print(format_table(ev.table_rows()))
    png = Path(args.png or Path(args.run_dir) / "frontier.png")
    plot_frontiers(ev, png, f"{args.logs}: quality vs cost")
    print(f"frontier plot: {png}")
    if args.json:
        dump_json(ev.table_rows(), args.json)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from graphroute.bench.report import dump_json

    out = Path(args.out)
    needed = {
        "routing": args.datasets,
        "small-logs": args.datasets,
        "held-out-tasks": args.datasets,
        "online": args.datasets,
        "new-llm": ["llmrouter-9llm", *args.datasets],
        "service": [],
        "scale": [],
        "embedding": [],
    }.get(args.protocol, ["llmrouter-9llm"])
    root = Path(args.data_root) if args.data_root else None
    if needed and root is None:
        raise GraphRouteError(
            f"bench {args.protocol}: give --data-root or set GRAPHROUTE_DATA (a folder holding {needed[0]}/)"
        )
    missing = [d for d in needed if root is not None and not (root / d).is_dir()]
    if missing:
        raise GraphRouteError(f"bench {args.protocol}: benchmark set(s) {', '.join(missing)} not found under {root}")
    out.mkdir(parents=True, exist_ok=True)
    results: Any
    if args.protocol == "routing":
        from graphroute.bench.routing import format_results, run_routing

        assert root is not None
        results = run_routing(root, _config(args), args.datasets, args.routers, out, args.sparse)
        print(format_results(results))
    elif args.protocol == "small-logs":
        from graphroute.bench.routing import SMALL_LOG_SEEDS, format_small_logs, run_small_logs

        assert root is not None
        seeds = args.seeds or SMALL_LOG_SEEDS
        results = run_small_logs(root, _config(args), args.datasets, args.routers, args.size, seeds)
        print(format_small_logs(results))
    elif args.protocol == "held-out-tasks":
        from graphroute.bench.routing import format_held_out, run_held_out_tasks

        assert root is not None
        results = run_held_out_tasks(root, _config(args), args.datasets, args.routers)
        print(format_held_out(results))
    elif args.protocol == "users":
        from graphroute.bench.users import format_users, plot_users, run_users

        assert root is not None
        results = run_users(root, _config(args), n_users=args.users)
        print(format_users(results))
        plot_users(results, out / "users_reward_vs_k.png")
    elif args.protocol == "service":
        from graphroute.bench.service import format_service, run_service

        results = run_service(encoder=_config(args).encoder if args.config else None)
        print(format_service(results))
    elif args.protocol == "embedding":
        from graphroute.bench.embedding import format_embedding, run_embedding

        results = run_embedding(args.cache_dir)
        print(format_embedding(results))
    elif args.protocol == "scale":
        from graphroute.bench.scale import format_scale, plot_scale, run_scale

        results = run_scale(args.sizes)
        print(format_scale(results))
        plot_scale(results, out / "scale.png")
    elif args.protocol == "online":
        from graphroute.bench.online import POLICIES, SEEDS, OnlineSetup, demo_benchmark, format_online, run_online
        from graphroute.bench.routing import DATASETS

        assert root is not None
        benches = {name: DATASETS[name](root / name) for name in args.datasets} | {"demo": demo_benchmark()}
        setup = OnlineSetup(
            retrain_every=args.retrain_every, max_stream=args.max_stream, budget=args.explore_budget,
            onboard=args.onboard,
        )  # fmt: skip
        seeds = args.seeds or SEEDS
        results = run_online(benches, _config(args), setup, seeds, args.policies or POLICIES, out_dir=out)
        print(format_online(results))
    else:
        from graphroute.bench.new_llm import format_new_llm, plot_new_llm, run_new_llm

        assert root is not None
        results = run_new_llm(root, _config(args), args.datasets)
        print(format_new_llm(results))
        plot_new_llm(results, out / "new_llm_reward_vs_probes.png")
    print(dump_json(results, out / f"{args.protocol}.json"))
    return 0


def cmd_learn(args: argparse.Namespace) -> int:
    import time
    from dataclasses import asdict

    from graphroute.data.io import read_catalog, read_interactions
    from graphroute.data.store import open_store
    from graphroute.learning import CURRENT, learn_once, new_feedback_rows, served_cursor

    if not args.store:
        raise GraphRouteError("learn: give --store or set GRAPHROUTE_STORE_URL (the event store the server writes)")
    store = open_store(args.store)
    llms = read_catalog(args.llms)
    logs = read_interactions(args.logs, None)  # the store may onboard LLMs the catalog file lacks
    root, config = Path(args.root), _config(args)
    trained_after = served_cursor(root, store)
    while True:
        if not (root / CURRENT).exists() or new_feedback_rows(store, trained_after) >= args.every:
            decision = learn_once(root, logs, llms, store, config, args.holdout, args.min_held_out)
            print(json.dumps(asdict(decision)), flush=True)
            trained_after = decision.store_event
            if decision.swapped and args.server:
                _reload(args.server, os.environ.get("GRAPHROUTE_API_KEY"))
        if args.once:
            return 0
        time.sleep(args.poll)


def _reload(server: str, key: str | None) -> None:
    """Ask a running server to load ``current`` again (it keeps serving the old router until the new one is up)."""
    import httpx

    try:
        answer = httpx.post(f"{server.rstrip('/')}/v1/admin/reload", headers={"x-api-key": key or ""}, timeout=30)
    except httpx.HTTPError as exc:
        raise GraphRouteError(f"learn: server {server} unreachable for the reload: {type(exc).__name__}") from exc
    if answer.status_code >= 300:
        raise GraphRouteError(f"learn: server {server} refused the reload ({answer.status_code}: {answer.text[:200]})")


def cmd_explain(args: argparse.Namespace) -> int:
    from graphroute import Router

    router = Router.load(args.run_dir)
    explanation = router.explain(args.query, user_id=args.user, task=args.task, alpha=args.alpha, k=args.k)
    print(json.dumps(explanation.to_dict(), indent=2) if args.json else explanation.table())
    return 0


def cmd_export_graph(args: argparse.Namespace) -> int:
    import networkx as nx

    from graphroute import Router
    from graphroute.graph.export import to_networkx

    router = Router.load(args.run_dir)
    graph = to_networkx(router.state.graph, router.state.node_names(), router.state.features.log_cost)
    for _, _, data in graph.edges(data=True):
        data.update({k: float(v) for k, v in data.items() if k != "relation"})
    if args.format == "graphml":
        flat = nx.relabel_nodes(graph, {n: f"{n[0]}:{n[1]}" for n in graph.nodes})
        nx.write_graphml(flat, args.output)
    else:
        payload = nx.node_link_data(graph, edges="edges")
        Path(args.output).write_text(json.dumps(payload, default=str))
    print(f"wrote {graph.number_of_nodes()} nodes and {graph.number_of_edges()} edges to {args.output}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    run_demo(Path(args.out), _config(args), n_queries=args.queries)
    return 0


DEMO_QUERIES = (
    "Write a Python function that returns the median of a list of integers.",
    "Solve for x: 7x + 12 = 40. Explain your reasoning.",
    "Translate into German: 'We will visit the museum tomorrow.'",
)
DEMO_BASELINES = ("random", "cheapest", "best-single", "task-best", "knn", "mlp")


def run_demo(out: Path, config: RouterConfig, n_queries: int = 3000, seed: int = 0) -> None:
    """Generate logs into ``out``, train and save a router, evaluate it against baselines, print a few picks."""
    from graphroute.baselines import ROUTERS
    from graphroute.bench.report import format_table, plot_frontiers
    from graphroute.data.io import write_catalog, write_interactions
    from graphroute.data.synthetic import make_demo_logs
    from graphroute.evaluation import evaluate
    from graphroute.router import Router

    out.mkdir(parents=True, exist_ok=True)
    logs, llms = make_demo_logs(n_queries=n_queries, seed=seed)
    test, _ = make_demo_logs(n_queries=max(n_queries // 5, 50), per_query=None, seed=seed + 1)
    write_interactions(logs, out / "logs.parquet")
    write_interactions(test, out / "test.parquet")
    write_catalog(llms, out / "llms.yaml")
    print(
        f"generated {len(logs)} log rows ({logs['query'].nunique()} queries, {logs['user_id'].nunique()} users)"
        f" and a dense test log of {test['query'].nunique()} queries in {out}"
    )
    router = Router(config).fit(logs, llms)
    router.save(out / "router")
    print(f"trained: best epoch {router.history_.best_epoch}; saved to {out / 'router'}")
    routers = {"graphroute": router, **{n: ROUTERS[n](config).fit(logs, llms) for n in DEMO_BASELINES}}
    ev = evaluate(routers, test)
    print(format_table(ev.table_rows(), ["router", "quality@1.0", "reward@1.0", "reward@0.5", "reward@0.2", "aiq"]))
    plot_frontiers(ev, out / "frontier.png", "demo: quality vs cost")
    print(f"frontier plot: {out / 'frontier.png'}")
    users = sorted(logs["user_id"].unique())[:3]
    for query in DEMO_QUERIES:
        print(f"\nquery: {query}")
        for user in users:
            recs = router.recommend(query, user_id=user, k=3)
            picks = ", ".join(f"{r.llm} (effect {r.effect:.2f}, ${r.cost:.5f})" for r in recs)
            print(f"  {user}: {picks}")


def cmd_tune(args: argparse.Namespace) -> int:
    from graphroute.data.io import read_catalog, read_interactions
    from graphroute.tuning import best_config, tune, write_config

    llms = read_catalog(args.llms)
    logs = read_interactions(args.logs, llms)
    storage = args.storage or f"sqlite:///{Path(args.output).parent / 'optuna.sqlite'}"
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    base = _config(args)
    study = tune(logs, llms, base, args.trials, storage, args.study, seed=args.sampler_seed)
    write_config(best_config(study, base), args.output)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    print(
        f"study {args.study!r}: {len(study.trials)} trials ({len(done)} complete); best validation loss "
        f"{study.best_value:.4f} with {study.best_params}"
    )
    print(f"best config written to {args.output} (use: graphroute train … --config {args.output})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    try:
        from serving.app import create_app
        from serving.settings import ServeSettings
    except ImportError as exc:
        raise GraphRouteError(f"serving needs the [serve] extra: {exc}") from exc
    from pydantic import ValidationError

    from graphroute._serialization import check_saved
    from graphroute.data.store import open_store

    check_saved(Path(args.run_dir))  # a broken folder is one line here, not a traceback from the server's start-up
    try:
        overrides: dict[str, Any] = {"store_url": args.store} if args.store else {}
        if args.explore:
            overrides["exploration"] = {"method": args.explore, "budget": args.explore_budget}
        settings = ServeSettings(router_dir=args.run_dir, **overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "settings"
        raise GraphRouteError(f"GRAPHROUTE_{field.upper()}: {error['msg']} (value {error.get('input')!r})") from exc
    open_store(settings.store_location()).close()  # an unusable store URL fails before the server starts
    logging.getLogger("serving").setLevel(logging.INFO)  # start-up: the store, what was replayed, the version
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info", access_log=args.access_log)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error shape: one line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _verbosity(parser: argparse.ArgumentParser, default: object) -> None:
    """-v / -q, accepted before or after the subcommand (the subcommand's copy does not reset the main one's)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", default=default, help="Log what happens (INFO).")
    group.add_argument("-q", "--quiet", action="store_true", default=default, help="Only errors; no progress bars.")


def _positive(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1 (value {text!r})")
    return value


def _unit(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1] (value {text!r})")
    return value


def _port(text: str) -> int:
    value = _positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number up to 65535 (value {text!r})")
    return value


def _folder(text: str) -> Path:
    """A folder to write into: created if missing; an existing file is refused."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder")
    return path


def _output_file(text: str) -> Path:
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    return path


def _version() -> str:
    import platform

    from graphroute._version import __version__

    return f"graphroute {__version__} (Python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="graphroute", description="Personalized LLM routing with a GNN.")
    parser.add_argument("--version", action="version", version=_version())
    _verbosity(parser, False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description or help)
        _verbosity(p, argparse.SUPPRESS)
        return p

    from graphroute.baselines import ROUTERS
    from graphroute.bench.routing import DATASETS

    p = command(
        "train",
        "Train a router on a log and save it as a folder.",
        "Fit the GNN router on an interaction log (CSV, Parquet or JSONL) and an LLM catalog (YAML or JSON); a "
        "validation split is carved from the log. Progress is shown on a terminal.",
    )
    _add_log_source(p)
    p.add_argument("--out", type=_folder, required=True, help="Folder to save the router to (created if missing).")
    p.add_argument(
        "--feedback",
        metavar="STORE_URL",
        help="Also train on what a served router learned: the feedback, onboarded LLMs (with their probes) and "
        "enable states in this event store (sqlite:///… or postgresql://…). The router remembers the store's "
        "last event, so serving it replays only newer ones.",
    )
    p.set_defaults(func=cmd_train)

    p = command(
        "eval",
        "Score a saved router on a test log (table, frontier PNG, JSON).",
        "Quality, cost, reward at alpha 1 / 0.5 / 0.2, gap recovered and AIQ, beside the oracle; optional "
        "baselines fitted on the router's training log. A log with a propensity column (what a router logged while "
        "exploring: one outcome per query) gets off-policy estimates instead: IPS, self-normalised IPS and doubly "
        "robust, with 95 % bootstrap intervals.",
    )
    _add_run_dir(p)
    p.add_argument(
        "logs",
        metavar="TEST_LOGS",
        help="Test log (each query should list several LLMs), or a log with propensities: a file or an event store "
        "URL (sqlite:///…, postgresql://…).",
    )
    baselines = [name for name in ROUTERS if name != "graphroute"]
    p.add_argument("--baselines", nargs="*", default=[], choices=baselines, metavar="NAME", help=", ".join(baselines))
    p.add_argument("--train-logs", type=Path, help="Training log for the baselines (needed with --baselines).")
    p.add_argument(
        "--alpha",
        type=_unit,
        help="Trade-off of the off-policy estimates (a log with a propensity column); default: the router config's.",
    )
    p.add_argument("--png", type=_output_file, help="Frontier plot path (default RUN_DIR/frontier.png).")
    p.add_argument("--json", type=_output_file, help="Also write the table as JSON here.")
    _add_common(p)
    p.set_defaults(func=cmd_eval)

    p = command(
        "bench",
        "Run a benchmark (JSON, table and plots).",
        "routing (P1): llmrouter-9llm and routerdc-7llm (in and out of distribution), the GNN and every baseline, "
        "paired-bootstrap intervals. held-out-tasks: unseen tasks from the train logs alone, each task held out in "
        "turn. small-logs: every router fitted on --size random train queries per seed (default 200, seeds 0-4), "
        "against the best single LLM. users (P3): simulated users on llmrouter-9llm, personalised vs user-agnostic "
        "routing, new users from "
        "k = 0, 1, 3, 5, 10 interactions. new-llm (P2): each LLM held out of training and onboarded from its "
        "description, then with 10 and 50 probes. online (P6): a simulated deployment that sees only its own choices' "
        "outcomes, from a 10 % seed log, retrained every --retrain-every queries: greedy, epsilon, Thompson, UCB, "
        "LinUCB, uniform logging and full information, --seeds, on the sets and the demo logs. "
        "service (P4): `graphroute serve` on 127.0.0.1 under single and "
        "16 concurrent clients, beside bare embedding, and with feedback. embedding: query-embedding speed of each "
        "runtime (torch, onnx, onnx-int8). scale (P5): generated logs of --sizes interactions; read, graph build, "
        "one epoch, inference, peak RSS, a plot. Benchmark sets are read from --data-root (env GRAPHROUTE_DATA).",
    )
    protocols = [
        "routing",
        "small-logs",
        "held-out-tasks",
        "users",
        "new-llm",
        "online",
        "service",
        "embedding",
        "scale",
    ]
    p.add_argument("protocol", choices=protocols, help="The benchmark to run: " + ", ".join(protocols) + ".")
    p.add_argument(
        "--sizes", nargs="*", type=_positive, default=[10_000, 100_000, 1_000_000], help="Log sizes (scale)."
    )
    p.add_argument("--users", type=_positive, default=200, help="Simulated users (users; default 200).")
    p.add_argument(
        "--sparse",
        nargs="*",
        type=_positive,
        default=[],
        metavar="K",
        help="routing: also train on each set's train log with only K random outcomes per query (bandit-style "
        "logs; e.g. --sparse 1 2); test logs stay dense.",
    )
    p.add_argument(
        "--seeds", nargs="*", type=int, help="online: seeds (default 0 1 2); small-logs: seeds (default 0 1 2 3 4)."
    )
    p.add_argument(
        "--size", type=_positive, default=200, metavar="N", help="small-logs: train queries per fit (default 200)."
    )
    p.add_argument(
        "--retrain-every", type=_positive, default=500, metavar="N", help="online: retrain after N queries (500)."
    )
    p.add_argument(
        "--max-stream", type=_positive, metavar="N", help="online: stream at most N queries (default: every one)."
    )
    p.add_argument(
        "--explore-budget",
        type=_unit,
        default=0.03,
        metavar="B",
        help="online: utility budget of the exploring policies (default 0.03).",
    )
    p.add_argument(
        "--policies",
        nargs="*",
        choices=["full-info", "greedy", "epsilon", "thompson", "ucb", "linucb", "uniform"],
        help="online: the policies to run (default: all).",
    )
    p.add_argument(
        "--onboard",
        metavar="LLM",
        help="online: leave this LLM out of the seed log and the catalog and onboard it by description halfway "
        "through the stream ('auto': the best single LLM at alpha 0.5 on the seed log); reports its share of "
        "test routes beside full information's.",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        default=DEFAULT_DATA,
        help="Folder holding the benchmark sets (llmrouter-9llm/, routerdc-7llm/); default: env GRAPHROUTE_DATA.",
    )
    p.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS), help="Sets to run on.")
    p.add_argument("--routers", nargs="*", default=list(ROUTERS), choices=list(ROUTERS), help="Routers to compare.")
    p.add_argument("--out", type=_folder, default=Path("runs/bench"), help="Folder for JSON and PNGs (runs/bench).")
    _add_common(p)
    p.set_defaults(func=cmd_bench)

    p = command(
        "learn",
        "Keep a served router learning: retrain from the base log and the event store once N new outcomes have "
        "arrived, and swap in the new router only when it is not worse.",
        "ROOT holds the routers (router-1, router-2, …) and `current`, a link to the one to serve: run "
        "`graphroute serve ROOT/current`. Each round trains a candidate on LOGS plus the store, less the newest "
        "outcomes that carry a propensity (routing with exploration gives them one); both routers' rewards on "
        "those are estimated off-policy (doubly robust), and the candidate is linked as current only when its "
        "estimate is not below the served router's beyond the noise (paired 95 % interval); then the server at "
        "--server is told to reload. Every "
        "decision is a JSON line on stdout and in ROOT/learn.jsonl. With no router in ROOT, the first is trained "
        "on everything.",
    )
    p.add_argument("root", type=Path, metavar="ROOT", help="Deployment folder (created if missing).")
    p.add_argument("logs", type=Path, metavar="LOGS", help="Base interaction log (CSV, JSONL or Parquet).")
    p.add_argument("--llms", type=Path, required=True, help="LLM catalog, YAML or JSON.")
    p.add_argument(
        "--store",
        default=os.environ.get("GRAPHROUTE_STORE_URL"),
        metavar="URL",
        help="The event store the server writes (default: env GRAPHROUTE_STORE_URL).",
    )
    p.add_argument("--every", type=_positive, default=1000, metavar="N", help="Retrain after N new outcomes (1000).")
    p.add_argument("--holdout", type=_unit, default=0.2, help="Share of the new outcomes held out for the check (0.2).")
    p.add_argument("--min-held-out", type=_positive, default=30, help="Fewest held-out outcomes to decide on (30).")
    p.add_argument("--poll", type=float, default=30.0, help="Seconds between looks at the store (30).")
    p.add_argument("--once", action="store_true", help="Look once (train if due) and exit.")
    p.add_argument("--server", metavar="URL", help="Server to reload after a swap (write key: GRAPHROUTE_API_KEY).")
    _add_common(p)
    p.set_defaults(func=cmd_learn)

    p = command(
        "serve",
        "Serve a saved router over HTTP (FastAPI; OpenAPI at /docs).",
        "Environment: GRAPHROUTE_API_KEY (write endpoints), GRAPHROUTE_READ_API_KEY (optional, read endpoints), "
        "GRAPHROUTE_STORE_URL (the event store, as --store); every setting is in docs/serving.md. Every change "
        "made while serving (feedback, onboarded LLMs, disabled LLMs) is an event in the store; start-up and "
        "reload replay the events the router does not include yet.",
    )
    _add_run_dir(p)
    p.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
    p.add_argument("--port", type=_port, default=8000, help="Port to listen on (default 8000).")
    p.add_argument(
        "--access-log",
        action="store_true",
        help="Log every request (off by default: request counts and latencies are in /metrics).",
    )
    p.add_argument(
        "--store",
        metavar="URL",
        help="Event store: postgresql://… (replicas share one), sqlite:///… or a file path; default "
        "graphroute-events.sqlite beside RUN_DIR (in its parent folder), so a retrain into a new folder keeps it.",
    )
    p.add_argument(
        "--explore",
        choices=["none", "epsilon", "thompson", "ucb"],
        help="Explore while routing (route answers then carry each choice's propensity, and feedback naming the "
        "request stores it); default: the router config's exploration (GRAPHROUTE_EXPLORATION).",
    )
    p.add_argument(
        "--explore-budget",
        type=_unit,
        default=0.02,
        metavar="B",
        help="With --explore: most predicted utility given up per request, on average (default 0.02).",
    )
    p.set_defaults(func=cmd_serve)

    p = command(
        "tune",
        "Search hyperparameters with Optuna on the validation split.",
        "Each trial trains on the log and is scored by its validation loss (a split carved from the log; never a "
        "test set), with median pruning. Several workers on several machines can share one study through "
        "--storage (any SQLAlchemy URL, e.g. postgresql://…).",
    )
    _add_log_source(p)
    p.add_argument("--trials", type=_positive, default=20, help="Trials this worker runs (default 20).")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///<folder of --output>/optuna.sqlite).")
    p.add_argument("--study", default="graphroute", help="Study name shared by the workers (default graphroute).")
    p.add_argument("--sampler-seed", type=int, help="Seed of this worker's sampler (leave unset with several workers).")
    p.add_argument(
        "--output",
        type=_output_file,
        default=Path("training/configs/best.yaml"),
        help="Where the best config goes, for `graphroute train --config` (default training/configs/best.yaml).",
    )
    p.set_defaults(func=cmd_tune)

    p = command(
        "explain",
        "Why a saved router ranks the LLMs as it does for one query.",
        "Each LLM's utility as quality + cost + the user's affinity, its effect logit split into the evidence it "
        "came from (similar past queries, same-task neighbours, the task, the user, overall, residual), the task "
        "the query was matched to, and the most similar past queries with their logged outcomes.",
    )
    _add_run_dir(p)
    p.add_argument("query", metavar="QUERY", help="The query to route.")
    p.add_argument("--user", help="Who asks (unknown or absent: cold start).")
    p.add_argument("--task", help="Task label (absent: inferred from the query).")
    p.add_argument("--alpha", type=_unit, help="Trade-off in [0, 1] (absent: the user's own).")
    p.add_argument("--k", type=_positive, help="Show only the k best LLMs (default: all).")
    p.add_argument("--json", action="store_true", help="Print the explanation as JSON instead of a table.")
    p.set_defaults(func=cmd_explain)

    p = command(
        "export-graph",
        "Export a saved router's graph to networkx JSON or GraphML.",
        "Nodes carry their type and name (query nodes their text), outcome edges effect, chosen and cost in USD; "
        "for networkx, Gephi or yEd.",
    )
    _add_run_dir(p)
    p.add_argument("--output", type=_output_file, required=True, help="File to write (graph.json, graph.graphml).")
    p.add_argument("--format", choices=["json", "graphml"], default="json", help="node-link JSON (default) or GraphML.")
    p.set_defaults(func=cmd_export_graph)

    p = command("demo", "Generate demo logs, train, evaluate against baselines and print recommendations.")
    p.add_argument("--out", type=_folder, default=Path("runs/demo"), help="Folder for logs, router and plots.")
    p.add_argument(
        "--queries",
        type=_positive,
        default=3000,
        help="Queries to draw from the demo templates; repeats are dropped, so fewer distinct queries come out "
        "(3000 gives about 1,900).",
    )
    _add_common(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if _command(sys.argv[1:] if argv is None else argv) == "serve":
        # torch is not loaded yet, so this reaches its OpenMP runtime: workers spin 30k rounds after each
        # operation (about what back-to-back operations of one forward need), then sleep, where libgomp's default
        # of 300k keeps both cores spinning between requests and starves the event loop (with feedback under
        # load: 1.6 → 1.0 cores of server CPU); sleeping at once costs a MiniLM route 16 → 20 ms
        if "OMP_WAIT_POLICY" not in os.environ:
            os.environ.setdefault("GOMP_SPINCOUNT", "30000")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("graphroute").setLevel(
        logging.ERROR if args.quiet else logging.INFO if args.verbose else logging.WARNING
    )
    progress.enable(not args.quiet and (args.verbose or sys.stderr.isatty()))
    try:
        return int(args.func(args))
    except GraphRouteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


if __name__ == "__main__":
    sys.exit(main())
