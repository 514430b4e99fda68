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
    assert ThinEvidenceFallback.fit(list("abcd"), means, predicted, one_each).weight == 1.0
    restored = ThinEvidenceFallback.from_dict(fallback.to_dict())
    assert restored == fallback


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
