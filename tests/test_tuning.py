from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from graphroute import RouterConfig
from graphroute.data.io import write_catalog, write_interactions
from graphroute.data.synthetic import make_demo_logs

pytestmark = pytest.mark.slow  # Optuna worker processes


def test_two_workers_share_one_study_and_the_best_config_trains(tmp_path: Path) -> None:
    logs, llms = make_demo_logs(n_queries=200, n_users=4, seed=4)
    write_interactions(logs, tmp_path / "logs.parquet")
    write_catalog(llms, tmp_path / "llms.yaml")
    storage = f"sqlite:///{tmp_path / 'study.sqlite'}"
    cmd = [
        sys.executable,
        "-m",
        "graphroute.cli",
        "tune",
        str(tmp_path / "logs.parquet"),
        "--llms",
        str(tmp_path / "llms.yaml"),
        "--trials",
        "2",
        "--storage",
        storage,
        "--study",
        "shared",
        "--encoder",
        "hashing",
        "--epochs",
        "3",
        "--output",
        str(tmp_path / "best.yaml"),
    ]
    workers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err
    study = optuna.load_study(study_name="shared", storage=storage)
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(4))  # both workers' trials, none twice
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == 4
    best = RouterConfig.from_yaml(tmp_path / "best.yaml")
    assert best.model.hidden_channels == study.best_params["hidden_channels"]
    train = subprocess.run(
        [
            sys.executable,
            "-m",
            "graphroute.cli",
            "train",
            str(tmp_path / "logs.parquet"),
            "--llms",
            str(tmp_path / "llms.yaml"),
            "--out",
            str(tmp_path / "run"),
            "--config",
            str(tmp_path / "best.yaml"),
            "--encoder",
            "hashing",
            "--epochs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr
