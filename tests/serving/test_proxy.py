from __future__ import annotations

import json
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from graphroute import Router
from serving.app import create_app
from serving.runtime import Served
from serving.settings import ServeSettings
from tests.serving.conftest import ThreadServer

CHAT = {
    "model": "graphroute-auto",
    "user": "user002",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Translate into French: 'The book is on the table.'"},
    ],
}


def fake_upstream(hits: list[dict]) -> FastAPI:
    app = FastAPI()

    @app.post("/{llm}/chat/completions")
    async def complete(llm: str, request: Request):  # type: ignore[no-untyped-def]
        body = await request.json()
        hits.append({"path_llm": llm, "model": body["model"], "stream": body.get("stream", False)})
        if body.get("stream"):

            async def events():  # type: ignore[no-untyped-def]
                for word in ("Le", " livre", " est"):
                    yield f"data: {json.dumps({'choices': [{'delta': {'content': word}}]})}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return {
            "id": "x",
            "model": body["model"],
            "choices": [{"message": {"role": "assistant", "content": "Le livre"}}],
        }

    return app


def test_proxy_forwards_to_the_chosen_llm_with_streaming(run_dir: Path, tmp_path: Path) -> None:
    hits: list[dict] = []
    with ThreadServer(fake_upstream(hits)) as upstream:
        router = Router.load(run_dir)
        router.llms_ = [m.model_copy(update={"base_url": f"{upstream}/{m.name}"}) for m in router.llms_]
        app = create_app(
            ServeSettings(router_dir=run_dir, store_url=str(tmp_path / "s.sqlite")), served=Served(router, "test")
        )
        with ThreadServer(app) as proxy:
            r = httpx.post(f"{proxy}/v1/chat/completions", json=CHAT, timeout=30)
            assert r.status_code == 200
            chosen = r.headers["x-graphroute-model"]
            assert hits[-1] == {"path_llm": chosen, "model": chosen, "stream": False}
            assert r.json()["graphroute"]["model"] == chosen and r.json()["choices"][0]["message"]["content"]
            expected = router.recommend(CHAT["messages"][1]["content"], user_id="user002", k=1)[0].llm
            assert chosen == expected
            with httpx.stream("POST", f"{proxy}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30) as s:
                assert s.status_code == 200 and s.headers["x-graphroute-model"] == chosen
                assert s.headers["content-type"].startswith("text/event-stream")
                text = "".join(s.iter_text())
            assert text.count("data:") == 4 and text.rstrip().endswith("[DONE]")
            assert hits[-1] == {"path_llm": chosen, "model": chosen, "stream": True}
            direct = httpx.post(f"{proxy}/v1/chat/completions", json={**CHAT, "model": "coder-7b"}, timeout=30)
            assert direct.headers["x-graphroute-model"] == "coder-7b" and hits[-1]["path_llm"] == "coder-7b"
            unknown = httpx.post(f"{proxy}/v1/chat/completions", json={**CHAT, "model": "gpt-9"}, timeout=30)
            assert unknown.status_code == 404 and "model" in unknown.json()["detail"]
            empty = httpx.post(
                f"{proxy}/v1/chat/completions",
                json={**CHAT, "messages": [{"role": "user", "content": " "}]},
                timeout=30,
            )
            assert empty.status_code == 422 and "messages" in empty.json()["detail"]
