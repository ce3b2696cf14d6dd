"""The staff view of partners and webhook deliveries (every look is by a signed-in staff member)."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal

import asyncpg
from aiohttp import web
from pydantic import BaseModel, Field

from shared.http import Endpoint, HTTPProblem, staff
from shared.webhooks.outbound import DELIVERY_ID_PATTERN, enable_endpoint, redeliver
from shared.webhooks.policy import shown
from shared.webhooks.registry import PARTNER_NAME_PATTERN, PartnerKind, PartnerRegistry


class PartnerView(BaseModel):
    name: str
    kind: PartnerKind
    endpoint: str
    data_categories: list[str]
    description: str
    disabled_at: dt.datetime | None
    disabled_reason: str | None


class PartnerList(BaseModel):
    partners: list[PartnerView]


class DeliveryView(BaseModel):
    id: str
    partner: str
    event_type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    created_at: dt.datetime
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    last_status: int | None
    last_error: str | None


class AttemptView(BaseModel):
    attempt: int
    started_at: dt.datetime
    status_code: int | None
    latency_ms: int
    error: str | None


class DeliveryDetail(DeliveryView):
    attempts_log: list[AttemptView]


class DeliveryList(BaseModel):
    deliveries: list[DeliveryView]


class Page(BaseModel):
    limit: int = Field(default=50, ge=1, le=500)


class DeliveryPath(BaseModel):
    id: str = Field(pattern=DELIVERY_ID_PATTERN, description="a webhook-id")


class PartnerPath(BaseModel):
    name: str = Field(pattern=PARTNER_NAME_PATTERN, description="a registered partner's name")


class DeliveryQuery(Page):
    partner: str | None = None
    status: Literal["pending", "delivered", "failed"] | None = None


class CallbackView(BaseModel):
    webhook_id: str
    type: str
    data: dict[str, Any]
    received_at: dt.datetime


class CallbackList(BaseModel):
    callbacks: list[CallbackView]


class Done(BaseModel):
    status: str


_DELIVERY_COLUMNS = """id, partner, event_type, status, attempts, created_at, delivered_at,
    last_status, last_error, CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at"""


def staff_endpoints(pool: asyncpg.Pool, registry: PartnerRegistry) -> list[Endpoint]:
    """The routes, for staff with the roles each names; the service's own authenticator checks
    their tokens, as on its other staff routes."""
    async def partners(request: web.Request, caller) -> PartnerList:
        disabled = {r["partner"]: r for r in await pool.fetch("SELECT * FROM webhook_disabled_endpoints")}
        return PartnerList(partners=[PartnerView(
            name=p.name, kind=p.kind, endpoint=shown(p.endpoint), data_categories=p.data_categories,
            description=p.description,
            disabled_at=disabled[p.name]["disabled_at"] if p.name in disabled else None,
            disabled_reason=disabled[p.name]["reason"] if p.name in disabled else None,
        ) for p in registry])

    async def deliveries(request: web.Request, caller, query: DeliveryQuery) -> DeliveryList:
        rows = await pool.fetch(
            f"""SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries
                WHERE ($1::text IS NULL OR partner = $1) AND ($2::text IS NULL OR status = $2)
                ORDER BY created_at DESC LIMIT $3""", query.partner, query.status, query.limit)
        return DeliveryList(deliveries=[DeliveryView(**dict(r)) for r in rows])

    async def delivery(request: web.Request, caller, params: DeliveryPath) -> DeliveryDetail:
        row = await pool.fetchrow(f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1",
                                  params.id)
        if row is None:
            raise HTTPProblem(404, "Unknown delivery")
        attempts = await pool.fetch(
            """SELECT attempt, started_at, status_code, latency_ms, error FROM webhook_attempts
               WHERE delivery_id = $1 ORDER BY id""", row["id"])
        return DeliveryDetail(**dict(row), attempts_log=[AttemptView(**dict(a)) for a in attempts])

    async def redeliver_one(request: web.Request, caller, params: DeliveryPath) -> Done:
        status = await redeliver(pool, params.id)
        if status is None:
            raise HTTPProblem(404, "Unknown delivery")
        if status == "pending":
            raise HTTPProblem(409, "Delivery still under way",
                              "It is pending or being sent; redeliver it once it has failed or been delivered.")
        return Done(status="queued for delivery")

    async def enable(request: web.Request, caller, params: PartnerPath) -> Done:
        name = params.name
        if registry.get(name) is None:
            raise HTTPProblem(404, "Unknown partner")
        if not await enable_endpoint(pool, name):
            raise HTTPProblem(409, "Endpoint is not disabled")
        return Done(status="enabled")

    async def callbacks(request: web.Request, caller, params: PartnerPath, query: Page) -> CallbackList:
        rows = await pool.fetch(
            """SELECT webhook_id, type, data, received_at FROM webhook_callbacks
               WHERE partner = $1 ORDER BY received_at DESC LIMIT $2""",
            params.name, query.limit)
        return CallbackList(callbacks=[CallbackView(**{**dict(r), "data": json.loads(r["data"])})
                                       for r in rows])

    tags, readers, admin = ["staff: partners"], staff("support", "admin"), staff("admin")
    return [
        Endpoint("GET", "/v1/staff/partners", partners, "Registered partners and their endpoints",
                 response=PartnerList, auth=readers, tags=tags),
        Endpoint("GET", "/v1/staff/webhooks/deliveries", deliveries, "The delivery log",
                 query=DeliveryQuery, response=DeliveryList, auth=readers, tags=tags),
        Endpoint("GET", "/v1/staff/webhooks/deliveries/{id}", delivery,
                 "One delivery with every attempt", params=DeliveryPath, response=DeliveryDetail,
                 auth=readers, problems=(404,), tags=tags),
        Endpoint("POST", "/v1/staff/webhooks/deliveries/{id}/redeliver", redeliver_one,
                 "Send a delivery again (same webhook-id)", params=DeliveryPath, response=Done,
                 status=202, auth=admin, problems=(404, 409), tags=tags),
        Endpoint("POST", "/v1/staff/partners/{name}/enable", enable,
                 "Enable an endpoint that was disabled after 410 Gone", params=PartnerPath,
                 response=Done, auth=admin, problems=(404, 409), tags=tags),
        Endpoint("GET", "/v1/staff/partners/{name}/callbacks", callbacks,
                 "Callbacks received from a partner", params=PartnerPath, query=Page,
                 response=CallbackList, auth=readers, tags=tags),
    ]
