"""Shared fixtures: small demo logs, the hashing encoder, one fitted router per session (seconds on CPU)."""

from __future__ import annotations

import os
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
