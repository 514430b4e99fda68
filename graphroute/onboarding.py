"""Growing a fitted GNN state without retraining: feedback queued and folded into the reference graph, LLMs added
from their description and optional probe outcomes, or removed. The GNN weights are never touched: users and LLMs
are nodes whose features come from content, so adding them is a graph edit. ``Router`` exposes these as methods;
what needs the model's predictions (user preferences, a new LLM's probe map) stays there."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from graphroute import schema as s
from graphroute.costs import catalog_costs, fill_costs
from graphroute.data.io import catalog_from_records, validate_interactions
from graphroute.errors import DataValidationError
from graphroute.features import llm_features
from graphroute.schema import LLMProfile
from graphroute.state import GNNState

logger = logging.getLogger(__name__)
PROBE_USER = "__probe__"  # probe rows belong to no user: they map to the cold-start node

Rows = list[dict[str, Any]]


class FeedbackQueue:
    """Outcome rows taken while serving and not yet in the reference graph, and the embeddings of their new queries
    computed so far. ``put`` and ``drain`` may run on different threads (a server takes feedback on its event loop
    while its model thread folds and routes)."""

    def __init__(self) -> None:
        self._rows: Rows = []
        self._lock = threading.Lock()
        self.embedded: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def put(self, rows: Rows) -> None:
        with self._lock:
            self._rows.extend(rows)

    def rows(self) -> Rows:
        """A snapshot of the queued rows (the queue may grow meanwhile)."""
        return list(self._rows)

    def drain(self) -> Rows:
        """Take every queued row out of the queue."""
        with self._lock:
            rows, self._rows = self._rows, []
        return rows


def completes_choice(state: GNNState, queue: FeedbackQueue, rows: Rows) -> bool:
    """Whether some (user, query) of ``rows`` now has two or more answers, so a choice may have formed."""
    keys = {(r[s.USER_ID], r[s.QUERY]) for r in rows if r.get(s.CHOSEN) is not None}
    counts: dict[tuple[str, str], int] = {}
    for r in queue.rows():
        key = (r[s.USER_ID], r[s.QUERY])
        if key in keys:
            counts[key] = counts.get(key, 0) + 1
    if any(c >= 2 for c in counts.values()):
        return True
    return any(key in state.logged_pairs() for key in keys)


def fold(state: GNNState, queue: FeedbackQueue, k_neighbors: int, max_new_queries: int | None = None) -> int:
    """Move queued feedback into the reference log and graph: embed its new queries, merge its rows, rebuild the
    graph. With ``max_new_queries`` one call embeds at most that many new queries and merges only once all are
    embedded, so a server can interleave routing between bounded steps. Returns the number of rows still queued."""
    if not len(queue):
        return 0
    known = state.query_ids_by_text()
    texts = dict.fromkeys(r[s.QUERY] for r in queue.rows())
    todo = [q for q in texts if q not in known and q not in queue.embedded]
    if max_new_queries is not None and len(todo) > max_new_queries:
        part = todo[:max_new_queries]
        queue.embedded.update(zip(part, state.encoder.encode(part), strict=True))
        return len(queue)
    if todo:
        queue.embedded.update(zip(todo, state.encoder.encode(todo), strict=True))
    frame = _as_log_rows(state, queue.drain(), known)
    state.add_rows(frame.drop(columns=[s.FEEDBACK_ID], errors="ignore"), {**queue.embedded, **_known_emb(state, frame)})
    queue.embedded = {}
    state.user_ids.extend(u for u in dict.fromkeys(frame[s.USER_ID]) if u not in set(state.user_ids))
    state.refresh_graph(k_neighbors)
    return 0


def _as_log_rows(state: GNNState, rows: Rows, known: dict[str, str]) -> pd.DataFrame:
    """Feedback rows as validated, cost-filled log rows; a query the router knows keeps its reference id."""
    frame = validate_interactions(pd.DataFrame(rows), state.llms, source="feedback")
    frame[s.QUERY_ID] = [known.get(q, i) for q, i in zip(frame[s.QUERY], frame[s.QUERY_ID], strict=True)]
    return fill_costs(frame, state.llms, state.encoder)


def _known_emb(state: GNNState, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Embeddings of the rows' queries that are already reference queries (read, not recomputed)."""
    known = state.query_ids_by_text()
    position = {q: i for i, q in enumerate(state.tables.query_ids)}
    texts = [q for q in dict.fromkeys(frame[s.QUERY]) if q in known]
    return {q: state.tables.queries.emb[position[known[q]]] for q in texts}


def pending_choices(state: GNNState, queue: FeedbackQueue, users: set[str]) -> pd.DataFrame:
    """Queued rows of ``users`` that carry a choice, as log rows (query id, LLM index, cost filled)."""
    rows = [r for r in queue.rows() if r[s.USER_ID] in users and r.get(s.CHOSEN) is not None]
    if not rows:
        return pd.DataFrame()
    frame = _as_log_rows(state, rows, state.query_ids_by_text())
    return frame.assign(l=frame[s.LLM].map({n: i for i, n in enumerate(state.llm_names)}))


def user_profile(state: GNNState, queue: FeedbackQueue, user_id: str, default_alpha: float) -> dict[str, object]:
    """What the state knows of a user: interactions, fitted alpha and LLM affinities (cold-start if unknown)."""
    pref = state.preference(user_id, default_alpha)
    pending = sum(1 for r in queue.rows() if r[s.USER_ID] == user_id)
    rows = int((state.tables.frame[s.USER_ID] == user_id).sum()) + pending
    return {
        "user_id": user_id,
        "known": user_id in state.user_ids or pending > 0,
        "interactions": rows,
        "alpha": pref.alpha,
        "n_choices": pref.n_choices,
        "affinity": dict(zip(state.llm_names, pref.affinity.round(4).tolist(), strict=True)),
    }


# ----- LLMs -----
def check_llm(
    state: GNNState,
    queue: FeedbackQueue,
    profile: LLMProfile | dict[str, object],
    probes: pd.DataFrame | Sequence[dict[str, object]] | None = None,
) -> LLMProfile:
    """What ``add_llm`` would reject, without adding anything: an invalid profile, a name already in the catalog,
    probes on queries the router does not know or with an effect outside [0, 1]."""
    new = profile if isinstance(profile, LLMProfile) else catalog_from_records([profile], source="llm")[0]
    catalog_from_records([m.model_dump() for m in [*state.llms, new]], source="llms")  # unique names
    if probes is not None:
        frame = _frame(probes)
        _check_probes(frame, {*state.tables.queries.texts, *(r[s.QUERY] for r in queue.rows())})
        validate_interactions(frame.assign(**{s.LLM: new.name}), [*state.llms, new], source="probes")
    return new


def _frame(rows: pd.DataFrame | Sequence[dict[str, object]]) -> pd.DataFrame:
    return rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))


def _check_probes(frame: pd.DataFrame, known: set[str] | dict[str, str]) -> None:
    if frame.empty:
        raise DataValidationError("probes: no rows")
    for column in (s.QUERY, s.EFFECT):
        if column not in frame:
            raise DataValidationError(f"probes: missing column {column!r}")
    unknown = [q for q in frame[s.QUERY] if q not in known]
    if unknown:
        raise DataValidationError(f"probes: field 'query': not a query the router knows (value {unknown[0]!r})")


def probe_rows(state: GNNState, llm: LLMProfile, probes: pd.DataFrame | Sequence[dict[str, object]]) -> pd.DataFrame:
    """Probe outcomes of a new LLM as log rows of the probe user on reference queries."""
    frame = _frame(probes)
    known = state.query_ids_by_text()
    _check_probes(frame, known)
    frame = frame.assign(**{s.LLM: llm.name, s.USER_ID: PROBE_USER})
    frame = validate_interactions(frame, [*state.llms, llm], source="probes")
    tasks = dict(zip(state.tables.query_ids, state.tables.queries.tasks, strict=True))
    frame[s.QUERY_ID] = frame[s.QUERY].map(known)
    frame[s.TASK] = frame[s.QUERY_ID].map(tasks)
    return fill_costs(frame, [*state.llms, llm], state.encoder)


def add_llm(state: GNNState, new: LLMProfile, probes: pd.DataFrame | None, k_neighbors: int) -> None:
    """Put a new LLM in the catalog (enabled, features from its description, no user affinity) with its probe rows
    in the reference log, and rebuild the graph."""
    state.llms.append(new)
    state.enabled = np.append(state.enabled, True)
    state.features.llm_x = np.concatenate([state.features.llm_x, llm_features([new], state.encoder)])
    for pref in state.user_prefs.values():
        pref.affinity = np.append(pref.affinity, 0.0)
    q = state.tables.queries
    q.base_cost = catalog_costs(q.tokens, state.llms)
    if probes is not None:
        state.add_rows(probes)
    state.refresh_graph(k_neighbors)


def remove_llm(state: GNNState, name: str, k_neighbors: int) -> None:
    """Delete an LLM: its node, its outcome edges, its catalog entry and its probe map."""
    j = state.llm_position(name)
    if len(state.llms) == 1:
        raise DataValidationError(f"llm {name!r}: cannot remove the only LLM")
    keep = np.arange(len(state.llms)) != j
    state.llms = [m for i, m in enumerate(state.llms) if keep[i]]
    state.enabled, state.features.llm_x = state.enabled[keep], state.features.llm_x[keep]
    for pref in state.user_prefs.values():
        pref.affinity = pref.affinity[keep]
    state.probe_maps.pop(name, None)  # other maps skip the removed LLM when applied
    state.task_priors.pop(name, None)
    t = state.tables
    t.queries.base_cost = t.queries.base_cost[:, keep]
    frame = t.frame[t.frame["l"] != j]
    t.frame = frame.assign(l=frame["l"] - (frame["l"] > j)).reset_index(drop=True)
    state.refresh_graph(k_neighbors)
