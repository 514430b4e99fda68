"""OpenAI-compatible proxy: model "graphroute-auto" picks the LLM, then the request goes to its base_url."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from graphroute.base import RouteRequest
from serving.deps import ReadKey, ServedDep

AUTO = "graphroute-auto"
USER_HEADER = "x-graphroute-user"
router = APIRouter()


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str = Field(max_length=64)
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1, max_length=1_000)
    user: str | None = Field(default=None, max_length=256)
    stream: bool = False


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


@router.post("/v1/chat/completions", dependencies=[ReadKey], tags=["proxy"], response_model=None)
async def chat_completions(body: ChatRequest, request: Request, served: ServedDep) -> Response:
    """Route (model "graphroute-auto") or pass through (a catalog LLM's name), then forward to that LLM."""
    names = served.router.llm_names_
    if body.model == AUTO:
        user = body.user or request.headers.get(USER_HEADER)
        recs, _ = await request.app.state.batcher.submit(RouteRequest(_query(body), user, k=1))
        chosen = recs[0].llm
    elif body.model in names:
        chosen = body.model
    else:
        raise HTTPException(404, f"model: {body.model!r} is neither {AUTO!r} nor an LLM of the catalog")
    profile = served.router.llms_[names.index(chosen)]
    if not profile.base_url:
        raise HTTPException(409, f"model: LLM {chosen!r} has no base_url in the catalog")
    request.app.state.metrics.chosen.labels(chosen).inc()
    url = profile.base_url.rstrip("/") + "/chat/completions"
    payload = {**body.model_dump(exclude_none=True), "model": chosen}
    headers = {"x-graphroute-model": chosen}
    client: httpx.AsyncClient = request.app.state.http
    try:
        if body.stream:
            return await _stream(client, url, payload, headers)
        upstream = await client.post(url, json=payload)
    except httpx.TimeoutException as exc:
        raise HTTPException(504, f"upstream {chosen!r} timed out") from exc
    except httpx.HTTPError as exc:
        raise HTTPException(502, f"upstream {chosen!r} unreachable: {type(exc).__name__}") from exc
    try:
        data = upstream.json()
    except ValueError:
        return Response(upstream.content, status_code=upstream.status_code, headers=headers)
    if isinstance(data, dict):
        data["graphroute"] = {"model": chosen, "model_version": served.version}
    return JSONResponse(data, status_code=upstream.status_code, headers=headers)


async def _stream(client: httpx.AsyncClient, url: str, payload: dict[str, Any], headers: dict[str, str]) -> Response:
    upstream_request = client.build_request("POST", url, json=payload)
    upstream = await client.send(upstream_request, stream=True)

    async def body() -> Any:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await upstream.aclose()

    media = upstream.headers.get("content-type", "text/event-stream")
    return StreamingResponse(body(), status_code=upstream.status_code, media_type=media, headers=headers)
