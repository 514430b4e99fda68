"""Top-k cosine neighbours of queries: exact in blocks for the sizes of real benchmarks, an inverted-file
(IVF) search past that, so building the similarity edges of a million-row log stays near-linear.

Embeddings are unit vectors, so cosine similarity is a dot product; both searches run in torch blocks (torch
uses every core for the matrix products and its top-k is far cheaper than a full partition).
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import torch

EXACT_LIMIT = 20_000  # reference pools up to this size are searched exactly
IVF_PROBES = 6  # inverted lists searched per query cluster
KMEANS_ITERATIONS = 8


def nearest_neighbors(
    emb: np.ndarray,
    ref: np.ndarray,
    k: int,
    exclude_self: bool = False,
    chunk: int = 4096,
    offset: int = 0,
    exact: bool | None = None,
    causal: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k cosine neighbours of each row of ``emb`` among ``ref``. Shapes: (N, D), (M, D) → (N, k), (N, k).

    With ``exclude_self``, row i of ``emb`` is row ``offset + i`` of ``ref`` and is not its own neighbour; with
    ``causal`` as well, only the rows before it are candidates (exact search; at least k must precede every row),
    so a query appended to a pool gets the same neighbours however the appends were batched.
    ``exact`` None searches exactly up to ``EXACT_LIMIT`` reference rows and approximately (IVF) above.
    """
    k = min(k, len(ref) - int(exclude_self))
    if k <= 0 or len(emb) == 0:
        return np.zeros((len(emb), max(k, 0)), dtype=np.int64), np.zeros((len(emb), max(k, 0)), dtype=np.float32)
    if causal and not (exclude_self and offset >= k):
        raise ValueError(f"causal search needs exclude_self and at least k={k} earlier rows (offset {offset})")
    queries = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
    pool = torch.from_numpy(np.ascontiguousarray(ref, dtype=np.float32))
    self_index = torch.arange(offset, offset + len(emb)) if exclude_self else None
    if causal or (exact if exact is not None else len(ref) <= EXACT_LIMIT):
        idx, sim = _exact(queries, pool, k, self_index, chunk, causal)
    else:
        idx, sim = _index_for(ref, pool).search(queries, pool, k, self_index)
    return idx.numpy(), sim.numpy()


def _exact(
    queries: torch.Tensor,
    pool: torch.Tensor,
    k: int,
    self_index: torch.Tensor | None,
    chunk: int,
    causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.empty(len(queries), k, dtype=torch.long)
    sim = torch.empty(len(queries), k)
    for start in range(0, len(queries), chunk):
        block = queries[start : start + chunk] @ pool.T
        if self_index is not None:
            own = self_index[start : start + chunk]
            if causal:
                block[torch.arange(len(pool)).unsqueeze(0) >= own.unsqueeze(1)] = -math.inf
            else:
                block[torch.arange(block.size(0)), own] = -math.inf
        top = block.topk(k, dim=1)
        idx[start : start + chunk], sim[start : start + chunk] = top.indices, top.values
    return idx, sim


class IVFIndex:
    """An inverted-file index of one reference pool: spherical k-means into √M lists, each list's members
    stored together. Built once per pool and kept (see ``_index_for``), so routing a query against a large
    reference graph searches a few lists instead of clustering the pool again."""

    built = 0  # indexes built in this process (tests check reuse)

    def __init__(self, pool: torch.Tensor) -> None:
        IVFIndex.built += 1
        self.n_lists = max(1, int(math.sqrt(len(pool))))
        self.centroids = _kmeans(pool, self.n_lists)
        self.labels = _assign(pool, self.centroids)
        self.order, self.starts, self.sizes = _groups(self.labels, self.n_lists)
        self.near_lists = (self.centroids @ self.centroids.T).argsort(dim=1, descending=True)

    def search(
        self, queries: torch.Tensor, pool: torch.Tensor, k: int, self_index: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each query cluster searches the members of the ``IVF_PROBES`` lists nearest its centroid (more while
        they hold fewer than k + 1 rows). Queries that are pool rows (``self_index``) reuse their list. The
        index keeps no reference to ``pool`` (the pool it was built on), so caching it holds no memory of size M·D."""
        labels = self.labels[self_index] if self_index is not None else _assign(queries, self.centroids)
        q_order, q_starts, q_sizes = _groups(labels, self.n_lists)
        idx = torch.empty(len(queries), k, dtype=torch.long)
        sim = torch.empty(len(queries), k)
        for c in torch.nonzero(q_sizes).squeeze(1).tolist():
            rows = q_order[q_starts[c] : q_starts[c] + q_sizes[c]]
            lists = self.near_lists[c]
            n_probe = max(IVF_PROBES, int(torch.searchsorted(torch.cumsum(self.sizes[lists], 0), k + 1)) + 1)
            members = torch.cat(
                [self.order[self.starts[j] : self.starts[j] + self.sizes[j]] for j in lists[:n_probe].tolist()]
            )
            block = queries[rows] @ pool[members].T
            if self_index is not None:
                block[self_index[rows].unsqueeze(1) == members.unsqueeze(0)] = -math.inf
            top = block.topk(k, dim=1)
            idx[rows], sim[rows] = members[top.indices], top.values
        return idx, sim


_INDEXES: dict[int, tuple[weakref.ref[np.ndarray], IVFIndex]] = {}
INDEXES_KEPT = 2  # pools whose index stays in memory (a fit's train pool and train + validation pool)


def _index_for(ref: np.ndarray, pool: torch.Tensor) -> IVFIndex:
    """The index of ``ref``, built at its first search and reused while ``ref`` lives (pools are replaced by
    new arrays, never changed in place)."""
    kept = _INDEXES.get(id(ref))
    if kept is not None and kept[0]() is ref:
        return kept[1]
    index = IVFIndex(pool)
    for key in [key for key, (alive, _) in _INDEXES.items() if alive() is None]:
        del _INDEXES[key]
    while len(_INDEXES) >= INDEXES_KEPT:
        del _INDEXES[next(iter(_INDEXES))]
    _INDEXES[id(ref)] = (weakref.ref(ref), index)
    return index


def _groups(labels: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row ids sorted by group, and each group's start and size in that order. Shapes: (N,) → (N,), (G,), (G,)."""
    sizes = torch.bincount(labels, minlength=n_groups)
    return torch.argsort(labels, stable=True), torch.cumsum(sizes, 0) - sizes, sizes


def _kmeans(points: torch.Tensor, n_clusters: int, sample: int = 64) -> torch.Tensor:
    """Spherical k-means on a seeded sample of ``sample`` points per cluster. Shapes: (M, D) → (C, D)."""
    generator = torch.Generator().manual_seed(0)
    subset = points[torch.randperm(len(points), generator=generator)[: n_clusters * sample]]
    centroids = subset[torch.randperm(len(subset), generator=generator)[:n_clusters]].clone()
    for _ in range(KMEANS_ITERATIONS):
        label = _assign(subset, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, label, subset)
        empty = sums.norm(dim=1) < 1e-12
        sums[empty] = centroids[empty]  # an empty cluster keeps its centroid
        centroids = torch.nn.functional.normalize(sums, dim=1)
    return centroids


def _assign(points: torch.Tensor, centroids: torch.Tensor, chunk: int = 16_384) -> torch.Tensor:
    return torch.cat([(points[i : i + chunk] @ centroids.T).argmax(dim=1) for i in range(0, len(points), chunk)])
