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
from graphroute.encoder_tuning import tune_encoder
from graphroute.encoders import SentenceTransformerEncoder, TextEncoder, make_encoder
from graphroute.errors import DataValidationError, NotFittedError, UnknownLLMError
from graphroute.explain import EFFECT_TERMS, Explanation, LLMExplanation, Neighbour
from graphroute.exploration import Explorer
from graphroute.schema import LLMProfile, Recommendation, RouteRequest
from graphroute.state import FittedState, task_centroids
from graphroute.uncertainty import IntervalCalibration

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
        self.explorer = Explorer(self.config.exploration)

    @property
    def state(self) -> S:
        """What the router learned; a NotFittedError before ``fit`` or ``load``."""
        if self._state is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load() first")
        return self._state

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
        splits = split_by_query(frame, val=self.config.train.val_fraction, seed=self.config.train.seed)
        if splits.train.empty or splits.val.empty:
            raise DataValidationError("logs: too few distinct queries to carve a validation split")
        if self.config.encoder.tuning.epochs:
            if isinstance(encoder, SentenceTransformerEncoder):
                with self._timed("tune_encoder"):
                    names = [m.name for m in catalog]
                    encoder = tune_encoder(encoder, splits.train, names, self.config.encoder, self.config.train.seed)
            else:
                logger.warning("encoder.tuning: %s cannot be tuned; fitting with it as it is", encoder.name)
        base = FittedState(
            encoder=encoder,
            llms=list(catalog),
            enabled=np.ones(len(catalog), dtype=bool),
            cost_scaler=CostScaler.fit(frame),
            task_names=[],
            task_centroids=np.zeros((0, encoder.dim), dtype=np.float32),
            user_ids=sorted(frame[s.USER_ID].unique().tolist()),
        )
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

    def predict_spread(
        self,
        queries: Sequence[str] | QueryBatch,
        tasks: Sequence[str | None] | None = None,
        user_ids: Sequence[str | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predicted effect, cost and how uncertain each predicted effect is (the standard deviation of the mean
        effect given the evidence behind it; ``graphroute.uncertainty``). Routers that keep no evidence counts
        report 0 (certain), which makes uncertainty-driven exploration greedy. Shapes: → (N, L) each."""
        batch = queries if isinstance(queries, QueryBatch) else self.prepare(queries, tasks, user_ids)
        _ = self.state
        return self._predict_spread(batch)

    def _predict_spread(self, batch: QueryBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        effect, cost = self._predict(batch)
        return effect, cost, np.zeros_like(effect)

    def predict_interval(
        self,
        queries: Sequence[str] | QueryBatch,
        level: float = 0.8,
        tasks: Sequence[str | None] | None = None,
        user_ids: Sequence[str | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bounds within which the observed effect of each (query, LLM) call falls with probability ``level``
        (calibrated on validation outcomes where the router kept them). Shapes: → (N, L) twice."""
        effect, _, spread = self.predict_spread(queries, tasks, user_ids)
        return self.interval_calibration().interval(effect, spread, level)

    def interval_calibration(self) -> IntervalCalibration:
        """How wide outcome intervals are drawn (routers that keep no validation outcomes assume normal ones)."""
        return IntervalCalibration.gaussian()

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
        spread: np.ndarray | None = None
        if self.explorer.active:
            effect, cost, spread = self._predict_spread(batch)
        else:
            effect, cost = self._predict(batch)
        norm = self.state.cost_scaler.transform(cost, batch.tasks)
        return [self._ranked(batch, i, r, effect, cost, norm, spread)[0] for i, r in enumerate(requests)]

    def _ranked(
        self,
        batch: QueryBatch,
        i: int,
        r: RouteRequest,
        effect: np.ndarray,
        cost: np.ndarray,
        norm: np.ndarray,
        spread: np.ndarray | None = None,
    ) -> tuple[list[Recommendation], float, np.ndarray]:
        """Request ``i``'s ranking, with the alpha and the affinity row (L,) its utilities used. With ``spread``
        (N, L) the router's explorer chooses the first entry (the others follow by utility)."""
        a, affinity = self._preferences(batch.take(slice(i, i + 1)), r.alpha)
        utility = policy.utilities(effect[i : i + 1], norm[i : i + 1], a) + affinity
        allowed = self.allowed_mask(r.candidates)
        if r.max_cost is not None:
            fits = allowed & (cost[i] <= r.max_cost)
            allowed = fits if fits.any() else allowed & (cost[i] == cost[i][allowed].min())
        order = [j for j in policy.rank(utility, allowed)[0] if allowed[j]]
        pick = None
        if spread is not None:
            pick = self.explorer.pick(utility[0], a[0] * spread[i], allowed)
            order = [pick.index, *(j for j in order if j != pick.index)]
        names = self.state.llm_names
        if pick is not None:
            chance = pick.probabilities
        else:
            chance = np.zeros(len(names))
            chance[order[0]] = 1.0
        recs = [
            Recommendation(
                names[j],
                float(effect[i, j]),
                float(cost[i, j]),
                float(norm[i, j]),
                float(utility[0, j]),
                rank + 1,
                propensity=float(chance[j]),
                exploratory=rank == 0 and pick is not None and pick.exploratory,
            )
            for rank, j in enumerate(order[: max(r.k, 1)])
        ]
        return recs, float(a[0]), affinity[0]

    # ----- explanations -----
    def explain(
        self,
        query: str,
        user_id: str | None = None,
        task: str | None = None,
        alpha: float | None = None,
        candidates: Sequence[str] | None = None,
        max_cost: float | None = None,
        k: int | None = None,
    ) -> Explanation:
        """The ranking ``recommend`` gives (every allowed LLM unless ``k``), each utility split into its terms and,
        for routers that can, each effect into the evidence it came from; with the task the query was matched to
        and the past queries the model read as neighbours."""
        st = self.state
        request = RouteRequest(query, user_id, task, k or len(st.llms), alpha, candidates, max_cost)
        self.check_request(request)
        batch = self.prepare([query], [task], [user_id])
        effect, cost = self._predict(batch)
        norm = st.cost_scaler.transform(cost, batch.tasks)
        recs, a, affinity = self._ranked(batch, 0, request, effect, cost, norm)
        split = self._effect_terms(batch)
        names = st.llm_names
        ranking = []
        for rec in recs:
            j = names.index(rec.llm)
            part = LLMExplanation(
                rec.llm,
                rec.rank,
                rec.utility,
                quality=a * rec.effect,
                cost=-(1.0 - a + policy.TIE_EPSILON) * rec.normalized_cost,
                affinity=float(affinity[j]),
                effect=rec.effect,
                cost_usd=rec.cost,
                normalized_cost=rec.normalized_cost,
            )
            if split is not None:
                logit, terms = split
                part.effect_logit = float(logit[0, j])
                part.effect_terms = {name: float(terms[name][0, j]) for name in EFFECT_TERMS}
                part.probe_shift = rec.effect - float(1.0 / (1.0 + np.exp(-logit[0, j])))
            ranking.append(part)
        index, inferred = st.task_lookup(batch.tasks, batch.emb)
        return Explanation(
            query=query,
            user_id=batch.user_ids[0],
            alpha=a,
            task=st.task_names[int(index[0])] if st.task_names else None,
            task_given=task,
            task_inferred=bool(inferred[0]),
            task_trust=self._task_trust(batch),
            ranking=ranking,
            neighbours=self._neighbours(batch, [r.llm for r in recs]),
            explains_effect=split is not None,
            note="" if split is not None else f"{type(self).__name__} does not split its effect predictions.",
        )

    def _effect_terms(self, batch: QueryBatch) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        """Effect logits (N, L) and their ``EFFECT_TERMS`` (N, L) each, for routers whose effect is such a sum."""
        return None

    def _neighbours(self, batch: QueryBatch, llms: Sequence[str]) -> list[Neighbour]:
        """The past queries the first query's prediction read, most similar first (none for most baselines)."""
        return []

    def _task_trust(self, batch: QueryBatch) -> float:
        """How far the first query's task evidence was used; a router without task gating uses it in full."""
        return 1.0


def _check_query(query: object, where: str) -> None:
    if not isinstance(query, str) or not query.strip():
        raise DataValidationError(f"{where}: empty query (value {query!r})")
    try:
        s.valid_unicode(query)
    except ValueError as exc:
        raise DataValidationError(f"{where}: {exc}") from exc
