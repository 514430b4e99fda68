"""Tuning MiniLM on the routing objective: the targets and losses say what they should, the cached lower layers
reproduce the model, and a router fitted with a tuned encoder saves it, loads it and serves with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from graphroute import Router, RouterConfig
from graphroute import schema as s
from graphroute.config import EncoderConfig
from graphroute.data.synthetic import make_demo_logs
from graphroute.encoder_tuning import (
    _frozen_states,
    _pooled_top,
    query_llm_loss,
    query_query_loss,
    routing_targets,
)
from graphroute.encoders import SentenceTransformerEncoder


def test_routing_targets_mark_the_best_and_worst_llms_of_queries_that_tell_them_apart() -> None:
    frame = pd.DataFrame(
        {
            s.QUERY_ID: ["q1"] * 3 + ["q2"] * 3,
            s.QUERY: ["one"] * 3 + ["two"] * 3,
            s.TASK: ["t"] * 6,
            s.LLM: ["a", "b", "c"] * 2,
            s.EFFECT: [1.0, 0.95, 0.0, 0.5, 0.5, 0.45],
        }
    )
    texts, tasks, positive, negative = routing_targets(frame, ["a", "b", "c"], margin=0.1)
    assert texts == ["one", "two"] and tasks == ["t", "t"]
    assert positive[0].tolist() == [True, True, False] and negative[0].tolist() == [False, False, True]
    assert not positive[1].any() and not negative[1].any()  # effects within the margin teach nothing


def test_losses_prefer_the_right_geometry() -> None:
    keys = torch.eye(3, 4)
    positive = torch.tensor([[True, False, False]])
    negative = torch.tensor([[False, True, True]])
    near, far = (
        F.normalize(torch.tensor([[1.0, 0.1, 0, 0]]), dim=-1),
        F.normalize(torch.tensor([[0.1, 1.0, 0, 0]]), dim=-1),
    )
    assert query_llm_loss(near, keys, positive, negative, 0.1) < query_llm_loss(far, keys, positive, negative, 0.1)
    assert query_llm_loss(near, keys, positive, torch.zeros_like(negative), 0.1) == 0.0  # no negative: no signal
    tasks = torch.tensor([0, 0, 1, 1])
    grouped = F.normalize(torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0]]), dim=-1)
    mixed = grouped[[0, 2, 1, 3]]
    assert query_query_loss(grouped, tasks, 0.1) < query_query_loss(mixed, tasks, 0.1)


@pytest.mark.slow
def test_cached_lower_layers_and_the_tuned_top_reproduce_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before any step, the top layers run on the cached states give the model's own vectors."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = SentenceTransformerEncoder(runtime="torch")._load()
    texts = ["What is the capital of France?", "Write a function that sorts a list.", "2 + 2 = ?"]
    layers = model[0].auto_model.encoder.layer
    states = _frozen_states(model, texts, len(layers) - 2, 64, 2)
    got = _pooled_top(torch.nn.ModuleList(list(layers)[-2:]), states).detach().numpy()
    want = model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(np.einsum("nd,nd->n", got, want), 1.0, atol=2e-3)


@pytest.mark.slow
def test_router_with_a_tuned_encoder_saves_loads_and_serves_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.runtime import Served

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    logs, llms = make_demo_logs(n_queries=80, n_users=3, per_query=None, seed=0)
    tuning = {"epochs": 4, "lr": 2e-4, "batch_size": 16, "layers": 1}
    config = RouterConfig(
        encoder={"runtime": "torch", "cache_dir": str(tmp_path / "cache"), "tuning": tuning},
        model={"hidden_channels": 16},
        train={"epochs": 3, "seed": 0},
    )
    router = Router(config).fit(logs, llms)
    name = router.state.encoder.name
    assert name.startswith("all-MiniLM-L6-v2-tuned-") and "tune_encoder" in router.timings_

    texts = logs.drop_duplicates(s.QUERY)[s.QUERY].tolist()
    task = logs.drop_duplicates(s.QUERY)[s.TASK].to_numpy()
    same = task[:, None] == task[None, :]

    def task_contrast(vectors: np.ndarray) -> float:
        sims = vectors @ vectors.T
        return float(sims[same & ~np.eye(len(texts), dtype=bool)].mean() - sims[~same].mean())

    bundled = SentenceTransformerEncoder(runtime="torch").encode(texts)
    tuned = router.state.encoder.encode(texts)
    assert task_contrast(tuned) > task_contrast(bundled)  # queries of one task drew together

    router.save(tmp_path / "router")
    assert (tmp_path / "router" / "encoder").is_dir()
    loaded = Router.load(tmp_path / "router")
    assert loaded.state.encoder.name == name
    np.testing.assert_allclose(loaded.predict_outcomes(texts[:5])[0], router.predict_outcomes(texts[:5])[0], atol=1e-5)
    served = Served.load(tmp_path / "router")
    assert served.router.state.encoder.name == name
    np.testing.assert_allclose(served.router.state.encoder.encode(texts[:3]), tuned[:3], atol=1e-5)


def test_only_minilm_can_be_tuned() -> None:
    with pytest.raises(ValueError, match="tuning.epochs"):
        EncoderConfig(kind="hashing", tuning={"epochs": 1})


def test_an_encoder_that_cannot_be_tuned_is_used_as_it_is_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    from graphroute.encoders import HashingEncoder

    logs, llms = make_demo_logs(n_queries=40, n_users=2, per_query=None, seed=0)
    config = RouterConfig(encoder={"tuning": {"epochs": 1}}, train={"epochs": 1})
    with caplog.at_level("WARNING", logger="graphroute.base"):
        router = Router(config, encoder=HashingEncoder(32)).fit(logs, llms)
    assert router.state.encoder.name == HashingEncoder(32).name
    assert "cannot be tuned" in caplog.text
