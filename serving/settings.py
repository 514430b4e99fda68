"""Deployment settings (environment, prefix GRAPHROUTE_), kept apart from the router's model config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from graphroute.config import ExplorationConfig

DEFAULT_STORE_NAME = "graphroute-events.sqlite"


class ServeSettings(BaseSettings):
    """Where the router and its event store live, who may write, and the limits on requests."""

    model_config = SettingsConfigDict(env_prefix="GRAPHROUTE_", extra="forbid")

    router_dir: Path = Field(description="Folder written by `graphroute train` (or Router.save).")
    api_key: SecretStr | None = Field(default=None, description="Key for write endpoints; unset = writes refused.")
    read_api_key: SecretStr | None = Field(default=None, description="Key for read endpoints; unset = open.")
    store_url: str | None = Field(
        default=None,
        description="Event store: postgresql://… or sqlite:///… (or a file path). Default: "
        f"{DEFAULT_STORE_NAME} in the folder that holds RUN_DIR, so a retrain into a new folder keeps it.",
    )
    max_body_bytes: int = Field(default=1_000_000, gt=0, description="Larger request bodies get 413.")
    proxy_timeout_s: float = Field(default=60.0, gt=0, description="Timeout of forwarded chat completions.")
    upstream_allow: Annotated[list[str] | None, NoDecode] = Field(
        default=None,
        description="URL prefixes an LLM's base_url must start with to be onboarded or forwarded to (comma-separated "
        "in the environment). Unset: the base_urls of the router's catalog at start-up.",
    )
    proxy_fallback: bool = Field(
        default=False,
        description="When the routed LLM's provider fails (5xx, timeout, unreachable), retry once on the next-ranked "
        "LLM (the model used is in X-GraphRoute-Model).",
    )
    max_upstream_bytes: int = Field(
        default=10_000_000, gt=0, description="Largest provider response relayed (streamed or not); beyond: 502."
    )
    batch_window_ms: float = Field(
        default=0.0,
        ge=0,
        description="How long a lone route request waits for others to share its batch "
        "(requests that arrive while a batch is computed share the next one anyway).",
    )
    load_window_ms: float = Field(
        default=2.0,
        ge=0,
        description="Under load (the last batch held several requests), how long the next batch waits for more.",
    )
    max_queue: int = Field(default=512, gt=0, description="Queued route requests before new ones get 503.")
    step_tokens: int = Field(
        default=2_048, gt=0, description="Estimated encoder tokens of interactive requests routed in one model step."
    )
    bulk_step_tokens: int = Field(
        default=512,
        gt=0,
        description="Estimated encoder tokens of batch-request items per model step; single routes run between "
        "such steps.",
    )
    embedding_cache_items: int = Field(
        default=20_000, gt=0, description="Query embeddings kept in memory (least recently used dropped)."
    )
    poll_interval_s: float = Field(
        default=0.5, gt=0, description="How often the store is read for other replicas' changes."
    )
    fold_interval_s: float = Field(
        default=1.0, gt=0, description="How often pending feedback is folded into the reference graph."
    )
    feedback_yield_ms: float = Field(
        default=12.0,
        ge=0,
        description="How long feedback on queries this server did not just route (a bulk upload) waits, at most, "
        "for a pause in routing (routing goes first on a busy server; feedback on a routed query never waits).",
    )
    exploration: ExplorationConfig | None = Field(
        default=None,
        description='How routing explores here, as JSON (e.g. {"method": "thompson", "budget": 0.02}; '
        "fields as the router config's `exploration`); unset: the router config's. Its budget account starts "
        "afresh at each start-up and reload.",
    )
    max_pending_rows: int = Field(
        default=50_000, gt=0, description="Feedback rows waiting to be folded before feedback gets 503."
    )

    @field_validator("upstream_allow", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    def store_location(self) -> str:
        return self.store_url or str(self.router_dir.resolve().parent / DEFAULT_STORE_NAME)
