"""Partners' signed callbacks: ``POST /v1/partners/{partner}/callbacks``.

A partner confirms what it did (a shipment accepted, an invoice booked, an erasure done) by
calling us with a Standard Webhooks signature made with its own secret. We check the
signature in constant time (the ``standardwebhooks`` package), the timestamp window (five
minutes), and replays: each ``webhook-id`` is recorded with the callback in one transaction, so
the same callback is accepted once and refused (409) after that. A callback must answer a
message this service sent that partner (``in_reply_to``), so one captured on its way to another
service, or invented, is refused.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Awaitable, Callable

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.contracts.webhooks import REPLIES, PartnerReply
from shared.http import Endpoint, FieldError, HTTPProblem, read_body, validate_body
from shared.logging import get_logger
from shared.metrics import WEBHOOK_CALLBACKS
from shared.webhooks.registry import PARTNER_NAME_PATTERN, MissingSecret, Partner, PartnerRegistry
from shared.webhooks.signing import SignatureError, verify

log = get_logger(__name__)

MAX_CALLBACK_BYTES = 1024 * 1024


class PartnerCallback(BaseModel):
    """What a partner tells us; ``type`` names what happened, e.g. ``erasure.completed``."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$", max_length=100)
    timestamp: dt.datetime
    data: dict[str, Any]


class CallbackPath(BaseModel):
    partner: str = Field(pattern=PARTNER_NAME_PATTERN, description="the partner's registered name")


class CallbackAccepted(BaseModel):
    webhook_id: str
    status: str = "accepted"


# A service's reaction to a callback, run in the transaction that records it.
CallbackHandler = Callable[[asyncpg.Connection, Partner, PartnerReply], Awaitable[None]]


def _reply(callback: PartnerCallback) -> PartnerReply:
    model = REPLIES.get(callback.type)
    if model is None:
        raise HTTPProblem(422, "Unknown callback type",
                          f"We take these callback types: {', '.join(sorted(REPLIES))}.")
    try:
        return model.model_validate(callback.data)
    except ValidationError as exc:
        raise HTTPProblem(422, "Invalid callback data", "Correct the fields listed in errors.", [
            FieldError(field=".".join(["body", "data", *(str(p) for p in e["loc"])]),
                       message=e["msg"], type=e["type"]) for e in exc.errors()])


def callback_endpoint(pool: asyncpg.Pool, registry: PartnerRegistry, service: str,
                      on_callback: CallbackHandler) -> Endpoint:
    async def receive(request: web.Request, params: CallbackPath) -> CallbackAccepted:
        partner = registry.get(params.partner)
        if partner is None:
            raise HTTPProblem(404, "Unknown partner", "No partner of that name is registered.")
        try:
            secrets = partner.secrets()
        except MissingSecret:
            log.error("partner secret missing; its callbacks are refused", partner=partner.name)
            raise HTTPProblem(503, "Callbacks from this partner cannot be checked now",
                              "Try again later.")
        raw = await read_body(request, MAX_CALLBACK_BYTES)
        try:
            verify(raw, dict(request.headers), secrets)
        except SignatureError as exc:
            WEBHOOK_CALLBACKS.labels(service, partner.name, "rejected").inc()
            raise HTTPProblem(401, "Signature not accepted", str(exc))
        callback = validate_body(raw, PartnerCallback)
        reply = _reply(callback)
        webhook_id = request.headers["webhook-id"]
        async with pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(
                    "SELECT true FROM webhook_deliveries WHERE id = $1 AND partner = $2",
                    reply.in_reply_to, partner.name):
                raise HTTPProblem(422, "Not an answer to a message of ours",
                                  f"in_reply_to {reply.in_reply_to} names no message this service sent you.")
            first = await conn.fetchval(
                """INSERT INTO webhook_callbacks (partner, webhook_id, type, data)
                   VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
                partner.name, webhook_id, callback.type, reply.model_dump_json())
            if not first:
                WEBHOOK_CALLBACKS.labels(service, partner.name, "replayed").inc()
                raise HTTPProblem(409, "Callback already received",
                                  f"webhook-id {webhook_id} was accepted before; it is not processed twice.")
            await on_callback(conn, partner, reply)
        WEBHOOK_CALLBACKS.labels(service, partner.name, "accepted").inc()
        return CallbackAccepted(webhook_id=webhook_id)

    return Endpoint("POST", "/v1/partners/{partner}/callbacks", receive,
                    "A partner confirms what it did (Standard Webhooks signed)",
                    params=CallbackPath, body=PartnerCallback, response=CallbackAccepted, status=202,
                    raw_body=True, signed=True, problems=(404, 409, 503), tags=["partners"])
