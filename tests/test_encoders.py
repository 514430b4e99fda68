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


@pytest.mark.slow
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


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")  # one export for the module's tests


@pytest.mark.slow
def test_onnx_vectors_equal_sentence_transformers(onnx_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default runtime gives the library's vectors to 1e-5: single texts, batches of mixed lengths (padding),
    texts past 256 tokens (truncation), in the order given; the export is reused, not redone."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = SentenceTransformerEncoder(batch_size=3, cache_dir=onnx_dir, cache_vectors=False)
    words = "the quick brown fox solves integrals of polynomial functions while sorting lists in Python".split()
    rng = np.random.default_rng(0)
    texts = ["hi", "2+2?", *(" ".join(rng.choice(words, n)) for n in (5, 17, 60, 250, 600)), "x " * 300]
    got = enc.encode(texts)
    assert enc._onnx() is not None and enc.name == "all-MiniLM-L6-v2"
    want = enc._load().encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    for i in (0, 5, 7):
        np.testing.assert_allclose(enc.encode([texts[i]])[0], want[i], atol=1e-5)
    assert len(list((onnx_dir / "onnx").glob("*.onnx"))) == 1
    again = SentenceTransformerEncoder(cache_dir=onnx_dir, cache_vectors=False)
    monkeypatch.setattr(
        "graphroute.onnx_encoder._export", lambda *a: (_ for _ in ()).throw(AssertionError("re-export"))
    )
    np.testing.assert_allclose(again.encode(texts[:2]), want[:2], atol=1e-5)


@pytest.mark.slow
def test_int8_model_keeps_the_direction_under_its_own_name(onnx_dir: Path) -> None:
    enc = SentenceTransformerEncoder(cache_dir=onnx_dir, quantize=True, cache_vectors=False)
    texts = ["What is the capital of France?", "Write a sorting function in Python."]
    got = enc.encode(texts)
    want = enc._load().encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    assert enc.name == "all-MiniLM-L6-v2-int8" and enc._onnx() is not None
    assert (np.einsum("nd,nd->n", got, want) > 0.9).all() and not np.allclose(got, want, atol=1e-4)


def test_batches_are_sorted_by_length_and_cover_every_text() -> None:
    encoder = SentenceTransformerEncoder(batch_size=64)
    texts = ["y" * ((n * 37) % 150 + 1) for n in range(300)]
    chunks = encoder._chunks(texts)
    assert [len(c) for c in chunks] == [64, 64, 64, 64, 44]
    lengths = [len(texts[i]) for i in np.concatenate(chunks)]
    assert lengths == sorted(lengths, reverse=True)
    assert sorted(np.concatenate(chunks).tolist()) == list(range(300))


@pytest.mark.slow
def test_onnx_falls_back_to_pytorch_when_it_disagrees(
    onnx_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An ONNX model that gives other vectors (here: made to) is not used: PyTorch embeds, with a warning."""
    from graphroute.onnx_encoder import OnnxSession

    monkeypatch.setattr(OnnxSession, "pooled", lambda self, features: np.ones((len(features["input_ids"]), 384)))
    enc = SentenceTransformerEncoder(cache_dir=onnx_dir, cache_vectors=False)
    texts = ["What is the capital of France?", "hi"]
    got = enc.encode(texts)
    assert enc._onnx() is None and "differ" in caplog.text
    want = enc._load().encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(got, want, atol=1e-6)


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


@pytest.mark.slow
def test_embedding_bench_reports_speed_and_agreement(onnx_dir: Path) -> None:
    """The runtimes' figures: the exact runtime agrees to 1e-5, int8 only in direction; timings are positive."""
    from graphroute.bench.embedding import measure

    exact = measure("onnx", str(onnx_dir), seed=0, n_single=3, n_batch=40, batch_size=8)
    int8 = measure("onnx-int8", str(onnx_dir), seed=0, n_single=3, n_batch=40, batch_size=8)
    assert exact["max_abs_diff"] <= 1e-5 and exact["single_p50_ms"] > 0 and exact["batched_per_s"] > 0
    assert 0.9 < int8["min_cosine"] < 0.9999 and int8["max_abs_diff"] > 1e-4
