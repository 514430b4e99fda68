from __future__ import annotations

from pathlib import Path

import pytest
import torch

from graphroute.bench.scale import format_scale, plot_scale, run_scale
from graphroute.data.synthetic import make_scale_logs
from graphroute.training import resolve_device

pytestmark = pytest.mark.slow  # the scale benchmark, a process per size


def test_scale_benchmark_measures_every_phase_in_its_own_process(tmp_path: Path) -> None:
    rows = run_scale([2_000, 4_000])
    assert [r["interactions"] for r in rows] == [2_000, 4_000] and rows[1]["queries"] == 2_000
    for row in rows:
        assert 0 < row["build_and_epoch"] <= row["fit_total"] + row["read"]
        assert row["peak_rss_gb"] > 0.1 and row["inference_ms_per_query"] > 0
    assert "build_and_epoch" in format_scale(rows)
    plot_scale(rows, tmp_path / "scale.png")
    assert (tmp_path / "scale.png").stat().st_size > 10_000


def test_scale_logs_are_distinct_queries_with_one_choice_each() -> None:
    logs, llms = make_scale_logs(3_001, per_query=3, seed=1)
    assert len(logs) == 3_001 and logs["query"].nunique() == 1_001
    assert set(logs["llm"]) <= {m.name for m in llms} and logs["effect"].between(0, 1).all()
    assert (logs.head(3_000).groupby("query")["chosen"].sum() == 1).all()


def test_device_auto_is_the_gpu_only_when_present() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
