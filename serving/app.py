"""create_app: the FastAPI factory. The lifespan loads the router once; routes live in routes.py and proxy.py."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graphroute.data.store import open_store
from graphroute.errors import DataValidationError, GraphRouteError, NotFittedError, UnknownLLMError
from serving.follower import BulkFeedback, Decisions, EventFollower
from serving.runtime import Metrics, ModelThread, Overloaded, Served
from serving.scheduler import Batcher, Budget, Foreground
from serving.settings import ServeSettings
from serving.traffic import Traffic

logger = logging.getLogger(__name__)


def create_app(settings: ServeSettings | None = None, served: Served | None = None) -> FastAPI:
    """The app for one router folder; ``served`` skips loading (tests pass a router already in memory)."""
    settings = settings or ServeSettings()  # type: ignore[call-arg]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state
        state.model = ModelThread()
        state.store = await asyncio.to_thread(open_store, settings.store_location())
        logger.info("event store: %s", state.store.location)
        start = served or await state.model.run(
            Served.load, settings.router_dir, settings.embedding_cache_items, settings.exploration
        )
        state.follower = EventFollower(
            lambda: state.served,
            state.store,
            state.model,
            settings.poll_interval_s,
            settings.fold_interval_s,
            foreground=state.foreground,
        )
        report = await state.follower.replay(start)
        logger.info("store events: %s", report.summary())
        state.served = start
        state.upstream_allow = settings.upstream_allow or sorted(
            {m.base_url for m in start.router.state.llms if m.base_url}
        )
        logger.info("upstreams allowed: %s", state.upstream_allow or "none")
        state.http = httpx.AsyncClient(timeout=settings.proxy_timeout_s)
        budget = Budget(
            step_tokens=settings.step_tokens, bulk_step_tokens=settings.bulk_step_tokens, max_queue=settings.max_queue
        )
        state.batcher = Batcher(
            lambda: state.served,
            state.model,
            settings.batch_window_ms / 1000,
            load_window_s=settings.load_window_ms / 1000,
            budget=budget,
        )
        state.batcher.start()
        state.bulk = BulkFeedback(state.follower, state.store, state.foreground, settings.feedback_yield_ms / 1000)
        state.follower.start()
        logger.info("serving %s", state.served.version)
        yield
        await state.follower.stop()
        await state.batcher.stop()
        await state.http.aclose()
        state.model.shutdown()
        state.store.close()

    app = FastAPI(
        title="GraphRoute",
        version="1",
        lifespan=lifespan,
        description="Per-user LLM routing: recommendations, feedback, onboarding, OpenAI-compatible proxy.",
        docs_url=None,
        redoc_url=None,
    )
    _add_docs(app)
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.foreground = Foreground()
    app.state.decisions = Decisions()
    app.state.traffic = Traffic()
    app.add_middleware(
        LimitsAndMetrics,
        metrics=app.state.metrics,
        max_body=settings.max_body_bytes,
        foreground=app.state.foreground,
    )
    _add_error_handlers(app)
    from serving.console import router as console_router
    from serving.proxy import router as proxy_router
    from serving.routes import router as api_router

    app.include_router(api_router)
    app.include_router(proxy_router)
    app.include_router(console_router)
    return app


class BodyTooLarge(HTTPException):
    """A request body past the limit, found while it streams in (an HTTPException, so FastAPI's body parsing
    passes it on as the 413 it is)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body: larger than the limit of {limit} bytes")


FOREGROUND_PATHS = frozenset({"/v1/route", "/v1/route/batch", "/v1/chat/completions"})


class LimitsAndMetrics:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware): body-size limit, Prometheus series, and the count
    of foreground (routing) requests in flight."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body: int, foreground: Foreground) -> None:
        self.app, self.metrics, self.max_body, self.foreground = app, metrics, max_body, foreground

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in FOREGROUND_PATHS:
            self.foreground.enter()
            try:
                await self._limited(scope, receive, send)
            finally:
                self.foreground.leave()
        else:
            await self._limited(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        started, status, received = time.perf_counter(), [500], [0]
        length = dict(scope["headers"]).get(b"content-length", b"0")
        try:
            if not length.isdigit() or int(length) > self.max_body:
                response = JSONResponse({"detail": f"body: larger than the limit of {self.max_body} bytes"}, 413)
                status[0] = 413
                await response(scope, receive, send)
                return

            async def limited() -> Message:
                message = await receive()
                received[0] += len(message.get("body", b""))
                if received[0] > self.max_body:
                    raise BodyTooLarge(self.max_body)
                return message

            async def recorded(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            await self.app(scope, limited, recorded)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(path, scope["method"], str(status[0])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)


DOCS_ASSETS = "/docs-assets"


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc with their scripts served by the app (from the fastapi-offline
    package), so the pages work without the internet."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount(DOCS_ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="GraphRoute API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="GraphRoute API",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


OPENAI_PATHS = frozenset({"/v1/chat/completions"})


def _error(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None, **extra: object
) -> JSONResponse:
    """Every error names what is wrong in ``detail``; on the OpenAI-compatible path it also has OpenAI's shape
    (``error.message``), which is what OpenAI's client libraries show."""
    body: dict[str, object] = {"detail": message, **extra}
    if request.url.path in OPENAI_PATHS:
        kind = "invalid_request_error" if status < 500 else "upstream_error" if status in (502, 504) else "server_error"
        body["error"] = {"message": message, "type": kind, "code": status}
    return JSONResponse(body, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    status = {DataValidationError: 422, UnknownLLMError: 404, NotFittedError: 503}

    @app.exception_handler(GraphRouteError)
    async def library_error(request: Request, exc: GraphRouteError) -> JSONResponse:
        return _error(request, next((c for t, c in status.items() if isinstance(exc, t)), 400), str(exc))

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded) -> JSONResponse:
        return _error(request, 503, f"overloaded: {exc}", {"Retry-After": "1"})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(request, exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors)
        return _error(request, 422, f"invalid request: {fields}", errors=errors)
