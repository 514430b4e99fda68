"""The console: one page served by the app (``/console``) that shows the router at work — a query box with the
ranking and why, where traffic and money went, the users and the catalog. Its assets ship in the package (no build
step, nothing fetched from elsewhere); its data come from the JSON API with the key the operator types in, so it
sees exactly what that key may see."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)
ASSETS = files("serving") / "console_assets"
TYPES = {"console.js": "text/javascript", "console.css": "text/css"}


@router.get("/console", response_class=HTMLResponse)
def console() -> HTMLResponse:
    return HTMLResponse((ASSETS / "index.html").read_text(encoding="utf-8"))


@router.get("/console/assets/{name}")
def asset(name: str) -> Response:
    if name not in TYPES:
        raise HTTPException(404, f"no console asset {name!r}")
    return Response((ASSETS / name).read_text(encoding="utf-8"), media_type=TYPES[name])
