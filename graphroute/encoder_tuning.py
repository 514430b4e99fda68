"""Fine-tuning MiniLM on the routing objective, so that queries which suit the same LLMs lie close together.

The graph links each query to its nearest reference queries and the readouts read the query embedding, so both
inherit what the embedding keeps: MiniLM was trained to place paraphrases together, not queries one LLM answers
well and another badly. In the manner of RouterDC, two contrastive losses reshape it:

- query-LLM: each LLM has a learned key vector; a query is pulled towards the keys of the LLMs that did best on it
  and pushed from those that did worst (only queries whose best and worst effects differ by more than a margin
  teach anything: on llmrouter-9llm a fifth of the queries have every LLM at 0);
- query-query: within a batch, queries of one task are pulled together and pushed from the others, which keeps the
  embedding from collapsing onto the few directions the LLM keys need.

Only the training split of a fit is read (never the validation queries the router is selected on), and the tuned
model is saved with the router, so serving embeds exactly as fitting did.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from graphroute import progress
from graphroute import schema as s
from graphroute.config import EncoderConfig
from graphroute.encoders import SentenceTransformerEncoder, make_encoder

logger = logging.getLogger(__name__)
KEY_LR = 1e-3  # the LLM keys start random and must move much faster than the pretrained weights


def routing_targets(
    frame: pd.DataFrame, llm_names: Sequence[str], margin: float
) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Per query of a validated log: its text, its task, and which LLMs are its positives and negatives
    (within ``margin`` of its best and of its worst effect); queries whose effects span no more than the margin
    are left out of the LLM masks (all False). Shapes: → masks (Q, L)."""
    rated = frame[frame[s.EFFECT].notna()]
    matrix = rated.pivot_table(index=s.QUERY_ID, columns=s.LLM, values=s.EFFECT, aggfunc="mean")
    matrix = matrix.reindex(columns=list(llm_names))
    first = rated.drop_duplicates(s.QUERY_ID).set_index(s.QUERY_ID).loc[matrix.index]
    effect = matrix.to_numpy(dtype=float)
    best, worst = np.nanmax(effect, axis=1, keepdims=True), np.nanmin(effect, axis=1, keepdims=True)
    spread = (best - worst) > margin
    with np.errstate(invalid="ignore"):
        positive = spread & (effect >= best - margin)
        negative = spread & (effect <= worst + margin)
    return first[s.QUERY].tolist(), first[s.TASK].astype(str).tolist(), positive, negative


def query_llm_loss(
    emb: torch.Tensor, keys: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean over (query, positive LLM) of −log p(positive | itself and the query's negatives). Shapes: emb (B, D)
    unit rows, keys (L, D), masks (B, L) → scalar (0 when no row teaches anything)."""
    logits = emb @ F.normalize(keys, dim=-1).T / temperature
    neg = torch.where(negative, logits, torch.full_like(logits, -torch.inf))
    neg_sum = torch.logsumexp(neg, dim=1, keepdim=True)  # −inf where a row has no negative
    per_pair = torch.logaddexp(logits, neg_sum) - logits  # −log(e^pos / (e^pos + Σ e^neg))
    mask = positive & negative.any(dim=1, keepdim=True)
    return (per_pair * mask).sum() / mask.sum().clamp(min=1)


def query_query_loss(emb: torch.Tensor, tasks: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrast in the batch: each query against the others, its positives those of its task.
    Shapes: emb (B, D) unit rows, tasks (B,) → scalar (0 when no two queries share a task)."""
    sims = emb @ emb.T / temperature
    eye = torch.eye(len(emb), dtype=torch.bool)
    log_p = sims.masked_fill(eye, -torch.inf).log_softmax(dim=1).masked_fill(eye, 0.0)
    same = (tasks[:, None] == tasks[None, :]) & ~eye
    rows = same.any(dim=1)
    per_row = -(log_p * same).sum(dim=1) / same.sum(dim=1).clamp(min=1)
    return per_row[rows].mean() if rows.any() else emb.sum() * 0.0


def tune_encoder(
    base: SentenceTransformerEncoder,
    frame: pd.DataFrame,
    llm_names: Sequence[str],
    config: EncoderConfig,
    seed: int,
) -> SentenceTransformerEncoder:
    """A copy of ``base``'s model whose top ``tuning.layers`` transformer layers are fine-tuned on a validated log
    (its training split), saved in a temporary folder that lives as long as the returned encoder (``save`` copies
    it into the router folder).

    The layers below stay frozen, so their token states are computed once (``_frozen_states``) and each step runs
    only the tuned layers: two of MiniLM's six cost about a third of a full step, which keeps tuning within a few
    minutes on two CPU cores at the benchmark sizes."""
    from sentence_transformers import SentenceTransformer

    tuning = config.tuning
    texts, tasks, positive, negative = routing_targets(frame, llm_names, tuning.margin)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SentenceTransformer(str(base.model_path()), device="cpu")
    layers: torch.nn.ModuleList = model[0].auto_model.encoder.layer  # type: ignore[union-attr,assignment]
    top = torch.nn.ModuleList(list(layers)[len(layers) - min(tuning.layers, len(layers)) :])
    states = _frozen_states(model, texts, len(layers) - len(top), tuning.max_tokens, config.batch_size)
    keys = torch.nn.Parameter(torch.randn(len(llm_names), base.dim) * 0.02)
    optimizer = torch.optim.AdamW(
        [{"params": top.parameters(), "lr": tuning.lr}, {"params": [keys], "lr": KEY_LR}], weight_decay=0.0
    )
    task_ids = torch.as_tensor(pd.factorize(pd.Series(tasks))[0])
    pos, neg = torch.as_tensor(positive), torch.as_tensor(negative)
    top.train()
    steps = [
        order[start : start + tuning.batch_size]
        for order in (rng.permutation(len(texts)) for _ in range(tuning.epochs))
        for start in range(0, len(order), tuning.batch_size)
    ]
    for rows in progress.bar(steps, desc="tune encoder", show=len(steps) > 4):
        emb = _pooled_top(top, [states[i] for i in rows])
        index = torch.as_tensor(rows)
        loss = query_llm_loss(emb, keys, pos[index], neg[index], tuning.temperature)
        if tuning.task_weight:
            loss = loss + tuning.task_weight * query_query_loss(emb, task_ids[index], tuning.temperature)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    folder = tempfile.TemporaryDirectory(prefix="graphroute-encoder-")
    model.save(folder.name)
    logger.info("tuned the top %d encoder layers on %d queries (%d steps)", len(top), len(texts), len(steps))
    tuned = make_encoder(config, model_dir=Path(folder.name))
    assert isinstance(tuned, SentenceTransformerEncoder)
    tuned.owned_dir = folder  # removed with the encoder; ``save`` copies the model into the router folder
    return tuned


@torch.no_grad()
def _frozen_states(
    model: Any, texts: Sequence[str], below: int, max_tokens: int, batch_size: int
) -> list[torch.Tensor]:
    """Each text's token states after the first ``below`` transformer layers (the output of the embeddings when
    0), truncated to ``max_tokens`` and without padding. Shapes: → per text (tokens, D), float16 (memory)."""
    bert = model[0].auto_model
    tokenizer = model.tokenizer
    out: list[torch.Tensor] = [torch.empty(0)] * len(texts)
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in progress.bar(range(0, len(order), batch_size), desc="encoder states", show=len(order) > 512):
        rows = order[start : start + batch_size]
        batch = tokenizer(
            [texts[i] for i in rows], padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
        )
        hidden = bert(**batch, output_hidden_states=True).hidden_states[below]
        for row, h, mask in zip(rows, hidden, batch["attention_mask"], strict=True):
            out[row] = h[mask.bool()].to(torch.float16)
    return out


def _pooled_top(top: torch.nn.ModuleList, states: Sequence[torch.Tensor]) -> torch.Tensor:
    """Unit-length mean-pooled output of the tuned layers over a batch of frozen token states (padded here, with
    the additive attention mask every BERT attention implementation accepts). Shapes: → (B, D)."""
    length = max(len(h) for h in states)
    hidden = torch.zeros(len(states), length, states[0].shape[1])
    mask = torch.zeros(len(states), length)
    for i, h in enumerate(states):
        hidden[i, : len(h)], mask[i, : len(h)] = h.float(), 1.0
    additive = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min
    for layer in top:
        result = layer(hidden, attention_mask=additive)
        hidden = result[0] if isinstance(result, tuple) else result
    pooled = (hidden * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)
    return F.normalize(pooled, dim=-1)
