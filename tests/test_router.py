from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from graphroute import Router, RouterConfig
from graphroute.errors import CorruptRouterError, DataValidationError, NotFittedError, UnknownLLMError
from graphroute.router import MEMBER_QUANTILES

QUERIES = [
    "Write a Python function that returns the median of a list of integers.",
    "Translate into German: 'We will visit the museum tomorrow.'",
    "Solve for x: 3x + 4 = 19.",
]


def test_fit_returns_self_and_learned_state(demo: tuple[pd.DataFrame, list], fitted_router: Router) -> None:
    logs, llms = demo
    fresh = Router(RouterConfig(encoder={"kind": "hashing", "dim": 16}, train={"epochs": 1}))
    assert "not fitted" in repr(fresh)
    assert fresh.fit(logs.head(200), llms) is fresh
    r = fitted_router
    assert repr(r).startswith("Router(6 LLMs (6 enabled),") and "8 users" in repr(r)
    assert r.state.llm_names[0] == "tiny-fast" and len(r.state.user_ids) == 8
    assert r.history_.best_epoch >= 0 and r.history_.history
    assert {"train_loss", "val_effect_loss"} <= set(r.history_.history[0])


def test_missing_and_unseen_tasks_are_inferred_from_the_query(fitted_router: Router) -> None:
    r = fitted_router
    known = r.state.task_names[-1]
    emb = r.prepare([QUERIES[0]] * 3).emb
    idx, inferred = r.state.task_lookup([known, None, "a-task-never-seen"], emb)
    assert inferred.tolist() == [False, True, True]
    assert idx[0] == len(r.state.task_names) - 1 and idx[1] == idx[2] == np.argmax(r.state.task_centroids @ emb[0])


def test_unseen_task_evidence_follows_the_config(fitted_router: Router, monkeypatch: pytest.MonkeyPatch) -> None:
    """'nearest' borrows the nearest known task's table for a task named but never seen; 'overall' gives it each
    LLM's overall mean; 'gated' (default) mixes the two by the query's trust. A missing task always borrows."""
    from graphroute.nn.pairs import LLM_MEAN, TASK_MEAN

    r, seen = fitted_router, []
    decode = r.state.model.decode
    monkeypatch.setattr(r.state.model, "decode", lambda z, pair, *a: seen.append(pair) or decode(z, pair, *a))
    for mode in ("nearest", "overall", "gated"):
        graph = r.config.graph.model_copy(update={"unseen_task": mode})
        monkeypatch.setattr(r, "config", r.config.model_copy(update={"graph": graph}))
        r.predict_outcomes(QUERIES[:1], tasks=["a-task-never-seen"])
        r.predict_outcomes(QUERIES[:1], tasks=[None])
    nearest, missing_nearest, overall, missing_overall, gated, missing_gated = seen
    for missing in (missing_nearest, missing_overall, missing_gated):
        torch.testing.assert_close(missing, nearest)
    torch.testing.assert_close(overall[:, TASK_MEAN], overall[:, LLM_MEAN])
    assert not torch.allclose(nearest[:, TASK_MEAN], nearest[:, LLM_MEAN])
    emb = r.prepare(QUERIES[:1]).emb
    trust = float(r.task_trust(emb, r.state.task_index([None], emb))[0])
    expected = trust * nearest[:, TASK_MEAN] + (1 - trust) * overall[:, LLM_MEAN]
    torch.testing.assert_close(gated[:, TASK_MEAN], expected)


def test_task_trust_places_a_query_among_the_task_members(fitted_router: Router) -> None:
    """Full trust from the median member's similarity up, none at or below the least typical member."""
    r = fitted_router
    centre = r.state.task_centroids[0]
    other = np.linalg.svd(centre[None, :])[2][1]  # a unit vector orthogonal to the centroid
    quantile = dict(zip(np.round(MEMBER_QUANTILES, 2), r.state.task_member_sims[0], strict=True))

    def at(similarity: float) -> np.ndarray:
        return similarity * centre + np.sqrt(1 - similarity**2) * other

    emb = np.stack([centre, at(quantile[0.75]), at(quantile[0.25]), at(quantile[0.0]), -centre])
    trust = r.task_trust(emb.astype(np.float32), np.zeros(len(emb), dtype=np.int64))
    np.testing.assert_allclose(trust, [1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-4)


def test_not_fitted() -> None:
    with pytest.raises(NotFittedError):
        Router().recommend("hello")


def test_recommend_ranked_with_effect_cost_utility(fitted_router: Router) -> None:
    recs = fitted_router.recommend(QUERIES[0], user_id="user001", k=3, alpha=0.7)
    assert [r.rank for r in recs] == [1, 2, 3]
    assert recs[0].utility >= recs[1].utility >= recs[2].utility
    assert all(0 <= r.effect <= 1 and r.cost > 0 for r in recs)


def test_alpha_changes_the_choice_without_retraining(fitted_router: Router) -> None:
    quality = fitted_router.route(QUERIES, alpha=1.0)
    cheap = fitted_router.route(QUERIES, alpha=0.0)
    prices = {m.name: m.input_price for m in fitted_router.state.llms}
    assert all(prices[c] == min(prices.values()) for c in cheap)
    assert quality != cheap


def test_candidates_restrict_and_unknown_candidate_errors(fitted_router: Router) -> None:
    recs = fitted_router.recommend(QUERIES[1], k=5, candidates=["coder-7b", "writer-8b"])
    assert {r.llm for r in recs} == {"coder-7b", "writer-8b"}
    with pytest.raises(UnknownLLMError, match="gpt-9"):
        fitted_router.recommend(QUERIES[1], candidates=["gpt-9"])
    with pytest.raises(DataValidationError, match="empty query"):
        fitted_router.recommend("  ")


def test_predictions_do_not_depend_on_the_batch(fitted_router: Router) -> None:
    alone, _ = fitted_router.predict_outcomes([QUERIES[2]])
    together, _ = fitted_router.predict_outcomes(QUERIES)
    np.testing.assert_allclose(alone[0], together[2], atol=1e-6)


def test_unknown_user_gets_cold_start(fitted_router: Router) -> None:
    a, _ = fitted_router.predict_outcomes(QUERIES, user_ids=["nobody"] * 3)
    b, _ = fitted_router.predict_outcomes(QUERIES, user_ids=["someone-else"] * 3)
    np.testing.assert_allclose(a, b)
    known, _ = fitted_router.predict_outcomes(QUERIES, user_ids=[fitted_router.state.user_ids[0]] * 3)
    assert np.abs(known - a).max() > 1e-4  # a known user's own evidence moves the prediction: ids are read


def test_save_load_identical_predictions(fitted_router: Router, tmp_path: Path) -> None:
    fitted_router.save(tmp_path / "run")
    loaded = Router.load(tmp_path / "run")
    for f in ("config.json", "model.safetensors", "graph.pt", "vocab.json", "scalers.json"):
        assert (tmp_path / "run" / f).is_file()
    np.testing.assert_array_equal(fitted_router.predict_utility(QUERIES, 0.5), loaded.predict_utility(QUERIES, 0.5))
    unseen = ["a-task-never-seen"] * len(QUERIES)  # gated task evidence reads the saved member similarities
    np.testing.assert_array_equal(
        fitted_router.predict_utility(QUERIES, 0.5, tasks=unseen), loaded.predict_utility(QUERIES, 0.5, tasks=unseen)
    )
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert set(meta["versions"]) == {"graphroute", "torch", "torch_geometric"}
    torch.load(tmp_path / "run" / "graph.pt", weights_only=True)  # plain tensors, no pickled objects


def test_router_saved_in_an_older_format_asks_for_retraining(fitted_router: Router, tmp_path: Path) -> None:
    run = tmp_path / "run"
    fitted_router.save(run)
    meta = json.loads((run / "config.json").read_text())
    meta["format"] = 1  # before the pair evidence changed shape
    (run / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptRouterError, match="router format 1.*train the router again"):
        Router.load(run)


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated-weights"])
def test_corrupt_saved_router(fitted_router: Router, tmp_path: Path, damage: str) -> None:
    run = tmp_path / "run"
    fitted_router.save(run)
    if damage == "missing":
        (run / "vocab.json").unlink()
    elif damage == "garbage":
        (run / "config.json").write_text("{not json")
    else:
        data = (run / "model.safetensors").read_bytes()
        (run / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptRouterError, match=str(run)):
        Router.load(run)


def test_seeded_training_is_reproducible(demo: tuple[pd.DataFrame, list], fast_config: RouterConfig) -> None:
    logs, llms = demo
    cfg = fast_config.model_copy(update={"train": fast_config.train.model_copy(update={"epochs": 2})})
    a = Router(cfg).fit(logs, llms).predict_utility(QUERIES, 0.5)
    b = Router(cfg).fit(logs, llms).predict_utility(QUERIES, 0.5)
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.slow
def test_training_lowers_validation_loss(demo: tuple[pd.DataFrame, list], fast_config: RouterConfig) -> None:
    logs, llms = demo
    hist = Router(fast_config).fit(logs, llms).history_
    assert hist.best_val_loss < hist.history[0]["val_effect_loss"] + hist.history[0]["val_cost_loss"]


def with_train(config: RouterConfig, **train: object) -> RouterConfig:
    return config.model_copy(update={"train": config.train.model_copy(update=train)})


@pytest.mark.slow
def test_neighbour_sampled_training_reaches_the_full_graph_quality(
    demo: tuple[pd.DataFrame, list], fast_config: RouterConfig
) -> None:
    """Mini-batches on sampled subgraphs (how logs too large for full-graph steps train) learn as well."""
    logs, llms = demo
    full = Router(with_train(fast_config, sampling="full")).fit(logs, llms).history_
    sampled = Router(with_train(fast_config, sampling="neighbor", batch_size=64, fanouts=[4, 2])).fit(logs, llms)
    first = sampled.history_.history[0]
    assert sampled.history_.best_val_loss < first["val_effect_loss"] + first["val_cost_loss"]
    assert abs(sampled.history_.best_val_loss - full.best_val_loss) < 0.05 * full.best_val_loss
    assert len(sampled.recommend(QUERIES[0], k=2)) == 2


@pytest.mark.slow
def test_end_to_end_generate_train_save_load_recommend(tmp_path: Path, fast_config: RouterConfig) -> None:
    from graphroute.data.io import read_catalog, read_interactions, write_catalog, write_interactions
    from graphroute.data.synthetic import make_demo_logs

    logs, llms = make_demo_logs(n_queries=300, n_users=5, seed=7)
    write_interactions(logs, tmp_path / "logs.parquet")
    write_catalog(llms, tmp_path / "llms.yaml")
    catalog = read_catalog(tmp_path / "llms.yaml")
    router = Router(fast_config).fit(read_interactions(tmp_path / "logs.parquet", catalog), catalog)
    router.save(tmp_path / "run")
    shutil.copytree(tmp_path / "run", tmp_path / "moved")
    loaded = Router.load(tmp_path / "moved")
    assert [r.llm for r in loaded.recommend(QUERIES[0], user_id="user002", k=2)] == [
        r.llm for r in router.recommend(QUERIES[0], user_id="user002", k=2)
    ]
