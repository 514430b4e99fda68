"""The bundled MiniLM run by ONNX Runtime: exported once from the packaged weights (nothing downloaded), cached as a
file keyed by the model's files and the exporter's versions, optionally quantised to int8.

A single query runs in well under half the time of ``SentenceTransformer.encode`` (figures in
docs/benchmarks.md), and the fp32 vectors equal sentence-transformers' to 2e-7, so embedding caches and saved
routers stay valid.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def model_key(model_dir: Path) -> str:
    """What an exported file depends on: the model's files (name, size, time) and the exporter's versions."""
    import torch
    import transformers

    parts = [torch.__version__, transformers.__version__, str(OPSET)]
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        stat = path.stat()
        parts.append(f"{path.relative_to(model_dir)}:{stat.st_size}:{int(stat.st_mtime)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def exported(model: Any, model_dir: Path, folder: Path, quantize: bool) -> Path:
    """The ONNX file of ``model`` (a SentenceTransformer of BERT + mean pooling) in ``folder``, exported and, with
    ``quantize``, quantised to int8 on first use; written under a temporary name and renamed, so processes that
    export at once never read a half-written file."""
    folder.mkdir(parents=True, exist_ok=True)
    key = model_key(model_dir)
    fp32 = folder / f"minilm-{key}.onnx"
    if not fp32.is_file():
        logger.info("exporting %s to ONNX (once): %s", model_dir.name, fp32)
        _atomic(fp32, lambda tmp: _export(model, tmp))
    if not quantize:
        return fp32
    int8 = folder / f"minilm-{key}-int8.onnx"
    if not int8.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        _atomic(int8, lambda tmp: quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8))
    return int8


def _atomic(path: Path, write: Any) -> None:
    fd, name = tempfile.mkstemp(dir=path.parent, suffix=".onnx.part")
    os.close(fd)
    try:
        write(Path(name))
        os.replace(name, path)
    finally:
        if os.path.exists(name):
            os.remove(name)


def _export(model: Any, path: Path) -> None:
    import warnings

    import torch

    class Pooled(torch.nn.Module):
        """The transformer and the mean over real tokens, as one graph. Shapes: (N, S) ×3 → (N, D)."""

        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    sample = model.tokenizer(["a first text", "a second, longer text to pad"], padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent Python code in transformers
        torch.onnx.export(
            Pooled(model[0].auto_model).eval(),
            tuple(sample[name] for name in INPUTS),
            str(path),
            input_names=list(INPUTS),
            output_names=["pooled"],
            dynamic_axes={**axes, "pooled": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


class OnnxSession:
    """An ONNX Runtime session of the exported model: token ids in, mean-pooled vectors out."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # workers sleep between runs instead of spinning: a server runs the GNN (torch's own threads) and its event
        # loop on the same cores right after each embedding, and spinning workers starve both
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def pooled(self, features: Any) -> np.ndarray:
        """Shapes: features[input] (N, S) → (N, D)."""
        feed = {name: np.asarray(features[name], dtype=np.int64) for name in INPUTS}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float32)
