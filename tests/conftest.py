"""Shared fixtures: small demo logs, the hashing encoder, one fitted router per session (seconds on CPU)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from graphroute import Router, RouterConfig  # noqa: E402
from graphroute.data.synthetic import make_demo_logs  # noqa: E402
from graphroute.schema import LLMProfile  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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
        pytest.skip(f"benchmark data {folder} is missing (it lives in ../shared/data beside the repo)")
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
