"""GraphRoute: personalized LLM routing with an inductive heterogeneous GNN over interaction logs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graphroute._version import __version__
from graphroute.config import RouterConfig
from graphroute.schema import LLMProfile, Recommendation

if TYPE_CHECKING:
    from graphroute.router import Router

__all__ = ["LLMProfile", "Recommendation", "Router", "RouterConfig", "__version__"]


def __getattr__(name: str) -> Any:
    """``Router`` is imported on first use: importing the package (its config and value classes, the CLI) does not
    load torch, so a process can still choose torch's threading settings."""
    if name == "Router":
        from graphroute.router import Router

        return Router
    raise AttributeError(f"module 'graphroute' has no attribute {name!r}")
