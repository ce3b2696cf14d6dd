"""The shared HTTP app: problem+json errors, validation a person can act on, OpenAPI."""
import asyncio
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, Field

from shared.http import Endpoint, HTTPProblem, make_app


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
    assert bad.status == 400 and (await bad.json())["errors"][0]["field"] == "query.limit"


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
