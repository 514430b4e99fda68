"""The tables a router works on: queries ready for prediction (texts, tasks, users, embeddings, token counts,
catalog cost estimates) and a log joined to them (each outcome row pointing at its query and LLM by index)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from graphroute import schema as s


@dataclass
class QueryBatch:
    """Queries ready for prediction. Shapes: emb (N, D), tokens (N,), base_cost (N, L)."""

    texts: list[str]
    tasks: list[str | None]  # as given; None or an unseen name is inferred from the embedding where needed
    user_ids: list[str]
    emb: np.ndarray
    tokens: np.ndarray
    base_cost: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, rows: slice | np.ndarray) -> QueryBatch:
        """The rows given by a slice or an index array, as a batch."""
        index = np.arange(len(self.texts))[rows]
        return QueryBatch(
            [self.texts[i] for i in index],
            [self.tasks[i] for i in index],
            [self.user_ids[i] for i in index],
            self.emb[index],
            self.tokens[index],
            self.base_cost[index],
        )


@dataclass
class LogTables:
    """A validated log as one row per query plus one row per outcome (indices into the query rows)."""

    queries: QueryBatch
    query_ids: list[str]
    frame: pd.DataFrame  # the outcome rows, with columns q (query row) and l (LLM index)

    def concat(self, other: LogTables) -> LogTables:
        """Both tables as one (the query sets must be disjoint, as after a split by query)."""
        a, b = self.queries, other.queries
        queries = QueryBatch(
            a.texts + b.texts,
            a.tasks + b.tasks,
            a.user_ids + b.user_ids,
            np.concatenate([a.emb, b.emb]),
            np.concatenate([a.tokens, b.tokens]),
            np.concatenate([a.base_cost, b.base_cost]),
        )
        frame = pd.concat([self.frame, other.frame.assign(q=other.frame["q"] + len(self.query_ids))])
        return LogTables(queries, self.query_ids + other.query_ids, frame.reset_index(drop=True))

    def merge(self, other: LogTables) -> LogTables:
        """Both tables as one; queries of ``other`` already here keep their row, new ones are appended."""
        position = {q: i for i, q in enumerate(self.query_ids)}
        fresh = [i for i, q in enumerate(other.query_ids) if q not in position]
        for offset, i in enumerate(fresh):
            position[other.query_ids[i]] = len(self.query_ids) + offset
        a, b = self.queries, other.queries
        queries = QueryBatch(
            a.texts + [b.texts[i] for i in fresh],
            a.tasks + [b.tasks[i] for i in fresh],
            a.user_ids + [b.user_ids[i] for i in fresh],
            np.concatenate([a.emb, b.emb[fresh]]),
            np.concatenate([a.tokens, b.tokens[fresh]]),
            np.concatenate([a.base_cost, b.base_cost[fresh]]),
        )
        rows = other.frame.assign(q=[position[q] for q in other.frame[s.QUERY_ID]])
        return LogTables(
            queries,
            self.query_ids + [other.query_ids[i] for i in fresh],
            pd.concat([self.frame, rows]).reset_index(drop=True),
        )

    def llm_means(self, n_llms: int, fill: float = np.nan) -> np.ndarray:
        """Each LLM's mean effect over the queries it answered (the best single LLM is their argmax); ``fill``
        where it answered none. Shapes: → (L,)."""
        return column_means(self.outcome_matrix(n_llms), fill)

    def task_means(
        self, n_llms: int, tasks: np.ndarray, n_tasks: int, prior_count: float = 0.0, fill: float = np.nan
    ) -> np.ndarray:
        """Each LLM's mean effect per task, pulled towards its overall mean by ``prior_count`` pseudo-outcomes;
        its overall mean where the task has none, ``fill`` where it answered nothing. ``tasks`` (N,): the task
        index of each query. Shapes: → (T, L)."""
        matrix = self.outcome_matrix(n_llms)
        overall = column_means(matrix, fill)
        seen = ~np.isnan(matrix)
        table = np.empty((n_tasks, n_llms))
        for t in range(n_tasks):
            rows = tasks == t
            count, total = seen[rows].sum(axis=0), np.nansum(matrix[rows], axis=0)
            weight = count + prior_count
            table[t] = np.where(weight > 0, (total + prior_count * overall) / np.maximum(weight, 1e-12), overall)
        return table

    def outcome_matrix(self, n_llms: int, column: str = s.EFFECT) -> np.ndarray:
        """Mean observed value per (query, LLM); NaN where unobserved. Shapes: → (N, L)."""
        out = np.full((len(self.query_ids), n_llms), np.nan)
        grouped = self.frame.groupby(["q", "l"])[column].mean()
        q, l_ = zip(*grouped.index, strict=True) if len(grouped) else ((), ())
        out[np.array(q, dtype=int), np.array(l_, dtype=int)] = grouped.to_numpy()
        return out


def column_means(matrix: np.ndarray, fill: float | np.ndarray) -> np.ndarray:
    """Column means ignoring NaN; ``fill`` where a column has no value. Shapes: (N, L) → (L,)."""
    counts = (~np.isnan(matrix)).sum(axis=0)
    return np.where(counts > 0, np.nansum(matrix, axis=0) / np.maximum(counts, 1), fill)
