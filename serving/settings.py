"""Deployment settings (environment, prefix GRAPHROUTE_), kept apart from the router's model config."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServeSettings(BaseSettings):
    """Where the router lives, who may write, and the limits on requests."""

    model_config = SettingsConfigDict(env_prefix="GRAPHROUTE_", extra="forbid")

    router_dir: Path = Field(description="Folder written by `graphroute train` (or Router.save).")
    api_key: SecretStr | None = Field(default=None, description="Key for write endpoints; unset = writes refused.")
    read_api_key: SecretStr | None = Field(default=None, description="Key for read endpoints; unset = open.")
    store_url: str | None = Field(
        default=None, description="postgresql://… or sqlite:///…; default RUN_DIR/feedback.sqlite."
    )
    max_body_bytes: int = Field(default=1_000_000, gt=0, description="Larger request bodies get 413.")
    proxy_timeout_s: float = Field(default=60.0, gt=0, description="Timeout of forwarded chat completions.")
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

    def store_location(self) -> str:
        return self.store_url or str(self.router_dir / "feedback.sqlite")
