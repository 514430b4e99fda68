from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from graphroute.encoders import EmbeddingCache, HashingEncoder, MemoryCache, SentenceTransformerEncoder


def test_hashing_is_deterministic_normalised_and_discriminative() -> None:
    enc = HashingEncoder(64)
    a = enc.encode(["solve for x", "solve for x", "write a poem about rain"])
    assert a.shape == (3, 64) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(a[0], a[1])
    assert a[0] @ a[2] < 0.9
    np.testing.assert_array_equal(HashingEncoder(64).encode(["solve for x"])[0], a[0])
    assert enc.count_tokens(["a b c", "x"]).tolist() == [3, 1]


def test_cache_round_trip(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    key = EmbeddingCache.key("m", "text")
    cache.put({key: np.arange(4, dtype=np.float32)})
    np.testing.assert_array_equal(EmbeddingCache(tmp_path).get([key, "other"])[key], np.arange(4))


def test_minilm_offline_with_disk_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = SentenceTransformerEncoder(cache_dir=tmp_path)
    texts = ["What is the capital of France?", "Write a sorting function in Python."]
    first = enc.encode(texts)
    assert first.shape == (2, 384)
    assert float(first[0] @ first[1]) < 0.5
    fresh = SentenceTransformerEncoder(cache_dir=tmp_path)
    fresh._embed = lambda *a, **k: (_ for _ in ()).throw(AssertionError("cache missed"))  # type: ignore[method-assign]
    np.testing.assert_allclose(fresh.encode(texts), first, atol=1e-6)
    assert enc.count_tokens(["hello world"])[0] >= 2


def test_minilm_direct_path_equals_sentence_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedding skips SentenceTransformer.encode's per-call overhead and packs tokens; the vectors must be the
    library's, for batches of mixed lengths (padding, truncation at 256 tokens) and single texts, in the order
    given."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = SentenceTransformerEncoder(batch_size=3)
    texts = ["hi", "Explain, step by step, how a hash map handles collisions in open addressing.", "2+2?", "x " * 300]
    got = enc.encode(texts)
    assert enc._direct_ok()
    want = enc._load().encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(enc.encode([texts[1]])[0], want[1], atol=1e-5)


def test_batches_are_sorted_by_length_and_cover_every_text() -> None:
    encoder = SentenceTransformerEncoder(batch_size=64)
    texts = ["y" * ((n * 37) % 150 + 1) for n in range(300)]
    chunks = encoder._chunks(texts)
    assert [len(c) for c in chunks] == [64, 64, 64, 64, 44]
    lengths = [len(texts[i]) for i in np.concatenate(chunks)]
    assert lengths == sorted(lengths, reverse=True)
    assert sorted(np.concatenate(chunks).tolist()) == list(range(300))


def test_direct_path_falls_back_when_it_disagrees(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model the packed forward gets wrong (here: made to) is embedded by SentenceTransformer.encode instead."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = SentenceTransformerEncoder()
    enc._load()
    monkeypatch.setattr(enc, "_direct", lambda texts: np.zeros((len(texts), 384), np.float32))
    got = enc.encode(["What is the capital of France?", "hi"])
    assert not enc._direct_ok()
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_memory_cache_is_a_bounded_lru_with_the_same_vectors() -> None:
    inner = HashingEncoder(32)
    calls: list[list[str]] = []
    encode = inner.encode
    inner.encode = lambda texts, show_progress=False: calls.append(list(texts)) or encode(texts)  # type: ignore[method-assign]
    cache = MemoryCache(inner, max_items=3)
    texts = ["a b", "c d", "e f"]
    np.testing.assert_array_equal(cache.encode(texts + ["a b"]), encode(texts + ["a b"]))
    assert calls == [texts] and len(cache) == 3
    cache.encode(["a b"])  # used: now the most recent
    cache.encode(["g h"])  # evicts the least recently used, "c d"
    assert len(cache) == 3 and calls[-1] == ["g h"]
    cache.encode(["a b", "c d"])
    assert calls[-1] == ["c d"] and cache.name == inner.name and cache.dim == 32
