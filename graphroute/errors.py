"""Exceptions raised by GraphRoute.

Every error a user can cause by their input is a ``GraphRouteError`` whose message names the file, row, column
or value at fault, so the CLI can print it in one line instead of a traceback.
"""

from __future__ import annotations


class GraphRouteError(Exception):
    """Base class of all errors GraphRoute raises on purpose."""


class DataValidationError(GraphRouteError, ValueError):
    """Interaction logs, catalogs or requests that do not follow the documented format."""


class UnknownLLMError(GraphRouteError, KeyError):
    """An LLM name that is not in the router's catalog."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown LLM"


class NotFittedError(GraphRouteError, RuntimeError):
    """A router used before ``fit`` or ``load``."""


class CorruptRouterError(GraphRouteError, OSError):
    """A saved router folder that is missing files or holds unreadable ones."""
