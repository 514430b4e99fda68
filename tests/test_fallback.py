from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from graphroute import Router
from graphroute.data.split import subsample_queries
from graphroute.fallback import ThinEvidenceFallback


def _log(
    rng: np.random.Generator, n: int, signal: float, sd: float = 0.15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means of 4 LLMs, predictions with between-LLM deviations, outcomes that hold ``signal`` of them."""
    means = np.array([0.6, 0.5, 0.45, 0.3])
    level = rng.normal(0, sd * 2 / 3, (n, 1))  # how hard each query is, shared by every LLM
    dev = rng.normal(0, sd, (n, 4))
    predicted = means + level + dev
    observed = means + level + signal * dev + rng.normal(0, 0.1, (n, 4))
    return means, predicted, observed


@pytest.mark.parametrize("signal", [0.0, 0.5, 1.0])
def test_weight_is_the_share_of_predicted_differences_the_outcomes_confirm(signal: float) -> None:
    means, predicted, observed = _log(np.random.default_rng(0), 2000, signal)
    fallback = ThinEvidenceFallback.fit(["a", "b", "c", "d"], means, predicted, observed)
    assert fallback.weight == pytest.approx(signal, abs=0.05)


def test_no_weight_kept_ranks_like_the_best_single_llm_and_keeps_each_querys_level() -> None:
    means, predicted, _ = _log(np.random.default_rng(1), 50, 0.0, sd=0.04)  # inside [0, 1]: nothing clipped
    fallback = ThinEvidenceFallback(0.0, dict(zip("abcd", means, strict=True)))
    effect = predicted.copy()
    fallback.apply(effect, list("abcd"))
    assert (effect.argmax(axis=1) == 0).all()  # every query goes where the mean is highest
    assert np.allclose(effect.mean(axis=1), predicted.mean(axis=1))


def test_only_llms_with_a_mean_are_moved_and_nan_or_few_outcomes_keep_everything() -> None:
    rng = np.random.default_rng(2)
    means, predicted, observed = _log(rng, 40, 0.0)
    fallback = ThinEvidenceFallback(0.5, {"a": means[0], "b": means[1]})
    effect = predicted.copy()
    fallback.apply(effect, ["a", "b", "new", "other"])
    assert np.array_equal(effect[:, 2:], predicted[:, 2:]) and not np.allclose(effect[:, :2], predicted[:, :2])
    one_each = np.full_like(observed, np.nan)
    one_each[np.arange(40), rng.integers(0, 4, 40)] = 0.5  # one outcome per query says nothing of differences
    kept = ThinEvidenceFallback.fit(list("abcd"), means, predicted, one_each, np.tile(means, (40, 1)))
    assert kept.weight == kept.task_weight == 1.0
    restored = ThinEvidenceFallback.from_dict(fallback.to_dict())
    assert restored == fallback


def _task_log(
    rng: np.random.Generator, n: int, task_signal: float, signal: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two tasks whose LLM means differ from the overall ones, predictions of both parts, outcomes that hold
    ``task_signal`` of the task part and ``signal`` of the rest."""
    means = np.array([0.6, 0.5, 0.45, 0.3])
    table = means + np.array([[0.15, -0.1, 0.05, -0.1], [-0.15, 0.1, -0.05, 0.1]])
    task = rng.integers(0, 2, n)
    level = rng.normal(0, 0.1, (n, 1))
    rest = rng.normal(0, 0.15, (n, 4))
    predicted = table[task] + level + rest
    observed = means + task_signal * (table[task] - means) + level + signal * rest + rng.normal(0, 0.1, (n, 4))
    return means, table, task, predicted, observed


@pytest.mark.parametrize(("task_signal", "signal"), [(1.0, 0.0), (0.0, 0.0), (1.0, 0.5), (0.5, 1.0)])
def test_task_part_and_rest_are_kept_in_the_shares_the_outcomes_confirm(task_signal: float, signal: float) -> None:
    means, table, task, predicted, observed = _task_log(np.random.default_rng(3), 3000, task_signal, signal)
    fallback = ThinEvidenceFallback.fit(list("abcd"), means, predicted, observed, table[task])
    assert fallback.task_weight == pytest.approx(task_signal, abs=0.05)
    assert fallback.weight == pytest.approx(signal, abs=0.05)


def test_keeping_only_the_task_part_ranks_like_the_best_llm_per_task() -> None:
    means, table, task, predicted, _ = _task_log(np.random.default_rng(4), 200, 1.0, 0.0)
    fallback = ThinEvidenceFallback(0.0, {}, 1.0).rebased(list("abcd"), means, ["t0", "t1"], table)
    effect = predicted.copy()
    fallback.apply(effect, list("abcd"), task, ["t0", "t1"])
    assert np.array_equal(effect.argmax(axis=1), table[task].argmax(axis=1))
    unknown = predicted.copy()  # rows whose task has no row fall back to the overall means: best single
    fallback.apply(unknown, list("abcd"), np.full(len(task), 5), ["t0", "t1"])
    assert (unknown.argmax(axis=1) == 0).all()
    unseen = predicted.copy()  # a task the router never saw, resembling the matched one not at all: the same
    fallback.apply(unseen, list("abcd"), task, ["t0", "t1"], np.zeros(len(task)))
    assert np.allclose(unseen, unknown)
    assert ThinEvidenceFallback.from_dict(fallback.to_dict()) == fallback


def test_a_fallback_saved_without_a_task_part_shrinks_as_it_did() -> None:
    means, predicted, _ = _log(np.random.default_rng(5), 30, 0.0)
    old = ThinEvidenceFallback.from_dict({"weight": 0.4, "means": dict(zip("abcd", means, strict=True))})
    effect = predicted.copy()
    old.apply(effect, list("abcd"), np.zeros(30, dtype=int), ["t0"])
    dev = predicted - means
    level = dev.mean(axis=1, keepdims=True)
    assert np.allclose(effect, np.clip(means + level + 0.4 * (dev - level), 0.0, 1.0))


@pytest.mark.slow
def test_a_router_fitted_on_a_small_log_keeps_less_of_its_differences(
    demo: tuple[pd.DataFrame, list], fast_config
) -> None:
    logs, llms = demo
    small = Router(fast_config).fit(subsample_queries(logs, 60, seed=0), llms)
    weight = small.state.fallback.weight
    assert 0.0 <= weight <= 1.0 and set(small.state.fallback.means) == {m.name for m in llms}
    effect, _ = small.predict_outcomes(["Prove that 17 is prime", "Translate 'bread' into French"])
    raw = small.state.fallback
    small.state.fallback = ThinEvidenceFallback()
    unshrunk, _ = small.predict_outcomes(["Prove that 17 is prime", "Translate 'bread' into French"])
    small.state.fallback = raw
    spread = np.abs(effect - effect.mean(axis=1, keepdims=True)).sum()
    assert spread <= np.abs(unshrunk - unshrunk.mean(axis=1, keepdims=True)).sum() + 1e-9


@pytest.mark.slow
def test_small_logs_are_never_significantly_worse_than_the_best_single_llm(
    fast_config, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """200 queries of a dense generated log, 5 seeds: the GNN's reward at alpha 1 never lies significantly below
    always picking the best single LLM (the benchmark runs the same on the real sets)."""
    from graphroute.bench import routing
    from graphroute.bench.online import demo_benchmark

    bench = demo_benchmark(n_train=1000, n_test=300)
    monkeypatch.setattr(routing, "DATASETS", {"demo": lambda folder: bench})
    res = routing.run_small_logs(tmp_path, fast_config, ["demo"], ["graphroute", "best-single"], 200, range(5))
    out = res["demo/test"]
    assert [r["seed"] for r in out["rows"]] == list(range(5)) and out["size"] == 200
    summary = out["gnn_minus_best_single@1.0"]
    assert summary["seeds_below"] == 0, out["rows"]
    assert summary["mean"] == pytest.approx(np.mean([r["gnn-best@1.0"][0] for r in out["rows"]]), abs=1e-4)
    assert "graphroute minus best-single at alpha 1" in routing.format_small_logs(res)


@pytest.mark.slow
def test_a_router_falling_back_to_task_means_keeps_them_and_reloads(
    demo: tuple[pd.DataFrame, list], fast_config, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    logs, llms = demo
    config = fast_config.model_copy(update={"model": fast_config.model.model_copy(update={"fallback": "task"})})
    router = Router(config).fit(logs, llms)
    fallback = router.state.fallback
    assert set(fallback.task_means) == set(router.state.task_names)
    assert fallback.task_weight is not None and 0.0 <= fallback.task_weight <= 1.0 and 0.0 <= fallback.weight <= 1.0
    queries = ["Prove that 17 is prime", "Translate 'bread' into French"]
    effect, _ = router.predict_outcomes(queries)
    router.save(tmp_path / "r")
    np.testing.assert_allclose(Router.load(tmp_path / "r").predict_outcomes(queries)[0], effect, atol=1e-6)
    overall = Router(fast_config).fit(logs, llms).state.fallback  # the default: one share, no task means
    assert not overall.task_means and overall.task_weight == overall.weight
