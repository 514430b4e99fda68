from __future__ import annotations

import numpy as np
import torch

from graphroute import Router
from graphroute import schema as s
from graphroute.state import attach_batch

QUERIES = [
    "Write a SQL query that selects the unique rows from table t12.",
    "Who wrote the novel about the whale?",
    "Translate into Spanish: 'My letter arrived late.'",
]


@torch.no_grad()
def full_graph_predictions(router: Router, queries: list[str], users: list[str]) -> np.ndarray:
    """The reference path: attach the queries to the whole graph and run the model on all of it."""
    batch = router.prepare(queries, None, users)
    st = router.state
    graph, new = attach_batch(st, st.graph, st.tables.queries.emb, batch, router.config.graph.k_neighbors)
    n, n_llms = len(queries), len(router.state.llms)
    logit, _ = router.state.model.eval()(
        graph.x_dict,
        graph.edge_index_dict,
        graph.collect("edge_attr"),
        graph[s.ANSWERED_BY].user,
        graph[s.QUERY_NODE].task,
        new.repeat_interleave(n_llms),
        torch.arange(n_llms).repeat(n),
        torch.as_tensor(st.user_index(batch.user_ids)).repeat_interleave(n_llms),
        torch.as_tensor(st.features.cost_z(batch.base_cost).reshape(-1), dtype=torch.float32),
    )
    effect = torch.sigmoid(logit).view(n, n_llms).numpy().astype(float)
    # the fitted fallback applies after the model in both paths
    st.fallback.apply(effect, st.llm_names, st.task_index(batch.tasks, batch.emb), st.task_names)
    return effect


def test_cached_inference_equals_the_full_graph_pass(fitted_router: Router) -> None:
    users = ["user001", "nobody", "user005"]
    cached, _ = fitted_router.predict_outcomes(QUERIES, user_ids=users)
    np.testing.assert_allclose(cached, full_graph_predictions(fitted_router, QUERIES, users), atol=1e-5)


def test_cache_follows_graph_changes(fitted_router: Router, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fitted_router.save(tmp_path / "r")
    router = Router.load(tmp_path / "r")
    router.predict_outcomes(QUERIES)
    router.update_user(
        "fresh",
        [
            {"query": QUERIES[1], "llm": "tiny-fast", "effect": 1.0, "chosen": True},
            {"query": QUERIES[1], "llm": "reasoner-405b", "effect": 0.0, "chosen": False},
        ],
    )
    after, _ = router.predict_outcomes(QUERIES, user_ids=["fresh"] * 3)
    np.testing.assert_allclose(after, full_graph_predictions(router, QUERIES, ["fresh"] * 3), atol=1e-5)
