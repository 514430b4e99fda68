"""Data-parallel training with torchrun: 2 processes (gloo) on 127.0.0.1 against one process."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from graphroute import Router
from graphroute.bench.http import free_port
from graphroute.data.io import write_catalog, write_interactions
from graphroute.data.synthetic import make_demo_logs
from tests.conftest import cli

pytestmark = pytest.mark.slow  # torchrun processes

CONFIG = {
    "encoder": {"kind": "hashing", "dim": 64},
    "model": {"hidden_channels": 32},
    "train": {"epochs": 8, "patience": 4, "seed": 0},
}


def train(launcher: list[str], root: Path, out: str) -> tuple[float, str]:
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    args = ["train", root / "logs.parquet", "--llms", root / "llms.yaml", "--config", root / "config.yaml"]
    done = cli(*args, "--out", root / out, launcher=launcher, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    found = re.search(r"in (\d+) process\(es\).*validation loss ([0-9.]+)", done.stdout)
    assert found, done.stdout
    return float(found.group(2)), found.group(1)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ddp")
    logs, llms = make_demo_logs(n_queries=500, n_users=8, seed=0)
    write_interactions(logs, folder / "logs.parquet")
    write_catalog(llms, folder / "llms.yaml")
    (folder / "config.yaml").write_text(json.dumps(CONFIG))  # JSON is YAML
    return folder


@pytest.mark.parametrize("sampling", ["full", "neighbor"])
def test_two_torchrun_processes_train_to_the_quality_of_one(root: Path, sampling: str) -> None:
    config = {**CONFIG, "train": {**CONFIG["train"], "sampling": sampling, "batch_size": 64}}
    (root / "config.yaml").write_text(json.dumps(config))
    one, world = train([sys.executable], root, f"one-{sampling}")
    assert world == "1"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    two, world = train([*torchrun, "--master_port", str(free_port())], root, f"two-{sampling}")
    assert world == "2"
    # each rank sees half of every batch and gradients are averaged: the same optimisation, up to sampling noise
    assert abs(two - one) < 0.03 * one, (one, two)
    router = Router.load(root / f"two-{sampling}")  # rank 0 saved a complete router
    assert len(router.recommend("Solve for x: 3x + 4 = 19.", k=2)) == 2
