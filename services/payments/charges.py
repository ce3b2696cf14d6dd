"""Payments and refunds against the PSP, exactly once over calls that can fail half-way.

Every attempt is recorded (``creating``) and committed before the PSP hears of it, with an
idempotency key derived from what it pays for: the order and its attempt number, or the
membership period and its attempt. The PSP call runs outside any transaction; its answer is
applied in one (``apply``), which takes the payment from in flight to settled once and writes
the events that causes. The same answer can arrive three ways (the call's reply, a webhook,
the reconciler's poll) in any order and any number of times: only the first one to settle
the payment has an effect. A crash or a PSP that does not answer leaves the attempt in
flight with a ``check_at``: the reconciler sends it again with the same key (the PSP answers
as the first time; no second charge) or asks the PSP how it stands, so no payment stays in
flight for ever.

A refund reserves its amount in the payment's row lock before the PSP is asked (two at once
cannot take more than was captured), then follows the same path.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

import asyncpg

from services.payments import domain, psp, schemas, store
from services.payments.settings import PaymentsSettings
from shared.logging import get_logger
from shared.outbox import Outbox
from shared.poller import NotifiedPoller
from shared.subjects import Subject

if TYPE_CHECKING:
    from services.payments.billing import Billing

log = get_logger(__name__)

NOTIFY_CHANNEL = "veikals_payments_due"
LEASE = dt.timedelta(minutes=2)
REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"})
DISPUTE_EVENTS = frozenset({"charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed"})


def acts_on(event_type: str) -> bool:
    """Whether a PSP event of this type changes anything here (others are acknowledged only)."""
    return event_type.startswith("payment_intent.") or event_type in REFUND_EVENTS or event_type in DISPUTE_EVENTS


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def subject_of(row: asyncpg.Record) -> Subject | None:
    return Subject.customer(row["customer_id"]) if row["customer_id"] is not None else None


class Charges:
    def __init__(self, pool: asyncpg.Pool, gateway: psp.Psp, outbox: Outbox, settings: PaymentsSettings) -> None:
        self.pool = pool
        self.psp = gateway
        self.outbox = outbox
        self.settings = settings
        self.billing: Billing | None = None  # set by Billing: a membership period's payment settles there

    def check_after(self) -> dt.datetime:
        return now() + dt.timedelta(seconds=self.settings.payment_check_after_s)

    # --- payments ------------------------------------------------------------------------------

    async def record(self, conn: asyncpg.Connection, *, key: str, amount: int, currency: str,
                     card: psp.Card, customer_id: uuid.UUID | None, psp_customer: str | None,
                     off_session: bool, order_id: uuid.UUID | None = None, attempt: int = 0,
                     membership_id: uuid.UUID | None = None, period: int | None = None) -> asyncpg.Record:
        """The attempt, written before the PSP is asked (UniqueViolationError when the order or the
        period has one in flight or paid)."""
        return await store.add_payment(conn, {
            "id": uuid.uuid4(), "order_id": order_id, "membership_id": membership_id, "period": period,
            "attempt": attempt, "customer_id": customer_id, "amount_cents": amount, "currency": currency,
            "status": "creating", "idempotency_key": key, "psp_payment_method_id": card.payment_method_id,
            "psp_customer_id": psp_customer, "card_brand": card.brand, "card_last4": card.last4,
            "card_exp_month": card.exp_month, "card_exp_year": card.exp_year, "off_session": off_session,
            "check_at": self.check_after()})

    async def send(self, payment: asyncpg.Record) -> asyncpg.Record:
        """Ask the PSP to take the payment (with its key, so asking again is harmless) and apply
        the answer; the payment as it stands afterwards."""
        metadata = {"veikals_payment_id": str(payment["id"])}
        if payment["order_id"] is not None:
            metadata["order_id"] = str(payment["order_id"])
        try:
            intent = await self.psp.charge(
                payment["idempotency_key"], amount=payment["amount_cents"], currency=payment["currency"],
                payment_method=payment["psp_payment_method_id"], customer=payment["psp_customer_id"],
                off_session=payment["off_session"], return_url=self.return_url(payment["id"]), metadata=metadata)
        except psp.Declined as exc:
            return await self.settle(payment["id"], exc.intent, (exc.code or "card_declined", exc.message))
        except psp.Rejected as exc:
            return await self.settle(payment["id"], None, (exc.code or "rejected", exc.message))
        except psp.Unavailable as exc:
            log.warning("the PSP did not answer; the payment is sent again later", payment=str(payment["id"]),
                        error=exc.message)
            return payment
        return await self.settle(payment["id"], intent)

    def return_url(self, payment_id: uuid.UUID) -> str:
        return f"{self.settings.shop_url.rstrip('/')}/payments/{payment_id}/return"

    async def settle(self, payment_id: uuid.UUID, intent: psp.Intent | None,
                     failure: tuple[str, str] | None = None) -> asyncpg.Record:
        async with self.pool.acquire() as conn, conn.transaction():
            return await self.apply(conn, payment_id, intent, failure)

    async def apply(self, conn: asyncpg.Connection, payment_id: uuid.UUID, intent: psp.Intent | None,
                    failure: tuple[str, str] | None = None) -> asyncpg.Record:
        """Record what the PSP says of the payment, in the caller's transaction. A settled
        payment stays as it is: its effects happened once, when it settled."""
        payment = await store.payment(conn, payment_id, lock=True)
        if payment is None:
            return payment
        if payment["status"] in domain.SETTLED:
            if payment["status"] != "succeeded" and intent is not None and intent.status == "succeeded":
                await self.captured_after_giving_up(conn, payment, intent)
            return payment
        if intent is not None and intent.amount and intent.amount != payment["amount_cents"]:
            log.error("the PSP's amount differs from ours; the payment is not applied", payment=str(payment_id))
            return payment
        status = domain.status_of(intent.status, failed=failure is not None) if intent else "failed"
        if failure is None and intent is not None and status == "failed":
            failure = (intent.failure_code or "declined", intent.failure_message or "The card was declined.")
        columns: dict[str, Any] = {"status": status}
        if intent is not None:
            columns["psp_intent_id"] = intent.id
        if status in domain.SETTLED:
            columns["check_at"] = None
            columns["action_url"] = None
        else:
            columns["check_at"] = self.check_after()
            columns["action_url"] = intent.action_url if intent else None
        if failure is not None:
            columns["failure_code"], columns["failure_message"] = failure[0][:100], failure[1][:500]
        if status == "succeeded":
            columns["succeeded_at"] = now()
        payment = await store.update_payment(conn, payment_id, **columns)
        if status == "succeeded" and payment["order_id"] is not None:
            await self.outbox.add(conn, "payment_succeeded", schemas.PaymentSucceeded(
                payment_id=str(payment["id"]), order_id=payment["order_id"], amount_cents=payment["amount_cents"],
                currency=payment["currency"], paid_at=payment["succeeded_at"]).model_dump(mode="json"),
                subject=subject_of(payment))
        if payment["membership_id"] is not None and status in domain.SETTLED and self.billing is not None:
            await self.billing.settled(conn, payment)
        return payment

    async def recheck(self, payment: asyncpg.Record) -> None:
        """The reconciler's turn with an in-flight payment: send it again while the PSP may not
        have it, ask the PSP about it otherwise, and give up on an authentication never done."""
        if payment["psp_intent_id"] is None:
            if now() - payment["created_at"] > domain.IDEMPOTENCY_WINDOW:
                await self.settle(payment["id"], None, ("no_answer", "The payment provider never answered."))
            else:
                await self.send(payment)
            return
        try:
            intent = await self.psp.intent(payment["psp_intent_id"])
            waited = now() - payment["created_at"]
            if intent.status == "requires_action" and waited.total_seconds() > self.settings.payment_action_timeout_s:
                try:
                    intent = await self.psp.cancel(intent.id)
                except psp.Rejected:  # it moved on meanwhile (the customer authenticated): as it is now
                    intent = await self.psp.intent(intent.id)
        except psp.Unavailable as exc:
            log.warning("the PSP did not answer about a payment", payment=str(payment["id"]), error=exc.message)
            return
        except psp.Rejected as exc:
            await self.settle(payment["id"], None, (exc.code or "rejected", exc.message))
            return
        await self.settle(payment["id"], intent)

    # --- refunds -------------------------------------------------------------------------------

    async def reserve_refund(self, conn: asyncpg.Connection, payment: asyncpg.Record, amount: int | None,
                             reason: str, requested_by: str, *, send_now: bool = True) -> asyncpg.Record:
        """Reserve a refund of the (locked) paid payment: ``amount`` or all that is left, never
        more than is left counting refunds pending (raises ``domain.RefundTooLarge``). With
        ``send_now`` the caller sends it after commit; the reconciler sends it otherwise."""
        taken = domain.refund_amount(payment["amount_cents"], await store.refunded_or_pending(conn, payment["id"]),
                                     amount)
        return await store.add_refund(conn, {
            "id": uuid.uuid4(), "payment_id": payment["id"], "amount_cents": taken, "reason": reason,
            "requested_by": requested_by, "check_at": self.check_after() if send_now else now()})

    async def send_refund(self, refund: asyncpg.Record) -> asyncpg.Record:
        """Ask the PSP for the refund (with its key) or, once the PSP has it, how it stands;
        a refund the PSP never answered is given up after the key's window."""
        async with self.pool.acquire() as conn:
            payment = await store.payment(conn, refund["payment_id"])
        try:
            if refund["psp_refund_id"] is not None:
                result = await self.psp.refund_status(refund["psp_refund_id"])
            elif now() - refund["created_at"] > domain.IDEMPOTENCY_WINDOW:
                return await self.settle_refund(refund["id"], None, "the payment provider never answered")
            else:
                result = await self.psp.refund(domain.refund_key(refund["id"]), payment["psp_intent_id"],
                                               refund["amount_cents"], {"veikals_refund_id": str(refund["id"])})
        except psp.Rejected as exc:
            return await self.settle_refund(refund["id"], None, exc.message)
        except (psp.Unavailable, psp.Declined) as exc:
            log.warning("the PSP did not take the refund now; it is sent again later", refund=str(refund["id"]),
                        error=exc.message)
            return refund
        return await self.settle_refund(refund["id"], result)

    async def settle_refund(self, refund_id: uuid.UUID, result: psp.RefundResult | None,
                            failure: str | None = None) -> asyncpg.Record:
        async with self.pool.acquire() as conn, conn.transaction():
            return await self.apply_refund(conn, refund_id, result, failure)

    async def apply_refund(self, conn: asyncpg.Connection, refund_id: uuid.UUID, result: psp.RefundResult | None,
                           failure: str | None = None) -> asyncpg.Record:
        """Record what the PSP says of the refund; the money is counted and the event written
        once, when it succeeds."""
        refund = await store.refund_row(conn, refund_id, lock=True)
        if refund is not None and refund["status"] == "succeeded" and result is not None and result.status == "failed":
            # A card refund can fail after it succeeded (a closed account): the money is not back.
            log.error("a refund failed after it had succeeded; the customer must be paid another way",
                      refund=str(refund_id))
            await store.update_refund(conn, refund_id, status="failed", failure_message="failed at the card's bank")
            await store.add_refunded(conn, refund["payment_id"], -refund["amount_cents"])
            return await store.refund_row(conn, refund_id)
        if refund is None or refund["status"] != "pending":
            return refund
        if result is not None and result.status in ("pending", "requires_action"):
            await store.update_refund(conn, refund_id, psp_refund_id=result.id, check_at=self.check_after())
            return await store.refund_row(conn, refund_id)
        if result is None or result.status != "succeeded":
            await store.update_refund(conn, refund_id, status="failed", check_at=None,
                                      psp_refund_id=result.id if result else None,
                                      failure_message=(failure or f"the PSP says {result.status}")[:500])
            return await store.refund_row(conn, refund_id)
        at = now()
        await store.update_refund(conn, refund_id, status="succeeded", psp_refund_id=result.id, succeeded_at=at,
                                  check_at=None)
        total = await store.add_refunded(conn, refund["payment_id"], refund["amount_cents"])
        payment = await store.payment(conn, refund["payment_id"])
        # Only the refund of an order's captured payment counts against the order.
        order_id = payment["order_id"] if payment["status"] == "succeeded" else None
        await self.outbox.add(conn, "refund_succeeded", schemas.RefundSucceeded(
            refund_id=str(refund_id), payment_id=str(payment["id"]), order_id=order_id,
            amount_cents=refund["amount_cents"], refunded_total_cents=total, captured_cents=payment["amount_cents"],
            refunded_at=at).model_dump(mode="json"), subject=subject_of(payment))
        return await store.refund_row(conn, refund_id)

    async def refund_in_full(self, conn: asyncpg.Connection, payment: asyncpg.Record, reason: str,
                             requested_by: str = "payments") -> None:
        """Reserve a refund of all that is left of ``payment``; the reconciler sends it after
        commit (nothing left: nothing to do)."""
        try:
            refund = await self.reserve_refund(conn, payment, None, reason, requested_by, send_now=False)
        except domain.RefundTooLarge:
            return
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
        log.info("refund reserved", payment=str(payment["id"]), refund=str(refund["id"]), reason=reason)

    async def captured_after_giving_up(self, conn: asyncpg.Connection, payment: asyncpg.Record,
                                       intent: psp.Intent) -> None:
        """The PSP captured a payment we had settled as failed or cancelled (its answer came too
        late): nothing of ours took the money, so it goes back in full."""
        log.error("the PSP captured a payment given up here; it is refunded", payment=str(payment["id"]))
        await store.update_payment(conn, payment["id"], psp_intent_id=intent.id,
                                   failure_message="captured by the payment provider after it was given up; refunded")
        await self.refund_in_full(conn, payment, "captured after the attempt was given up")

    # --- what the PSP tells us -----------------------------------------------------------------

    async def on_psp_event(self, conn: asyncpg.Connection, event_type: str, obj: dict[str, Any]) -> bool:
        """Apply a verified PSP event in the caller's transaction (the one that recorded its id);
        False for a type we do not act on (acknowledged all the same)."""
        if event_type.startswith("payment_intent."):
            intent = psp.intent_of(obj)
            payment = await store.payment_by_intent(conn, intent.id) or await self._by_metadata(conn, intent.metadata)
            if payment is None:
                log.warning("a PSP event about a payment we do not know", intent=intent.id)
                return False
            await self.apply(conn, payment["id"], intent)
            return True
        if event_type in REFUND_EVENTS:
            result = psp.refund_of(obj)
            refund_id = result.metadata.get("veikals_refund_id")
            refund = await store.refund_by_psp_id(conn, result.id) or (
                refund_id and await store.refund_row(conn, domain.as_uuid(refund_id)))
            if not refund:
                return False
            await self.apply_refund(conn, refund["id"], result)
            return True
        if event_type in DISPUTE_EVENTS:
            return await self.on_dispute(conn, obj)
        return False

    async def _by_metadata(self, conn: asyncpg.Connection, metadata: dict[str, str]) -> asyncpg.Record | None:
        """The payment an intent was made for, when our record of it has no intent id yet (the
        webhook overtook the answer to our own call)."""
        payment_id = domain.as_uuid(metadata.get("veikals_payment_id", ""))
        return payment_id and await store.payment(conn, payment_id)

    async def on_dispute(self, conn: asyncpg.Connection, dispute: dict[str, Any]) -> bool:
        """A chargeback opened or closed: recorded, and orders told (it holds the order)."""
        intent_id = dispute.get("payment_intent")
        payment = intent_id and await store.payment_by_intent(conn, intent_id)
        if not payment:
            log.warning("a dispute about a payment we do not know", dispute=dispute.get("id"))
            return False
        closed = dispute.get("status") in ("won", "lost", "warning_closed", "charge_refunded")
        changed = await store.record_dispute(conn, {
            "id": dispute["id"], "payment_id": payment["id"], "amount_cents": dispute.get("amount") or 0,
            "reason": dispute.get("reason") or "unknown", "status": dispute.get("status") or "unknown",
            "closed_at": now() if closed else None})
        if changed:
            await self.outbox.add(conn, "dispute_closed" if closed else "dispute_opened", schemas.DisputeChanged(
                dispute_id=dispute["id"], payment_id=str(payment["id"]), order_id=payment["order_id"],
                customer_id=payment["customer_id"], amount_cents=dispute.get("amount") or 0,
                status=dispute.get("status") or "unknown", at=now()).model_dump(mode="json"),
                subject=subject_of(payment))
        return True


class Reconciler(NotifiedPoller):
    """Asks the PSP about payments and refunds whose answer is overdue, and sends again those
    it never received: no payment stays in flight for ever, whatever webhook is lost."""

    def __init__(self, charges: Charges, settings: PaymentsSettings, batch_size: int = 20) -> None:
        super().__init__(charges.pool, NOTIFY_CHANNEL, "payments-reconciler", settings.payments_poll_s)
        self.charges = charges
        self.batch_size = batch_size

    async def work(self) -> None:
        while not self.stopping:
            async with self.pool.acquire() as conn, conn.transaction():
                payments = await store.claim_due_payments(conn, LEASE, self.batch_size)
                refunds = await store.claim_due_refunds(conn, LEASE, self.batch_size)
            for payment in payments:  # one that fails waits for its next check; the others go on
                try:
                    await self.charges.recheck(payment)
                except Exception:
                    log.exception("checking a payment failed", payment=str(payment["id"]))
            for refund in refunds:
                try:
                    await self.charges.send_refund(refund)
                except Exception:
                    log.exception("sending a refund failed", refund=str(refund["id"]))
            if len(payments) < self.batch_size and len(refunds) < self.batch_size:
                return
