from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from graphroute.encoders import EmbeddingCache, HashingEncoder, SentenceTransformerEncoder


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
    """Embedding skips SentenceTransformer.encode's per-call overhead; the vectors must be the library's, for
    batches of mixed lengths (padding) and for single texts, in the order given."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = SentenceTransformerEncoder(batch_size=3)
    texts = ["hi", "Explain, step by step, how a hash map handles collisions in open addressing.", "2+2?", "x " * 300]
    got = enc.encode(texts)
    assert enc._direct_ok()
    want = enc._load().encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(enc.encode([texts[1]])[0], want[1], atol=1e-5)


def test_batches_cut_where_padding_would_waste_and_cover_every_text() -> None:
    encoder = SentenceTransformerEncoder(batch_size=64)
    mixed = ["x" * n for n in [40, 12, 38, 11, 36, 13, 35, 10, 33, 12, 34, 11, 37, 10, 39, 12]]  # 8 long, 8 short
    chunks = encoder._chunks(mixed)
    assert [len(c) for c in chunks] == [8, 8]
    assert all(len(mixed[i]) >= 33 for i in chunks[0]) and all(len(mixed[i]) <= 13 for i in chunks[1])
    alike = ["y" * (200 - n // 10) for n in range(300)]  # long list of similar lengths: full batches
    chunks = encoder._chunks(alike)
    assert [len(c) for c in chunks] == [64, 64, 64, 64, 44]
    assert sorted(np.concatenate(chunks).tolist()) == list(range(300))
