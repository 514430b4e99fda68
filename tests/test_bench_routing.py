from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from graphroute import RouterConfig
from graphroute import schema as s
from graphroute.bench import routing

pytestmark = pytest.mark.slow  # a model fitted per held-out task on real data


def test_held_out_tasks_never_fit_on_the_task_it_scores(
    demo: tuple[pd.DataFrame, list], fast_config: RouterConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs, llms = demo
    fitted_on: list[set[str]] = []
    real_fit = routing.fit_routers

    def spy(bench, names, config):  # type: ignore[no-untyped-def]
        fitted_on.append(set(bench.train[s.TASK]))
        return real_fit(bench, names, config)

    monkeypatch.setattr(routing, "fit_routers", spy)
    res = routing.held_out_tasks(logs, llms, ["graphroute", "task-best", "knn"], fast_config)
    tasks = sorted(logs[s.TASK].unique())
    rows = res["rows"]
    assert [r["held-out task"] for r in rows] == tasks and res["n_tasks"] == len(tasks)
    for task, seen, row in zip(tasks, fitted_on, rows, strict=True):
        assert seen == set(tasks) - {task}  # fitted on every other task, never on the held-out one
        assert row["queries"] == logs.loc[logs[s.TASK] == task, s.QUERY].nunique()
        assert all(0 <= row[n] <= row["oracle"] for n in ("graphroute", "task-best", "knn"))
    for name in ("graphroute", "knn", "oracle"):
        assert res["mean_over_tasks"][name] == pytest.approx(np.mean([r[name] for r in rows]), abs=1e-4)
    wins = res["graphroute_wins_of_tasks"]
    assert set(wins) == {"task-best", "knn", "oracle"} and wins["oracle"] == 0
    assert wins["knn"] == sum(r["graphroute"] > r["knn"] for r in rows)
    text = routing.format_held_out({"demo": res})
    assert "mean over tasks" in text and f"graphroute wins (of {len(tasks)} tasks)" in text
