"""What every router shares: reading the log into tables, the catalog, cost scaling, task inference, routing.

GraphRoute's GNN and every baseline subclass ``BaseRouter`` and implement only ``_fit`` and ``_predict``, so
they are compared through exactly the same data preparation and the same policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Self

import numpy as np
import pandas as pd

from graphroute import policy
from graphroute import schema as s
from graphroute.config import RouterConfig
from graphroute.costs import CostScaler, catalog_costs, fill_costs
from graphroute.data.io import catalog_from_records, validate_interactions
from graphroute.data.split import split_by_query
from graphroute.data.tables import LogTables, QueryBatch
from graphroute.encoders import TextEncoder, make_encoder
from graphroute.errors import DataValidationError, NotFittedError, UnknownLLMError
from graphroute.schema import LLMProfile, Recommendation, RouteRequest

logger = logging.getLogger(__name__)


class BaseRouter:
    """Shared fit/predict/route plumbing; subclasses learn effect (and optionally cost) per (query, LLM)."""

    def __init__(self, config: RouterConfig | None = None, *, encoder: TextEncoder | None = None) -> None:
        self.config = config or RouterConfig()
        self.encoder = encoder

    def __repr__(self) -> str:
        name = type(self).__name__
        if not hasattr(self, "llms_"):
            return f"{name}(not fitted, encoder={self.config.encoder.kind!r})"
        enabled = int(self.enabled_.sum())
        tables = getattr(self, "tables_", None)
        queries = f", {len(tables.queries)} reference queries" if tables is not None else ""
        return (
            f"{name}({len(self.llms_)} LLMs ({enabled} enabled), {len(self.task_names_)} tasks, "
            f"{len(self.user_ids_)} users{queries}, encoder={self.encoder_.name!r})"
        )

    # ----- fitting -----
    @contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        """Record a fit phase's seconds in ``timings_`` (what the scale benchmark reports, what a user with a
        slow fit looks at first)."""
        start = time.perf_counter()
        yield
        self.timings_[phase] = round(time.perf_counter() - start, 3)
        logger.info("%s: %.1fs", phase, self.timings_[phase])

    def fit(self, logs: pd.DataFrame, llms: Sequence[LLMProfile] | Sequence[dict[str, object]]) -> Self:
        """Learn from a log; a validation split is carved from it (by query) for selection and stopping."""
        self.timings_: dict[str, float] = {}
        with self._timed("prepare"):
            train, val = self._prepare_fit(logs, llms)
        self._fit(train, val)
        return self

    def _prepare_fit(
        self, logs: pd.DataFrame, llms: Sequence[LLMProfile] | Sequence[dict[str, object]]
    ) -> tuple[LogTables, LogTables]:
        """Validate, cost, split and embed the log into train and validation tables."""
        catalog = [m if isinstance(m, LLMProfile) else LLMProfile.model_validate(m) for m in llms]
        catalog = catalog_from_records([m.model_dump() for m in catalog], source="llms")
        self.encoder_ = self.encoder or make_encoder(self.config.encoder)
        frame = fill_costs(validate_interactions(logs, catalog, source="logs"), catalog, self.encoder_)
        self.llms_ = list(catalog)
        self.llm_names_ = [m.name for m in catalog]
        self.enabled_ = np.ones(len(catalog), dtype=bool)
        self.cost_scaler_ = CostScaler.fit(frame)
        splits = split_by_query(frame, val=self.config.train.val_fraction, seed=self.config.train.seed)
        if splits.train.empty or splits.val.empty:
            raise DataValidationError("logs: too few distinct queries to carve a validation split")
        train, val = self.tables(splits.train), self.tables(splits.val)
        self._fit_tasks(train)
        self.user_ids_ = sorted(frame[s.USER_ID].unique().tolist())
        return train, val

    def _fit_tasks(self, train: LogTables) -> None:
        self.task_names_: list[str] = sorted({str(t) for t in train.queries.tasks})
        index = {t: i for i, t in enumerate(self.task_names_)}
        centroids = np.zeros((len(self.task_names_), train.queries.emb.shape[1]), dtype=np.float32)
        rows = np.array([index[str(t)] for t in train.queries.tasks], dtype=np.int64)
        np.add.at(centroids, rows, train.queries.emb)
        self.task_centroids_ = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)

    def tables(self, frame: pd.DataFrame, embedded: Mapping[str, np.ndarray] | None = None) -> LogTables:
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
            base_cost=catalog_costs(tokens, self.llms_),
        )
        position = {q: i for i, q in enumerate(ids)}
        llm_index = {n: i for i, n in enumerate(self.llm_names_)}
        outcomes = frame.assign(q=frame[s.QUERY_ID].map(position), l=frame[s.LLM].map(llm_index))
        return LogTables(batch, ids, outcomes.reset_index(drop=True))

    def _embed(self, texts: list[str], embedded: Mapping[str, np.ndarray]) -> np.ndarray:
        todo = [t for t in texts if t not in embedded]
        if len(todo) == len(texts):
            return self.encoder_.encode(texts, show_progress=len(texts) > 256)
        fresh = dict(zip(todo, self.encoder_.encode(todo, show_progress=len(todo) > 256), strict=True))
        out = np.empty((len(texts), self.encoder_.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = embedded[text] if text in embedded else fresh[text]
        return out

    def _fit(self, train: LogTables, val: LogTables) -> None:
        raise NotImplementedError

    # ----- prediction -----
    def _check_fitted(self) -> None:
        if not hasattr(self, "llms_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load() first")

    def prepare(
        self,
        queries: Sequence[str],
        tasks: Sequence[str | None] | None = None,
        user_ids: Sequence[str | None] | None = None,
    ) -> QueryBatch:
        """Embed queries and count their tokens; tasks stay as given (inferred later when absent or unseen)."""
        self._check_fitted()
        for i, q in enumerate(queries):
            _check_query(q, f"query {i + 1}")
        texts = list(queries)
        emb = self.encoder_.encode(texts)
        tokens = self.encoder_.count_tokens(texts).astype(float)
        given: list[str | None] = list(tasks) if tasks is not None else [None] * len(texts)
        users = [u or s.ANONYMOUS_USER for u in (user_ids or [None] * len(texts))]
        return QueryBatch(texts, given, users, emb, tokens, catalog_costs(tokens, self.llms_))

    def task_index(self, tasks: Sequence[str | None], emb: np.ndarray) -> np.ndarray:
        """Index of each task; a missing or unseen task becomes the task with the nearest centroid."""
        return self.task_lookup(tasks, emb)[0]

    def task_lookup(self, tasks: Sequence[str | None], emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Task indices and whether each was inferred (missing or unseen task → nearest centroid)."""
        index = {t: i for i, t in enumerate(self.task_names_)}
        nearest = np.argmax(emb @ self.task_centroids_.T, axis=1)
        known = np.array([t is not None and t in index for t in tasks], dtype=bool)
        idx = np.array(
            [index[str(t)] if k else j for t, k, j in zip(tasks, known, nearest, strict=True)], dtype=np.int64
        )
        return idx, ~known

    def predict_outcomes(
        self,
        queries: Sequence[str] | QueryBatch,
        tasks: Sequence[str | None] | None = None,
        user_ids: Sequence[str | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted effect in [0, 1] and cost in USD for every LLM. Shapes: → (N, L), (N, L)."""
        batch = queries if isinstance(queries, QueryBatch) else self.prepare(queries, tasks, user_ids)
        self._check_fitted()
        return self._predict(batch)

    def _predict(self, batch: QueryBatch) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def predict_utility(
        self,
        queries: Sequence[str] | QueryBatch,
        alpha: float | None = None,
        tasks: Sequence[str | None] | None = None,
        user_ids: Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Utility of every LLM at alpha (the config default when None). Shapes: → (N, L)."""
        batch = queries if isinstance(queries, QueryBatch) else self.prepare(queries, tasks, user_ids)
        effect, cost = self._predict(batch)
        a, affinity = self._preferences(batch, alpha)
        return policy.utilities(effect, self.cost_scaler_.transform(cost, batch.tasks), a) + affinity

    def _preferences(self, batch: QueryBatch, alpha: float | None) -> tuple[np.ndarray, np.ndarray]:
        """Trade-off per row and LLM affinities per row. Shapes: → (N,), (N, L). Routers that know users
        override this; the default is the request's alpha (or the config's) and no affinity."""
        policy.check_alpha(alpha)
        a = self.config.policy.alpha if alpha is None else alpha
        return np.full(len(batch), a), np.zeros((len(batch), len(self.llms_)))

    def check_request(self, request: RouteRequest) -> None:
        """What ``recommend_many`` would reject in this request (a blank or invalid query, an alpha outside [0, 1],
        unknown or disabled candidates), so a server can answer it alone instead of failing its batch."""
        _check_query(request.query, "query")
        policy.check_alpha(request.alpha)
        self.allowed_mask(request.candidates)

    def allowed_mask(self, candidates: Sequence[str] | None = None) -> np.ndarray:
        """Enabled LLMs, restricted to ``candidates`` when given. Shapes: → (L,)."""
        self._check_fitted()
        mask = self.enabled_.copy()
        if candidates is not None:
            index = {n: i for i, n in enumerate(self.llm_names_)}
            unknown = [c for c in candidates if c not in index]
            if unknown:
                raise UnknownLLMError(f"candidates: unknown LLM(s) {unknown}; known: {self.llm_names_}")
            keep = np.zeros_like(mask)
            keep[[index[c] for c in candidates]] = True
            mask &= keep
        if not mask.any():
            raise DataValidationError("candidates: no enabled LLM left to route to")
        return mask

    def route(
        self,
        queries: Sequence[str] | QueryBatch,
        alpha: float | None = None,
        tasks: Sequence[str | None] | None = None,
        user_ids: Sequence[str | None] | None = None,
        candidates: Sequence[str] | None = None,
    ) -> list[str]:
        """The chosen LLM name per query."""
        utility = self.predict_utility(queries, alpha, tasks, user_ids)
        chosen = policy.choose(utility, self.allowed_mask(candidates))
        return [self.llm_names_[i] for i in chosen]

    def recommend(
        self,
        query: str,
        user_id: str | None = None,
        task: str | None = None,
        k: int = 3,
        alpha: float | None = None,
        candidates: Sequence[str] | None = None,
        max_cost: float | None = None,
    ) -> list[Recommendation]:
        """The k best LLMs for one query, with predicted effect, cost and utility."""
        request = RouteRequest(query, user_id, task, k, alpha, candidates, max_cost)
        return self.recommend_many([request])[0]

    def recommend_many(self, requests: Sequence[RouteRequest]) -> list[list[Recommendation]]:
        """Rankings for many requests, embedded and predicted as one batch (what a server under load needs).

        Each request keeps its own user, task, alpha, candidates and budget: with ``max_cost``, LLMs predicted to
        cost more are dropped unless none fits, in which case the cheapest allowed one is kept.
        """
        if not requests:
            return []
        batch = self.prepare([r.query for r in requests], [r.task for r in requests], [r.user_id for r in requests])
        effect, cost = self._predict(batch)
        norm = self.cost_scaler_.transform(cost, batch.tasks)
        out = []
        for i, r in enumerate(requests):
            a, affinity = self._preferences(batch.take(slice(i, i + 1)), r.alpha)
            utility = policy.utilities(effect[i : i + 1], norm[i : i + 1], a) + affinity
            allowed = self.allowed_mask(r.candidates)
            if r.max_cost is not None:
                fits = allowed & (cost[i] <= r.max_cost)
                allowed = fits if fits.any() else allowed & (cost[i] == cost[i][allowed].min())
            order = [j for j in policy.rank(utility, allowed)[0] if allowed[j]][: max(r.k, 1)]
            out.append(
                [
                    Recommendation(
                        self.llm_names_[j],
                        float(effect[i, j]),
                        float(cost[i, j]),
                        float(norm[i, j]),
                        float(utility[0, j]),
                        rank + 1,
                    )
                    for rank, j in enumerate(order)
                ]
            )
        return out


def _check_query(query: object, where: str) -> None:
    if not isinstance(query, str) or not query.strip():
        raise DataValidationError(f"{where}: empty query (value {query!r})")
    try:
        s.valid_unicode(query)
    except ValueError as exc:
        raise DataValidationError(f"{where}: {exc}") from exc
