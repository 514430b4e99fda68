"""Names shared by every layer: log columns, node and edge types, and the public value objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

# --- interaction-log columns (docs/log-format.md) ---
QUERY = "query"
LLM = "llm"
EFFECT = "effect"
COST = "cost"
TOKENS_IN = "tokens_in"
TOKENS_OUT = "tokens_out"
USER_ID = "user_id"
TASK = "task"
CHOSEN = "chosen"
QUERY_ID = "query_id"
TIMESTAMP = "timestamp"
LATENCY_MS = "latency_ms"
FEEDBACK_ID = "feedback_id"  # optional client id of a feedback row (a retry with the same id is stored once)
PROPENSITY = "propensity"  # probability with which the logging policy chose this row's LLM (bandit logs)

REQUIRED_COLUMNS = (QUERY, LLM)
OPTIONAL_COLUMNS = (
    EFFECT, COST, TOKENS_IN, TOKENS_OUT, USER_ID, TASK, CHOSEN, QUERY_ID, TIMESTAMP, LATENCY_MS, PROPENSITY,
)  # fmt: skip
ANONYMOUS_USER = "anonymous"
DEFAULT_TASK = "general"
DEFAULT_OUTPUT_TOKENS = 256  # cost estimate when a log has no output token counts

# --- limits on numbers that enter the model: generous for any real deployment, small enough that every
# derived quantity (log cost, its z-score, catalog cost estimates) stays finite ---
MAX_PRICE = 1e6  # USD per 1M tokens
MAX_COST = 1e6  # USD per call
MAX_TOKENS = 1e9
MAX_SIZE = 1e6  # billions of parameters
MAX_LATENCY_MS = 1e9
MAX_TEXT_CHARS = 20_000  # a query or chat message over HTTP


def not_blank(value: str) -> str:
    """Reject text that is only whitespace (any Unicode space, as ``str.strip`` sees it): it would embed to noise
    and, as a name, could never be addressed again; and text that is not valid Unicode (a lone surrogate, which
    JSON can carry), which no tokenizer or store can encode."""
    if not value.strip():
        raise ValueError("must not be blank")
    return valid_unicode(value)


def valid_unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode text ({exc.reason} at position {exc.start})") from exc
    return value


NonBlankStr = Annotated[str, AfterValidator(not_blank)]
"""A string field that must hold something besides whitespace; shared by the value objects and the HTTP bodies."""

# --- graph node types ---
TASK_NODE = "task"
QUERY_NODE = "query"
LLM_NODE = "llm"
USER_NODE = "user"

# --- graph edge types: (source, relation, destination) ---
BELONGS_TO = (QUERY_NODE, "belongs_to", TASK_NODE)
REV_BELONGS_TO = (TASK_NODE, "rev_belongs_to", QUERY_NODE)
ASKS = (USER_NODE, "asks", QUERY_NODE)
REV_ASKS = (QUERY_NODE, "rev_asks", USER_NODE)
ANSWERED_BY = (QUERY_NODE, "answered_by", LLM_NODE)
REV_ANSWERED_BY = (LLM_NODE, "rev_answered_by", QUERY_NODE)
SIMILAR_TO = (QUERY_NODE, "similar_to", QUERY_NODE)

# --- edge-attribute columns: position in edge_attr of each named value ---
OUTCOME_ATTRS = ("effect", "has_effect", "chosen", "log_cost_z")  # answered_by and its reverse
OUTCOME_EFFECT, OUTCOME_HAS_EFFECT, OUTCOME_CHOSEN, OUTCOME_COST = range(len(OUTCOME_ATTRS))
SIMILARITY_ATTRS = ("similarity",)  # similar_to
SIMILARITY = 0
# attribute width of each edge type (0: no attributes); the GNN builds one convolution per entry
EDGE_ATTR_DIMS = {
    BELONGS_TO: 0,
    REV_BELONGS_TO: 0,
    ASKS: 0,
    REV_ASKS: 0,
    ANSWERED_BY: len(OUTCOME_ATTRS),
    REV_ANSWERED_BY: len(OUTCOME_ATTRS),
    SIMILAR_TO: len(SIMILARITY_ATTRS),
}


class LLMProfile(BaseModel):
    """One LLM of the catalog: its description is what makes it routable without retraining.

    Example:
        >>> LLMProfile(name="small", description="fast and cheap", input_price=0.1, output_price=0.2).name
        'small'
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(min_length=1, description="Unique LLM name, as used in the log's `llm` column.")
    description: str = Field(min_length=1, description="Free text: what the LLM is good at.")
    input_price: float = Field(ge=0, le=MAX_PRICE, description="USD per 1M input tokens.")
    output_price: float = Field(ge=0, le=MAX_PRICE, description="USD per 1M output tokens.")
    family: str | None = Field(default=None, description="Model family, e.g. 'llama'.")
    size: float | None = Field(default=None, ge=0, le=MAX_SIZE, description="Parameter count in billions.")
    context_length: int | None = Field(default=None, gt=0, le=int(MAX_TOKENS), description="Context window in tokens.")
    latency_ms: float | None = Field(default=None, ge=0, le=MAX_LATENCY_MS, description="Typical latency in ms.")
    base_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://\S+$",
        description="OpenAI-compatible endpoint (…/v1), without credentials, query or fragment; several LLMs of "
        "one provider share it.",
    )
    provider_model: str | None = Field(
        default=None, min_length=1, max_length=256, description="The model id the provider expects; default: name."
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        max_length=128,
        description="Name of the environment variable that holds the provider's API key (read when a request is "
        "forwarded; the key itself is never stored, logged or returned).",
    )

    @field_validator("name", "description")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        return not_blank(value).strip()

    @field_validator("base_url")
    @classmethod
    def _plain_url(cls, value: str | None) -> str | None:
        """Credentials in a URL would be shown by every listing and sent upstream; a query or fragment would
        swallow the path the proxy appends."""
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry credentials (use api_key_env)")
        if parts.query or parts.fragment or "?" in value or "#" in value:
            raise ValueError("must not have a query or fragment")
        if not parts.hostname:
            raise ValueError("must name a host")
        return value.rstrip("/")

    def profile_text(self) -> str:
        """The text embedded as the LLM's node feature."""
        return f"{self.name}: {self.description}"


@dataclass(frozen=True)
class Recommendation:
    """One ranked LLM for a request: predicted effect and cost, and the utility they give at alpha."""

    llm: str
    effect: float
    cost: float
    normalized_cost: float
    utility: float
    rank: int
    propensity: float = 1.0  # the chance the router had of choosing this LLM first (greedy: 1 for rank 1, else 0)
    exploratory: bool = False  # chosen by exploration instead of as the predicted best


class Interaction(BaseModel):
    """One observed outcome as it arrives while serving (feedback) or is replayed from the store: the log's columns
    with every number finite and bounded, so no row can make a prediction NaN.

    Example:
        >>> Interaction(user_id="u1", query="2+2?", llm="small", effect=1.0).effect
        1.0
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    user_id: NonBlankStr = Field(min_length=1, max_length=256, description="Who asked.")
    query: NonBlankStr = Field(min_length=1, description="The prompt.")
    llm: NonBlankStr = Field(min_length=1, max_length=256, description="The LLM that answered (a catalog name).")
    effect: float | None = Field(default=None, ge=0, le=1, description="Quality in [0, 1]; absent if only chosen.")
    chosen: bool | None = Field(default=None, description="Whether the user preferred this answer.")
    cost: float | None = Field(default=None, ge=0, le=MAX_COST, description="USD; absent: catalog estimate.")
    task: str | None = Field(default=None, max_length=256, description="Task label; absent: inferred.")
    tokens_in: float | None = Field(default=None, ge=0, le=MAX_TOKENS, description="Input tokens of the call.")
    tokens_out: float | None = Field(default=None, ge=0, le=MAX_TOKENS, description="Output tokens of the call.")
    propensity: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Probability with which the router chose this LLM (from its route answer); what off-policy "
        "evaluation reweights by.",
    )
    feedback_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Client-chosen id of this row: a retried request with the same id is stored once.",
    )

    @model_validator(mode="after")
    def _rated_or_chosen(self) -> Interaction:
        if self.effect is None and self.chosen is None:
            raise ValueError("effect or chosen is required")
        return self


@dataclass(frozen=True)
class RouteRequest:
    """One routing request: the query and everything that may differ per request."""

    query: str
    user_id: str | None = None
    task: str | None = None
    k: int = 3
    alpha: float | None = None
    candidates: Sequence[str] | None = None
    max_cost: float | None = None
