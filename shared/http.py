"""One aiohttp application factory for every service.

It gives each service ``/healthz`` (alive), ``/readyz`` (database and broker reachable),
``/metrics`` (Prometheus), ``/openapi.json`` (OpenAPI 3.1 built from the same pydantic models
that validate requests), problem+json errors (RFC 9457) and request metrics. A service adds
its routes as :class:`Endpoint` s; the shared view runs the same steps for each, in this order:

1. who is calling (``auth``): no token, or a bad one, is 401 before anything else is read;
   the wrong kind of token or role is 403;
2. the path parameters, the query and the body, each validated by its model (422 naming the
   field; 400 for JSON that cannot be read, 413 and 415 for the body's size and type);
3. the handler, which receives ``caller``, ``params``, ``query`` and ``body`` as declared, and
   returns a pydantic model (or raises :class:`HTTPProblem`).

Nothing that PostgreSQL would refuse (NUL, unpaired surrogates, integers wider than a bigint)
or that would exhaust the parser (deep nesting) gets past step 2 (see ``shared.inputs``). A
request the HTTP parser refuses (a URL or header over the limits, broken HTTP) is answered as
problem+json (414, 431, 400) without echoing or logging any of its bytes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from pydantic_core import core_schema

from shared import inputs
from shared.logging import get_logger
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
MAX_BODY_BYTES = 1024 * 1024
# Distinct limits tell the parser's refusals apart: a request line over MAX_URL_BYTES is 414,
# a header line over MAX_HEADER_BYTES is 431.
MAX_URL_BYTES = 8190
MAX_HEADER_BYTES = 16380


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


# --- who may call -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Access:
    """Who may call an endpoint: a customer, staff holding one of ``roles`` (any staff role
    when empty), or anyone signed in (``any``)."""

    kind: Literal["customer", "staff", "any"]
    roles: frozenset[str] = frozenset()

    def describe(self) -> str:
        if self.kind == "any":
            return "Needs an access token (a customer's or a staff member's)."
        if self.kind == "customer":
            return "Needs a customer access token."
        roles = ", ".join(sorted(self.roles)) or "any"
        return f"Needs a staff access token with one of the roles: {roles}."


CUSTOMER = Access("customer")
SIGNED_IN = Access("any")


def staff(*roles: str) -> Access:
    return Access("staff", frozenset(roles))


# A Standard Webhooks signature is made of these headers; a request without them is anonymous.
WEBHOOK_SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")

# The service's check of a caller's token against an endpoint's Access: returns the Principal
# (shared.auth) or raises HTTPProblem 401/403.
Authenticator = Callable[[web.Request, Access], Awaitable[Any]]


# --- reading input ----------------------------------------------------------------------------

def _field_errors(exc: ValidationError, location: str) -> list[FieldError]:
    return [FieldError(field=".".join([location, *(str(p) for p in e["loc"])]),
                       message=e["msg"], type=e["type"]) for e in exc.errors()]


def _refuse_unsafe(value: Any, location: str, title: str) -> None:
    found = inputs.unsafe_values(value, location)
    if found:
        raise HTTPProblem(422, title, "Correct the fields listed in errors and send the request again.",
                          [FieldError(field=u.where, message=u.message, type=u.type) for u in found])


def _validate(model: type[BaseModel], data: Any, location: str, title: str, *, checked: bool = False) -> BaseModel:
    """``data`` as ``model``, or 422; ``checked``: its text was plainly safe (``inputs.read_json``)."""
    if not checked:
        _refuse_unsafe(data, location, title)
    try:
        validated = model.model_validate(data)
    except ValidationError as exc:
        raise HTTPProblem(422, title, "Correct the fields listed in errors and send the request again.",
                          _field_errors(exc, location))
    # A number sent as text ("12345678901234567890") becomes an int only now.
    wide = inputs.wide_integers(validated.model_dump(), location)
    if wide:
        raise HTTPProblem(422, title, "Correct the fields listed in errors and send the request again.",
                          [FieldError(field=u.where, message=u.message, type=u.type) for u in wide])
    return validated


def _too_large(limit: int) -> HTTPProblem:
    return HTTPProblem(413, "Request body too large", f"The limit is {limit} bytes.")


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    if request.content_type != "application/json":
        raise HTTPProblem(415, "Unsupported media type",
                          "Send the request body as application/json.")
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.content.iter_any():  # read() would stop at what is buffered
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def validate_body(raw: bytes, model: type[BaseModel]) -> BaseModel:
    try:
        data, checked = inputs.read_json(raw or b"null")
    except inputs.InputError as exc:
        raise HTTPProblem(400, "Malformed JSON", f"The request body cannot be read: {exc}")
    return _validate(model, data, "body", "Invalid request body", checked=checked)


async def parse_body(request: web.Request, model: type[BaseModel], limit: int = MAX_BODY_BYTES) -> BaseModel:
    return validate_body(await read_body(request, limit), model)


def parse_query(request: web.Request, model: type[BaseModel]) -> BaseModel:
    return _validate(model, dict(request.query), "query", "Invalid query parameters")


def parse_params(request: web.Request, model: type[BaseModel]) -> BaseModel:
    return _validate(model, dict(request.match_info), "path", "Invalid path parameters")


# --- endpoints --------------------------------------------------------------------------------

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
    # The model of the path's ``{name}`` parameters (every one must be declared).
    params: type[BaseModel] | None = None
    auth: Access | None = None
    # Statuses the handler itself may answer beyond those the shared view gives (404, 409, 429).
    problems: tuple[int, ...] = ()
    tags: list[str] = field(default_factory=list)
    # The handler reads the body itself (``read_body``), to check a signature over the exact
    # bytes before validating it; ``body`` then only documents it. ``signed``: the request is
    # authenticated by a Standard Webhooks signature (the view refuses one without its
    # headers; the handler verifies it).
    raw_body: bool = False
    signed: bool = False
    # A staff route says which categories of personal data it shows or acts on; each call is
    # then an audit-log entry (P16), which the handler writes. ``()``: it touches none. A staff
    # route that says nothing is refused, so none is left out by forgetting.
    audited: tuple[str, ...] | None = None
    # What a reader needs beyond the summary and the schemas (the operation's description).
    description: str = ""

    def __post_init__(self) -> None:
        if self.auth is not None and self.auth.kind == "staff" and self.audited is None:
            raise ValueError(f"{self.method} {self.path}: a staff route must declare the personal data it "
                             "reads (audited=(categories...)), or audited=() when it reads none")
        names = set(_path_names(self.path))
        declared = set(self.params.model_fields) if self.params is not None else set()
        if names != declared:
            raise ValueError(f"{self.method} {self.path}: path parameters {sorted(names)} "
                             f"need a params model with exactly those fields (has {sorted(declared)})")

    def view(self, authenticate: Authenticator) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def view(request: web.Request) -> web.StreamResponse:
            kwargs: dict[str, Any] = {}
            if self.auth is not None:
                kwargs["caller"] = await authenticate(request, self.auth)
            elif self.signed and not all(request.headers.get(h) for h in WEBHOOK_SIGNATURE_HEADERS):
                raise HTTPProblem(401, "Signature required", "Sign the request with the headers "
                                  f"{', '.join(WEBHOOK_SIGNATURE_HEADERS)} (Standard Webhooks).")
            _check_headers(request)
            if self.params is not None:
                kwargs["params"] = parse_params(request, self.params)
            if self.query is not None:
                kwargs["query"] = parse_query(request, self.query)
            if self.body is not None and not self.raw_body:
                kwargs["body"] = await parse_body(request, self.body)
            result = await self.handler(request, **kwargs)
            if isinstance(result, web.StreamResponse):
                return result
            if isinstance(result, BaseModel):
                text = result.model_dump_json()
            else:
                text = TypeAdapter(Any).dump_json(result).decode()
            return web.Response(status=self.status, text=text, content_type="application/json")
        return view

    def answers(self) -> dict[int, str]:
        """Every error status this endpoint can give, with what it means."""
        found = {400: "Malformed request: a body that is not JSON, or a header that is not UTF-8",
                 414: "Request line too long", 431: "Header fields too large", 500: "Internal error"}
        if self.auth is not None or self.signed:
            found[401] = "No valid credentials"
        if self.auth is not None:
            found[403] = "Credentials without the right to this"
            found[503] = "Credentials cannot be checked now"
        if self.body is not None:
            found.update({413: "Body too large", 415: "Body is not application/json",
                          422: "Invalid request (the errors name each field)"})
        if self.params is not None or self.query is not None:
            found[422] = "Invalid request (the errors name each field)"
        meanings = {404: "Not found", 409: "Conflicts with the current state",
                    429: "Too many attempts: wait for Retry-After seconds",
                    503: "Temporarily unavailable"}
        for status in self.problems:
            found.setdefault(status, meanings.get(status, "See detail"))
        return found


def _path_names(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


# --- middleware -------------------------------------------------------------------------------

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


def _check_headers(request: web.Request) -> None:
    """aiohttp decodes header bytes that are not UTF-8 as lone surrogates; nothing downstream
    (a log line, a stored user agent) can use them. Checked after the caller is known (a token
    that is not ASCII is already a 401)."""
    for name, value in request.headers.items():
        if inputs.text_problem(value) is not None:
            raise HTTPProblem(400, "Invalid header", f"The {name} header is not valid UTF-8 text.")


class _ProblemRequestHandler(RequestHandler):
    """Answers what the HTTP parser refused as problem+json, without repeating or logging a
    byte of it (a token in an over-long header must not reach the log)."""

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None) -> web.StreamResponse:
        if isinstance(exc, LineTooLong):
            limit = exc.args[1] if len(exc.args) > 1 else None
            if str(limit) == str(MAX_URL_BYTES):
                problem = Problem(status=414, title="URI too long",
                                  detail=f"The request line is limited to {MAX_URL_BYTES} bytes.")
            else:
                problem = Problem(status=431, title="Request header fields too large",
                                  detail=f"A header line is limited to {MAX_HEADER_BYTES} bytes.")
        elif isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc):
            problem = Problem(status=431, title="Request header fields too large",
                              detail="The request has too many headers.")
        elif status < 500:
            problem = Problem(status=status, title="Bad request", detail="The request is not valid HTTP/1.1.")
        else:
            self.log_exception("error outside the request handler", exc_info=exc)
            problem = Problem(status=500, title="Internal server error")
        if problem.status < 500:
            log.warning("request refused by the HTTP parser", status=problem.status,
                        error=type(exc).__name__ if exc else None)
        if request.writer.output_size > 0:
            raise ConnectionError("the response has begun; the connection is closed instead")
        response = problem_response(problem)
        response.force_close()
        return response


class _ProblemServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class AppRunner(web.AppRunner):
    """``web.AppRunner`` with the parser limits above and problem+json for what it refuses."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, handle_signals=False, access_log=None, max_line_size=MAX_URL_BYTES,
                         max_field_size=MAX_HEADER_BYTES, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ProblemServer  # the same server, building our request handler
        return server


# --- the OpenAPI document -------------------------------------------------------------------

class _RequestSchema(GenerateJsonSchema):
    """JSON Schema that states what the shared layer refuses besides the model: strings with
    NUL (a pattern on every request string that has none of its own), integers wider than a
    bigint."""

    def str_schema(self, schema: core_schema.StringSchema) -> dict[str, Any]:
        result = super().str_schema(schema)
        if self.mode == "validation" and "pattern" not in result and "format" not in result:
            result["pattern"] = inputs.NO_NUL_PATTERN
        return result

    def int_schema(self, schema: core_schema.IntSchema) -> dict[str, Any]:
        result = super().int_schema(schema)
        if self.mode == "validation":
            if "minimum" not in result and "exclusiveMinimum" not in result:
                result["minimum"] = inputs.INT_MIN
            if "maximum" not in result and "exclusiveMaximum" not in result:
                result["maximum"] = inputs.INT_MAX
        return result


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": "An access token from the accounts service (POST /v1/auth/login "
                              "or /v1/staff/auth/login); the roles an operation needs are listed "
                              "in its security requirement and description."},
    "webhookSignature": {"type": "apiKey", "in": "header", "name": "webhook-signature",
                         "description": "A Standard Webhooks signature with the partner's secret, "
                                        "with webhook-id and webhook-timestamp (see docs/webhooks.md)."},
}


def _parameters(model: type[BaseModel], where: str) -> list[dict[str, Any]]:
    schema = model.model_json_schema(schema_generator=_RequestSchema)
    required = set(schema.get("required", []))
    return [{"name": name, "in": where, "required": where == "path" or name in required, "schema": prop}
            for name, prop in schema.get("properties", {}).items()]


def openapi_document(service: str, version: str, endpoints: list[Endpoint]) -> dict[str, Any]:
    requests = {m for ep in endpoints for m in (ep.body,) if m is not None}
    responses = {Problem, Health, Readiness} | {ep.response for ep in endpoints if ep.response is not None}
    keyed, schema = models_json_schema(
        [(m, "validation") for m in sorted(requests, key=lambda m: m.__name__)]
        + [(m, "serialization") for m in sorted(responses, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}", schema_generator=_RequestSchema)

    def content(model: type[BaseModel], mode: str = "serialization",
                media: str = "application/json") -> dict[str, Any]:
        return {media: {"schema": {"$ref": keyed[(model, mode)]["$ref"]}}}

    def problem(description: str) -> dict[str, Any]:
        return {"description": description, "content": content(Problem, media=PROBLEM_JSON)}

    paths: dict[str, Any] = {
        "/healthz": {"get": {"summary": "Liveness", "tags": ["operations"], "responses": {
            "200": {"description": "Alive", "content": content(Health)}}}},
        "/readyz": {"get": {"summary": "Readiness: database and broker reachable", "tags": ["operations"],
                            "responses": {"200": {"description": "Ready", "content": content(Readiness)},
                                          "503": {"description": "Not ready", "content": content(Readiness)}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["operations"], "responses": {
            "200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    }
    for ep in endpoints:
        success: dict[str, Any] = {"description": "OK"}
        if ep.response is not None:
            success["content"] = content(ep.response)
        op: dict[str, Any] = {
            "summary": ep.summary, "tags": ep.tags or [service],
            "operationId": f"{ep.method.lower()}{ep.path.replace('/', '_').replace('{', '').replace('}', '')}",
            "responses": {str(ep.status): success,
                          **{str(s): problem(d) for s, d in sorted(ep.answers().items())}}}
        if ep.description:
            op["description"] = ep.description
        if ep.auth is not None:
            op["security"] = [{"bearer": sorted(ep.auth.roles)}]
            op["description"] = " ".join(filter(None, (ep.auth.describe(), ep.description)))
            op["x-veikals-access"] = {"kind": ep.auth.kind, "roles": sorted(ep.auth.roles)}
        elif ep.signed:
            op["security"] = [{"webhookSignature": []}]
        if ep.audited is not None:
            op["x-veikals-audited"] = list(ep.audited)
        parameters = []
        if ep.params is not None:
            parameters += _parameters(ep.params, "path")
        if ep.query is not None:
            parameters += _parameters(ep.query, "query")
        if parameters:
            op["parameters"] = parameters
        if ep.body is not None:
            op["requestBody"] = {"required": True, "content": content(ep.body, "validation")}
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Veikals {service} API", "version": version,
                 "description": "Errors are application/problem+json (RFC 9457). A request line "
                                f"over {MAX_URL_BYTES} bytes is answered 414 and a header line over "
                                f"{MAX_HEADER_BYTES} bytes 431."},
        "paths": paths,
        "components": {"schemas": schema.get("$defs", {}), "securitySchemes": SECURITY_SCHEMES},
    }


async def _no_authentication(request: web.Request, access: Access) -> Any:
    raise HTTPProblem(503, "Authentication is not set up", "This service cannot check tokens.")


def make_app(service: str, *, version: str = "1", endpoints: list[Endpoint] | None = None,
             readiness: Callable[[], Awaitable[dict[str, str]]],
             authenticate: Authenticator = _no_authentication) -> web.Application:
    endpoints = endpoints or []
    app = web.Application(middlewares=_middlewares(service), client_max_size=MAX_BODY_BYTES)
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
        app.router.add_route(ep.method, ep.path, ep.view(authenticate))
    return app
