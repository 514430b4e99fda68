"""The OpenAI-compatible endpoint against fake providers on 127.0.0.1, driven by the official `openai` client:
provider keys and model ids upstream, GraphRoute's fields kept home, the trade-off in the model name, and every
way a provider can fail mapped to a status the client understands."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from graphroute import Router
from graphroute.data.store import open_store
from tests.serving.conftest import KEY, ProcessServer, ThreadServer

Q = "Translate into French: 'The book is on the table.'"
PROVIDER_KEY = "sk-provider-a-secret"
MODES: dict[str, str] = {}  # LLM name → what its fake provider does: ok, 500, slow, notjson, cutoff, huge


def fake_providers(hits: list[dict[str, Any]]) -> FastAPI:
    """One fake OpenAI-style provider per LLM path; each records what it received."""
    app = FastAPI()

    @app.post("/{llm}/v1/chat/completions")
    async def complete(llm: str, request: Request):  # type: ignore[no-untyped-def]
        body = await request.json()
        hits.append({"llm": llm, "body": body, "authorization": request.headers.get("authorization")})
        mode = MODES.get(llm, "ok")
        if mode == "500":
            return PlainTextResponse("provider exploded", status_code=500)
        if mode == "slow":
            await asyncio.sleep(5)
        if mode == "notjson":
            return PlainTextResponse("<html>gateway page</html>")
        if mode == "huge":
            return PlainTextResponse("x" * 300_000, media_type="application/json")
        if body.get("stream"):

            async def events():  # type: ignore[no-untyped-def]
                for word in ("Le", " livre", " est"):
                    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
                    chunk["choices"] = [{"index": 0, "delta": {"content": word}, "finish_reason": None}]
                    yield f"data: {json.dumps(chunk)}\n\n"
                    await asyncio.sleep(0.01)
                if mode == "cutoff":
                    yield 'data: {"id": "c1", "choi'
                    raise RuntimeError("the provider's connection drops mid-stream")
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return {
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Le livre"}, "finish_reason": "stop"}],
        }

    return app


@pytest.fixture(scope="module")
def providers() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    hits: list[dict[str, Any]] = []
    with ThreadServer(fake_providers(hits)) as url:
        yield url, hits


def serve(run_dir: Path, tmp: Path, upstream: str, **env: str) -> ProcessServer:
    """A router whose every LLM is behind the fake providers: writer-8b with a provider id and key."""
    router = Router.load(run_dir)
    router.state.llms = [
        m.model_copy(update={"base_url": f"{upstream}/{m.name}/v1"})
        if m.name != "writer-8b"
        else m.model_copy(
            update={
                "base_url": f"{upstream}/{m.name}/v1",
                "provider_model": "meta-llama/Llama-3.1-8B-Instruct",
                "api_key_env": "PROVIDER_A_KEY",
            }
        )
        for m in router.state.llms
    ]
    router.save(tmp / "router")
    server = ProcessServer(tmp / "router", tmp / "events.sqlite", env={"PROVIDER_A_KEY": PROVIDER_KEY, **env})
    server.start()
    return server


@pytest.fixture(scope="module")
def proxy(
    run_dir: Path, tmp_path_factory: pytest.TempPathFactory, providers: tuple[str, list[dict[str, Any]]]
) -> Iterator[str]:
    server = serve(
        run_dir,
        tmp_path_factory.mktemp("proxy"),
        providers[0],
        GRAPHROUTE_PROXY_TIMEOUT_S="1",
        GRAPHROUTE_MAX_UPSTREAM_BYTES="100000",
        GRAPHROUTE_API_KEY=KEY,
    )
    yield server.url
    server.stop()


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="the-clients-own-key", max_retries=0, timeout=30)


def chat(url: str, model: str = "graphroute-auto", **kwargs: Any) -> Any:
    messages = [{"role": "user", "content": Q}]
    return client(url).chat.completions.with_raw_response.create(model=model, messages=messages, **kwargs)


def test_provider_key_and_model_id_go_upstream_graphroute_fields_do_not(proxy: str, providers: Any) -> None:
    _, hits = providers
    raw = chat(proxy, "writer-8b", extra_body={"alpha": 0.05, "max_cost": 1.0}, temperature=0.2)
    completion = raw.parse()
    assert raw.headers["x-graphroute-model"] == "writer-8b" and completion.choices[0].message.content == "Le livre"
    sent = hits[-1]
    assert sent["llm"] == "writer-8b" and sent["body"]["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert sent["authorization"] == f"Bearer {PROVIDER_KEY}"  # the provider's key, never the client's
    assert "alpha" not in sent["body"] and "max_cost" not in sent["body"] and sent["body"]["temperature"] == 0.2
    other = chat(proxy, "coder-7b")
    assert other.headers["x-graphroute-model"] == "coder-7b" and hits[-1]["body"]["model"] == "coder-7b"
    assert hits[-1]["authorization"] is None  # no key configured for it: none sent, and not the client's
    listed = httpx.get(f"{proxy}/v1/llms").text
    assert PROVIDER_KEY not in listed and "PROVIDER_A_KEY" not in listed


def test_the_trade_off_travels_in_the_model_name_and_the_budget_in_a_header(proxy: str) -> None:
    quality = chat(proxy, "graphroute-auto:1").headers["x-graphroute-model"]
    cheap = chat(proxy, "graphroute-auto:0").headers["x-graphroute-model"]
    assert quality != cheap
    ranked = httpx.post(f"{proxy}/v1/route", json={"query": Q, "alpha": 0.0, "k": 1}).json()["llm"]
    assert cheap == ranked
    budget = chat(proxy, "graphroute-auto:1", extra_headers={"X-GraphRoute-Max-Cost": "1e-9"})
    assert budget.headers["x-graphroute-model"] == "tiny-fast"  # nothing fits: the cheapest allowed LLM
    with pytest.raises(openai.UnprocessableEntityError, match="model"):
        chat(proxy, "graphroute-auto:2")
    with pytest.raises(openai.UnprocessableEntityError, match="max-cost"):
        chat(proxy, extra_headers={"X-GraphRoute-Max-Cost": "inf"})


def test_streaming_and_a_stream_broken_off_mid_way(proxy: str) -> None:
    MODES.clear()
    stream = client(proxy).chat.completions.create(
        model="writer-8b", messages=[{"role": "user", "content": Q}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "Le livre est"
    MODES["writer-8b"] = "cutoff"
    stream = client(proxy).chat.completions.create(
        model="writer-8b", messages=[{"role": "user", "content": Q}], stream=True
    )
    seen = []
    with pytest.raises(openai.APIError, match="broke off"):
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["Le", " livre", " est"]  # every complete event arrived, the torn one did not
    MODES.clear()


@pytest.mark.parametrize(
    ("mode", "error", "status", "needle"),
    [
        ("500", openai.APIStatusError, 502, "failed with 500"),
        ("slow", openai.APIStatusError, 504, "timed out"),
        ("notjson", openai.APIStatusError, 502, "without JSON"),
        ("huge", openai.APIStatusError, 502, "more than 100000 bytes"),
    ],
)
def test_provider_failures_get_the_documented_status(
    proxy: str, mode: str, error: type, status: int, needle: str
) -> None:
    MODES["coder-7b"] = mode
    try:
        with pytest.raises(error) as caught:
            chat(proxy, "coder-7b")
    finally:
        MODES.clear()
    assert caught.value.status_code == status and needle in str(caught.value) and "coder-7b" in str(caught.value)


def test_bad_chat_requests_are_4xx(proxy: str) -> None:
    with pytest.raises(openai.NotFoundError, match="gpt-9"):
        chat(proxy, "gpt-9")
    surrogate = b'{"model": "graphroute-auto", "messages": [{"role": "user", "content": "hi \\ud800"}]}'
    r = httpx.post(f"{proxy}/v1/chat/completions", content=surrogate, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "messages" in r.json()["detail"]
    long = {"model": "graphroute-auto", "messages": [{"role": "user", "content": "x" * 20_001}]}
    r = httpx.post(f"{proxy}/v1/chat/completions", json=long)
    assert r.status_code == 422 and "messages.0.content" in r.json()["detail"]
    assert httpx.post(f"{proxy}/v1/llms/math-13b/disable", headers={"X-API-Key": KEY}).status_code == 200
    try:
        with pytest.raises(openai.ConflictError, match="disabled"):
            chat(proxy, "math-13b")
    finally:
        httpx.post(f"{proxy}/v1/llms/math-13b/disable?enabled=true", headers={"X-API-Key": KEY})


def test_onboarding_only_reaches_allowed_upstreams(proxy: str, providers: Any) -> None:
    upstream = providers[0]
    base = {"description": "A new model.", "input_price": 0.1, "output_price": 0.1}
    for url, needle in [
        ("http://127.0.0.1:18442/ok/ANY/PATH?x=", "query or fragment"),
        (f"http://user:token@{upstream.split('//')[1]}/writer-8b/v1", "credentials"),
        (f"{upstream}/elsewhere/v1", "allowed upstream"),
        ("http://169.254.169.254/latest", "allowed upstream"),
    ]:
        r = httpx.post(f"{proxy}/v1/llms", json={**base, "name": "evil", "base_url": url}, headers={"X-API-Key": KEY})
        assert r.status_code == 422 and needle in r.json()["detail"] and "base_url" in r.json()["detail"], r.text
    shared = {**base, "name": "writer-8b-fast", "base_url": f"{upstream}/writer-8b/v1", "provider_model": "fast"}
    assert httpx.post(f"{proxy}/v1/llms", json=shared, headers={"X-API-Key": KEY}).status_code == 201
    assert chat(proxy, "writer-8b-fast").parse().model == "fast"  # one provider, several LLMs


def test_a_chat_answer_names_its_decision_for_feedback(proxy: str) -> None:
    raw = chat(proxy, "graphroute-auto:1", user="chatter")
    request_id = raw.headers["x-graphroute-request-id"]
    assert raw.parse().model_extra["graphroute"]["request_id"] == request_id  # type: ignore[index]
    row = {"request_id": request_id, "effect": 0.8, "feedback_id": f"fb-{request_id}"}
    r = httpx.post(f"{proxy}/v1/feedback", json={"interactions": [row]}, headers={"X-API-Key": KEY})
    assert r.status_code == 200 and r.json()["users_adapted"] == ["chatter"]
    profile = httpx.get(f"{proxy}/v1/users/chatter").json()
    assert profile["known"] and profile["interactions"] == 1
    r = httpx.post(
        f"{proxy}/v1/feedback", json={"interactions": [{"request_id": "nope", "effect": 1}]}, headers={"X-API-Key": KEY}
    )
    assert r.status_code == 422 and "interactions.0.request_id" in r.json()["detail"]


def test_docs_work_offline(proxy: str) -> None:
    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{proxy}{page}").text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)""", html)
        assert urls and not [u for u in urls if "://" in u], urls  # nothing from a CDN
        for url in urls:
            assert httpx.get(f"{proxy}{url}").status_code == 200


def test_fallback_retries_once_on_the_next_ranked_llm(
    run_dir: Path, tmp_path: Path, providers: tuple[str, list[dict[str, Any]]]
) -> None:
    server = serve(run_dir, tmp_path, providers[0], GRAPHROUTE_PROXY_FALLBACK="true")
    try:
        ranked = httpx.post(f"{server.url}/v1/route", json={"query": Q, "alpha": 1.0, "k": 2}).json()["ranking"]
        first, second = ranked[0]["llm"], ranked[1]["llm"]
        MODES[first] = "500"
        raw = chat(server.url, "graphroute-auto:1")
        assert raw.headers["x-graphroute-model"] == second
        MODES[second] = "500"
        with pytest.raises(openai.APIStatusError) as caught:
            chat(server.url, "graphroute-auto:1")
        assert caught.value.status_code == 502 and second in str(caught.value)
    finally:
        MODES.clear()
        server.stop()


def test_an_exploring_proxy_stores_each_choices_propensity_with_its_outcome(
    run_dir: Path, tmp_path: Path, providers: tuple[str, list[dict[str, Any]]]
) -> None:
    exploration = '{"method": "epsilon", "budget": 0.5, "max_share": 0.5}'
    server = serve(run_dir, tmp_path, providers[0], GRAPHROUTE_API_KEY=KEY, GRAPHROUTE_EXPLORATION=exploration)
    try:
        answers = [chat(server.url, "graphroute-auto:0.5", user=f"u{i}") for i in range(30)]
        chances = [float(a.headers["x-graphroute-propensity"]) for a in answers]
        extras = [a.parse().model_extra["graphroute"] for a in answers]  # type: ignore[index]
        assert [e["propensity"] for e in extras] == pytest.approx(chances)
        assert any(e["exploratory"] for e in extras) and not all(e["exploratory"] for e in extras)
        rows = [{"request_id": a.headers["x-graphroute-request-id"], "effect": 0.5} for a in answers]
        r = httpx.post(f"{server.url}/v1/feedback", json={"interactions": rows}, headers={"X-API-Key": KEY})
        assert r.status_code == 200
    finally:
        server.stop()
    stored = open_store(tmp_path / "events.sqlite").read()
    assert stored["propensity"].tolist() == pytest.approx(chances)
