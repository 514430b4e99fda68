"""What every router shares: reading the log into tables, the catalog, cost scaling, task inference, routing.

GraphRoute's GNN and every baseline subclass ``BaseRouter`` and implement only ``_fit`` and ``_predict``, so
they are compared through exactly the same data preparation and the same policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Generic, Self, TypeVar

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
from graphroute.state import FittedState, task_centroids

logger = logging.getLogger(__name__)


S = TypeVar("S", bound=FittedState)


class BaseRouter(Generic[S]):
    """Shared fit/predict/route plumbing; subclasses learn effect (and optionally cost) per (query, LLM).

    What a fitted router knows is one typed value, ``state`` (a ``FittedState``, or the subclass the router fits).
    """

    def __init__(self, config: RouterConfig | None = None, *, encoder: TextEncoder | None = None) -> None:
        self.config = config or RouterConfig()
        self.encoder = encoder
        self._state: S | None = None

    @property
    def state(self) -> S:
        """What the router learned; a NotFittedError before ``fit`` or ``load``."""
        if self._state is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load() first")
        return self._state

    @property
    def fitted(self) -> bool:
        return self._state is not None

    def __repr__(self) -> str:
        name = type(self).__name__
        st = self._state
        if st is None:
            return f"{name}(not fitted, encoder={self.config.encoder.kind!r})"
        tables = getattr(st, "tables", None)
        queries = f", {len(tables.queries)} reference queries" if isinstance(tables, LogTables) else ""
        return (
            f"{name}({len(st.llms)} LLMs ({int(st.enabled.sum())} enabled), {len(st.task_names)} tasks, "
            f"{len(st.user_ids)} users{queries}, encoder={st.encoder.name!r})"
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
        self._state = None  # a failed refit leaves no half-old state behind
        with self._timed("prepare"):
            base, train, val = self._prepare_fit(logs, llms)
        self._state = self._fit(base, train, val)
        return self

    def _prepare_fit(
        self, logs: pd.DataFrame, llms: Sequence[LLMProfile] | Sequence[dict[str, object]]
    ) -> tuple[FittedState, LogTables, LogTables]:
        """Validate, cost, split and embed the log into the shared state and train and validation tables."""
        catalog = [m if isinstance(m, LLMProfile) else LLMProfile.model_validate(m) for m in llms]
        catalog = catalog_from_records([m.model_dump() for m in catalog], source="llms")
        encoder = self.encoder or make_encoder(self.config.encoder)
        frame = fill_costs(validate_interactions(logs, catalog, source="logs"), catalog, encoder)
        base = FittedState(
            encoder=encoder,
            llms=list(catalog),
            enabled=np.ones(len(catalog), dtype=bool),
            cost_scaler=CostScaler.fit(frame),
            task_names=[],
            task_centroids=np.zeros((0, encoder.dim), dtype=np.float32),
            user_ids=sorted(frame[s.USER_ID].unique().tolist()),
        )
        splits = split_by_query(frame, val=self.config.train.val_fraction, seed=self.config.train.seed)
        if splits.train.empty or splits.val.empty:
            raise DataValidationError("logs: too few distinct queries to carve a validation split")
        train, val = base.to_tables(splits.train), base.to_tables(splits.val)
        base.task_names, base.task_centroids = task_centroids(train)
        return base, train, val

    def _fit(self, base: FittedState, train: LogTables, val: LogTables) -> S:
        """Learn from train (select on val) and return the fitted state (``base`` extended or as it is)."""
        raise NotImplementedError

    # ----- prediction -----
    def prepare(
        self,
        queries: Sequence[str],
        tasks: Sequence[str | None] | None = None,
        user_ids: Sequence[str | None] | None = None,
    ) -> QueryBatch:
        """Embed queries and count their tokens; tasks stay as given (inferred later when absent or unseen)."""
        st = self.state
        for i, q in enumerate(queries):
            _check_query(q, f"query {i + 1}")
        texts = list(queries)
        emb = st.encoder.encode(texts)
        tokens = st.encoder.count_tokens(texts).astype(float)
        given: list[str | None] = list(tasks) if tasks is not None else [None] * len(texts)
        users = [u or s.ANONYMOUS_USER for u in (user_ids or [None] * len(texts))]
        return QueryBatch(texts, given, users, emb, tokens, catalog_costs(tokens, st.llms))

    def predict_outcomes(
        self,
        queries: Sequence[str] | QueryBatch,
        tasks: Sequence[str | None] | None = None,
        user_ids: Sequence[str | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted effect in [0, 1] and cost in USD for every LLM. Shapes: → (N, L), (N, L)."""
        batch = queries if isinstance(queries, QueryBatch) else self.prepare(queries, tasks, user_ids)
        _ = self.state  # NotFittedError before predicting
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
        return policy.utilities(effect, self.state.cost_scaler.transform(cost, batch.tasks), a) + affinity

    def _preferences(self, batch: QueryBatch, alpha: float | None) -> tuple[np.ndarray, np.ndarray]:
        """Trade-off per row and LLM affinities per row. Shapes: → (N,), (N, L). Routers that know users
        override this; the default is the request's alpha (or the config's) and no affinity."""
        policy.check_alpha(alpha)
        a = self.config.policy.alpha if alpha is None else alpha
        return np.full(len(batch), a), np.zeros((len(batch), len(self.state.llms)))

    def check_request(self, request: RouteRequest) -> None:
        """What ``recommend_many`` would reject in this request (a blank or invalid query, an alpha outside [0, 1],
        unknown or disabled candidates), so a server can answer it alone instead of failing its batch."""
        _check_query(request.query, "query")
        policy.check_alpha(request.alpha)
        self.allowed_mask(request.candidates)

    def allowed_mask(self, candidates: Sequence[str] | None = None) -> np.ndarray:
        """Enabled LLMs, restricted to ``candidates`` when given. Shapes: → (L,)."""
        mask = self.state.enabled.copy()
        if candidates is not None:
            names = self.state.llm_names
            index = {n: i for i, n in enumerate(names)}
            unknown = [c for c in candidates if c not in index]
            if unknown:
                raise UnknownLLMError(f"candidates: unknown LLM(s) {unknown}; known: {names}")
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
        names = self.state.llm_names
        return [names[i] for i in chosen]

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
        norm = self.state.cost_scaler.transform(cost, batch.tasks)
        names = self.state.llm_names
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
                        names[j],
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
