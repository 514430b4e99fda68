"""What a fitted router knows, as typed values.

``FittedState`` is what every router learns from a log before its own model (the encoder that embeds queries, the
LLM catalog with its enable flags, the cost scale, the tasks and the users); baselines hold one. ``GNNState`` adds
what the GNN router learned and the reference graph it routes against. A router holds one (``router.state``), the
saved-router folder is one written out, and onboarding edits one: a fitted router keeps nothing anywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor
from torch_geometric.data import HeteroData

from graphroute import schema as s
from graphroute.costs import CostScaler, catalog_costs
from graphroute.data.tables import LogTables, QueryBatch
from graphroute.encoders import TextEncoder
from graphroute.errors import UnknownLLMError
from graphroute.events import EventCursor
from graphroute.fallback import ThinEvidenceFallback
from graphroute.features import query_features, user_features
from graphroute.graph.builder import attach_queries, build_graph
from graphroute.graph.knn import nearest_neighbors
from graphroute.nn.model import RouterGNN
from graphroute.prior import TaskPrior
from graphroute.probes import ProbeMap
from graphroute.schema import LLMProfile
from graphroute.uncertainty import IntervalCalibration
from graphroute.users import UserPreference

COST_Z_LIMIT = 12.0  # standardised log costs beyond this are clipped (features and predictions)


@dataclass(eq=False)
class FittedState:
    """The catalog, tasks, users and scales every router fits the same way. Shapes: enabled (L,), task_centroids
    (T, D) unit rows."""

    encoder: TextEncoder
    llms: list[LLMProfile]
    enabled: np.ndarray
    cost_scaler: CostScaler
    task_names: list[str]
    task_centroids: np.ndarray
    user_ids: list[str]

    @property
    def llm_names(self) -> list[str]:
        return [m.name for m in self.llms]

    def llm_position(self, name: str) -> int:
        """Catalog index of an LLM; an unknown name is an UnknownLLMError listing the known ones."""
        names = self.llm_names
        if name not in names:
            raise UnknownLLMError(f"llm: unknown LLM {name!r}; known: {names}")
        return names.index(name)

    def to_tables(self, frame: pd.DataFrame, embedded: Mapping[str, np.ndarray] | None = None) -> LogTables:
        """Query rows and outcome rows of a validated, cost-filled log; texts in ``embedded`` are not embedded
        again."""
        first = frame.drop_duplicates(s.QUERY_ID)
        ids = first[s.QUERY_ID].tolist()
        texts = first[s.QUERY].tolist()
        tokens = first[s.TOKENS_IN].to_numpy(dtype=float)
        batch = QueryBatch(
            texts=texts,
            tasks=first[s.TASK].tolist(),
            user_ids=first[s.USER_ID].tolist(),
            emb=self._embed(texts, embedded or {}),
            tokens=tokens,
            base_cost=catalog_costs(tokens, self.llms),
        )
        position = {q: i for i, q in enumerate(ids)}
        llm_index = {n: i for i, n in enumerate(self.llm_names)}
        outcomes = frame.assign(q=frame[s.QUERY_ID].map(position), l=frame[s.LLM].map(llm_index))
        return LogTables(batch, ids, outcomes.reset_index(drop=True))

    def _embed(self, texts: list[str], embedded: Mapping[str, np.ndarray]) -> np.ndarray:
        todo = [t for t in texts if t not in embedded]
        if len(todo) == len(texts):
            return self.encoder.encode(texts, show_progress=len(texts) > 256)
        fresh = dict(zip(todo, self.encoder.encode(todo, show_progress=len(todo) > 256), strict=True))
        out = np.empty((len(texts), self.encoder.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = embedded[text] if text in embedded else fresh[text]
        return out

    def task_lookup(self, tasks: Sequence[str | None], emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Task indices and whether each was inferred (missing or unseen task → nearest centroid)."""
        index = {t: i for i, t in enumerate(self.task_names)}
        nearest = np.argmax(emb @ self.task_centroids.T, axis=1)
        known = np.array([t is not None and t in index for t in tasks], dtype=bool)
        idx = np.array(
            [index[str(t)] if k else j for t, k, j in zip(tasks, known, nearest, strict=True)], dtype=np.int64
        )
        return idx, ~known

    def task_index(self, tasks: Sequence[str | None], emb: np.ndarray) -> np.ndarray:
        """Index of each task; a missing or unseen task becomes the task with the nearest centroid."""
        return self.task_lookup(tasks, emb)[0]

    def user_index(self, user_ids: Sequence[str]) -> np.ndarray:
        """Node index of each user; unknown users share the cold-start node after the known ones."""
        index = {u: i for i, u in enumerate(self.user_ids)}
        cold = len(self.user_ids)
        return np.array([index.get(u, cold) for u in user_ids], dtype=np.int64)


def task_centroids(train: LogTables) -> tuple[list[str], np.ndarray]:
    """Task names (sorted) and each task's unit-length mean query embedding. Shapes: → (T, D)."""
    names = sorted({str(t) for t in train.queries.tasks})
    index = {t: i for i, t in enumerate(names)}
    centroids = np.zeros((len(names), train.queries.emb.shape[1]), dtype=np.float32)
    rows = np.array([index[str(t)] for t in train.queries.tasks], dtype=np.int64)
    np.add.at(centroids, rows, train.queries.emb)
    return names, centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)


@dataclass(eq=False)
class NodeFeatures:
    """Input features of the LLM, task and user nodes and the log-cost scale the cost features use.
    Shapes: llm_x (L, F), task_x (T, F), user_x (U + 1, F) (the last row is the cold-start user)."""

    log_cost: tuple[float, float]  # mean and spread of the training log costs
    llm_x: np.ndarray
    task_x: np.ndarray
    user_x: np.ndarray

    def cost_z(self, cost: np.ndarray) -> np.ndarray:
        """Standardised log cost, clipped: a log whose costs are all alike has a tiny spread, and one odd price
        must not become a feature a thousand deviations wide."""
        mu, sd = self.log_cost
        z = (np.log(np.maximum(np.asarray(cost, dtype=float), 1e-12)) - mu) / sd
        return np.clip(z, -COST_Z_LIMIT, COST_Z_LIMIT)

    def cost_usd(self, cost_z: np.ndarray) -> np.ndarray:
        """Dollars from predicted standardised log costs (clipped to twice the feature range)."""
        mu, sd = self.log_cost
        return np.exp(np.clip(cost_z, -2 * COST_Z_LIMIT, 2 * COST_Z_LIMIT) * sd + mu)


def reference_graph(
    base: FittedState,
    features: NodeFeatures,
    tables: LogTables,
    k_neighbors: int,
    neighbors: tuple[np.ndarray, np.ndarray] | None = None,
) -> HeteroData:
    """The graph of a log's queries, outcomes, tasks, LLMs and users (``neighbors``: similarity lists already
    searched, else a fresh search)."""
    f = tables.frame
    outcomes = {
        "q": f["q"].to_numpy(),
        "l": f["l"].to_numpy(),
        "u": base.user_index(f[s.USER_ID].tolist()),
        "effect": f[s.EFFECT].to_numpy(dtype=float),
        "chosen": f[s.CHOSEN].astype(float).to_numpy() if s.CHOSEN in f else np.full(len(f), np.nan),
        "cost_z": features.cost_z(f[s.COST].to_numpy()),
    }
    q = tables.queries
    return build_graph(
        query_features(q.emb, q.tokens),
        base.task_index(q.tasks, q.emb),
        features.llm_x,
        features.task_x,
        features.user_x,
        outcomes,
        q.emb,
        k_neighbors,
        neighbors,
    )


def attach_batch(
    base: FittedState, graph: HeteroData, ref_emb: np.ndarray, batch: QueryBatch, k_neighbors: int
) -> tuple[HeteroData, Tensor]:
    """A copy of ``graph`` with ``batch``'s queries attached to their neighbours among ``ref_emb`` (the graph's
    query nodes); returns it and the new queries' node indices."""
    return attach_queries(
        graph,
        query_features(batch.emb, batch.tokens),
        base.task_index(batch.tasks, batch.emb),
        base.user_index(batch.user_ids),
        batch.emb,
        ref_emb,
        k_neighbors,
    )


@dataclass(eq=False)
class GNNState(FittedState):
    """Everything the GNN router knows: the shared state, node features, the trained model, the reference log and
    its graph, users' preferences, onboarded LLMs' probe maps and the event-store position it includes.
    ``task_member_sims`` (T, Q): each task's members' similarity to its centroid at fixed quantiles."""

    features: NodeFeatures
    task_member_sims: np.ndarray
    model: RouterGNN
    model_shape: dict[str, Any]
    tables: LogTables
    graph: HeteroData
    user_prefs: dict[str, UserPreference] = field(default_factory=dict)
    probe_maps: dict[str, ProbeMap] = field(default_factory=dict)
    task_priors: dict[str, TaskPrior] = field(default_factory=dict)
    events_cursor: EventCursor | None = None
    interval_calibration: IntervalCalibration = field(default_factory=IntervalCalibration.gaussian)
    fallback: ThinEvidenceFallback = field(default_factory=ThinEvidenceFallback)
    # similarity lists of the reference queries, grown as queries are added (``neighbors``)
    neighbor_lists: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    _ids_by_text: tuple[int, dict[str, str]] | None = field(default=None, init=False, repr=False)
    _pairs: tuple[LogTables, set[tuple[str, str]]] | None = field(default=None, init=False, repr=False)

    def add_rows(self, frame: pd.DataFrame, embedded: Mapping[str, np.ndarray] | None = None) -> None:
        """Merge validated, cost-filled outcome rows into the reference log (the graph follows on
        ``refresh_graph``)."""
        self.tables = self.tables.merge(self.to_tables(frame, embedded))

    def refresh_graph(self, k_neighbors: int) -> None:
        """Rebuild user features and the reference graph from the reference log."""
        frame = self.tables.frame
        users = frame[frame[s.USER_ID].isin(set(self.user_ids))]
        self.features.user_x = user_features(users, self.user_ids, self.features.cost_z(users[s.COST].to_numpy()))
        self.graph = reference_graph(self, self.features, self.tables, k_neighbors, self.neighbors(k_neighbors))

    def neighbors(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Similarity lists of the reference queries, searched only for queries added since the last call, among
        the queries before them; earlier queries keep their lists until the next fit (new queries still serve as
        neighbours of every query routed later, which searches the whole pool)."""
        emb = self.tables.queries.emb
        cached = self.neighbor_lists
        done = 0 if cached is None else len(cached[0])
        k_now = min(k, len(emb) - 1)
        if cached is None or done > len(emb) or cached[0].shape[1] != k_now or done < k_now:
            cached = nearest_neighbors(emb, emb, k, exclude_self=True)
        elif done < len(emb):  # appended queries look only at earlier ones: the same lists however they arrived
            idx, sim = nearest_neighbors(emb[done:], emb, k, exclude_self=True, offset=done, causal=True)
            cached = (np.concatenate([cached[0], idx]), np.concatenate([cached[1], sim]))
        self.neighbor_lists = cached
        return cached

    def query_ids_by_text(self) -> dict[str, str]:
        """Reference query id per text (cached until queries are added)."""
        if self._ids_by_text is None or self._ids_by_text[0] != len(self.tables.query_ids):
            ids = dict(zip(self.tables.queries.texts, self.tables.query_ids, strict=True))
            self._ids_by_text = (len(self.tables.query_ids), ids)
        return self._ids_by_text[1]

    def logged_pairs(self) -> set[tuple[str, str]]:
        """(user, query) of every reference row, cached until the log changes (feedback checks it per request)."""
        if self._pairs is None or self._pairs[0] is not self.tables:
            frame = self.tables.frame
            self._pairs = (self.tables, set(zip(frame[s.USER_ID], frame[s.QUERY], strict=True)))
        return self._pairs[1]

    def task_means(self) -> np.ndarray:
        """Mean logged effect of each LLM on each task of the reference log; NaN where it has none.
        Shapes: → (L, T)."""
        q = self.tables.queries
        rated = self.tables.frame[self.tables.frame[s.EFFECT].notna()]
        cells = (rated["l"].to_numpy(), self.task_index(q.tasks, q.emb)[rated["q"].to_numpy()])
        sums, counts = (
            np.zeros((len(self.llms), len(self.task_names))),
            np.zeros((len(self.llms), len(self.task_names))),
        )
        np.add.at(sums, cells, rated[s.EFFECT].to_numpy())
        np.add.at(counts, cells, 1.0)
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    def preference(self, user_id: str, default_alpha: float) -> UserPreference:
        """A user's fitted preference, or the neutral one (the default alpha, no affinity) for a user without
        choices."""
        default = UserPreference(default_alpha, np.zeros(len(self.llms)), 0)
        return self.user_prefs.get(user_id, default)

    def node_names(self) -> dict[str, list[str]]:
        """Display names per node type, for exports and plots."""
        return {
            s.LLM_NODE: self.llm_names,
            s.QUERY_NODE: list(self.tables.queries.texts),
            s.TASK_NODE: list(self.task_names),
            s.USER_NODE: [*self.user_ids, "<cold-start>"],
        }
