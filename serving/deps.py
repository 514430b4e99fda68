"""Dependencies: the served router and the API-key checks."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from serving.runtime import Served

# every dependency is async: FastAPI runs a plain `def` dependency on its thread pool, a thread hop per request
# for what is a field read


async def get_served(request: Request) -> Served:
    return request.app.state.served


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def _check(request: Request, expected: object | None, what: str) -> None:
    if expected is None:
        return
    key = _presented_key(request)
    if not key:
        raise HTTPException(401, f"{what}: API key required (Authorization: Bearer … or X-API-Key)")
    if not secrets.compare_digest(key.encode(), expected.get_secret_value().encode()):  # type: ignore[attr-defined]
        raise HTTPException(403, f"{what}: API key not accepted")


async def require_write(request: Request) -> None:
    """Write endpoints need GRAPHROUTE_API_KEY; with none configured they are closed."""
    settings = request.app.state.settings
    if settings.api_key is None:
        raise HTTPException(403, "write endpoints are disabled: set GRAPHROUTE_API_KEY")
    _check(request, settings.api_key, "write endpoint")


async def require_read(request: Request) -> None:
    _check(request, request.app.state.settings.read_api_key, "read endpoint")


ServedDep = Annotated[Served, Depends(get_served)]
WriteKey = Depends(require_write)
ReadKey = Depends(require_read)
