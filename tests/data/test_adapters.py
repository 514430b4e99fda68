from __future__ import annotations

import pytest

from graphroute.data.adapters import load_llmrouter, load_routerdc
from graphroute.data.io import validate_interactions
from tests.conftest import shared_set

pytestmark = pytest.mark.data  # reads the benchmark sets


def test_llmrouter_dedup_and_tasks() -> None:
    bench = load_llmrouter(shared_set("llmrouter-9llm"))
    test = bench.tests["test"]
    assert test["query"].nunique() == 500 and len(bench.llms) == 9
    assert bench.train["query"].nunique() == 5608 - 119
    assert not set(bench.train["query"]) & set(test["query"])
    assert test["task"].nunique() == 10 and "general" not in set(bench.train["task"])
    validate_interactions(bench.train, bench.llms)


def test_routerdc_ood_is_held_out() -> None:
    bench = load_routerdc(shared_set("routerdc-7llm"))
    assert set(bench.tests["ood"]["task"]) == {"ceval", "MATH_prealgebra", "mbpp", "javascript"}
    assert not set(bench.tests["ood"]["task"]) & set(bench.train["task"])
    assert not set(bench.train["query"]) & set(bench.tests["id"]["query"])
    validate_interactions(bench.tests["ood"], bench.llms)
