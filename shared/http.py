"""One aiohttp application factory for every service.

It gives each service ``/healthz`` (alive), ``/readyz`` (database and broker reachable),
``/metrics`` (Prometheus), ``/openapi.json`` (OpenAPI 3.1 built from the same pydantic models
that validate requests), problem+json errors (RFC 9457) and request metrics. A service adds
its routes as :class:`Endpoint` s: a handler receives the validated ``body``/``query`` models
and returns a pydantic model (or raises :class:`HTTPProblem`).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.json_schema import models_json_schema

from shared.logging import get_logger
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"


class FieldError(BaseModel):
    field: str
    message: str
    type: str


class Problem(BaseModel):
    """An error answer (RFC 9457)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


class HTTPProblem(Exception):
    """Raise from a handler to answer with a problem+json error."""

    def __init__(self, status: int, title: str, detail: str | None = None,
                 errors: list[FieldError] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or title)
        self.problem = Problem(title=title, status=status, detail=detail, errors=errors)
        self.headers = headers or {}


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=problem.status, content_type=PROBLEM_JSON, headers=headers,
        text=problem.model_dump_json(exclude_none=True))


def _field_errors(exc: ValidationError, location: str) -> list[FieldError]:
    return [FieldError(field=".".join([location, *(str(p) for p in e["loc"])]),
                       message=e["msg"], type=e["type"]) for e in exc.errors()]


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_type != "application/json":
        raise HTTPProblem(415, "Unsupported media type",
                          "Send the request body as application/json.")
    too_large = HTTPProblem(413, "Request body too large", f"The limit is {limit} bytes.")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.content.iter_any():  # read() would stop at what is buffered
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def validate_body(raw: bytes, model: type[BaseModel]) -> BaseModel:
    try:
        data = json.loads(raw or b"null")
    except ValueError as exc:
        raise HTTPProblem(400, "Malformed JSON", f"The request body is not valid JSON: {exc}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise HTTPProblem(422, "Invalid request body",
                          "Correct the fields listed in errors and send the request again.",
                          _field_errors(exc, "body"))


async def parse_body(request: web.Request, model: type[BaseModel], limit: int = 1024 * 1024) -> BaseModel:
    return validate_body(await read_body(request, limit), model)


def parse_query(request: web.Request, model: type[BaseModel]) -> BaseModel:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise HTTPProblem(400, "Invalid query parameters",
                          "Correct the parameters listed in errors and send the request again.",
                          _field_errors(exc, "query"))


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Callable[..., Awaitable[Any]]
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    tags: list[str] = field(default_factory=list)
    # The handler gets the body as bytes (``raw=``) and validates it itself, after checking a
    # signature over the exact bytes; ``body`` then only documents it.
    raw_body: bool = False
    max_body: int = 1024 * 1024

    def view(self) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def view(request: web.Request) -> web.StreamResponse:
            kwargs: dict[str, Any] = {}
            if self.raw_body:
                kwargs["raw"] = await read_body(request, self.max_body)
            elif self.body is not None:
                kwargs["body"] = await parse_body(request, self.body)
            if self.query is not None:
                kwargs["query"] = parse_query(request, self.query)
            result = await self.handler(request, **kwargs)
            if isinstance(result, web.StreamResponse):
                return result
            if isinstance(result, BaseModel):
                text = result.model_dump_json()
            else:
                text = TypeAdapter(Any).dump_json(result).decode()
            return web.Response(status=self.status, text=text, content_type="application/json")
        return view


def _middlewares(service: str) -> list:
    @web.middleware
    async def problems_and_metrics(request: web.Request, handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.resource
        route_name = route.canonical if route is not None else "unmatched"
        try:
            response = await handler(request)
        except HTTPProblem as exc:
            response = problem_response(exc.problem, exc.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = problem_response(Problem(title=exc.reason, status=exc.status,
                                                detail=exc.text if exc.text != f"{exc.status}: {exc.reason}" else None))
            for name in ("Allow",):
                if name in exc.headers:
                    response.headers[name] = exc.headers[name]
        except Exception:
            log.exception("unhandled error", route=route_name, method=request.method)
            response = problem_response(Problem(
                title="Internal server error", status=500,
                detail="The request could not be completed because of an error on our side."))
        HTTP_REQUESTS.labels(service, request.method, route_name, str(response.status)).inc()
        HTTP_LATENCY.labels(service, request.method, route_name).observe(
            time.perf_counter() - started)
        return response
    return [problems_and_metrics]


ReadinessCheck = Callable[[], Awaitable[dict[str, str]]]


def openapi_document(service: str, version: str, endpoints: list[Endpoint]) -> dict[str, Any]:
    models = {Problem, Health, Readiness}
    for ep in endpoints:
        models.update(m for m in (ep.body, ep.query, ep.response) if m is not None)
    keyed, schema = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}")
    ref = {m: keyed[(m, "validation")]["$ref"] for m in models}

    def content(model: type[BaseModel], media: str = "application/json") -> dict[str, Any]:
        return {media: {"schema": {"$ref": ref[model]}}}

    problem = {"description": "Problem", "content": content(Problem, PROBLEM_JSON)}
    paths: dict[str, Any] = {
        "/healthz": {"get": {"summary": "Liveness", "responses": {
            "200": {"description": "Alive", "content": content(Health)}}}},
        "/readyz": {"get": {"summary": "Readiness: database and broker reachable", "responses": {
            "200": {"description": "Ready", "content": content(Readiness)},
            "503": {"description": "Not ready", "content": content(Readiness)}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
            "200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    }
    for ep in endpoints:
        op: dict[str, Any] = {"summary": ep.summary, "tags": ep.tags or [service], "responses": {
            str(ep.status): ({"description": "OK", "content": content(ep.response)}
                             if ep.response else {"description": "OK"}),
            "4XX": problem, "5XX": problem}}
        if ep.body is not None:
            op["requestBody"] = {"required": True, "content": content(ep.body)}
        if ep.query is not None:
            props = ep.query.model_json_schema().get("properties", {})
            required = set(ep.query.model_json_schema().get("required", []))
            op["parameters"] = [{"name": n, "in": "query", "required": n in required, "schema": s}
                                for n, s in props.items()]
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Veikals {service} API", "version": version},
        "paths": paths,
        "components": {"schemas": schema.get("$defs", {})},
    }


def make_app(service: str, *, version: str = "1", endpoints: list[Endpoint] | None = None,
             readiness: ReadinessCheck) -> web.Application:
    endpoints = endpoints or []
    app = web.Application(middlewares=_middlewares(service))
    document = openapi_document(service, version, endpoints)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response(Health(status="ok").model_dump())

    async def readyz(_: web.Request) -> web.Response:
        checks = await readiness()
        ready = all(v == "ok" for v in checks.values())
        body = Readiness(status="ready" if ready else "not ready", checks=checks)
        return web.json_response(body.model_dump(), status=200 if ready else 503)

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    for ep in endpoints:
        app.router.add_route(ep.method, ep.path, ep.view())
    return app
