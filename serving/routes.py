"""The versioned JSON API: each route validates its body, makes one library call, and shapes the answer."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pandas as pd
from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from graphroute.base import RouteRequest as LibRequest
from graphroute.data.io import validate_interactions
from graphroute.schema import LLMProfile, Recommendation
from serving import schemas as sc
from serving.deps import ReadKey, ServedDep, WriteKey
from serving.runtime import Served

logger = logging.getLogger(__name__)
router = APIRouter()


def _lib_request(body: sc.RouteRequest) -> LibRequest:
    return LibRequest(body.query, body.user_id, body.task, body.k, body.alpha, body.candidates, body.max_cost)


def _response(recs: list[Recommendation], version: str, request: Request) -> sc.RouteResponse:
    request.app.state.metrics.chosen.labels(recs[0].llm).inc()
    ranking = [sc.RankedLLM(**r.__dict__) for r in recs]
    return sc.RouteResponse(model_version=version, llm=recs[0].llm, ranking=ranking)


def _check_request(served: Served, body: sc.RouteRequest) -> None:
    """Fail fast (4xx) on what the batch would reject, so one bad request never costs the others."""
    served.router.allowed_mask(body.candidates)


@router.post("/v1/route", response_model=sc.RouteResponse, dependencies=[ReadKey], tags=["routing"])
async def route(body: sc.RouteRequest, request: Request, served: ServedDep) -> sc.RouteResponse:
    """Ranked LLMs for one query and user, with predicted effect, cost and utility."""
    _check_request(served, body)
    recs, version = await request.app.state.batcher.submit(_lib_request(body))
    return _response(recs, version, request)


@router.post("/v1/route/batch", response_model=sc.BatchRouteResponse, dependencies=[ReadKey], tags=["routing"])
async def route_batch(body: sc.BatchRouteRequest, request: Request, served: ServedDep) -> sc.BatchRouteResponse:
    """Many requests in one call (one embedding batch)."""
    for item in body.requests:
        _check_request(served, item)
    results = await request.app.state.model.run(served.recommend, [_lib_request(r) for r in body.requests])
    return sc.BatchRouteResponse(
        model_version=served.version, results=[_response(r, served.version, request) for r in results]
    )


@router.post("/v1/feedback", response_model=sc.FeedbackResponse, dependencies=[WriteKey], tags=["feedback"])
async def feedback(body: sc.FeedbackRequest, request: Request, served: ServedDep) -> sc.FeedbackResponse:
    """Store interactions durably (2xx only after commit), then adapt their users at once."""
    rows = [i.model_dump() for i in body.interactions]
    frame = pd.DataFrame(rows)
    for column in ("effect", "chosen"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    validate_interactions(frame, served.router.llms_, source="interactions")
    await asyncio.to_thread(request.app.state.store.add, rows)
    users = sorted(frame["user_id"].unique())
    await request.app.state.model.run(_adapt, served, frame, users)
    return sc.FeedbackResponse(stored=len(rows), users_adapted=users)


def _adapt(served: Served, frame: pd.DataFrame, users: list[str]) -> None:
    with served.lock.write():
        for user in users:
            part = frame[frame["user_id"] == user].drop(columns=["user_id"]).dropna(axis=1, how="all")
            served.router.update_user(user, part)


@router.get("/v1/llms", response_model=list[sc.LLMPublic], dependencies=[ReadKey], tags=["llms"])
def list_llms(served: ServedDep) -> list[sc.LLMPublic]:
    r = served.router
    return [
        sc.LLMPublic(
            **m.model_dump(include={"name", "description", "input_price", "output_price", "base_url"}), enabled=bool(e)
        )
        for m, e in zip(r.llms_, r.enabled_, strict=True)
    ]


@router.post("/v1/llms", response_model=sc.LLMPublic, status_code=201, dependencies=[WriteKey], tags=["llms"])
async def add_llm(body: sc.LLMCreate, request: Request, served: ServedDep) -> sc.LLMPublic:
    """Onboard an LLM from its description and prices (and optional probe outcomes); routable at once."""
    profile = LLMProfile.model_validate(body.model_dump(exclude={"probes"}))
    probes = [p.model_dump() for p in body.probes] if body.probes else None

    def add() -> None:
        with served.lock.write():
            served.router.add_llm(profile, probes=probes)

    await request.app.state.model.run(add)
    return sc.LLMPublic(
        **profile.model_dump(include={"name", "description", "input_price", "output_price", "base_url"}), enabled=True
    )


@router.post("/v1/llms/{name}/disable", response_model=sc.LLMPublic, dependencies=[WriteKey], tags=["llms"])
def disable_llm(name: str, served: ServedDep, enabled: bool = False) -> sc.LLMPublic:
    """Stop routing to an LLM (``?enabled=true`` resumes it)."""
    with served.lock.write():
        served.router.disable_llm(name, disabled=not enabled)
    return next(m for m in list_llms(served) if m.name == name)


@router.get("/v1/users/{user_id}", response_model=sc.UserPublic, dependencies=[ReadKey], tags=["users"])
def get_user(user_id: str, served: ServedDep) -> sc.UserPublic:
    """What the router knows of a user (a cold-start profile for an unknown id)."""
    return sc.UserPublic(**served.router.user_profile(user_id))  # type: ignore[arg-type]


@router.post("/v1/admin/reload", status_code=202, dependencies=[WriteKey], tags=["admin"])
def reload(request: Request, background: BackgroundTasks) -> dict[str, str]:
    """Load the router folder again in the background and swap it in; requests in flight finish on the old one."""
    folder: Path = request.app.state.settings.router_dir

    async def swap() -> None:
        try:
            # loaded on the model thread (between batches); one reference assignment: atomic for readers
            request.app.state.served = await request.app.state.model.run(Served.load, folder)
            logger.info("reloaded %s", request.app.state.served.version)
        except Exception:
            logger.exception("reload of %s failed; still serving the previous router", folder)

    background.add_task(swap)
    return {"status": "reloading", "router_dir": str(folder)}


@router.get("/healthz", response_model=sc.Health, tags=["ops"])
def healthz() -> sc.Health:
    return sc.Health(status="ok")


@router.get("/readyz", response_model=sc.Health, tags=["ops"], responses={503: {"model": sc.Health}})
def readyz(request: Request) -> sc.Health | JSONResponse:
    served = getattr(request.app.state, "served", None)
    if served is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    return sc.Health(status="ready", model_version=served.version, llms=int(served.router.enabled_.sum()))


@router.get("/metrics", tags=["ops"], response_class=Response)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
