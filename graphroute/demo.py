"""The main job of the README: generate demo logs, train, evaluate, and print recommendations."""

from __future__ import annotations

import logging
from pathlib import Path

from graphroute.config import RouterConfig

logger = logging.getLogger(__name__)
DEMO_QUERIES = (
    "Write a Python function that returns the median of a list of integers.",
    "Solve for x: 7x + 12 = 40. Explain your reasoning.",
    "Translate into German: 'We will visit the museum tomorrow.'",
)
DEMO_BASELINES = ("random", "cheapest", "best-single", "task-best", "knn", "mlp")


def run_demo(out: Path, config: RouterConfig, n_queries: int = 3000, seed: int = 0) -> dict[str, object]:
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
    print(f"generated {len(logs)} log rows ({logs['query'].nunique()} queries, {logs['user_id'].nunique()} users)"
          f" and a dense test log of {test['query'].nunique()} queries in {out}")
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
    return {"rows": ev.table_rows()}
