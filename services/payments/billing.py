"""Memberships (P7): a monthly charge of a saved card, off session, on schedule; a failed charge
tried again on the dunning schedule with the customer told each time; a lapse after the last
failure; a cancellation effective at the period's end.

The scheduler survives restarts (its state is ``next_charge_at`` in the table) and never
charges one period twice, even with several instances: it claims a due membership with
``FOR UPDATE SKIP LOCKED`` and pushes it ahead by a lease; the charge is a payment keyed by
(membership, period, attempt), unique in the table and at the PSP; and only one payment per
period can ever succeed (a unique index). A period's payment that settles moves the membership
on, in the same transaction as the notice the customer gets (``membership_notice``; accounts
sends the e-mail).
"""
from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from services.payments import domain, psp, schemas, store
from services.payments.charges import Charges, now
from services.payments.settings import PaymentsSettings
from shared.logging import get_logger
from shared.poller import NotifiedPoller
from shared.subjects import Subject

log = get_logger(__name__)

NOTIFY_CHANNEL = "veikals_payments_billing"
LEASE = dt.timedelta(minutes=10)
LIVE = ("incomplete", "active", "past_due")


class AlreadyMember(Exception):
    pass


class Billing:
    def __init__(self, charges: Charges, settings: PaymentsSettings) -> None:
        self.charges = charges
        self.settings = settings
        self.outbox = charges.outbox
        charges.billing = self

    async def notify(self, conn: asyncpg.Connection, membership: asyncpg.Record, kind: schemas.NoticeKind,
                     next_attempt_at: dt.datetime | None = None) -> None:
        await self.outbox.add(conn, "membership_notice", schemas.MembershipNotice(
            membership_id=membership["id"], customer_id=membership["customer_id"], kind=kind,
            amount_cents=membership["price_cents"], currency=membership["currency"],
            period_end=membership["period_end"], next_attempt_at=next_attempt_at, at=now()).model_dump(mode="json"),
            subject=Subject.customer(membership["customer_id"]))

    async def subscribe(self, customer_id: uuid.UUID, card: asyncpg.Record, psp_customer: str) -> asyncpg.Record:
        """Start a membership with the first month's charge (on session: the customer may have
        to authenticate it); raises AlreadyMember."""
        membership_id = uuid.uuid4()
        async with self.charges.pool.acquire() as conn, conn.transaction():
            try:
                membership = await store.add_membership(conn, {
                    "id": membership_id, "customer_id": customer_id, "card_id": card["id"],
                    "price_cents": self.settings.membership_price_cents, "currency": self.settings.membership_currency})
            except asyncpg.UniqueViolationError:
                raise AlreadyMember() from None
            payment = await self.charges.record(
                conn, key=domain.period_key(membership_id, 1, 0), amount=membership["price_cents"],
                currency=membership["currency"], card=card_of(card), customer_id=customer_id,
                psp_customer=psp_customer, off_session=False, membership_id=membership_id, period=1)
        await self.charges.send(payment)
        async with self.charges.pool.acquire() as conn:
            return await store.membership_row(conn, membership_id)

    async def settled(self, conn: asyncpg.Connection, payment: asyncpg.Record) -> None:
        """A period's payment settled (called by ``Charges.apply`` in its transaction)."""
        membership = await store.membership_row(conn, payment["membership_id"], lock=True)
        if membership is None:
            return
        if payment["status"] == "succeeded":
            await self.period_paid(conn, membership, payment)
        elif (membership["status"] in LIVE and payment["period"] == membership["period"] + 1
              and payment["attempt"] == membership["failed_attempts"]):
            await self.period_failed(conn, membership)

    async def period_paid(self, conn: asyncpg.Connection, membership: asyncpg.Record, payment: asyncpg.Record) -> None:
        if payment["period"] <= membership["period"]:
            return
        if membership["status"] not in LIVE or membership["cancel_at_period_end"]:
            # Cancelled while this charge was in flight (being authenticated, or a renewal the
            # customer cancelled meanwhile): the money goes back, and a cancelled renewal ends.
            await self.charges.refund_in_full(conn, payment, "the membership was cancelled while it was charged")
            if membership["status"] in LIVE:
                updated = await store.update_membership(conn, membership["id"], status="cancelled",
                                                        ended_at=membership["period_end"] or now(), next_charge_at=None)
                await self.notify(conn, updated, "ended")
            return
        start = membership["period_end"] or now()
        end = domain.add_month(start)
        updated = await store.update_membership(
            conn, membership["id"], status="active", period=payment["period"], period_start=start, period_end=end,
            failed_attempts=0, first_failed_at=None, next_charge_at=end)
        await self.notify(conn, updated, "started" if payment["period"] == 1 else "renewed")

    async def period_failed(self, conn: asyncpg.Connection, membership: asyncpg.Record) -> None:
        if membership["status"] == "incomplete":  # the first charge failed: it never began
            await store.update_membership(conn, membership["id"], status="cancelled", ended_at=now(),
                                          next_charge_at=None)
            return
        failed = membership["failed_attempts"] + 1
        first = membership["first_failed_at"] or now()
        retry = domain.next_retry(first, failed, self.settings.dunning_schedule_s)
        if retry is None:
            updated = await store.update_membership(conn, membership["id"], status="lapsed", failed_attempts=failed,
                                                    ended_at=now(), next_charge_at=None)
            await self.notify(conn, updated, "lapsed")
            return
        updated = await store.update_membership(conn, membership["id"], status="past_due", failed_attempts=failed,
                                                first_failed_at=first, next_charge_at=retry)
        await self.notify(conn, updated, "charge_failed", next_attempt_at=retry)

    async def cancel(self, conn: asyncpg.Connection, membership: asyncpg.Record) -> asyncpg.Record:
        """The customer cancels: a paid period runs to its end; otherwise it ends now."""
        if membership["status"] == "active":
            updated = await store.update_membership(conn, membership["id"], cancel_at_period_end=True)
            await self.notify(conn, updated, "cancelled")
            return updated
        updated = await store.update_membership(conn, membership["id"], status="cancelled", ended_at=now(),
                                                next_charge_at=None)
        if membership["status"] == "past_due":
            await self.notify(conn, updated, "ended")
        return updated

    async def charge_due(self) -> bool:
        """Charge (or end) one membership that is due; False when none is."""
        async with self.charges.pool.acquire() as conn, conn.transaction():
            membership = await store.claim_due_membership(conn, LEASE)
            if membership is None:
                return False
            if membership["cancel_at_period_end"]:
                updated = await store.update_membership(conn, membership["id"], status="cancelled",
                                                        ended_at=membership["period_end"] or now(), next_charge_at=None)
                await self.notify(conn, updated, "ended")
                return True
            period, attempt = membership["period"] + 1, membership["failed_attempts"]
            payment = await store.period_payment(conn, membership["id"], period, attempt)
            if payment is None:
                card = membership["card_id"] and await store.card(conn, membership["card_id"], membership["customer_id"])
                if not card:
                    await self.period_failed(conn, membership)
                    return True
                payment = await self.charges.record(
                    conn, key=domain.period_key(membership["id"], period, attempt), amount=membership["price_cents"],
                    currency=membership["currency"], card=card_of(card), customer_id=membership["customer_id"],
                    psp_customer=await store.psp_customer(conn, membership["customer_id"]), off_session=True,
                    membership_id=membership["id"], period=period, attempt=attempt)
            else:
                # Recorded before: the reconciler sends it again or asks the PSP about it, with
                # the same key; sending it from here too could outlive the PSP's key window.
                return True
        await self.charges.send(payment)
        return True


def card_of(card: asyncpg.Record) -> psp.Card:
    return psp.Card(payment_method_id=card["psp_payment_method_id"], customer=None, brand=card["brand"],
                    last4=card["last4"], exp_month=card["exp_month"], exp_year=card["exp_year"])


class BillingScheduler(NotifiedPoller):
    """Charges memberships when they are due (every ``billing_poll_s``, and when notified)."""

    def __init__(self, billing: Billing, settings: PaymentsSettings) -> None:
        super().__init__(billing.charges.pool, NOTIFY_CHANNEL, "payments-billing", settings.billing_poll_s)
        self.billing = billing

    async def work(self) -> None:
        while not self.stopping and await self.billing.charge_due():
            pass
