from __future__ import annotations

import numpy as np

from graphroute.graph import knn
from graphroute.graph.knn import nearest_neighbors


def clustered(n: int, dim: int = 32, clusters: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(clusters, dim))[rng.integers(clusters, size=n)] + rng.normal(scale=0.6, size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_matches_brute_force_and_skips_self() -> None:
    x = clustered(600)
    idx, sim = nearest_neighbors(x[100:200], x, 5, exclude_self=True, offset=100, chunk=32)
    full = x[100:200] @ x.T
    full[np.arange(100), np.arange(100, 200)] = -np.inf
    want = np.argsort(-full, axis=1)[:, :5]
    assert np.array_equal(np.sort(idx, axis=1), np.sort(want, axis=1))
    assert np.allclose(sim, np.take_along_axis(full, idx, axis=1))
    assert (np.diff(sim, axis=1) <= 0).all()  # most similar first


def test_inverted_file_search_finds_almost_all_true_neighbours() -> None:
    """Large pools are searched approximately (near-linear); recall@10 against the exact search stays high."""
    x = clustered(20_000)
    approx, sim = nearest_neighbors(x, x, 10, exclude_self=True, exact=False)
    exact, _ = nearest_neighbors(x[:2000], x, 10, exclude_self=True, exact=True)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx[:2000], exact, strict=True)])
    assert recall >= 0.9, recall
    assert not (approx == np.arange(len(x))[:, None]).any()  # never its own neighbour
    assert np.allclose(sim, np.einsum("nd,nkd->nk", x, x[approx]), atol=1e-5)


def test_inverted_file_index_is_built_once_per_pool() -> None:
    """Routing against a large reference pool reuses its index (clustering the pool per request would cost
    seconds at a million rows); the self-search and later searches of new queries share it."""
    x = clustered(6_000)
    knn.IVFIndex.built = 0
    whole, _ = nearest_neighbors(x, x, 5, exclude_self=True, exact=False)
    tail, _ = nearest_neighbors(x[5_000:], x, 5, exclude_self=True, offset=5_000, exact=False)
    one, _ = nearest_neighbors(x[5_000:5_001] + 0, x, 5, exact=False)
    assert knn.IVFIndex.built == 1
    assert np.array_equal(tail, whole[5_000:])
    assert one[0, 0] == 5_000 and np.array_equal(np.sort(one[0, 1:]), np.sort(whole[5_000, :4]))
    copy = x.copy()  # another pool (same values): its own index
    nearest_neighbors(x[:3], copy, 5, exact=False)
    assert knn.IVFIndex.built == 2
