"""The versioned JSON API: each route validates its body, makes one library call, and shapes the answer.

Changes (feedback, onboarding, enable/disable) are first committed to the event store, then applied through the
event follower, so a change is acknowledged only once it is durable, and a restart, a reload or another replica
sees exactly what this one acknowledged.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from graphroute import Router
from graphroute.data.io import catalog_from_records
from graphroute.errors import DataValidationError, UnknownLLMError
from graphroute.events import FeedbackEvent, LLMAdded, LLMEnabled
from graphroute.schema import ANONYMOUS_USER, Recommendation
from graphroute.schema import RouteRequest as LibRequest
from serving import schemas as sc
from serving.deps import ReadKey, ServedDep, WriteKey
from serving.follower import Decisions
from serving.proxy import upstream_allowed
from serving.runtime import Overloaded, Served
from serving.traffic import note_route

logger = logging.getLogger(__name__)
router = APIRouter()


def _lib_request(body: sc.RouteBody) -> LibRequest:
    return LibRequest(body.query, body.user_id, body.task, body.k, body.alpha, body.candidates, body.max_cost)


def _response(
    recs: list[Recommendation],
    version: str,
    request: Request,
    body: sc.RouteBody,
    explanation: dict[str, Any] | None = None,
) -> sc.RouteResponse:
    request_id = note_route(request.app.state, body.user_id or ANONYMOUS_USER, body.query, recs[0].llm, recs[0])
    ranking = [sc.RankedLLM(**r.__dict__) for r in recs]
    first = recs[0]
    return sc.RouteResponse(
        model_version=version,
        llm=first.llm,
        exploratory=first.exploratory,
        propensity=first.propensity,
        ranking=ranking,
        request_id=request_id,
        explanation=explanation,
    )


@router.post("/v1/route", response_model=sc.RouteResponse, dependencies=[ReadKey], tags=["routing"])
async def route(body: sc.RouteBody, request: Request) -> sc.RouteResponse:
    """Ranked LLMs for one query and user, with predicted effect, cost and utility (and, with ``explain``, why)."""
    state = request.app.state
    recs, version = await state.batcher.submit(_lib_request(body))
    explanation = None
    if body.explain:
        served: Served = state.served

        def explain(r: Router) -> dict[str, Any]:
            return r.explain(body.query, body.user_id, body.task, body.alpha, body.candidates, body.max_cost).to_dict()

        explanation = await state.model.run(served.read, explain)
    return _response(recs, version, request, body, explanation)


@router.post("/v1/route/batch", response_model=sc.BatchRouteResponse, dependencies=[ReadKey], tags=["routing"])
async def route_batch(body: sc.BatchRouteRequest, request: Request) -> sc.BatchRouteResponse:
    """Many requests in one call; routed in short steps with single requests between them."""
    results = await request.app.state.batcher.submit_many([_lib_request(r) for r in body.requests])
    version = results[0][1]
    answers = [_response(r, v, request, b) for (r, v), b in zip(results, body.requests, strict=True)]
    return sc.BatchRouteResponse(model_version=version, results=answers)


@router.post("/v1/feedback", response_model=sc.FeedbackResponse, dependencies=[WriteKey], tags=["feedback"])
async def feedback(body: sc.FeedbackRequest, request: Request, served: ServedDep) -> sc.FeedbackResponse:
    """Store interactions durably (2xx only after commit), then adapt their users at once. Rows with a
    ``feedback_id`` already stored are not stored again, so a client may retry a request safely."""
    state = request.app.state
    rows = _resolved(body.interactions, state.decisions)
    names = set(served.router.state.llm_names)
    for i, row in enumerate(rows):
        if row["llm"] not in names:
            raise DataValidationError(
                f"interactions.{i}.llm: LLM not in the catalog (value {row['llm']!r}; known: {sorted(names)})"
            )
    limit = state.settings.max_pending_rows
    if len(served.router.feedback) + len(rows) > limit:
        raise Overloaded(f"{len(served.router.feedback)} feedback rows wait to be folded (limit {limit})")
    if all(state.decisions.routed(row["user_id"], row["query"]) for row in rows):
        receipt, _ = await state.follower.commit(
            lambda wait: state.store.append_feedback(rows, wait),
            lambda r: None if r.event_id is None else FeedbackEvent(tuple(r.stored), id=r.event_id),
        )
    else:  # outcomes of queries this server did not just route: a bulk upload, after routing in flight
        receipt = await state.bulk.submit(rows)
    state.metrics.feedback.inc(len(receipt.stored))
    for row in receipt.stored:
        state.traffic.observed(row["llm"], row.get("effect"), row.get("cost"))
    users = sorted({r["user_id"] for r in receipt.stored})
    return sc.FeedbackResponse(stored=len(receipt.stored), duplicates=receipt.duplicates, users_adapted=users)


def _resolved(rows: list[sc.FeedbackRow], decisions: Decisions) -> list[dict[str, object]]:
    """Feedback rows as log rows: a ``request_id`` stands for the user, query and LLM of that decision."""
    out = []
    for i, row in enumerate(rows):
        data = row.model_dump(exclude_none=True)
        request_id = data.pop("request_id", None)
        if request_id is not None:
            decision = decisions.get(request_id)
            if decision is None:
                raise DataValidationError(
                    f"interactions.{i}.request_id: unknown or expired (value {request_id!r}); "
                    "send user_id, query and llm instead"
                )
            for key, value in (("user_id", decision.user_id), ("query", decision.query), ("llm", decision.llm)):
                data.setdefault(key, value)
            if data["llm"] == decision.llm and decision.propensity is not None:
                data.setdefault("propensity", decision.propensity)  # the outcome of the choice that was drawn
        out.append(data)
    return out


def _public(router_: Router, name: str) -> sc.LLMPublic:
    i = router_.state.llm_names.index(name)
    m = router_.state.llms[i]
    fields = m.model_dump(include={"name", "description", "input_price", "output_price", "base_url", "provider_model"})
    return sc.LLMPublic(**fields, enabled=bool(router_.state.enabled[i]))


@router.get("/v1/llms", response_model=list[sc.LLMPublic], dependencies=[ReadKey], tags=["llms"])
def list_llms(served: ServedDep) -> list[sc.LLMPublic]:
    return served.read(lambda r: [_public(r, name) for name in r.state.llm_names])


@router.post("/v1/llms", response_model=sc.LLMPublic, status_code=201, dependencies=[WriteKey], tags=["llms"])
async def add_llm(body: sc.LLMCreate, request: Request, served: ServedDep) -> sc.LLMPublic:
    """Onboard an LLM from its description and prices (and optional probe outcomes); routable at once."""
    (profile,) = catalog_from_records([body.model_dump(exclude={"probes"}, exclude_none=True)], source="body")
    if profile.base_url and not upstream_allowed(profile.base_url, request.app.state.upstream_allow):
        raise DataValidationError(
            f"base_url: {profile.base_url!r} is not under an allowed upstream ({request.app.state.upstream_allow}); "
            "see GRAPHROUTE_UPSTREAM_ALLOW"
        )
    probes = [p.model_dump() for p in body.probes] if body.probes else None
    await request.app.state.model.run(served.read, lambda r: r.check_llm(profile, probes))
    event = LLMAdded(profile.model_dump(exclude_none=True), None if probes is None else tuple(probes))
    event_id, current = await _commit(request, event)
    if event_id in current.failed:  # another request onboarded the same name first
        raise DataValidationError(current.failed[event_id])
    return current.read(lambda r: _public(r, profile.name))


@router.post("/v1/llms/{name}/disable", response_model=sc.LLMPublic, dependencies=[WriteKey], tags=["llms"])
async def disable_llm(name: str, request: Request, served: ServedDep, enabled: bool = False) -> sc.LLMPublic:
    """Stop routing to an LLM (``?enabled=true`` resumes it)."""
    if name not in served.router.state.llm_names:
        raise UnknownLLMError(f"llm: unknown LLM {name!r}; known: {served.router.state.llm_names}")
    _, current = await _commit(request, LLMEnabled(name, enabled))
    return current.read(lambda r: _public(r, name))


async def _commit(request: Request, event: LLMAdded | LLMEnabled) -> tuple[int, Served]:
    """Store an event and apply it; returns its id and the served router it was applied to."""
    store = request.app.state.store
    return await request.app.state.follower.commit(
        lambda wait: store.append(event, wait), lambda i: replace(event, id=i)
    )


@router.get("/v1/users/{user_id}", response_model=sc.UserPublic, dependencies=[ReadKey], tags=["users"])
def get_user(user_id: str, served: ServedDep) -> sc.UserPublic:
    """What the router knows of a user (a cold-start profile for an unknown id)."""
    return sc.UserPublic(**served.read(lambda r: r.user_profile(user_id)))  # type: ignore[arg-type]


@router.get("/v1/users", response_model=list[sc.UserSummary], dependencies=[ReadKey], tags=["users"])
def list_users(served: ServedDep, limit: int = Query(default=100, ge=1, le=10_000)) -> list[sc.UserSummary]:
    """Known users, most interactions first: fitted alpha, choices seen and LLM affinities."""
    return [sc.UserSummary(**p) for p in served.read(lambda r: r.user_profiles(limit))]  # type: ignore[arg-type]


@router.get("/v1/traffic", response_model=sc.TrafficResponse, dependencies=[ReadKey], tags=["ops"])
def traffic(
    request: Request, served: ServedDep, window: Literal["hour", "day"] = Query(default="hour")
) -> sc.TrafficResponse:
    """Where this server sent traffic in the last hour or day, per LLM: share of routes, predicted effect and
    spend, and the observed effect and spend of the outcomes reported for them."""
    names = served.read(lambda r: r.state.llm_names)
    rows = request.app.state.traffic.summary(window, names)
    return sc.TrafficResponse(
        window=window, routes=sum(int(r["routes"]) for r in rows), llms=[sc.TrafficLLM(**r) for r in rows]
    )


@router.post("/v1/admin/reload", status_code=202, dependencies=[WriteKey], tags=["admin"])
def reload(request: Request, background: BackgroundTasks) -> dict[str, str]:
    """Load the router folder again in the background, bring it up to the event store, and swap it in; requests
    in flight finish on the old router."""
    state = request.app.state
    folder: Path = state.settings.router_dir

    async def swap() -> None:
        try:
            new = await state.model.run(
                Served.load, folder, state.settings.embedding_cache_items, state.settings.exploration
            )
            report = await state.follower.replay(new)
            state.served = new  # one reference assignment: atomic for readers
            await state.follower.sync()  # events stored while the new router was replaying
            logger.info("reloaded %s; store: %s", new.version, report.summary())
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
    llms = served.read(lambda r: int(r.state.enabled.sum()))
    return sc.Health(
        status="ready", model_version=served.version, llms=llms, loaded_at=served.loaded_at, store_cursor=served.cursor
    )


@router.get("/metrics", tags=["ops"], response_class=Response)
def metrics(request: Request) -> Response:
    state = request.app.state
    served = getattr(state, "served", None)
    if served is not None:
        state.metrics.pending.set(len(served.router.feedback))
        state.metrics.events.set(served.cursor)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
