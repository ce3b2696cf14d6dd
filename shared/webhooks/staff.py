"""The staff view of partners and webhook deliveries (every look is by a signed-in staff member).

What was sent to a partner, and what it answered, can be about a customer: each look at the
delivery log or a partner's callbacks is recorded in the audit log (P16).
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any, Awaitable, Callable, Literal

import asyncpg
from aiohttp import web
from pydantic import BaseModel, Field

from shared.auth import Principal
from shared.contracts.audit import StaffAccessed
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


# Records a staff look in the caller's transaction (``Service.staff_accessed``).
RecordAccess = Callable[[asyncpg.Connection, StaffAccessed], Awaitable[None]]
DELIVERY_LOG = ("webhook deliveries",)
CALLBACK_LOG = ("partner callbacks",)


def staff_endpoints(pool: asyncpg.Pool, registry: PartnerRegistry, record: RecordAccess) -> list[Endpoint]:
    """The routes, for staff with the roles each names; the service's own authenticator checks
    their tokens, as on its other staff routes."""
    async def looked(conn: asyncpg.Connection, caller: Principal, categories: tuple[str, ...], about: str,
                     reason: str) -> None:
        await record(conn, StaffAccessed(
            access_id=uuid.uuid4(), staff_id=uuid.UUID(caller.subject), reason=reason,
            categories=list(categories), at=dt.datetime.now(dt.timezone.utc), about=about))

    async def partners(request: web.Request, caller) -> PartnerList:
        disabled = {r["partner"]: r for r in await pool.fetch("SELECT * FROM webhook_disabled_endpoints")}
        return PartnerList(partners=[PartnerView(
            name=p.name, kind=p.kind, endpoint=shown(p.endpoint), data_categories=p.data_categories,
            description=p.description,
            disabled_at=disabled[p.name]["disabled_at"] if p.name in disabled else None,
            disabled_reason=disabled[p.name]["reason"] if p.name in disabled else None,
        ) for p in registry])

    async def deliveries(request: web.Request, caller, query: DeliveryQuery) -> DeliveryList:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries
                    WHERE ($1::text IS NULL OR partner = $1) AND ($2::text IS NULL OR status = $2)
                    ORDER BY created_at DESC LIMIT $3""", query.partner, query.status, query.limit)
            await looked(conn, caller, DELIVERY_LOG, f"deliveries to {query.partner or 'every partner'}",
                         "read the delivery log")
        return DeliveryList(deliveries=[DeliveryView(**dict(r)) for r in rows])

    async def delivery(request: web.Request, caller, params: DeliveryPath) -> DeliveryDetail:
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1",
                                      params.id)
            if row is None:
                raise HTTPProblem(404, "Unknown delivery")
            attempts = await conn.fetch(
                """SELECT attempt, started_at, status_code, latency_ms, error FROM webhook_attempts
                   WHERE delivery_id = $1 ORDER BY id""", row["id"])
            await looked(conn, caller, DELIVERY_LOG, f"delivery {row['id']}", "read a delivery")
        return DeliveryDetail(**dict(row), attempts_log=[AttemptView(**dict(a)) for a in attempts])

    async def redeliver_one(request: web.Request, caller, params: DeliveryPath) -> Done:
        status = await redeliver(pool, params.id)
        if status is None:
            raise HTTPProblem(404, "Unknown delivery")
        if status == "pending":
            raise HTTPProblem(409, "Delivery still under way",
                              "It is pending or being sent; redeliver it once it has failed or been delivered.")
        async with pool.acquire() as conn, conn.transaction():
            await looked(conn, caller, DELIVERY_LOG, f"delivery {params.id}", "sent a delivery again")
        return Done(status="queued for delivery")

    async def enable(request: web.Request, caller, params: PartnerPath) -> Done:
        name = params.name
        if registry.get(name) is None:
            raise HTTPProblem(404, "Unknown partner")
        if not await enable_endpoint(pool, name):
            raise HTTPProblem(409, "Endpoint is not disabled")
        return Done(status="enabled")

    async def callbacks(request: web.Request, caller, params: PartnerPath, query: Page) -> CallbackList:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT webhook_id, type, data, received_at FROM webhook_callbacks
                   WHERE partner = $1 ORDER BY received_at DESC LIMIT $2""",
                params.name, query.limit)
            await looked(conn, caller, CALLBACK_LOG, f"partner {params.name}", "read a partner's callbacks")
        return CallbackList(callbacks=[CallbackView(**{**dict(r), "data": json.loads(r["data"])})
                                       for r in rows])

    tags, readers, admin = ["staff: partners"], staff("support", "admin"), staff("admin")
    return [
        Endpoint("GET", "/v1/staff/partners", partners, "Registered partners and their endpoints",
                 response=PartnerList, auth=readers, tags=tags, audited=()),
        Endpoint("GET", "/v1/staff/webhooks/deliveries", deliveries, "The delivery log",
                 query=DeliveryQuery, response=DeliveryList, auth=readers, tags=tags, audited=DELIVERY_LOG),
        Endpoint("GET", "/v1/staff/webhooks/deliveries/{id}", delivery,
                 "One delivery with every attempt", params=DeliveryPath, response=DeliveryDetail,
                 auth=readers, problems=(404,), tags=tags, audited=DELIVERY_LOG),
        Endpoint("POST", "/v1/staff/webhooks/deliveries/{id}/redeliver", redeliver_one,
                 "Send a delivery again (same webhook-id)", params=DeliveryPath, response=Done,
                 status=202, auth=admin, problems=(404, 409), tags=tags, audited=DELIVERY_LOG),
        Endpoint("POST", "/v1/staff/partners/{name}/enable", enable,
                 "Enable an endpoint that was disabled after 410 Gone", params=PartnerPath,
                 response=Done, auth=admin, problems=(404, 409), tags=tags, audited=()),
        Endpoint("GET", "/v1/staff/partners/{name}/callbacks", callbacks,
                 "Callbacks received from a partner", params=PartnerPath, query=Page,
                 response=CallbackList, auth=readers, tags=tags, audited=CALLBACK_LOG),
    ]
