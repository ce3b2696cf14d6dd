"""The shared HTTP app: problem+json errors, validation a person can act on, OpenAPI."""
import asyncio
import io
import json
import uuid

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, Field

from shared.http import CUSTOMER, Access, AppRunner, Endpoint, HTTPProblem, make_app, openapi_document, staff
from shared.logging import configure_logging


class NewProduct(BaseModel):
    name: str = Field(min_length=1)
    price_cents: int = Field(gt=0)


class Product(NewProduct):
    id: int


class Paging(BaseModel):
    limit: int = Field(default=10, ge=1, le=100)


async def create(request, body: NewProduct):
    if body.name == "taken":
        raise HTTPProblem(409, "Product exists", "A product with this name exists already.")
    return Product(id=1, **body.model_dump())


async def listing(request, query: Paging):
    return {"limit": query.limit}


async def broken(request):
    raise RuntimeError("secret detail")


async def ready():
    return {"database": "ok", "broker": "unreachable"}


@pytest.fixture
async def client():
    app = make_app("shop", endpoints=[
        Endpoint("POST", "/v1/products", create, "Add a product", body=NewProduct,
                 response=Product, status=201),
        Endpoint("GET", "/v1/products", listing, "List products", query=Paging),
        Endpoint("GET", "/v1/broken", broken, "Always fails"),
    ], readiness=ready)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_valid_body_is_answered(client):
    response = await client.post("/v1/products", json={"name": "Mug", "price_cents": 900})
    assert response.status == 201
    assert await response.json() == {"name": "Mug", "price_cents": 900, "id": 1}


async def test_invalid_body_names_each_field(client):
    response = await client.post("/v1/products", json={"name": "", "price_cents": -1})
    assert response.status == 422
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert {e["field"] for e in problem["errors"]} == {"body.name", "body.price_cents"}
    assert all(e["message"] for e in problem["errors"])


@pytest.mark.parametrize("data,headers,status", [
    ("{not json", {"Content-Type": "application/json"}, 400),
    ("name=Mug", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
])
async def test_unreadable_bodies(client, data, headers, status):
    response = await client.post("/v1/products", data=data, headers=headers)
    assert response.status == status
    assert (await response.json())["status"] == status


async def test_handler_problem_and_query_validation(client):
    assert (await client.post("/v1/products", json={"name": "taken", "price_cents": 1})).status == 409
    assert await (await client.get("/v1/products?limit=5")).json() == {"limit": 5}
    bad = await client.get("/v1/products?limit=1000")
    assert bad.status == 422 and (await bad.json())["errors"][0]["field"] == "query.limit"


async def test_unknown_route_wrong_method_and_crash_are_problems(client):
    assert (await client.get("/v1/nothing")).status == 404
    wrong = await client.delete("/v1/products")
    assert wrong.status == 405 and wrong.content_type == "application/problem+json"
    crash = await client.get("/v1/broken")
    assert crash.status == 500 and "secret" not in await crash.text()


async def test_health_readiness_metrics(client):
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 503 and (await ready.json())["checks"]["broker"] == "unreachable"
    await client.get("/v1/products")
    metrics = await (await client.get("/metrics")).text()
    assert 'veikals_http_requests_total{method="GET",route="/v1/products",service="shop",status="200"}' in metrics


async def test_openapi_is_built_from_the_models(client):
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    post = doc["paths"]["/v1/products"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/NewProduct"}
    assert "201" in post["responses"]
    assert doc["components"]["schemas"]["NewProduct"]["properties"]["price_cents"]["exclusiveMinimum"] == 0
    assert doc["paths"]["/v1/products"]["get"]["parameters"][0]["name"] == "limit"


async def test_bodies_sent_in_pieces_arrive_whole_and_the_limit_holds(client):
    async def pieces(body: bytes, size: int = 1000):
        for start in range(0, len(body), size):
            yield body[start:start + size]
            await asyncio.sleep(0)
    name = "M" * 60_000
    body = json.dumps({"name": name, "price_cents": 1}).encode()
    response = await client.post("/v1/products", data=pieces(body),
                                 headers={"Content-Type": "application/json"})
    assert response.status == 201 and (await response.json())["name"] == name
    huge = json.dumps({"name": "M" * 2_000_000, "price_cents": 1}).encode()
    response = await client.post("/v1/products", data=pieces(huge, 64_000),
                                 headers={"Content-Type": "application/json"})
    assert response.status == 413


# --- what the shared layer refuses before a handler (or PostgreSQL) sees it ------------------

class Item(BaseModel):
    id: uuid.UUID


class Note(BaseModel):
    text: str = Field(max_length=100)
    count: int = 0


async def authenticate(request, access: Access):
    """A stand-in for the service's token check: 'Bearer <kind>' is a caller of that kind."""
    scheme, _, kind = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Bearer" or kind not in ("customer", "staff"):
        raise HTTPProblem(401, "Authentication required")
    if access.kind != "any" and kind != access.kind:
        raise HTTPProblem(403, "Not allowed")
    return kind


handled: list[dict] = []


async def record(request, **kwargs):
    handled.append(kwargs)
    return {"ok": True}


@pytest.fixture
async def guarded():
    handled.clear()
    app = make_app("shop", endpoints=[
        Endpoint("POST", "/v1/notes", record, "Public note", body=Note),
        Endpoint("POST", "/v1/items/{id}/notes", record, "A customer's note on an item",
                 params=Item, body=Note, auth=CUSTOMER, problems=(404,)),
        Endpoint("GET", "/v1/staff/items", record, "Staff listing", query=Paging, auth=staff("admin"),
                 audited=()),
    ], readiness=ready, authenticate=authenticate)
    async with TestClient(TestServer(app)) as client:
        yield client


async def problem(response, status: int) -> dict:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    return await response.json()


async def test_deeply_nested_json_is_a_400_not_a_crash(guarded):
    for depth in (33, 1000, 100_000):
        body = '{"text": ' + "[" * depth + "]" * depth + "}"
        found = await problem(await guarded.post("/v1/notes", data=body,
                                                 headers={"Content-Type": "application/json"}), 400)
        assert "nested deeper" in found["detail"]
    assert handled == []


@pytest.mark.parametrize("body,field", [
    ('{"text": "a\\u0000b"}', "body.text"),
    ('{"text": "\\ud800"}', "body.text"),
    ('{"text": "ok", "count": 99999999999999999999}', "body.count"),
    ('{"text": "ok", "extra": {"deep": ["\\u0000"]}}', "body.extra.deep.0"),
    ('{"te\\u0000xt": "ok"}', "body.te?xt"),
])
async def test_text_postgresql_cannot_store_is_refused_naming_the_field(guarded, body, field):
    found = await problem(await guarded.post("/v1/notes", data=body,
                                             headers={"Content-Type": "application/json"}), 422)
    assert [e["field"] for e in found["errors"]] == [field]
    assert handled == []


async def test_a_number_sent_as_text_is_held_to_the_same_range(guarded):
    found = await problem(await guarded.post("/v1/notes", json={"text": "x", "count": "12345678901234567890"}), 422)
    assert [e["field"] for e in found["errors"]] == ["body.count"]
    found = await problem(await guarded.get("/v1/staff/items?limit=12345678901234567890",
                                            headers={"Authorization": "Bearer staff"}), 422)
    assert found["errors"][0]["field"] == "query.limit"


@pytest.mark.parametrize("body", ["NaN", '{"text": "x", "count": 1e999}', '{"text": "x", "count": Infinity}'])
async def test_numbers_json_does_not_have_are_malformed(guarded, body):
    await problem(await guarded.post("/v1/notes", data=body, headers={"Content-Type": "application/json"}), 400)


async def test_path_and_query_values_are_validated_by_type(guarded):
    customer = {"Authorization": "Bearer customer"}
    for raw_id, kind in [("%00", "string_nul"), ("not-a-uuid", "uuid_parsing")]:
        found = await problem(await guarded.post(f"/v1/items/{raw_id}/notes", json={"text": "x"},
                                                 headers=customer), 422)
        assert found["errors"][0]["field"] == "path.id" and found["errors"][0]["type"] == kind
    staff_token = {"Authorization": "Bearer staff"}
    for query in ("limit=%00", "limit=ten", "limit=0"):
        found = await problem(await guarded.get(f"/v1/staff/items?{query}", headers=staff_token), 422)
        assert found["errors"][0]["field"] == "query.limit"
    ok = await guarded.post(f"/v1/items/{uuid.uuid4()}/notes", json={"text": "x"}, headers=customer)
    assert ok.status == 200 and handled[-1]["caller"] == "customer"


async def test_the_caller_is_known_before_anything_else_is_read(guarded):
    item = f"/v1/items/{uuid.uuid4()}/notes"
    bad_body = {"data": "{not json", "headers": {"Content-Type": "application/json"}}
    # Anonymous: 401 whatever the path, body or content type.
    for path in (item, "/v1/items/not-a-uuid/notes"):
        await problem(await guarded.post(path, **bad_body), 401)
        await problem(await guarded.post(path, data="x=1", headers={"Content-Type": "text/plain"}), 401)
    await problem(await guarded.get("/v1/staff/items?limit=ten"), 401)
    await problem(await guarded.get("/v1/staff/items", headers={"X-Note": "caf\udce9"}), 401)
    # The wrong kind of caller: 403, still before the body.
    await problem(await guarded.post(item, headers={"Authorization": "Bearer staff", **bad_body["headers"]},
                                     data=bad_body["data"]), 403)
    await problem(await guarded.get("/v1/staff/items?limit=ten", headers={"Authorization": "Bearer customer"}), 403)
    assert handled == []


async def raw_request(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body


async def test_what_the_http_parser_refuses_is_problem_json_that_echoes_nothing():
    out = io.StringIO()
    configure_logging("shop", stream=out)
    runner = AppRunner(make_app("shop", endpoints=[
        Endpoint("GET", "/v1/products", listing, "List products", query=Paging)], readiness=ready))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    secret = b"eyJhbGciOiJFZERTQSJ9SECRETTOKENSTART"
    try:
        cases = [
            (b"GET /v1/products?q=" + secret + b"x" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
            (b"GET /v1/products HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " + secret
             + b"y" * 17000 + b"\r\n\r\n", 431),
            (b"GET /v1/products HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200))
             + b"\r\n", 431),
            (b"GET /v1/products HTTP/1.1\r\nHost: a\r\nX-Note: " + secret + b"\x01\r\n\r\n", 400),
            (b"GET /v1/products HTTP/1.1\r\nHost: a\r\nConnection: close\r\nUser-Agent: caf\xe9 " + secret
             + b"\r\n\r\n", 400),
        ]
        for data, status in cases:
            got, headers, body = await raw_request(port, data)
            assert got == status, body
            assert headers["content-type"].startswith("application/problem+json")
            assert json.loads(body)["status"] == status
            assert secret not in body
    finally:
        await runner.cleanup()
    assert secret.decode() not in out.getvalue()
    assert '"status": 414' in out.getvalue() and '"status": 431' in out.getvalue()


async def test_openapi_declares_parameters_security_answers_and_the_shared_rules(guarded):
    doc = await (await guarded.get("/openapi.json")).json()
    op = doc["paths"]["/v1/items/{id}/notes"]["post"]
    assert op["parameters"] == [{"name": "id", "in": "path", "required": True,
                                 "schema": {"format": "uuid", "title": "Id", "type": "string"}}]
    assert op["security"] == [{"bearer": []}] and op["x-veikals-access"]["kind"] == "customer"
    assert set(op["responses"]) == {"200", "400", "401", "403", "404", "413", "414", "415", "422", "431", "500", "503"}
    assert all(r["content"] == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
               for code, r in op["responses"].items() if code != "200")
    assert doc["paths"]["/v1/staff/items"]["get"]["security"] == [{"bearer": ["admin"]}]
    assert "bearer" in doc["components"]["securitySchemes"]
    public = doc["paths"]["/v1/notes"]["post"]
    assert "security" not in public and "401" not in public["responses"]
    note = doc["components"]["schemas"]["Note"]["properties"]
    assert note["text"]["pattern"] == "^[^\\u0000]*$" and note["text"]["maxLength"] == 100
    assert note["count"]["maximum"] == 2 ** 63 - 1


def test_a_path_parameter_without_a_model_is_a_mistake_caught_at_start():
    with pytest.raises(ValueError, match="path parameters"):
        Endpoint("GET", "/v1/items/{id}", record, "One item")


async def test_a_signed_endpoint_without_its_signature_is_anonymous():
    class Partner(BaseModel):
        partner: str = Field(pattern=r"^[a-z]+$")

    app = make_app("shop", endpoints=[
        Endpoint("POST", "/v1/partners/{partner}/callbacks", record, "A partner calls back",
                 params=Partner, body=Note, raw_body=True, signed=True)], readiness=ready)
    async with TestClient(TestServer(app)) as client:
        for path in ("/v1/partners/carrier/callbacks", "/v1/partners/%00/callbacks"):
            await problem(await client.post(path, data="{not json", headers={"Content-Type": "text/plain"}), 401)
        signed = {"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,x"}
        await problem(await client.post("/v1/partners/%00/callbacks", json={}, headers=signed), 422)
        doc = await (await client.get("/openapi.json")).json()
        assert doc["paths"]["/v1/partners/{partner}/callbacks"]["post"]["security"] == [{"webhookSignature": []}]


def test_a_staff_route_must_say_what_personal_data_it_reads():
    async def handler(request, caller):
        return {}
    with pytest.raises(ValueError, match="must declare the personal data"):
        Endpoint("GET", "/v1/staff/things", handler, "Things", auth=staff("support"))
    read = Endpoint("GET", "/v1/staff/things", handler, "Things", auth=staff("support"), audited=("orders",))
    document = openapi_document("demo", "1", [read])
    assert document["paths"]["/v1/staff/things"]["get"]["x-veikals-audited"] == ["orders"]
