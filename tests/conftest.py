"""Shared fixtures: small demo logs, the hashing encoder, one fitted router per session (seconds on CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from torch_geometric.data import HeteroData

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from graphroute import Router, RouterConfig  # noqa: E402
from graphroute.data.synthetic import make_demo_logs  # noqa: E402
from graphroute.graph import build_graph  # noqa: E402
from graphroute.schema import LLMProfile  # noqa: E402

SHARED_DATA = Path(os.environ.get("GRAPHROUTE_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(scope="session")
def fast_config() -> RouterConfig:
    return RouterConfig(
        encoder={"kind": "hashing", "dim": 64},
        model={"hidden_channels": 32},
        train={"epochs": 8, "patience": 4, "seed": 0},
    )


@pytest.fixture(scope="session")
def demo() -> tuple[pd.DataFrame, list[LLMProfile]]:
    return make_demo_logs(n_queries=500, n_users=8, seed=0)


@pytest.fixture(scope="session")
def dense_test() -> pd.DataFrame:
    return make_demo_logs(n_queries=80, n_users=8, per_query=None, seed=1)[0]


@pytest.fixture(scope="session")
def fitted_router(demo: tuple[pd.DataFrame, list[LLMProfile]], fast_config: RouterConfig) -> Router:
    logs, llms = demo
    return Router(fast_config).fit(logs, llms)


def shared_set(name: str) -> Path:
    """The folder of a shared benchmark set, or a clean skip naming what is missing."""
    folder = SHARED_DATA / name
    if not folder.exists():
        pytest.skip(f"benchmark data {folder} is missing (set GRAPHROUTE_DATA to the folder holding it)")
    return folder


PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose tables live in a fresh schema (dropped afterwards), or a skip naming the reason."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_SERVER, connect_timeout=3, autocommit=True)
    except Exception as exc:  # no server here: say so instead of failing
        pytest.skip(f"no PostgreSQL answers at 127.0.0.1:5432 ({type(exc).__name__})")
    schema = f"graphroute_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_SERVER}?options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def small_graph() -> tuple[HeteroData, np.ndarray]:
    """Six queries, two tasks, two LLMs, two users, with known outcomes: a graph small enough to check by hand."""
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    outcomes = {
        "q": np.array([0, 0, 1, 2, 3, 4, 5]),
        "l": np.array([0, 1, 1, 0, 1, 0, 1]),
        "u": np.array([0, 0, 1, 1, 0, 0, 1]),
        "effect": np.array([1, 0, 1, np.nan, 0, 1, 0.5]),
        "chosen": np.array([1, 0, np.nan, 1, np.nan, 0, 1.0]),
        "cost_z": np.zeros(7),
    }
    data = build_graph(
        emb,
        np.array([0, 0, 1, 1, 0, 1]),
        np.ones((2, 3)),
        np.ones((2, 4)),
        np.ones((3, 5)),
        outcomes,
        emb,
        k_neighbors=2,
    )
    return data, emb


def cli(
    *args: str | Path,
    cwd: Path | None = None,
    launcher: Sequence[str] = (sys.executable,),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`graphroute ARGS` in a fresh process (``launcher`` runs ``-m graphroute.cli``: python, or torchrun)."""
    command = [*launcher, "-m", "graphroute.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
