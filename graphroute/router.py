"""Router: the GNN router facade, the class most users touch."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from graphroute import schema as s
from graphroute.base import BaseRouter
from graphroute.config import RouterConfig
from graphroute.data.tables import LogTables, QueryBatch
from graphroute.encoders import TextEncoder
from graphroute.events import EventCursor
from graphroute.features import llm_features, query_features, task_features, user_features
from graphroute.graph.builder import attach_queries, build_graph
from graphroute.graph.knn import nearest_neighbors
from graphroute.inference import InferenceCache
from graphroute.nn.model import RouterGNN
from graphroute.onboarding import OnboardingMixin
from graphroute.training import Labels, TrainResult, fit_model

logger = logging.getLogger(__name__)
PREDICT_CHUNK = 1024
# a task's members' similarities to its centroid, kept at these quantiles, place a query of an unseen task among
# them; at FULL_TRUST_RANK (as typical as the median member) it borrows the known task's table in full
MEMBER_QUANTILES = np.linspace(0.0, 1.0, 21)
FULL_TRUST_RANK = 0.5
COST_Z_LIMIT = 12.0  # standardised log costs beyond this are clipped (features and predictions)


class Router(OnboardingMixin, BaseRouter):
    """Inductive GNN router: predicts effect and cost per (user, query, LLM) and routes at any trade-off.

    Example:
        >>> from graphroute.data.synthetic import make_demo_logs
        >>> from graphroute.config import RouterConfig
        >>> logs, llms = make_demo_logs(n_queries=120, seed=0)
        >>> cfg = RouterConfig(encoder={"kind": "hashing"}, train={"epochs": 2})
        >>> router = Router(cfg).fit(logs, llms)
        >>> len(router.recommend("Solve 2 + 2", k=2))
        2
    """

    def __init__(
        self,
        config: RouterConfig | None = None,
        *,
        encoder: TextEncoder | None = None,
        callback: Callable[[int, dict[str, float]], None] | None = None,
    ) -> None:
        """``callback(epoch, losses)`` is called after each epoch (progress, tuning prunes)."""
        super().__init__(config, encoder=encoder)
        self.callback = callback

    # ----- fit -----
    def _fit_tasks(self, train: LogTables) -> None:
        """Task centroids (every router), and each task's members' similarities to its centroid at
        ``MEMBER_QUANTILES``, which place a query of an unseen task among them (``task_trust``)."""
        super()._fit_tasks(train)
        index = {t: i for i, t in enumerate(self.task_names_)}
        rows = np.array([index[str(t)] for t in train.queries.tasks], dtype=np.int64)
        own = np.einsum("qd,qd->q", train.queries.emb, self.task_centroids_[rows])
        self.task_member_sims_ = np.stack(
            [np.quantile(own[rows == i], MEMBER_QUANTILES) for i in range(len(self.task_names_))]
        ).astype(np.float32)

    def task_trust(self, emb: np.ndarray, task: np.ndarray) -> np.ndarray:
        """How far a query of an unseen task may lean on the known task it was matched to, in [0, 1].

        1 when the query is at least as close to that task's centroid as the task's median member; falling to 0
        as it nears the least typical members. A new task that resembles a known one (ceval and cmmlu) then
        borrows its table, and one that resembles none (mmlu among llmrouter's other tasks, matched to
        commonsense_qa) does not. Shapes: emb (N, D), task (N,) → (N,).
        """
        sims = np.einsum("nd,nd->n", emb, self.task_centroids_[task])
        rank = np.zeros(len(sims))
        for t in np.unique(task):
            rows = task == t
            rank[rows] = np.interp(sims[rows], self.task_member_sims_[t], MEMBER_QUANTILES)
        return np.clip(rank / FULL_TRUST_RANK, 0.0, 1.0)

    def _fit(self, train: LogTables, val: LogTables) -> None:
        with self._timed("graph"):
            everything = pd.concat([train.frame, val.frame])
            log_cost = np.log(np.maximum(train.frame[s.COST].to_numpy(dtype=float), 1e-12))
            self.log_cost_stats_ = (float(log_cost.mean()), float(max(log_cost.std(), 1e-6)))
            self.user_x_ = user_features(everything, self.user_ids_, self._cost_z(everything[s.COST].to_numpy()))
            del everything
            self.llm_x_ = llm_features(self.llms_, self.encoder_)
            self.task_x_ = task_features(self.task_names_, self.task_centroids_, self.encoder_)
            graph = self._graph(train)
            val_graph, new = self._attach(graph, train.queries.emb, val.queries)
        with self._timed("train"):
            self._train(graph, val_graph, train, val, new)
        del graph, val_graph  # the reference graph is rebuilt below; drop the training graphs first
        with self._timed("finish"):
            self.tables_ = train.concat(val)  # validation queries become neighbours once selection is over
            self.graph_ = self._graph(self.tables_, self._neighbors())
            self.user_prefs_, self.probe_maps_ = {}, {}
            self.clear_pending()
            self.events_cursor_: EventCursor | None = None
            self._fit_preferences(self.user_ids_)

    def _train(
        self, graph: HeteroData, val_graph: HeteroData, train: LogTables, val: LogTables, new: torch.Tensor
    ) -> None:
        import torch_geometric

        torch_geometric.seed_everything(self.config.train.seed)  # the initial weights are part of the seed
        m = self.config.model
        self.model_shape_: dict[str, Any] = {
            "in_channels": {t: int(graph[t].x.size(1)) for t in graph.node_types},
            "edge_dims": {"|".join(et): d for et, d in s.EDGE_ATTR_DIMS.items()},
            "kwargs": {"hidden_channels": m.hidden_channels, "num_layers": m.num_layers, "dropout": m.dropout},
        }
        self.model_ = RouterGNN(self.model_shape_["in_channels"], s.EDGE_ATTR_DIMS, **self.model_shape_["kwargs"])
        self.history_: TrainResult = fit_model(
            self.model_,
            graph,
            self._labels(train),
            val_graph,
            self._labels(val, new),
            self.config.train,
            callback=self.callback,
        )

    @property
    def ref_emb_(self) -> np.ndarray:
        """Embeddings of the reference queries (the graph's query nodes), the pool new queries link to."""
        return self.tables_.queries.emb

    def _cost_z(self, cost: np.ndarray) -> np.ndarray:
        """Standardised log cost, clipped: a log whose costs are all alike has a tiny spread, and one odd price
        must not become a feature a thousand deviations wide."""
        mu, sd = self.log_cost_stats_
        z = (np.log(np.maximum(np.asarray(cost, dtype=float), 1e-12)) - mu) / sd
        return np.clip(z, -COST_Z_LIMIT, COST_Z_LIMIT)

    def _user_index(self, user_ids: Sequence[str]) -> np.ndarray:
        index = {u: i for i, u in enumerate(self.user_ids_)}
        cold = len(self.user_ids_)
        return np.array([index.get(u, cold) for u in user_ids], dtype=np.int64)

    def _graph(self, tables: LogTables, neighbors: tuple[np.ndarray, np.ndarray] | None = None) -> object:
        f = tables.frame
        outcomes = {
            "q": f["q"].to_numpy(),
            "l": f["l"].to_numpy(),
            "u": self._user_index(f[s.USER_ID].tolist()),
            "effect": f[s.EFFECT].to_numpy(dtype=float),
            "chosen": f[s.CHOSEN].astype(float).to_numpy() if s.CHOSEN in f else np.full(len(f), np.nan),
            "cost_z": self._cost_z(f[s.COST].to_numpy()),
        }
        q = tables.queries
        return build_graph(
            query_features(q.emb, q.tokens),
            self.task_index(q.tasks, q.emb),
            self.llm_x_,
            self.task_x_,
            self.user_x_,
            outcomes,
            q.emb,
            self.config.graph.k_neighbors,
            neighbors,
        )

    def _attach(self, graph: object, ref_emb: np.ndarray, batch: QueryBatch) -> tuple[object, torch.Tensor]:
        return attach_queries(
            graph,
            query_features(batch.emb, batch.tokens),
            self.task_index(batch.tasks, batch.emb),
            self._user_index(batch.user_ids),
            batch.emb,
            ref_emb,
            self.config.graph.k_neighbors,
        )

    def _labels(self, tables: LogTables, nodes: torch.Tensor | None = None) -> Labels:
        f = tables.frame
        q = torch.tensor(f["q"].to_numpy(), dtype=torch.long)
        base = tables.queries.base_cost[f["q"].to_numpy(), f["l"].to_numpy()]
        return Labels(
            query=nodes[q] if nodes is not None else q,
            llm=torch.tensor(f["l"].to_numpy(), dtype=torch.long),
            user=torch.as_tensor(self._user_index(f[s.USER_ID].tolist())),
            effect=torch.tensor(f[s.EFFECT].to_numpy(dtype=float), dtype=torch.float32),
            cost_z=torch.as_tensor(self._cost_z(f[s.COST].to_numpy()), dtype=torch.float32),
            base_cost_z=torch.as_tensor(self._cost_z(base), dtype=torch.float32),
        )

    # ----- predict -----
    @torch.inference_mode()
    def _predict(self, batch: QueryBatch) -> tuple[np.ndarray, np.ndarray]:
        cache = self._inference_cache()
        mu, sd = self.log_cost_stats_
        effects, costs = [], []
        for start in range(0, len(batch), PREDICT_CHUNK):
            part = batch.take(slice(start, start + PREDICT_CHUNK))
            idx, sim = nearest_neighbors(part.emb, self.ref_emb_, self.config.graph.k_neighbors)
            task, inferred = self.task_lookup(part.tasks, part.emb)
            logit, cost_z = cache.predict(
                torch.as_tensor(query_features(part.emb, part.tokens)),
                torch.as_tensor(task),
                torch.as_tensor(self._user_index(part.user_ids)),
                torch.as_tensor(idx),
                torch.as_tensor(sim),
                torch.as_tensor(self._cost_z(part.base_cost), dtype=torch.float32),
                self._overall_weight(part, task, inferred),
            )
            effects.append(torch.sigmoid(logit).numpy())
            costs.append(np.exp(np.clip(cost_z.numpy(), -2 * COST_Z_LIMIT, 2 * COST_Z_LIMIT) * sd + mu))
        effect = np.concatenate(effects).astype(float)
        for name, borrowed in self.probe_maps_.items():  # in onboarding order, as they were fitted
            borrowed.apply(effect, self.llm_names_, self.llm_names_.index(name))
        return effect, np.concatenate(costs).astype(float)

    def _overall_weight(self, batch: QueryBatch, task: np.ndarray, inferred: np.ndarray) -> torch.Tensor | None:
        """Share of each LLM's overall mean in the task evidence of each query (``GraphConfig.unseen_task``).

        Only a task that is named but unknown gets any: a request without a task is most likely of a known
        task and keeps the table of the one nearest to it.
        """
        mode = self.config.graph.unseen_task
        unseen = inferred & np.array([t is not None for t in batch.tasks], dtype=bool)
        if mode == "nearest" or not unseen.any():
            return None
        trust = self.task_trust(batch.emb, task) if mode == "gated" else np.zeros(len(task))
        return torch.as_tensor(np.where(unseen, 1.0 - trust, 0.0), dtype=torch.float32)

    def _inference_cache(self) -> InferenceCache:
        """Reference-graph states for the current graph and weights (rebuilt when either changes)."""
        graph, model, cache = getattr(self, "_cache", (None, None, None))
        if graph is not self.graph_ or model is not self.model_ or cache is None:
            cache = InferenceCache(self.model_, self.graph_)
            self._cache = (self.graph_, self.model_, cache)
        return cache

    def node_names(self) -> dict[str, list[str]]:
        """Display names per node type, for exports and plots."""
        self._check_fitted()
        return {
            s.LLM_NODE: list(self.llm_names_),
            s.QUERY_NODE: list(self.tables_.queries.texts),
            s.TASK_NODE: list(self.task_names_),
            s.USER_NODE: [*self.user_ids_, "<cold-start>"],
        }

    # ----- persistence -----
    def save(self, path: str | Path) -> None:
        """Write the router as a folder (config, weights, graph, vocab, scalers); see ``_serialization``."""
        from graphroute._serialization import save_router

        self._check_fitted()
        save_router(self, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a folder written by ``save``; predictions are identical to the saved router's."""
        from graphroute._serialization import load_router

        return load_router(cls, Path(path))
