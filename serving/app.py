"""create_app: the FastAPI factory. The lifespan loads the router once; routes live in routes.py and proxy.py."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from graphroute.data.store import open_store
from graphroute.errors import DataValidationError, GraphRouteError, NotFittedError, UnknownLLMError
from serving.runtime import Batcher, Metrics, Served
from serving.settings import ServeSettings

logger = logging.getLogger(__name__)


def create_app(settings: ServeSettings | None = None, served: Served | None = None) -> FastAPI:
    """The app for one router folder; ``served`` skips loading (tests pass a router already in memory)."""
    settings = settings or ServeSettings()  # type: ignore[call-arg]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.served = served or Served.load(settings.router_dir)
        app.state.store = open_store(settings.store_location())
        app.state.http = httpx.AsyncClient(timeout=settings.proxy_timeout_s)
        app.state.batcher = Batcher(lambda: app.state.served, settings.batch_window_ms / 1000)
        app.state.batcher.start()
        logger.info("serving %s", app.state.served.version)
        yield
        await app.state.batcher.stop()
        await app.state.http.aclose()

    app = FastAPI(
        title="GraphRoute",
        version="1",
        lifespan=lifespan,
        description="Per-user LLM routing: recommendations, feedback, onboarding, OpenAI-compatible proxy.",
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    _add_middleware(app, settings)
    _add_error_handlers(app)
    from serving.proxy import router as proxy_router
    from serving.routes import router as api_router

    app.include_router(api_router)
    app.include_router(proxy_router)
    return app


def _add_middleware(app: FastAPI, settings: ServeSettings) -> None:
    @app.middleware("http")
    async def limits_and_metrics(request: Request, call_next):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            response: Response = JSONResponse(
                {"detail": f"body: larger than the limit of {settings.max_body_bytes} bytes"}, status_code=413
            )
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics: Metrics = app.state.metrics
        metrics.requests.labels(path, request.method, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - started)
        return response


def _add_error_handlers(app: FastAPI) -> None:
    status = {DataValidationError: 422, UnknownLLMError: 404, NotFittedError: 503}

    @app.exception_handler(GraphRouteError)
    async def library_error(request: Request, exc: GraphRouteError) -> JSONResponse:
        code = next((c for t, c in status.items() if isinstance(exc, t)), 400)
        return JSONResponse({"detail": str(exc)}, status_code=code)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors)
        return JSONResponse({"detail": f"invalid request: {fields}", "errors": errors}, status_code=422)
