"""The orders service: the catalogue, checkout, an order's life, shipments, invoices, purchase
history, complaints, and its part of every erasure and export.

HTTP routes are in ``api.py``, an order's steps after checkout in ``lifecycle.py``. Here: what
the service offers over RPC and AMQP. It publishes on ``orders.events``: ``order_created``,
``order_paid``, ``order_shipped``, ``order_delivered``, ``order_cancelled``, ``order_refunded``,
``complaint_opened``, ``complaint_resolved``, ``staff_accessed``, ``held_erasure_completed``,
``payment_rejected`` (a captured payment the order cannot take: payments refunds it).
It applies payments' events: a payment, a refund, a chargeback opened or closed.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg

from services.orders import lifecycle, privacy, schemas, store
from services.orders.api import OrdersApi
from services.orders.settings import OrdersSettings
from services.payments.schemas import DisputeChanged, PaymentSucceeded, RefundSucceeded
from shared.contracts import webhooks as contracts
from shared.contracts.privacy import ErasureOutcome, ErasureRequest, ExportChunk, ExportRequest
from shared.http import Endpoint, HTTPProblem
from shared.logging import get_logger
from shared.poller import NotifiedPoller
from shared.service import Dependencies, Service, event_handler, rpc
from shared.webhooks.registry import Partner

log = get_logger(__name__)


class OrdersService(Service):
    name = "orders"
    migrations = Path(__file__).parent / "migrations"
    inventory = privacy.INVENTORY
    retention_clocks = privacy.CLOCKS
    settings_class = OrdersSettings

    def __init__(self, deps: Dependencies) -> None:
        super().__init__(deps)
        self.settings = deps.settings
        assert isinstance(self.settings, OrdersSettings)
        self.lifecycle = lifecycle.Lifecycle(self.outbox, self.partners, self.settings)

    def endpoints(self) -> list[Endpoint]:
        return OrdersApi(self).endpoints()

    def background(self) -> list[NotifiedPoller]:
        return [privacy.RetentionSweep(self.pool, self.settings, self.outbox, self.forget)]

    # --- what payments and the partners tell us ----------------------------------------------

    @event_handler("payments", "payment_succeeded")
    async def on_payment_succeeded(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        payment = PaymentSucceeded.model_validate(data)
        outcome = await self.lifecycle.pay(conn, payment)
        log.info("payment applied", order=str(payment.order_id), outcome=outcome)

    @event_handler("payments", "refund_succeeded")
    async def on_refund_succeeded(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        refund = RefundSucceeded.model_validate(data)
        if refund.order_id is None:  # a membership charge
            return
        outcome = await self.lifecycle.refunded(conn, refund)
        log.info("refund applied", order=str(refund.order_id), outcome=outcome)

    @event_handler("payments", "dispute_opened")
    async def on_dispute_opened(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        """A chargeback on the order's payment: the order is held from erasure while it is open (P24)."""
        dispute = DisputeChanged.model_validate(data)
        if dispute.order_id is not None:
            await store.dispute(conn, dispute.order_id, dispute.dispute_id, opened=True)

    @event_handler("payments", "dispute_closed")
    async def on_dispute_closed(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        dispute = DisputeChanged.model_validate(data)
        if dispute.order_id is not None:
            await store.dispute(conn, dispute.order_id, dispute.dispute_id, opened=False)

    async def on_partner_callback(self, conn: asyncpg.Connection, partner: Partner,
                                  reply: contracts.PartnerReply) -> None:
        """A carrier picked up or delivered a parcel; the accountant booked an invoice."""
        if isinstance(reply, (contracts.ShipmentAccepted, contracts.ShipmentDelivered)):
            try:
                await self.lifecycle.carrier_reply(conn, partner, reply)
            except LookupError:
                raise HTTPProblem(422, "Unknown shipment", "No shipment of ours to you has this id.")
        elif isinstance(reply, contracts.InvoiceBooked):
            if not await store.invoice_booked(conn, reply.invoice_id, reply.booked_on):
                raise HTTPProblem(422, "Unknown invoice", "No invoice of ours has this id.")

    # --- for other services and operators -----------------------------------------------------

    @rpc(changes_state=False)
    async def order_for_payment(self, order_id: str) -> dict[str, Any] | None:
        """What payments checks a payment against: the order's amount, currency, customer and
        state (None for an unknown order)."""
        try:
            wanted = uuid.UUID(order_id)
        except ValueError:
            return None
        async with self.pool.acquire() as conn:
            order = await store.order(conn, wanted)
        if order is None:
            return None
        return {"order_id": str(order["id"]), "customer_id": order["customer_id"] and str(order["customer_id"]),
                "status": order["status"], "gross_cents": order["gross_cents"],
                "refunded_cents": order["refunded_cents"], "currency": order["currency"]}

    @rpc(changes_state=True)
    async def add_products(self, conn: asyncpg.Connection, products: list[dict[str, Any]]) -> int:
        """Add the products whose sku is new (the local runner seeds the catalogue so);
        how many were added."""
        added = 0
        for product in products:
            row = await store.add_product(conn, schemas.ProductIn.model_validate(product).model_dump())
            added += row is not None
        return added

    # --- the privacy participant --------------------------------------------------------------

    @rpc(changes_state=False)
    async def privacy_export(self, request: dict[str, Any]) -> ExportChunk:
        parsed = ExportRequest.model_validate(request)
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            return await privacy.export_chunk(conn, parsed)

    @rpc(changes_state=True)
    async def privacy_erase(self, conn: asyncpg.Connection, request: dict[str, Any]) -> ErasureOutcome:
        return await privacy.erase(conn, ErasureRequest.model_validate(request), self.forget,
                                   self.settings.complaint_hold_days)

    @rpc(changes_state=True)
    async def run_retention_sweep(self, conn: asyncpg.Connection) -> dict[str, int]:
        """Erase what has been kept for its declared period now (the CronJob calls this)."""
        return await privacy.sweep(conn, self.settings, self.outbox, self.forget)
