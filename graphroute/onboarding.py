"""Growing a fitted router without retraining: users adapted from a few interactions, LLMs onboarded from their
description and optional probe outcomes, LLMs disabled or removed. The GNN weights are never touched: users and
LLMs are nodes whose features come from content, so adding them is a graph edit."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd

from graphroute import policy
from graphroute import schema as s
from graphroute.costs import catalog_costs, fill_costs
from graphroute.data.io import catalog_from_records, interaction_rows, validate_interactions
from graphroute.errors import DataValidationError, UnknownLLMError
from graphroute.features import llm_features, user_features
from graphroute.graph.knn import nearest_neighbors
from graphroute.probes import AVERAGE_SAMPLE, MIN_PROBES, ProbeMap
from graphroute.schema import Interaction, LLMProfile
from graphroute.users import UserPreference, choices_of, fit_preferences

if TYPE_CHECKING:
    from graphroute.data.tables import QueryBatch

logger = logging.getLogger(__name__)
PROBE_USER = "__probe__"  # probe rows belong to no user: they map to the cold-start node


class OnboardingMixin:
    """Methods of ``Router`` that change what it knows after ``fit``; each keeps the weights as they are."""

    # attributes provided by Router / BaseRouter
    tables_: Any
    graph_: Any
    user_prefs_: dict[str, UserPreference]
    probe_maps_: dict[str, ProbeMap]
    pending_: list[dict[str, Any]]

    # ----- feedback and users -----
    def add_feedback(
        self, interactions: pd.DataFrame | Sequence[dict[str, object]] | Sequence[Interaction]
    ) -> list[str]:
        """Take outcome rows at once and fold them into the reference graph later (``fold``).

        This is the serving path: it costs microseconds per row, so feedback never waits for the graph. The rows'
        users count as known at once; a user whose rows complete a choice (two or more answers to one query, one
        of them chosen) has the preference refitted here. Returns the users.
        """
        users, choosers = self.take_feedback(interactions)
        if choosers:
            self.refit_users(choosers)
        return users

    def take_feedback(
        self, interactions: pd.DataFrame | Sequence[dict[str, object]] | Sequence[Interaction]
    ) -> tuple[list[str], list[str]]:
        """The part of ``add_feedback`` that runs no model: check the rows and queue them for the next fold.
        Safe to call from another thread than the one folding and routing (a server takes feedback on its event
        loop while its model thread routes). Returns the rows' users and those whose preference should be
        refitted (``refit_users``, on the model thread) because the rows complete a choice."""
        router: Any = self
        router._check_fitted()
        rows = interaction_rows(interactions, router.llm_names_, source="feedback")
        with self._pending_lock:
            self.pending_.extend(rows)
        users = sorted({r[s.USER_ID] for r in rows})
        choosers = sorted({r[s.USER_ID] for r in rows if r.get(s.CHOSEN) is not None})
        return users, choosers if choosers and self._completes_choice(rows) else []

    def refit_users(self, user_ids: Sequence[str]) -> None:
        """Refit these users' preferences from all their choices, folded or pending (milliseconds per user)."""
        self._fit_preferences(user_ids)

    def clear_pending(self) -> None:
        """Forget feedback not folded yet (fit and load start with none)."""
        self.pending_ = []
        self._pending_lock = threading.Lock()
        self._embedded: dict[str, np.ndarray] = {}

    def update_user(self, user_id: str, interactions: pd.DataFrame | Sequence[dict[str, object]]) -> Self:
        """Add a user's interactions (also for a user never seen), fold them into the graph and refit only that
        user's preference."""
        if not isinstance(user_id, str) or not user_id.strip():
            raise DataValidationError(f"user_id: must be a non-empty string (value {user_id!r})")
        frame = pd.DataFrame(list(interactions)) if not isinstance(interactions, pd.DataFrame) else interactions
        self.add_feedback(frame.assign(**{s.USER_ID: user_id}))
        self.fold()
        return self

    def _completes_choice(self, rows: list[dict[str, Any]]) -> bool:
        """Whether some (user, query) of ``rows`` now has two or more answers, so a choice may have formed."""
        keys = {(r[s.USER_ID], r[s.QUERY]) for r in rows if r.get(s.CHOSEN) is not None}
        counts: dict[tuple[str, str], int] = {}
        for r in list(self.pending_):
            key = (r[s.USER_ID], r[s.QUERY])
            if key in keys:
                counts[key] = counts.get(key, 0) + 1
        if any(c >= 2 for c in counts.values()):
            return True
        return any(key in self._logged_pairs() for key in keys)

    def _logged_pairs(self) -> set[tuple[str, str]]:
        """(user, query) of every folded row, kept until the next fold (feedback checks it per request)."""
        cached = getattr(self, "_pairs", None)
        if cached is None or cached[0] is not self.tables_:
            frame = self.tables_.frame
            cached = self._pairs = (self.tables_, set(zip(frame[s.USER_ID], frame[s.QUERY], strict=True)))
        return cached[1]

    def fold(self, max_new_queries: int | None = None) -> int:
        """Move pending feedback into the reference graph: embed its new queries, merge its rows, rebuild the
        graph and the inference cache. With ``max_new_queries`` one call embeds at most that many new queries and
        merges only once all are embedded, so a server can interleave routing between bounded steps. Returns the
        number of rows still pending."""
        router: Any = self
        if not self.pending_:
            return 0
        known = self._query_ids_by_text()
        todo = [
            q
            for q in dict.fromkeys(r[s.QUERY] for r in list(self.pending_))
            if q not in known and q not in self._embedded
        ]
        if max_new_queries is not None and len(todo) > max_new_queries:
            part = todo[:max_new_queries]
            self._embedded.update(zip(part, router.encoder_.encode(part), strict=True))
            return len(self.pending_)
        if todo:
            self._embedded.update(zip(todo, router.encoder_.encode(todo), strict=True))
        with self._pending_lock:
            rows, self.pending_ = self.pending_, []
        frame = validate_interactions(pd.DataFrame(rows), router.llms_, source="feedback")
        frame[s.QUERY_ID] = [known.get(q, i) for q, i in zip(frame[s.QUERY], frame[s.QUERY_ID], strict=True)]
        frame = fill_costs(frame.drop(columns=[s.FEEDBACK_ID], errors="ignore"), router.llms_, router.encoder_)
        embedded = {**self._embedded, **self._reference_embeddings(frame, known)}
        self._add_rows(frame, embedded)
        self._embedded = {}
        router.user_ids_.extend(u for u in dict.fromkeys(frame[s.USER_ID]) if u not in set(router.user_ids_))
        self._refresh_graph()
        router._inference_cache()  # built now, not by the next request
        return 0

    def _query_ids_by_text(self) -> dict[str, str]:
        cached = getattr(self, "_ids_by_text", None)
        if cached is None or cached[0] != len(self.tables_.query_ids):
            ids = dict(zip(self.tables_.queries.texts, self.tables_.query_ids, strict=True))
            cached = self._ids_by_text = (len(self.tables_.query_ids), ids)
        return cached[1]

    def _reference_embeddings(self, frame: pd.DataFrame, known: dict[str, str]) -> dict[str, np.ndarray]:
        """Embeddings of the rows' queries that are already reference queries (read, not recomputed)."""
        position = {q: i for i, q in enumerate(self.tables_.query_ids)}
        texts = [q for q in dict.fromkeys(frame[s.QUERY]) if q in known]
        return {q: self.tables_.queries.emb[position[known[q]]] for q in texts}

    def user_profile(self, user_id: str) -> dict[str, object]:
        """What the router knows of a user: interactions, fitted alpha and LLM affinities (cold-start if unknown)."""
        router: Any = self
        router._check_fitted()
        pref = self._preference(user_id)
        pending = sum(1 for r in list(self.pending_) if r[s.USER_ID] == user_id)
        rows = int((self.tables_.frame[s.USER_ID] == user_id).sum()) + pending
        return {
            "user_id": user_id,
            "known": user_id in router.user_ids_ or pending > 0,
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
        """Refit these users' preferences from all their choices, folded or still pending."""
        router: Any = self
        users = set(user_ids)
        frame = self.tables_.frame
        logged = frame[frame[s.USER_ID].isin(users) & frame[s.CHOSEN].notna()] if s.CHOSEN in frame else frame[:0]
        pending = self._pending_choices(users)
        if logged.empty and pending.empty:
            return
        effect = np.concatenate(
            [self._rated(logged, self.tables_.queries.take(logged["q"].to_numpy())), self._rated(pending, None)]
        )
        rows = pd.concat([logged, pending], ignore_index=True) if len(pending) else logged
        norm = router.cost_scaler_.transform(rows[s.COST].to_numpy(dtype=float), rows[s.TASK].tolist())
        codes, fitted_users = pd.factorize(rows[s.USER_ID])
        choices = choices_of(rows, effect, norm, len(router.llms_), user=codes)
        fitted = fit_preferences(choices, len(fitted_users), router.config.policy.alpha, len(router.llms_))
        self.user_prefs_.update({str(u): p for u, p in zip(fitted_users, fitted, strict=True)})

    def _pending_choices(self, users: set[str]) -> pd.DataFrame:
        """Pending rows of ``users`` that carry a choice, as log rows (query id, LLM index, cost filled)."""
        router: Any = self
        rows = [r for r in list(self.pending_) if r[s.USER_ID] in users and r.get(s.CHOSEN) is not None]
        if not rows:
            return pd.DataFrame()
        frame = validate_interactions(pd.DataFrame(rows), router.llms_, source="feedback")
        known = self._query_ids_by_text()
        frame[s.QUERY_ID] = [known.get(q, i) for q, i in zip(frame[s.QUERY], frame[s.QUERY_ID], strict=True)]
        frame = fill_costs(frame, router.llms_, router.encoder_)
        return frame.assign(l=frame[s.LLM].map({n: i for i, n in enumerate(router.llm_names_)}))

    def _rated(self, rows: pd.DataFrame, asked: QueryBatch | None) -> np.ndarray:
        """The rows' effects, the router's own estimate where a choice came without a rating. ``asked``: the rows'
        queries when they are reference queries (embedded already), else their texts are embedded."""
        router: Any = self
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
                batch = router.prepare(texts, tasks, users)
            predicted, _ = router.predict_outcomes(batch)
            effect[missing] = predicted[np.arange(len(missing)), rows["l"].to_numpy()[missing]]
        return effect

    # ----- LLMs -----
    def add_llm(
        self, profile: LLMProfile | dict[str, object], probes: pd.DataFrame | Sequence[dict[str, object]] | None = None
    ) -> Self:
        """Make a new LLM routable at once from its description and prices, optionally with probe outcomes
        (rows with a `query` already known to the router and its `effect`)."""
        router: Any = self
        router._check_fitted()
        self.fold()  # probes may name queries that arrived as feedback
        new = self.check_llm(profile, probes)
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

    def check_llm(
        self, profile: LLMProfile | dict[str, object], probes: pd.DataFrame | Sequence[dict[str, object]] | None = None
    ) -> LLMProfile:
        """What ``add_llm`` would reject, without adding anything: an invalid profile, a name already in the
        catalog, probes on queries the router does not know or with an effect outside [0, 1]."""
        router: Any = self
        router._check_fitted()
        new = profile if isinstance(profile, LLMProfile) else catalog_from_records([profile], source="llm")[0]
        catalog_from_records([m.model_dump() for m in [*router.llms_, new]], source="llms")  # unique names
        if probes is not None:
            frame = pd.DataFrame(list(probes)) if not isinstance(probes, pd.DataFrame) else probes
            known = {*self.tables_.queries.texts, *(r[s.QUERY] for r in list(self.pending_))}
            self._check_probes(frame, known)
            validate_interactions(frame.assign(**{s.LLM: new.name}), [*router.llms_, new], source="probes")
        return new

    def _check_probes(self, frame: pd.DataFrame, known: set[str] | dict[str, str]) -> None:
        if frame.empty:
            raise DataValidationError("probes: no rows")
        for column in (s.QUERY, s.EFFECT):
            if column not in frame:
                raise DataValidationError(f"probes: missing column {column!r}")
        unknown = [q for q in frame[s.QUERY] if q not in known]
        if unknown:
            raise DataValidationError(f"probes: field 'query': not a query the router knows (value {unknown[0]!r})")

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
        known = self._query_ids_by_text()
        self._check_probes(frame, known)
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
        self.fold()  # pending rows may name it
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
    def _add_rows(self, frame: pd.DataFrame, embedded: dict[str, np.ndarray] | None = None) -> None:
        router: Any = self
        self.tables_ = self.tables_.merge(router.tables(frame, embedded))

    def _refresh_graph(self) -> None:
        router: Any = self
        frame = self.tables_.frame
        users = frame[frame[s.USER_ID].isin(set(router.user_ids_))]
        router.user_x_ = user_features(users, router.user_ids_, router._cost_z(users[s.COST].to_numpy()))
        self.graph_ = router._graph(self.tables_, self._neighbors())

    def _neighbors(self) -> tuple[np.ndarray, np.ndarray]:
        """Similarity lists of the reference queries, searched only for queries added since the last call, among
        the queries before them; earlier queries keep their lists until the next fit (new queries still serve as
        neighbours of every query routed later, which searches the whole pool)."""
        router: Any = self
        emb, k = self.tables_.queries.emb, router.config.graph.k_neighbors
        cached: tuple[np.ndarray, np.ndarray] | None = getattr(self, "_knn_cache", None)
        done = 0 if cached is None else len(cached[0])
        k_now = min(k, len(emb) - 1)
        if cached is None or done > len(emb) or cached[0].shape[1] != k_now or done < k_now:
            cached = nearest_neighbors(emb, emb, k, exclude_self=True)
        elif done < len(emb):  # appended queries look only at earlier ones: the same lists however they arrived
            idx, sim = nearest_neighbors(emb[done:], emb, k, exclude_self=True, offset=done, causal=True)
            cached = (np.concatenate([cached[0], idx]), np.concatenate([cached[1], sim]))
        self._knn_cache = cached
        return cached
