"""Router: the GNN router facade, the class most users touch."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from graphroute import onboarding, policy
from graphroute import schema as s
from graphroute.base import BaseRouter
from graphroute.config import RouterConfig
from graphroute.data.io import interaction_rows
from graphroute.data.tables import LogTables, QueryBatch
from graphroute.encoders import TextEncoder
from graphroute.errors import DataValidationError
from graphroute.explain import NEIGHBOURS_SHOWN, Neighbour
from graphroute.fallback import ThinEvidenceFallback, task_anchor
from graphroute.features import llm_features, query_features, task_features, user_features
from graphroute.graph.knn import nearest_neighbors
from graphroute.inference import InferenceCache
from graphroute.nn.model import RouterGNN
from graphroute.nn.pairs import PRIOR_COUNT
from graphroute.onboarding import FeedbackQueue
from graphroute.prior import fit_task_prior
from graphroute.probes import AVERAGE_SAMPLE, MIN_PROBES, ProbeMap, level_components
from graphroute.schema import Interaction, LLMProfile
from graphroute.state import FittedState, GNNState, NodeFeatures, attach_batch, reference_graph
from graphroute.training import Labels, TrainResult, fit_model
from graphroute.uncertainty import IntervalCalibration, evidence_spread
from graphroute.users import choices_of, fit_preferences

logger = logging.getLogger(__name__)
PREDICT_CHUNK = 1024
# a task's members' similarities to its centroid, kept at these quantiles, place a query of an unseen task among
# them; at FULL_TRUST_RANK (as typical as the median member) it borrows the known task's table in full
MEMBER_QUANTILES = np.linspace(0.0, 1.0, 21)
FULL_TRUST_RANK = 0.5
Feedback = pd.DataFrame | Sequence[dict[str, object]] | Sequence[Interaction]


@dataclass
class QueryInputs:
    """New queries as the model reads them. Shapes: query_x (N, F); task, user (N,); neighbors, similarity (N, k);
    overall_weight (N,) or None (see ``Router._overall_weight``); inferred (N,) whether the task was inferred."""

    query_x: torch.Tensor
    task: torch.Tensor
    user: torch.Tensor
    neighbors: torch.Tensor
    similarity: torch.Tensor
    overall_weight: torch.Tensor | None
    inferred: np.ndarray


@dataclass
class ModelPass:
    """What one pass of the model gives before any post-processing: effect and cost of every (query, LLM), each
    query's task node and how far its table was read, and (when asked) the evidence counts behind each pair.
    Shapes: (N, L); task, task_share (N,)."""

    effect: np.ndarray
    cost: np.ndarray
    task: np.ndarray
    support: tuple[np.ndarray, np.ndarray] | None
    task_share: np.ndarray  # (N,): how far each query's task evidence is its task's table (below 1: unseen task)


def member_similarities(base: FittedState, train: LogTables) -> np.ndarray:
    """Each task's members' similarities to its centroid at ``MEMBER_QUANTILES``: what places a query of an unseen
    task among them (``Router.task_trust``). Shapes: → (T, len(MEMBER_QUANTILES))."""
    index = {t: i for i, t in enumerate(base.task_names)}
    rows = np.array([index[str(t)] for t in train.queries.tasks], dtype=np.int64)
    own = np.einsum("qd,qd->q", train.queries.emb, base.task_centroids[rows])
    return np.stack([np.quantile(own[rows == i], MEMBER_QUANTILES) for i in range(len(base.task_names))]).astype(
        np.float32
    )


def _labels(base: FittedState, features: NodeFeatures, tables: LogTables, nodes: torch.Tensor | None = None) -> Labels:
    f = tables.frame
    q = torch.tensor(f["q"].to_numpy(), dtype=torch.long)
    cost = tables.queries.base_cost[f["q"].to_numpy(), f["l"].to_numpy()]
    return Labels(
        query=nodes[q] if nodes is not None else q,
        llm=torch.tensor(f["l"].to_numpy(), dtype=torch.long),
        user=torch.as_tensor(base.user_index(f[s.USER_ID].tolist())),
        effect=torch.tensor(f[s.EFFECT].to_numpy(dtype=float), dtype=torch.float32),
        cost_z=torch.as_tensor(features.cost_z(f[s.COST].to_numpy()), dtype=torch.float32),
        base_cost_z=torch.as_tensor(features.cost_z(cost), dtype=torch.float32),
    )


class Router(BaseRouter[GNNState]):
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
        self.feedback = FeedbackQueue()  # rows taken while serving, folded into the graph by ``fold``

    # ----- fit -----
    def _fit(self, base: FittedState, train: LogTables, val: LogTables) -> GNNState:
        with self._timed("graph"):
            everything = pd.concat([train.frame, val.frame])
            log_cost = np.log(np.maximum(train.frame[s.COST].to_numpy(dtype=float), 1e-12))
            features = NodeFeatures(
                (float(log_cost.mean()), float(max(log_cost.std(), 1e-6))),
                llm_features(base.llms, base.encoder),
                task_features(base.task_names, base.task_centroids, base.encoder),
                np.zeros((0, 0), dtype=np.float32),
            )
            features.user_x = user_features(everything, base.user_ids, features.cost_z(everything[s.COST].to_numpy()))
            del everything
            k = self.config.graph.k_neighbors
            graph = reference_graph(base, features, train, k)
            val_graph, new = attach_batch(base, graph, train.queries.emb, val.queries, k)
        with self._timed("train"):
            model, shape = self._train(base, features, graph, val_graph, train, val, new)
        del val_graph
        with self._timed("calibrate"):
            fallback, calibration = self._calibrate(base, features, model, shape, train, graph, val)
        del graph  # the reference graph is rebuilt below; drop the training graph first
        with self._timed("finish"):
            tables = train.concat(val)  # validation queries become neighbours once selection is over
            state = GNNState(
                **{f.name: getattr(base, f.name) for f in fields(FittedState)},
                features=features,
                task_member_sims=member_similarities(base, train),
                model=model,
                model_shape=shape,
                tables=tables,
                graph=HeteroData(),
                interval_calibration=calibration,
                fallback=fallback.rebased(
                    base.llm_names,
                    tables.llm_means(len(base.llms)),
                    base.task_names,
                    _task_means(base, tables) if fallback.task_means else None,
                ),
            )
            state.graph = reference_graph(state, features, tables, k, state.neighbors(k))
            self.feedback = FeedbackQueue()
        return state

    def _calibrate(
        self,
        base: FittedState,
        features: NodeFeatures,
        model: RouterGNN,
        shape: dict[str, Any],
        train: LogTables,
        graph: HeteroData,
        val: LogTables,
    ) -> tuple[ThinEvidenceFallback, IntervalCalibration]:
        """The thin-evidence fallback, then outcome intervals of the predictions it gives, both measured on the
        validation queries predicted from the training graph alone (so no validation outcome is among its own
        neighbours)."""
        self._state = GNNState(
            **{f.name: getattr(base, f.name) for f in fields(FittedState)},
            features=features,
            task_member_sims=member_similarities(base, train),
            model=model,
            model_shape=shape,
            tables=train,
            graph=graph,
        )
        try:
            observed = val.outcome_matrix(len(base.llms))
            raw = self._model_pass(val.queries, spread=True)
            means = train.llm_means(len(base.llms))
            if self.config.model.fallback == "task":
                table = _task_means(base, train)
                anchor = task_anchor(means, table[raw.task], raw.task_share)
                fallback = ThinEvidenceFallback.fit(base.llm_names, means, raw.effect, observed, anchor)
                fallback = fallback.rebased(base.llm_names, means, base.task_names, table)
            else:
                fallback = ThinEvidenceFallback.fit(base.llm_names, means, raw.effect, observed)
            self._state.fallback = fallback
            effect, _, spread = self._adjusted(raw)  # the intervals of the predictions the router will make
            assert spread is not None
            return fallback, IntervalCalibration.fit(effect, spread, observed)
        finally:
            self._state = None
            self.__dict__.pop("_cache", None)  # the training graph's cache must not outlive this

    def fit(self, logs: pd.DataFrame, llms: Sequence[LLMProfile] | Sequence[dict[str, object]]) -> Self:
        """Learn from a log (a validation split is carved from it, by query), then fit each user's preference
        from the choices the log records."""
        super().fit(logs, llms)
        with self._timed("preferences"):
            self._fit_preferences(self.state.user_ids)
        return self

    def _train(
        self,
        base: FittedState,
        features: NodeFeatures,
        graph: HeteroData,
        val_graph: HeteroData,
        train: LogTables,
        val: LogTables,
        new: torch.Tensor,
    ) -> tuple[RouterGNN, dict[str, Any]]:
        import torch_geometric

        torch_geometric.seed_everything(self.config.train.seed)  # the initial weights are part of the seed
        m = self.config.model
        shape: dict[str, Any] = {
            "in_channels": {t: int(graph[t].x.size(1)) for t in graph.node_types},
            "edge_dims": {"|".join(et): d for et, d in s.EDGE_ATTR_DIMS.items()},
            "kwargs": {"hidden_channels": m.hidden_channels, "num_layers": m.num_layers, "dropout": m.dropout},
        }
        model = RouterGNN(shape["in_channels"], s.EDGE_ATTR_DIMS, **shape["kwargs"])
        self.history_: TrainResult = fit_model(
            model,
            graph,
            _labels(base, features, train),
            val_graph,
            _labels(base, features, val, new),
            self.config.train,
            callback=self.callback,
        )
        return model, shape

    def task_trust(self, emb: np.ndarray, task: np.ndarray) -> np.ndarray:
        """How far a query of an unseen task may lean on the known task it was matched to, in [0, 1].

        1 when the query is at least as close to that task's centroid as the task's median member; falling to 0
        as it nears the least typical members. A new task that resembles a known one (ceval and cmmlu) then
        borrows its table, and one that resembles none (mmlu among llmrouter's other tasks, matched to
        commonsense_qa) does not. Shapes: emb (N, D), task (N,) → (N,).
        """
        st = self.state
        sims = np.einsum("nd,nd->n", emb, st.task_centroids[task])
        rank = np.zeros(len(sims))
        for t in np.unique(task):
            rows = task == t
            rank[rows] = np.interp(sims[rows], st.task_member_sims[t], MEMBER_QUANTILES)
        return np.clip(rank / FULL_TRUST_RANK, 0.0, 1.0)

    # ----- predict -----
    def _predict(self, batch: QueryBatch) -> tuple[np.ndarray, np.ndarray]:
        effect, cost, _ = self._outcomes(batch, spread=False)
        return effect, cost

    def _predict_spread(self, batch: QueryBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        effect, cost, spread = self._outcomes(batch, spread=True)
        assert spread is not None
        return effect, cost, spread

    def interval_calibration(self) -> IntervalCalibration:
        return self.state.interval_calibration

    def _outcomes(self, batch: QueryBatch, spread: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Effect, cost and (with ``spread``) the evidence spread of every (query, LLM), from one pass that reads
        the query's neighbours once."""
        return self._adjusted(self._model_pass(batch, spread))

    @torch.inference_mode()
    def _model_pass(self, batch: QueryBatch, spread: bool) -> ModelPass:
        st = self.state
        cache = self._inference_cache()
        effects, costs, tasks, shares, supports = [], [], [], [], []
        for start in range(0, len(batch), PREDICT_CHUNK):
            part = batch.take(slice(start, start + PREDICT_CHUNK))
            inputs = self._query_inputs(part)
            logit, cost_z = cache.predict(
                inputs.query_x,
                inputs.task,
                inputs.user,
                inputs.neighbors,
                inputs.similarity,
                torch.as_tensor(st.features.cost_z(part.base_cost), dtype=torch.float32),
                inputs.overall_weight,
            )
            effects.append(torch.sigmoid(logit).numpy())
            tasks.append(inputs.task.numpy())
            overall = inputs.overall_weight
            shares.append(np.ones(len(part)) if overall is None else 1.0 - overall.numpy())
            costs.append(st.features.cost_usd(cost_z.numpy()))
            if spread:
                supports.append(cache.support(inputs.task, inputs.neighbors))
        support = None
        if spread:
            support = (np.concatenate([n for n, _ in supports]), np.concatenate([t for _, t in supports]))
        return ModelPass(
            np.concatenate(effects).astype(float),
            np.concatenate(costs).astype(float),
            np.concatenate(tasks),
            support,
            np.concatenate(shares).astype(float),
        )

    def _adjusted(self, raw: ModelPass) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The pass's effect (changed in place) after the fallback, onboarded LLMs' probe maps and task priors,
        its cost, and the evidence spread of that effect when the pass kept the evidence counts."""
        st, effect = self.state, raw.effect
        names = st.llm_names
        st.fallback.apply(effect, names, raw.task, st.task_names, raw.task_share)
        for name, borrowed in st.probe_maps.items():  # in onboarding order, as they were fitted
            borrowed.apply(effect, names, names.index(name), raw.task)
        for name, prior in st.task_priors.items():
            prior.apply(effect, raw.task, names.index(name))
        if raw.support is None:
            return effect, raw.cost, None
        return effect, raw.cost, evidence_spread(effect, *raw.support)

    def _query_inputs(self, batch: QueryBatch) -> QueryInputs:
        """What the model reads of new queries: features, task, user node, nearest reference queries."""
        st = self.state
        idx, sim = nearest_neighbors(batch.emb, st.tables.queries.emb, self.config.graph.k_neighbors)
        task, inferred = st.task_lookup(batch.tasks, batch.emb)
        return QueryInputs(
            torch.as_tensor(query_features(batch.emb, batch.tokens)),
            torch.as_tensor(task),
            torch.as_tensor(st.user_index(batch.user_ids)),
            torch.as_tensor(idx),
            torch.as_tensor(sim),
            self._overall_weight(batch, task, inferred),
            inferred,
        )

    def _effect_terms(self, batch: QueryBatch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        st = self.state
        cache = self._inference_cache()
        x = self._query_inputs(batch)
        base_cost_z = torch.as_tensor(st.features.cost_z(batch.base_cost), dtype=torch.float32)
        logit, _ = cache.predict(x.query_x, x.task, x.user, x.neighbors, x.similarity, base_cost_z, x.overall_weight)
        terms = cache.effect_terms(x.query_x, x.task, x.user, x.neighbors, x.similarity, x.overall_weight)
        return logit.numpy().astype(float), {name: term.numpy().astype(float) for name, term in terms.items()}

    def _neighbours(self, batch: QueryBatch, llms: Sequence[str]) -> list[Neighbour]:
        st = self.state
        x = self._query_inputs(batch.take(slice(0, 1)))
        sim, idx = x.similarity[0].numpy(), x.neighbors[0].numpy()
        order = np.argsort(-sim, kind="stable")[:NEIGHBOURS_SHOWN]
        frame = st.tables.frame
        rows = frame[frame["q"].isin(idx[order]) & frame[s.EFFECT].notna()]
        means = rows.groupby(["q", s.LLM])[s.EFFECT].mean()
        q = st.tables.queries
        out = []
        for i in order:
            ref = int(idx[i])
            logged = means.loc[ref] if ref in means.index.get_level_values(0) else pd.Series(dtype=float)
            effects = {name: round(float(logged[name]), 4) for name in llms if name in logged.index}
            out.append(Neighbour(q.texts[ref], str(q.tasks[ref]), float(sim[i]), effects))
        return out

    def _task_trust(self, batch: QueryBatch) -> float:
        weight = self._query_inputs(batch.take(slice(0, 1))).overall_weight
        return 1.0 if weight is None else float(1.0 - weight[0])

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
        st = self.state
        graph, model, cache = getattr(self, "_cache", (None, None, None))
        if graph is not st.graph or model is not st.model or cache is None:
            cache = InferenceCache(st.model, st.graph)
            self._cache = (st.graph, st.model, cache)
        return cache

    # ----- feedback and users -----
    def add_feedback(self, interactions: Feedback) -> list[str]:
        """Take outcome rows at once and fold them into the reference graph later (``fold``).

        This is the serving path: it costs microseconds per row, so feedback never waits for the graph. The rows'
        users count as known at once; a user whose rows complete a choice (two or more answers to one query, one
        of them chosen) has the preference refitted here. Returns the users.
        """
        users, choosers = self.take_feedback(interactions)
        if choosers:
            self.refit_users(choosers)
        return users

    def take_feedback(self, interactions: Feedback) -> tuple[list[str], list[str]]:
        """The part of ``add_feedback`` that runs no model: check the rows and queue them for the next fold.
        Safe to call from another thread than the one folding and routing (a server takes feedback on its event
        loop while its model thread routes). Returns the rows' users and those whose preference should be
        refitted (``refit_users``, on the model thread) because the rows complete a choice."""
        st = self.state
        rows = interaction_rows(interactions, st.llm_names, source="feedback")
        self.feedback.put(rows)
        users = sorted({r[s.USER_ID] for r in rows})
        choosers = sorted({r[s.USER_ID] for r in rows if r.get(s.CHOSEN) is not None})
        return users, choosers if choosers and onboarding.completes_choice(st, self.feedback, rows) else []

    def refit_users(self, user_ids: Sequence[str]) -> None:
        """Refit these users' preferences from all their choices, folded or pending (milliseconds per user)."""
        self._fit_preferences(user_ids)

    def fold(self, max_new_queries: int | None = None) -> int:
        """Move pending feedback into the reference graph: embed its new queries, merge its rows, rebuild the
        graph and the inference cache. With ``max_new_queries`` one call embeds at most that many new queries and
        merges only once all are embedded, so a server can interleave routing between bounded steps. Returns the
        number of rows still pending."""
        if not len(self.feedback):
            return 0
        left = onboarding.fold(self.state, self.feedback, self.config.graph.k_neighbors, max_new_queries)
        if not left:
            self._inference_cache()  # built now, not by the next request
        return left

    def update_user(self, user_id: str, interactions: pd.DataFrame | Sequence[dict[str, object]]) -> Self:
        """Add a user's interactions (also for a user never seen), fold them into the graph and refit only that
        user's preference."""
        if not isinstance(user_id, str) or not user_id.strip():
            raise DataValidationError(f"user_id: must be a non-empty string (value {user_id!r})")
        frame = pd.DataFrame(list(interactions)) if not isinstance(interactions, pd.DataFrame) else interactions
        self.add_feedback(frame.assign(**{s.USER_ID: user_id}))
        self.fold()
        return self

    def user_profile(self, user_id: str) -> dict[str, object]:
        """What the router knows of a user: interactions, fitted alpha and LLM affinities (cold-start if unknown)."""
        return onboarding.user_profile(self.state, self.feedback, user_id, self.config.policy.alpha)

    def user_profiles(self, limit: int = 100) -> list[dict[str, object]]:
        """``user_profile`` of the users with the most interactions (folded or pending), most first; probe rows
        belong to no user and are left out."""
        counts = self.state.tables.frame[s.USER_ID].value_counts()
        for row in self.feedback.rows():
            counts[row[s.USER_ID]] = counts.get(row[s.USER_ID], 0) + 1
        counts = counts.drop(onboarding.PROBE_USER, errors="ignore").sort_values(ascending=False, kind="stable")
        return [self.user_profile(str(u)) for u in counts.index[:limit]]

    def _preferences(self, batch: QueryBatch, alpha: float | None) -> tuple[np.ndarray, np.ndarray]:
        policy.check_alpha(alpha)
        prefs = [self.state.preference(u, self.config.policy.alpha) for u in batch.user_ids]
        alphas = np.array([p.alpha if alpha is None else alpha for p in prefs])
        return alphas, np.stack([p.affinity for p in prefs])

    def _fit_preferences(self, user_ids: Sequence[str]) -> None:
        """Refit these users' preferences from all their choices, folded or still pending."""
        st = self.state
        users = set(user_ids)
        frame = st.tables.frame
        logged = frame[frame[s.USER_ID].isin(users) & frame[s.CHOSEN].notna()] if s.CHOSEN in frame else frame[:0]
        pending = onboarding.pending_choices(st, self.feedback, users)
        if logged.empty and pending.empty:
            return
        effect = np.concatenate(
            [self._rated(logged, st.tables.queries.take(logged["q"].to_numpy())), self._rated(pending, None)]
        )
        rows = pd.concat([logged, pending], ignore_index=True) if len(pending) else logged
        norm = st.cost_scaler.transform(rows[s.COST].to_numpy(dtype=float), rows[s.TASK].tolist())
        codes, fitted_users = pd.factorize(rows[s.USER_ID])
        choices = choices_of(rows, effect, norm, len(st.llms), user=codes)
        fitted = fit_preferences(choices, len(fitted_users), self.config.policy.alpha, len(st.llms))
        st.user_prefs.update({str(u): p for u, p in zip(fitted_users, fitted, strict=True)})

    def _rated(self, rows: pd.DataFrame, asked: QueryBatch | None) -> np.ndarray:
        """The rows' effects, the router's own estimate where a choice came without a rating. ``asked``: the rows'
        queries when they are reference queries (embedded already), else their texts are embedded."""
        if rows.empty:
            return np.zeros(0)
        effect = rows[s.EFFECT].to_numpy(dtype=float, copy=True)
        missing = np.flatnonzero(np.isnan(effect))
        if len(missing):
            users = rows[s.USER_ID].iloc[missing].tolist()
            if asked is not None:
                batch = asked.take(missing)
                batch.user_ids = users
            else:
                texts, tasks = rows[s.QUERY].iloc[missing].tolist(), rows[s.TASK].iloc[missing].tolist()
                batch = self.prepare(texts, tasks, users)
            predicted, _ = self._predict(batch)
            effect[missing] = predicted[np.arange(len(missing)), rows["l"].to_numpy()[missing]]
        return effect

    # ----- LLMs -----
    def add_llm(
        self, profile: LLMProfile | dict[str, object], probes: pd.DataFrame | Sequence[dict[str, object]] | None = None
    ) -> Self:
        """Make a new LLM routable at once from its description and prices, optionally with probe outcomes
        (rows with a `query` already known to the router and its `effect`)."""
        st = self.state
        self.fold()  # probes may name queries that arrived as feedback
        new = self.check_llm(profile, probes)
        rows = onboarding.probe_rows(st, new, probes) if probes is not None else None
        k = self.config.graph.k_neighbors
        onboarding.add_llm(st, new, None, k)  # from its description alone first: what its prior shifts
        if self.config.onboarding.prior == "description":
            self._fit_prior(new.name, rows)
        effect = self.predict_outcomes(self._reference_sample())[0]
        if rows is not None:
            st.add_rows(rows)
            st.refresh_graph(k)
        self._borrow_from_others(new.name, rows[rows[s.EFFECT].notna()] if rows is not None else None, effect)
        return self

    def _reference_sample(self) -> QueryBatch:
        """A seeded sample of the reference queries (up to ``AVERAGE_SAMPLE``): where onboarding measures levels."""
        return self.state.tables.queries.take(self._reference_rows())

    def _reference_rows(self) -> np.ndarray:
        """Rows of the reference queries in the seeded sample, sorted."""
        queries = self.state.tables.queries
        rng = np.random.default_rng(self.config.train.seed)
        return np.sort(rng.choice(len(queries), size=min(AVERAGE_SAMPLE, len(queries)), replace=False))

    def _fit_prior(self, name: str, rows: pd.DataFrame | None) -> None:
        """The new LLM's ``TaskPrior`` from the known LLMs' task means and descriptions (``graphroute.prior``)."""
        st = self.state
        j, n_tasks = st.llm_position(name), len(st.task_names)
        known = [i for i in range(len(st.llms)) if i != j]
        means = st.task_means()
        desc = st.features.llm_x[:, : st.encoder.dim].astype(float)
        desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
        probes = np.zeros(n_tasks)
        if rows is not None:
            index = {t: i for i, t in enumerate(st.task_names)}
            for task in rows.loc[rows[s.EFFECT].notna(), s.TASK]:
                if task in index:
                    probes[index[task]] += 1
        st.task_priors[name] = fit_task_prior(desc[known], means[known], desc[j], probes)

    def check_llm(
        self, profile: LLMProfile | dict[str, object], probes: pd.DataFrame | Sequence[dict[str, object]] | None = None
    ) -> LLMProfile:
        """What ``add_llm`` would reject, without adding anything: an invalid profile, a name already in the
        catalog, probes on queries the router does not know or with an effect outside [0, 1]."""
        return onboarding.check_llm(self.state, self.feedback, profile, probes)

    def _borrow_from_others(self, name: str, probe_rows: pd.DataFrame | None, sample_effect: np.ndarray) -> None:
        """Fit the new LLM's ``ProbeMap``: the others' average, with ``MIN_PROBES`` or more probe outcomes the
        shape they borrow from the LLMs they agree with and the level per probed task that the known LLMs'
        spread allows (see graphroute.probes). ``sample_effect``: every LLM's predicted effect on the reference
        sample (``_reference_rows``)."""
        st = self.state
        others = [n for n in st.llm_names if n != name]
        if not others:
            return
        columns = [st.llm_position(n) for n in others]
        reference = sample_effect[:, columns]
        if probe_rows is None or len(probe_rows) < MIN_PROBES:
            st.probe_maps[name] = ProbeMap.average(others, reference)
            return
        queries = st.tables.queries
        rows = self._reference_rows()
        sample = queries.take(rows)
        observed = st.tables.outcome_matrix(len(st.llms))[rows][:, columns]
        components = level_components(reference, observed, st.task_index(sample.tasks, sample.emb))
        position = {q: i for i, q in enumerate(st.tables.query_ids)}
        probed = queries.take(probe_rows[s.QUERY_ID].map(position).to_numpy())
        task = st.task_index(probed.tasks, probed.emb)
        predicted = self.predict_outcomes(probed)[0][:, columns]
        effect = probe_rows[s.EFFECT].to_numpy(dtype=float)
        shape = ProbeMap.fit(others, predicted, effect, reference.mean(axis=0))
        threshold = self.config.onboarding.level_threshold
        st.probe_maps[name] = ProbeMap.levels(shape, predicted, effect, task, len(st.task_names), components, threshold)

    def disable_llm(self, name: str, disabled: bool = True) -> Self:
        """Stop (or, with disabled=False, resume) routing to an LLM; its history stays in the graph."""
        st = self.state
        st.enabled[st.llm_position(name)] = not disabled
        return self

    def remove_llm(self, name: str) -> Self:
        """Delete an LLM: its node, its outcome edges and its catalog entry."""
        self.state.llm_position(name)
        self.fold()  # pending rows may name it
        onboarding.remove_llm(self.state, name, self.config.graph.k_neighbors)
        return self

    # ----- persistence -----
    def save(self, path: str | Path) -> None:
        """Write the router as a folder (its config and its state); see ``_serialization``. Pending feedback is
        folded first, so it is saved with it."""
        from graphroute._serialization import save_state

        self.fold()
        save_state(self.state, self.config, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a folder written by ``save``; predictions are identical to the saved router's."""
        from graphroute._serialization import load_state

        config, state = load_state(Path(path))
        router = cls(config)
        router._state = state
        return router


def _task_means(state: FittedState, tables: LogTables) -> np.ndarray:
    """Each LLM's mean per task of ``tables``, pulled towards its overall mean as the pair evidence pulls it (the
    fallback's task part). Shapes: → (T, L)."""
    tasks = state.task_index(tables.queries.tasks, tables.queries.emb)
    return tables.task_means(len(state.llms), tasks, len(state.task_names), PRIOR_COUNT)
