"""Growing a fitted router without retraining: users adapted from a few interactions, LLMs onboarded from their
description and optional probe outcomes, LLMs disabled or removed. The GNN weights are never touched: users and
LLMs are nodes whose features come from content, so adding them is a graph edit."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd

from graphroute import policy
from graphroute import schema as s
from graphroute.costs import catalog_costs, fill_costs
from graphroute.data.io import catalog_from_records, validate_interactions
from graphroute.errors import DataValidationError, UnknownLLMError
from graphroute.features import llm_features, user_features
from graphroute.graph.knn import nearest_neighbors
from graphroute.probes import AVERAGE_SAMPLE, MIN_PROBES, ProbeMap
from graphroute.schema import LLMProfile
from graphroute.users import UserPreference, choices_of, fit_preferences

if TYPE_CHECKING:
    from graphroute.base import QueryBatch

logger = logging.getLogger(__name__)
PROBE_USER = "__probe__"  # probe rows belong to no user: they map to the cold-start node


class OnboardingMixin:
    """Methods of ``Router`` that change what it knows after ``fit``; each keeps the weights as they are."""

    # attributes provided by Router / BaseRouter
    tables_: Any
    graph_: Any
    user_prefs_: dict[str, UserPreference]
    probe_maps_: dict[str, ProbeMap]

    # ----- users -----
    def update_user(self, user_id: str, interactions: pd.DataFrame | Sequence[dict[str, object]]) -> Self:
        """Add a user's interactions (also for a user never seen) and refit only that user's preference."""
        router: Any = self
        router._check_fitted()
        if not isinstance(user_id, str) or not user_id.strip():
            raise DataValidationError(f"user_id: must be a non-empty string (value {user_id!r})")
        frame = pd.DataFrame(list(interactions)) if not isinstance(interactions, pd.DataFrame) else interactions
        frame = frame.assign(**{s.USER_ID: user_id})
        frame = validate_interactions(frame, router.llms_, source=f"interactions of {user_id}")
        self._add_rows(fill_costs(frame, router.llms_, router.encoder_))
        if user_id not in router.user_ids_:
            router.user_ids_.append(user_id)
        self._refresh_graph()
        self._fit_preferences([user_id])
        return self

    def user_profile(self, user_id: str) -> dict[str, object]:
        """What the router knows of a user: interactions, fitted alpha and LLM affinities (cold-start if unknown)."""
        router: Any = self
        router._check_fitted()
        pref = self._preference(user_id)
        rows = int((self.tables_.frame[s.USER_ID] == user_id).sum())
        return {
            "user_id": user_id,
            "known": user_id in router.user_ids_,
            "interactions": rows,
            "alpha": pref.alpha,
            "n_choices": pref.n_choices,
            "affinity": dict(zip(router.llm_names_, pref.affinity.round(4).tolist(), strict=True)),
        }

    def _preference(self, user_id: str) -> UserPreference:
        router: Any = self
        default = UserPreference(router.config.policy.alpha, np.zeros(len(router.llms_)), 0)
        return self.user_prefs_.get(user_id, default)

    def _preferences(self, batch: QueryBatch, alpha: float | None) -> tuple[np.ndarray, np.ndarray]:
        policy.check_alpha(alpha)
        prefs = [self._preference(u) for u in batch.user_ids]
        alphas = np.array([p.alpha if alpha is None else alpha for p in prefs])
        return alphas, np.stack([p.affinity for p in prefs])

    def _fit_preferences(self, user_ids: Sequence[str]) -> None:
        router: Any = self
        frame = self.tables_.frame
        if s.CHOSEN not in frame or frame[s.CHOSEN].isna().all():
            return
        rows = frame[frame[s.USER_ID].isin(set(user_ids)) & frame[s.CHOSEN].notna()]
        effect = rows[s.EFFECT].to_numpy(dtype=float, copy=True)
        if np.isnan(effect).any():  # choices without a rating: use the router's own estimate
            missing = np.flatnonzero(np.isnan(effect))
            q = rows["q"].to_numpy()[missing]
            asked = self.tables_.queries.take(q)
            asked.user_ids = rows[s.USER_ID].iloc[missing].tolist()
            predicted, _ = router.predict_outcomes(asked)
            effect[missing] = predicted[np.arange(len(missing)), rows["l"].to_numpy()[missing]]
        norm = router.cost_scaler_.transform(rows[s.COST].to_numpy(dtype=float), rows[s.TASK].tolist())
        codes, users = pd.factorize(rows[s.USER_ID])
        choices = choices_of(rows, effect, norm, len(router.llms_), user=codes)
        fitted = fit_preferences(choices, len(users), router.config.policy.alpha, len(router.llms_))
        self.user_prefs_.update({str(u): p for u, p in zip(users, fitted, strict=True)})

    # ----- LLMs -----
    def add_llm(
        self, profile: LLMProfile | dict[str, object], probes: pd.DataFrame | Sequence[dict[str, object]] | None = None
    ) -> Self:
        """Make a new LLM routable at once from its description and prices, optionally with probe outcomes
        (rows with a `query` already known to the router and its `effect`)."""
        router: Any = self
        router._check_fitted()
        new = profile if isinstance(profile, LLMProfile) else catalog_from_records([profile], source="llm")[0]
        catalog_from_records([m.model_dump() for m in [*router.llms_, new]], source="llms")  # unique names
        probe_rows = self._probe_rows(new, probes) if probes is not None else None
        router.llms_.append(new)
        router.llm_names_.append(new.name)
        router.enabled_ = np.append(router.enabled_, True)
        router.llm_x_ = np.concatenate([router.llm_x_, llm_features([new], router.encoder_)])
        for pref in self.user_prefs_.values():
            pref.affinity = np.append(pref.affinity, 0.0)
        q = self.tables_.queries
        q.base_cost = catalog_costs(q.tokens, router.llms_)
        if probe_rows is not None:
            self._add_rows(probe_rows)
        self._refresh_graph()
        rated = probe_rows[probe_rows[s.EFFECT].notna()] if probe_rows is not None else None
        self._borrow_from_others(new.name, rated)
        return self

    def _borrow_from_others(self, name: str, probe_rows: pd.DataFrame | None) -> None:
        """Fit the new LLM's ``ProbeMap``: its probe outcomes against the other LLMs' predicted effects on the
        same queries, or with fewer than ``MIN_PROBES`` the others' average shape (see graphroute.probes)."""
        router: Any = self
        others = [n for n in router.llm_names_ if n != name]
        if not others:
            return
        columns = [router.llm_names_.index(n) for n in others]
        if probe_rows is not None and len(probe_rows) >= MIN_PROBES:
            predicted, _ = router.predict_outcomes(probe_rows[s.QUERY].tolist())
            effect = probe_rows[s.EFFECT].to_numpy(dtype=float)
            self.probe_maps_[name] = ProbeMap.fit(others, predicted[:, columns], effect)
            return
        queries = self.tables_.queries
        rng = np.random.default_rng(router.config.train.seed)
        sample = rng.choice(len(queries), size=min(AVERAGE_SAMPLE, len(queries)), replace=False)
        predicted, _ = router.predict_outcomes(queries.take(np.sort(sample)))
        self.probe_maps_[name] = ProbeMap.average(others, predicted[:, columns])

    def _probe_rows(self, llm: LLMProfile, probes: pd.DataFrame | Sequence[dict[str, object]]) -> pd.DataFrame:
        router: Any = self
        frame = pd.DataFrame(list(probes)) if not isinstance(probes, pd.DataFrame) else probes.copy()
        if frame.empty:
            raise DataValidationError("probes: no rows")
        for column in (s.QUERY, s.EFFECT):
            if column not in frame:
                raise DataValidationError(f"probes: missing column {column!r}")
        known = dict(zip(self.tables_.queries.texts, self.tables_.query_ids, strict=True))
        unknown = [q for q in frame[s.QUERY] if q not in known]
        if unknown:
            raise DataValidationError(f"probes: field 'query': not a query the router knows (value {unknown[0]!r})")
        frame = frame.assign(**{s.LLM: llm.name, s.USER_ID: PROBE_USER})
        frame = validate_interactions(frame, [*router.llms_, llm], source="probes")
        tasks = dict(zip(self.tables_.query_ids, self.tables_.queries.tasks, strict=True))
        frame[s.QUERY_ID] = frame[s.QUERY].map(known)
        frame[s.TASK] = frame[s.QUERY_ID].map(tasks)
        return fill_costs(frame, [*router.llms_, llm], router.encoder_)

    def disable_llm(self, name: str, disabled: bool = True) -> Self:
        """Stop (or, with disabled=False, resume) routing to an LLM; its history stays in the graph."""
        router: Any = self
        router.enabled_[self._llm_position(name)] = not disabled
        return self

    def remove_llm(self, name: str) -> Self:
        """Delete an LLM: its node, its outcome edges and its catalog entry."""
        router: Any = self
        j = self._llm_position(name)
        if len(router.llms_) == 1:
            raise DataValidationError(f"llm {name!r}: cannot remove the only LLM")
        keep = np.arange(len(router.llms_)) != j
        router.llms_ = [m for i, m in enumerate(router.llms_) if keep[i]]
        router.llm_names_ = [m.name for m in router.llms_]
        router.enabled_, router.llm_x_ = router.enabled_[keep], router.llm_x_[keep]
        for pref in self.user_prefs_.values():
            pref.affinity = pref.affinity[keep]
        self.probe_maps_.pop(name, None)  # other maps skip the removed LLM when applied
        t = self.tables_
        t.queries.base_cost = t.queries.base_cost[:, keep]
        frame = t.frame[t.frame["l"] != j]
        t.frame = frame.assign(l=frame["l"] - (frame["l"] > j)).reset_index(drop=True)
        self._refresh_graph()
        return self

    def _llm_position(self, name: str) -> int:
        router: Any = self
        router._check_fitted()
        if name not in router.llm_names_:
            raise UnknownLLMError(f"llm: unknown LLM {name!r}; known: {router.llm_names_}")
        return int(router.llm_names_.index(name))

    # ----- graph upkeep -----
    def _add_rows(self, frame: pd.DataFrame) -> None:
        router: Any = self
        self.tables_ = self.tables_.merge(router.tables(frame))

    def _refresh_graph(self) -> None:
        router: Any = self
        frame = self.tables_.frame
        users = frame[frame[s.USER_ID].isin(set(router.user_ids_))]
        router.user_x_ = user_features(users, router.user_ids_, router._cost_z(users[s.COST].to_numpy()))
        self.graph_ = router._graph(self.tables_, self._neighbors())

    def _neighbors(self) -> tuple[np.ndarray, np.ndarray]:
        """Similarity lists of the reference queries, searched only for queries added since the last call;
        earlier queries keep their lists until the next fit (new queries still serve as neighbours of every
        query routed later, which searches the whole pool)."""
        router: Any = self
        emb, k = self.tables_.queries.emb, router.config.graph.k_neighbors
        cached: tuple[np.ndarray, np.ndarray] | None = getattr(self, "_knn_cache", None)
        done = 0 if cached is None else len(cached[0])
        if cached is None or done > len(emb) or cached[0].shape[1] != min(k, len(emb) - 1):
            cached = nearest_neighbors(emb, emb, k, exclude_self=True)
        elif done < len(emb):
            idx, sim = nearest_neighbors(emb[done:], emb, k, exclude_self=True, offset=done)
            cached = (np.concatenate([cached[0], idx]), np.concatenate([cached[1], sim]))
        self._knn_cache = cached
        return cached
