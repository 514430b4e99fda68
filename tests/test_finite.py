"""No input the router accepts can make a prediction NaN or infinite; every input that could is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphroute import LLMProfile, Router, RouterConfig
from graphroute import schema as s
from graphroute.data.synthetic import make_demo_logs
from graphroute.errors import DataValidationError

pytestmark = pytest.mark.slow  # hypothesis drives many fits

CFG = RouterConfig(encoder={"kind": "hashing", "dim": 32}, model={"hidden_channels": 16}, train={"epochs": 2})
EXTREMES = [0.0, 1e-300, 1e-12, 1.0, s.MAX_COST]


def extreme_router(same_cost: bool) -> Router:
    """A router fitted on a log and catalog at the edges of what is accepted: costs from 0 to the limit (or all
    alike, so their spread is nil), token counts at the limit, free and maximally dear LLMs."""
    logs, llms = make_demo_logs(n_queries=120, n_users=4, seed=5)
    rng = np.random.default_rng(0)
    logs = logs.assign(cost=0.01 if same_cost else rng.choice(EXTREMES, len(logs)))
    logs.loc[::7, s.TOKENS_IN] = s.MAX_TOKENS
    llms = [
        llms[0].model_copy(update={"input_price": 0.0, "output_price": 0.0, "size": 0.0}),
        llms[1].model_copy(update={"input_price": s.MAX_PRICE, "output_price": s.MAX_PRICE, "size": s.MAX_SIZE}),
        *llms[2:],
    ]
    return Router(CFG).fit(logs, llms)


@pytest.fixture(scope="module", params=[False, True], ids=["spread-costs", "same-costs"])
def router(request: pytest.FixtureRequest) -> Router:
    return extreme_router(request.param)


def assert_finite(router: Router, user: str) -> None:
    effect, cost = router.predict_outcomes(["What is 2+2?", "Write a haiku about rain."], user_ids=[user, user])
    assert np.isfinite(effect).all() and np.isfinite(cost).all() and (cost >= 0).all()
    for rec in router.recommend("Solve for x: 2x = 4.", user_id=user, k=10, max_cost=s.MAX_COST):
        assert all(np.isfinite([rec.effect, rec.cost, rec.utility, rec.normalized_cost]))


number = st.floats(min_value=0, allow_nan=False, allow_infinity=False)


@given(
    cost=number.filter(lambda v: v <= s.MAX_COST) | st.sampled_from(EXTREMES),
    tokens=number.filter(lambda v: v <= s.MAX_TOKENS),
    effect=st.floats(0, 1),
    price=number.filter(lambda v: v <= s.MAX_PRICE),
    size=number.filter(lambda v: v <= s.MAX_SIZE),
)
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_accepted_extremes_keep_predictions_finite(
    router: Router, cost: float, tokens: float, effect: float, price: float, size: float
) -> None:
    user = f"user-{cost:.3g}-{tokens:.3g}"
    query = router.state.tables.queries.texts[0]
    rows = [
        {
            "user_id": user,
            "query": query,
            "llm": router.state.llm_names[0],
            "effect": effect,
            "chosen": True,
            "cost": cost,
        },
        {"user_id": user, "query": query, "llm": router.state.llm_names[1], "effect": 1 - effect, "chosen": False},
        {
            "user_id": user,
            "query": f"new {cost}",
            "llm": router.state.llm_names[2],
            "effect": effect,
            "tokens_in": tokens,
        },
    ]
    router.update_user(user, pd.DataFrame(rows).drop(columns=["user_id"]))
    name = f"llm-{len(router.state.llm_names)}"
    router.add_llm(
        LLMProfile(name=name, description="x", input_price=price, output_price=price, size=size),
        probes=[{"query": query, "effect": effect}],
    )
    assert_finite(router, user)
    router.remove_llm(name)


@pytest.mark.parametrize(
    "row",
    [
        {"cost": float("inf")},
        {"cost": -1.0},
        {"cost": s.MAX_COST * 10},
        {"tokens_in": float("inf")},
        {"tokens_out": s.MAX_TOKENS * 2},
        {"effect": float("nan"), "chosen": None},
        {"effect": float("inf")},
    ],
)
def test_anything_that_could_poison_the_router_is_refused(router: Router, row: dict[str, object]) -> None:
    base = {"user_id": "u", "query": "q", "llm": router.state.llm_names[0], "effect": 0.5}
    with pytest.raises(DataValidationError, match="row 1, column"):
        router.add_feedback([{**base, **row}])
    for field, value in [("size", float("inf")), ("input_price", float("nan")), ("latency_ms", 1e300)]:
        with pytest.raises(DataValidationError, match=field):
            router.add_llm({"name": "z", "description": "d", "input_price": 1, "output_price": 1, field: value})
