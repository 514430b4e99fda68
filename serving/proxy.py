"""OpenAI-compatible proxy: model "graphroute-auto" (or "graphroute-auto:ALPHA") picks the LLM, then the request
goes, unchanged but for the model id and GraphRoute's own fields, to that LLM's provider with its key.

What a client sees when the provider fails: 502 naming the LLM (5xx, an answer that is not JSON, an answer larger than
the limit, an unreachable host), 504 (timeout), a provider's 4xx as it is (the request's fault); a stream the provider
breaks off ends with an error event, which the OpenAI client libraries raise.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from graphroute import Router
from graphroute import schema as s
from graphroute.schema import Recommendation, RouteRequest
from serving.deps import ReadKey, ServedDep
from serving.traffic import note_route

AUTO = "graphroute-auto"
USER_HEADER = "x-graphroute-user"
MAX_COST_HEADER = "x-graphroute-max-cost"
# fields GraphRoute reads from a chat body and never forwards (a provider rejects fields it does not know)
ROUTING_FIELDS = ("alpha", "max_cost", "candidates", "task")
router = APIRouter()


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str = Field(max_length=64)
    content: str | list[dict[str, Any]] | None = None

    @field_validator("content")
    @classmethod
    def _capped(cls, value: str | list[dict[str, Any]] | None) -> str | list[dict[str, Any]] | None:
        """The text caps of /v1/route: the routed text is embedded on the model thread."""
        for text in [value] if isinstance(value, str) else [p.get("text") for p in value or []]:
            if isinstance(text, str):
                if len(text) > s.MAX_TEXT_CHARS:
                    raise ValueError(f"text longer than {s.MAX_TEXT_CHARS} characters")
                s.valid_unicode(text)
        return value


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    model: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1, max_length=1_000)
    user: str | None = Field(default=None, max_length=256)
    stream: bool = False
    alpha: float | None = Field(default=None, ge=0, le=1, description="GraphRoute: the trade-off (not forwarded).")
    max_cost: float | None = Field(default=None, ge=0, le=s.MAX_COST, description="GraphRoute: budget per call.")
    candidates: list[str] | None = Field(default=None, min_length=1, max_length=256)
    task: str | None = Field(default=None, max_length=256)


@dataclass(frozen=True)
class Upstream:
    """Where and how one LLM is called: read from the catalog under the lock, the key from the environment."""

    llm: str
    url: str
    model: str
    key: str | None


def upstream_allowed(url: str, prefixes: Sequence[str]) -> bool:
    """``url`` is one of ``prefixes`` or below one of them (a path under it, never a longer host name)."""
    return any(url == p.rstrip("/") or url.startswith(p.rstrip("/") + "/") for p in prefixes)


def _query(body: ChatRequest) -> str:
    for message in reversed(body.messages):
        if message.role == "user":
            content = message.content
            text = (
                content
                if isinstance(content, str)
                else " ".join(str(part.get("text", "")) for part in content or [] if isinstance(part, dict))
            )
            if text.strip():
                return text
    raise HTTPException(422, "messages: no non-empty user message to route on")


def _alpha(body: ChatRequest) -> float | None:
    """The trade-off from "graphroute-auto:ALPHA" or the body's alpha; None: the user's own."""
    _, _, suffix = body.model.partition(":")
    if not suffix:
        return body.alpha
    try:
        alpha = float(suffix)
    except ValueError:
        alpha = math.nan
    if not 0.0 <= alpha <= 1.0:  # NaN fails too
        raise HTTPException(422, f"model: the trade-off in {body.model!r} must be a number in [0, 1]")
    return alpha


def _max_cost(body: ChatRequest, request: Request) -> float | None:
    raw = request.headers.get(MAX_COST_HEADER)
    if raw is None:
        return body.max_cost
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= s.MAX_COST:
        raise HTTPException(422, f"{MAX_COST_HEADER}: must be a number in [0, {s.MAX_COST:g}] (value {raw!r})")
    return value


def _upstreams(router_: Router, names: Sequence[str], allowed: Sequence[str], direct: bool) -> list[Upstream]:
    """The providers of ``names`` in order (read under the router's lock). A model named directly must be usable;
    ranked alternatives that are not are skipped."""
    out = []
    for name in names:
        if name not in router_.state.llm_names:
            raise HTTPException(404, f"model: {name!r} is neither {AUTO!r} nor an LLM of the catalog")
        i = router_.state.llm_names.index(name)
        profile = router_.state.llms[i]
        reason = (
            f"LLM {name!r} is disabled"
            if not router_.state.enabled[i]
            else f"LLM {name!r} has no base_url in the catalog"
            if not profile.base_url
            else f"LLM {name!r}: base_url not in the allowed upstreams"
            if not upstream_allowed(profile.base_url, allowed)
            else None
        )
        if reason is not None:
            if direct:
                raise HTTPException(409, f"model: {reason}")
            continue
        key = os.environ.get(profile.api_key_env) if profile.api_key_env else None
        model = profile.provider_model or profile.name
        out.append(Upstream(name, f"{profile.base_url}/chat/completions", model, key))
    return out


@router.post("/v1/chat/completions", dependencies=[ReadKey], tags=["proxy"], response_model=None)
async def chat_completions(body: ChatRequest, request: Request, served: ServedDep) -> Response:
    """Route (model "graphroute-auto", "graphroute-auto:ALPHA"; budget in X-GraphRoute-Max-Cost) or pass through
    (a catalog LLM's name), then forward to that LLM's provider."""
    state = request.app.state
    auto = body.model == AUTO or body.model.startswith(AUTO + ":")
    user = body.user or request.headers.get(USER_HEADER)
    query = _query(body)
    if auto:
        routed = RouteRequest(
            query, user, body.task, 2 if state.settings.proxy_fallback else 1, _alpha(body), body.candidates,
            _max_cost(body, request),
        )  # fmt: skip
        recs, _ = await state.batcher.submit(routed)
        names = [r.llm for r in recs]
    else:
        recs, names = [], [body.model]
    predicted = {r.llm: r for r in recs}
    upstreams = await run_in_threadpool(
        served.read, lambda r: _upstreams(r, names, state.upstream_allow, direct=not auto)
    )
    if not upstreams:
        raise HTTPException(409, f"model: no routable LLM has a usable provider (ranked: {names})")
    payload = body.model_dump(exclude_unset=True, exclude=set(ROUTING_FIELDS))  # as sent, less our own fields
    last: HTTPException | None = None
    for upstream in upstreams[: 2 if state.settings.proxy_fallback else 1]:
        try:
            payload_up = {**payload, "model": upstream.model}
            return await _forward(request, upstream, payload_up, query, user, predicted.get(upstream.llm))
        except HTTPException as exc:
            if exc.status_code not in (502, 504):
                raise
            last = exc
    assert last is not None
    raise last


async def _forward(
    request: Request,
    upstream: Upstream,
    payload: dict[str, Any],
    query: str,
    user: str | None,
    chosen: Recommendation | None,
) -> Response:
    """Send the request to one provider; a failure that may go to another provider raises 502 or 504."""
    state = request.app.state
    headers = {"content-type": "application/json", "accept": request.headers.get("accept", "application/json")}
    if upstream.key:
        headers["authorization"] = f"Bearer {upstream.key}"
    client: httpx.AsyncClient = state.http
    try:
        response = await client.send(
            client.build_request("POST", upstream.url, json=payload, headers=headers), stream=True
        )
    except httpx.TimeoutException as exc:
        raise HTTPException(504, f"upstream of LLM {upstream.llm!r} timed out") from exc
    except httpx.HTTPError as exc:
        raise HTTPException(502, f"upstream of LLM {upstream.llm!r} unreachable: {type(exc).__name__}") from exc
    limit = state.settings.max_upstream_bytes
    if response.status_code >= 500:
        await response.aclose()
        raise HTTPException(502, f"upstream of LLM {upstream.llm!r} failed with {response.status_code}")
    request_id = note_route(state, user or s.ANONYMOUS_USER, query, upstream.llm, chosen)
    ours = {"x-graphroute-model": upstream.llm, "x-graphroute-request-id": request_id}
    drawn = chosen is not None and chosen.propensity > 0  # the router's own draw (not a fallback or a name)
    if drawn and chosen is not None:
        ours["x-graphroute-propensity"] = f"{chosen.propensity:.6g}"
    media = response.headers.get("content-type", "")
    if payload.get("stream") and response.status_code < 400 and media.startswith("text/event-stream"):
        return StreamingResponse(_relay(response, upstream.llm, limit), media_type="text/event-stream", headers=ours)
    content = await _read(response, upstream.llm, limit)
    try:
        data = json.loads(content)
    except ValueError as exc:
        raise HTTPException(
            502, f"upstream of LLM {upstream.llm!r} answered {response.status_code} without JSON"
        ) from exc
    if isinstance(data, dict) and response.status_code < 400:
        version = state.served.version
        data["graphroute"] = {"model": upstream.llm, "model_version": version, "request_id": request_id}
        if drawn and chosen is not None:
            data["graphroute"] |= {"propensity": chosen.propensity, "exploratory": chosen.exploratory}
    return JSONResponse(data, status_code=response.status_code, headers=ours)


async def _read(response: httpx.Response, llm: str, limit: int) -> bytes:
    """The whole body, up to ``limit`` bytes (502 beyond)."""
    chunks, size = [], 0
    try:
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > limit:
                raise HTTPException(502, f"upstream of LLM {llm!r} answered more than {limit} bytes")
            chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise HTTPException(502, f"upstream of LLM {llm!r} broke off its answer: {type(exc).__name__}") from exc
    finally:
        await response.aclose()
    return b"".join(chunks)


async def _relay(response: httpx.Response, llm: str, limit: int) -> AsyncIterator[bytes]:
    """The provider's event stream, relayed event by event as each completes; broken off or past ``limit`` bytes,
    the incomplete event is dropped and the stream ends with an error event (``data: {"error": …}``), which
    OpenAI's client libraries raise as an APIError."""
    size, pending = 0, b""
    try:
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > limit:
                yield _error_event(f"upstream of LLM {llm!r} streamed more than {limit} bytes")
                return
            pending += chunk
            complete, pending = _split_events(pending)
            if complete:
                yield complete
        if pending:
            yield pending
    except httpx.HTTPError as exc:
        yield _error_event(f"upstream of LLM {llm!r} broke off its stream: {type(exc).__name__}")
    finally:
        await response.aclose()


def _split_events(data: bytes) -> tuple[bytes, bytes]:
    """The complete server-sent events at the start of ``data`` (each ends with a blank line) and the rest."""
    end = max(
        data.rfind(b"\n\n") + 2 if b"\n\n" in data else 0, data.rfind(b"\r\n\r\n") + 4 if b"\r\n\r\n" in data else 0
    )
    return data[:end], data[end:]


def _error_event(message: str) -> bytes:
    error = {"error": {"message": message, "type": "upstream_error", "code": 502}}
    return f"data: {json.dumps(error)}\n\n".encode()
