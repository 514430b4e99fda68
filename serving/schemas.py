"""Request and response bodies of the HTTP API (separate from the router's config)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from graphroute import schema as s
from graphroute.schema import Interaction, NonBlankStr

MAX_QUERY_CHARS = s.MAX_TEXT_CHARS
MAX_BATCH = 256
MAX_FEEDBACK_ROWS = 1_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RouteBody(_Body):
    query: NonBlankStr = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="The prompt to route.")
    user_id: str | None = Field(default=None, max_length=256, description="Who asks; unknown → cold start.")
    task: str | None = Field(default=None, max_length=256, description="Task label; absent → inferred.")
    candidates: list[str] | None = Field(default=None, min_length=1, max_length=256, description="Allowed LLMs.")
    alpha: float | None = Field(default=None, ge=0, le=1, description="Trade-off; absent → the user's own.")
    max_cost: float | None = Field(default=None, ge=0, le=s.MAX_COST, description="Budget in USD per call.")
    k: int = Field(default=3, ge=1, le=64, description="How many ranked LLMs to return.")
    explain: bool = Field(default=False, description="Add why each LLM ranks where it does (see `explanation`).")


class RankedLLM(BaseModel):
    llm: str
    effect: float
    cost: float
    normalized_cost: float
    utility: float
    rank: int
    propensity: float = Field(
        default=1.0,
        description="The chance the router had of choosing this LLM (without exploration: 1 for the first, 0 after).",
    )
    exploratory: bool = Field(default=False, description="Chosen by exploration, not as the predicted best.")


class RouteResponse(BaseModel):
    model_version: str
    llm: str = Field(description="The top choice.")
    exploratory: bool = Field(
        default=False, description="Whether the choice explored (an LLM other than the predicted best)."
    )
    propensity: float = Field(
        default=1.0,
        description="The chance the router had of choosing `llm` for this request (1 without exploration); stored "
        "with the outcome when feedback names this request_id.",
    )
    ranking: list[RankedLLM]
    request_id: str = Field(description="Names this decision in /v1/feedback (while the server remembers it).")
    explanation: dict[str, Any] | None = Field(
        default=None,
        description="With `explain`: each ranked LLM's utility as quality + cost + affinity, its effect logit as "
        "the sum of its evidence terms (neighbours, same_task_neighbours, task, user, overall, residual) and any "
        "probe shift, the matched task and its trust, and the most similar past queries with their outcomes.",
    )


class BatchRouteRequest(_Body):
    requests: list[RouteBody] = Field(min_length=1, max_length=MAX_BATCH)


class BatchRouteResponse(BaseModel):
    model_version: str
    results: list[RouteResponse]


class FeedbackRow(Interaction):
    """A feedback row: the log's columns, or a ``request_id`` from a route or chat answer in place of
    user_id, query and llm."""

    request_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="The decision this outcome is of (from its answer)."
    )
    user_id: NonBlankStr | None = Field(default=None, min_length=1, max_length=256, description="Who asked.")  # type: ignore[assignment]
    query: NonBlankStr | None = Field(default=None, min_length=1, max_length=MAX_QUERY_CHARS, description="The prompt.")  # type: ignore[assignment]
    llm: NonBlankStr | None = Field(default=None, min_length=1, max_length=256, description="The LLM that answered.")  # type: ignore[assignment]

    # user_id, query and llm widen Interaction's str to optional: a request_id may stand in for them

    @model_validator(mode="after")
    def _named(self) -> FeedbackRow:
        if self.request_id is None and None in (self.user_id, self.query, self.llm):
            raise ValueError("give user_id, query and llm, or the request_id of the answer")
        return self


class FeedbackRequest(_Body):
    interactions: list[FeedbackRow] = Field(min_length=1, max_length=MAX_FEEDBACK_ROWS)


class FeedbackResponse(BaseModel):
    stored: int = Field(description="Rows committed to the store by this request.")
    duplicates: int = Field(default=0, description="Rows whose feedback_id was already stored (not stored again).")
    users_adapted: list[str]


class Probe(_Body):
    query: NonBlankStr = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    effect: float = Field(ge=0, le=1)


class LLMCreate(_Body):
    name: NonBlankStr = Field(min_length=1, max_length=256)
    description: NonBlankStr = Field(min_length=1, max_length=10_000)
    input_price: float = Field(ge=0, le=s.MAX_PRICE)
    output_price: float = Field(ge=0, le=s.MAX_PRICE)
    family: str | None = Field(default=None, max_length=256)
    size: float | None = Field(default=None, ge=0, le=s.MAX_SIZE)
    context_length: int | None = Field(default=None, gt=0, le=int(s.MAX_TOKENS))
    latency_ms: float | None = Field(default=None, ge=0, le=s.MAX_LATENCY_MS)
    base_url: str | None = Field(default=None, max_length=2048, description="Must match GRAPHROUTE_UPSTREAM_ALLOW.")
    provider_model: str | None = Field(default=None, min_length=1, max_length=256)
    api_key_env: str | None = Field(default=None, max_length=128)
    probes: list[Probe] | None = Field(default=None, max_length=10_000)


class LLMPublic(BaseModel):
    name: str
    description: str
    input_price: float
    output_price: float
    enabled: bool
    base_url: str | None = None
    provider_model: str | None = None


class UserPublic(BaseModel):
    user_id: str
    known: bool
    interactions: int
    alpha: float
    n_choices: int
    affinity: dict[str, float]


class UserSummary(BaseModel):
    user_id: str
    interactions: int
    alpha: float
    n_choices: int
    affinity: dict[str, float]


class TrafficLLM(BaseModel):
    llm: str
    routes: int
    share: float
    predicted_effect: float | None
    predicted_spend: float = Field(description="Sum of the predicted USD cost of the routes.")
    outcomes: int = Field(description="Outcomes reported through /v1/feedback in the window.")
    observed_effect: float | None
    reported_spend: float | None


class TrafficResponse(BaseModel):
    window: str
    routes: int
    llms: list[TrafficLLM]


class Health(BaseModel):
    status: str
    model_version: str | None = None
    llms: int | None = None
    loaded_at: str | None = Field(default=None, description="When the served router was loaded (UTC, ISO 8601).")
    store_cursor: int | None = Field(default=None, description="The last event of the store the router includes.")
