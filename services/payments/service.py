"""The payments service: card payments of orders through the PSP, saved cards, refunds,
memberships billed monthly, the PSP's webhooks and disputes, and its part of every erasure
and export.

HTTP routes are in ``api.py``; paying and refunding exactly once in ``charges.py``;
memberships in ``billing.py``. Here: what the service offers over RPC and AMQP. It publishes
on ``payments.events``: ``payment_succeeded``, ``refund_succeeded``, ``dispute_opened``,
``dispute_closed``, ``membership_notice``, ``held_erasure_completed``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from services.orders.schemas import OrderCancelled, PaymentRejected
from services.payments import domain, privacy, store
from services.payments.api import PaymentsApi
from services.payments.billing import Billing, BillingScheduler
from services.payments.charges import Charges, Reconciler
from services.payments.psp import Psp
from services.payments.settings import PaymentsSettings
from shared.contracts.privacy import ErasureOutcome, ErasureRequest, ExportChunk, ExportRequest
from shared.http import Endpoint
from shared.logging import get_logger
from shared.poller import NotifiedPoller
from shared.service import Dependencies, Service, event_handler, rpc

log = get_logger(__name__)


class PaymentsService(Service):
    name = "payments"
    migrations = Path(__file__).parent / "migrations"
    inventory = privacy.INVENTORY
    retention_clocks = privacy.CLOCKS
    settings_class = PaymentsSettings

    def __init__(self, deps: Dependencies) -> None:
        super().__init__(deps)
        self.settings = deps.settings
        assert isinstance(self.settings, PaymentsSettings)
        self.psp = Psp(self.settings)
        self.charges = Charges(self.pool, self.psp, self.outbox, self.settings)
        self.billing = Billing(self.charges, self.settings)

    def endpoints(self) -> list[Endpoint]:
        return PaymentsApi(self).endpoints()

    def background(self) -> list[NotifiedPoller]:
        return [Reconciler(self.charges, self.settings), BillingScheduler(self.billing, self.settings),
                privacy.RetentionSweep(self.pool, self.settings, self.psp, self.outbox, self.forget)]

    async def close(self) -> None:
        await self.psp.close()

    @event_handler("orders", "order_cancelled")
    async def on_order_cancelled(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        """A paid order was cancelled: what is left of its payment goes back to the card (the
        reconciler sends the refund once this commits)."""
        cancelled = OrderCancelled.model_validate(data)
        payment = await store.paid_payment_of_order(conn, cancelled.order_id, lock=True)
        if payment is not None and cancelled.refund_cents > 0:
            await self.charges.refund_in_full(conn, payment, "the order was cancelled", "orders")

    @event_handler("orders", "payment_rejected")
    async def on_payment_rejected(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        """Orders could not take a captured payment (the order was cancelled while the customer
        authenticated it, say): it goes back to the card in full."""
        rejected = PaymentRejected.model_validate(data)
        payment_id = domain.as_uuid(rejected.payment_id)
        payment = payment_id and await store.payment(conn, payment_id, lock=True)
        if not payment or payment["status"] != "succeeded":
            log.warning("orders rejected a payment we do not hold as captured", payment=rejected.payment_id)
            return
        await self.charges.refund_in_full(conn, payment, f"orders could not take the payment: {rejected.reason}",
                                          "orders")

    # --- the privacy participant --------------------------------------------------------------

    @rpc(changes_state=False)
    async def privacy_export(self, request: dict[str, Any]) -> ExportChunk:
        parsed = ExportRequest.model_validate(request)
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            return await privacy.export_chunk(conn, parsed)

    @rpc(changes_state=True)
    async def privacy_erase(self, conn: asyncpg.Connection, request: dict[str, Any]) -> ErasureOutcome:
        return await privacy.erase(conn, ErasureRequest.model_validate(request), self.psp, self.forget)

    @rpc(changes_state=True)
    async def run_retention_sweep(self, conn: asyncpg.Connection) -> dict[str, int]:
        """Erase what has been kept for its declared period now (the CronJob calls this)."""
        return await privacy.sweep(conn, self.psp, self.outbox, self.forget)
