"""Personal data the payments service holds (its part of the Art. 30 record), its export and
erasure (the privacy participant contract), and the retention sweep that keeps the periods.

No card number or CVC is ever here (P3, P17): a saved card is the PSP's payment-method id
with its brand, last four digits and expiry. What an erasure keeps: a captured payment inside
the accounting period (P25) keeps its amounts, dates, order and the PSP's payment id, without
the link to the customer or the card; everything else goes, and at the PSP the customer is
deleted and its cards detached. An open chargeback (P24), or a payment still in flight, holds
the whole erasure back: it is reported as held, and the sweep completes it when nothing holds
it any more.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Awaitable, Callable

import asyncpg

from services.payments import domain, psp, store
from services.payments.settings import PaymentsSettings
from shared import export
from shared.contracts.privacy import (
    ACCOUNTING_PERIOD, DataInventory, Erased, ErasureOutcome, ErasureRequest, ExportChunk, ExportRequest, Held,
    InventoryEntry, LegalBasis, Retained, Retention,
)
from shared.export import Section
from shared.outbox import Outbox, forget_mentions, mentioned
from shared.poller import NotifiedPoller
from shared.retention import Clocks, Steps, complete_held_erasures
from shared.subjects import Subject


Forget = Callable[[asyncpg.Connection, list[Subject]], Awaitable[int]]

UNTIL_REMOVED = Retention(after="the customer removes it, or until the customer's erasure", clause="P22")
FISCAL = Retention(period_days=ACCOUNTING_PERIOD.days, after="the payment", clause="P25")
CARD_FIELDS = ["card_brand", "card_last4", "card_exp_month", "card_exp_year"]
LINK_FIELDS = ["customer_id", "psp_customer_id", "psp_payment_method_id"]
KEPT_FIELDS = ["amounts", "dates", "order id", "the PSP's payment id", "refunds"]

INVENTORY = DataInventory(participant="payments", entries=[
    InventoryEntry(
        category="customer at the payment provider", table="psp_customers", fields=["customer_id", "psp_customer_id"],
        purpose="charge a saved card without holding card data", legal_basis=LegalBasis.CONTRACT,
        retention=UNTIL_REMOVED, recipients=["psp"], clauses=["P3", "P7", "P17"]),
    InventoryEntry(
        category="saved cards (tokens, brand, last four digits, expiry)", table="cards",
        fields=["customer_id", "psp_payment_method_id", "brand", "last4", "exp_month", "exp_year"],
        purpose="pay with a saved card and charge the membership", legal_basis=LegalBasis.CONTRACT,
        retention=UNTIL_REMOVED, recipients=["psp"], clauses=["P3", "P7", "P17"]),
    InventoryEntry(
        category="payments", table="payments",
        fields=[*LINK_FIELDS, "psp_intent_id", "amount_cents", "refunded_cents", "failure_code", "failure_message",
                "action_url"],
        purpose="take and account for payments of orders and memberships", legal_basis=LegalBasis.LEGAL_OBLIGATION,
        retention=FISCAL, recipients=["psp", "accounting"], clauses=["P7", "P11", "P25"]),
    InventoryEntry(
        category="card used for a payment", table="payments", fields=CARD_FIELDS,
        purpose="show the customer which card paid", legal_basis=LegalBasis.CONTRACT,
        retention=Retention(after="the payment, until the customer's erasure", clause="P22"), recipients=["psp"],
        clauses=["P3", "P17"]),
    InventoryEntry(
        category="refunds", table="refunds", fields=["amount_cents", "reason", "requested_by", "failure_message"],
        purpose="return money to the card and account for it", legal_basis=LegalBasis.LEGAL_OBLIGATION,
        retention=FISCAL, recipients=["psp", "accounting"], clauses=["P7", "P25"]),
    InventoryEntry(
        category="memberships", table="memberships",
        fields=["customer_id", "card_id", "price_cents", "period_start", "period_end", "failed_attempts"],
        purpose="bill the monthly membership and tell the customer about it", legal_basis=LegalBasis.CONTRACT,
        retention=UNTIL_REMOVED, recipients=["psp"], clauses=["P7"]),
    InventoryEntry(
        category="payment disputes (chargebacks)", table="disputes", fields=["payment_id", "amount_cents", "reason"],
        purpose="answer a chargeback; hold the payment data while it is open",
        legal_basis=LegalBasis.LEGAL_OBLIGATION, retention=Retention(after="the payment", clause="P24"),
        recipients=["psp"], clauses=["P24"]),
    InventoryEntry(
        category="erasures held back", table="held_erasures", fields=["customer_id"],
        purpose="complete an erasure when the chargeback that holds it is closed",
        legal_basis=LegalBasis.LEGAL_OBLIGATION, retention=Retention(after="the erasure is completed", clause="P22"),
        clauses=["P22", "P24"]),
])

# When the period of each record held starts, for every entry above with a period, read as the
# sweeps read it (for the retention report; a test fails on an entry without one).
CLOCKS: Clocks = {
    ("payments", "payments"): "SELECT coalesce(succeeded_at, created_at) FROM payments",
    ("refunds", "refunds"):
        "SELECT coalesce(p.succeeded_at, p.created_at) FROM refunds r JOIN payments p ON p.id = r.payment_id",
}

# Columns that hold no personal data by themselves; a test fails on a column neither declared
# above nor listed here.
NOT_PERSONAL = {
    ("psp_customers", "created_at"), ("cards", "id"), ("cards", "created_at"),
    *(("memberships", c) for c in ("id", "status", "currency", "period", "cancel_at_period_end", "first_failed_at",
                                   "next_charge_at", "created_at", "ended_at")),
    *(("payments", c) for c in ("id", "order_id", "membership_id", "period", "attempt", "currency", "status",
                                "idempotency_key", "off_session", "created_at", "updated_at", "succeeded_at",
                                "check_at", "contact_erased_at")),
    *(("refunds", c) for c in ("id", "payment_id", "status", "psp_refund_id", "created_at", "succeeded_at", "check_at")),
    *(("disputes", c) for c in ("id", "status", "opened_at", "closed_at")),
    ("held_erasures", "request_id"), ("held_erasures", "requested_at"),
}

# --- export ---------------------------------------------------------------------------------

SECTIONS: dict[str, Section] = {
    "payments": Section("payments", """SELECT id, order_id, membership_id, status, amount_cents, refunded_cents,
        currency, card_brand, card_last4, card_exp_month, card_exp_year, failure_code, failure_message, created_at,
        succeeded_at FROM payments WHERE customer_id = ANY($1) ORDER BY created_at, id"""),
    "refunds": Section("refunds", """SELECT r.id, r.payment_id, r.amount_cents, r.status, r.reason, r.created_at,
        r.succeeded_at FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE p.customer_id = ANY($1)
        ORDER BY r.created_at, r.id"""),
    "memberships": Section("memberships", """SELECT id, status, price_cents, currency, period, period_start,
        period_end, cancel_at_period_end, failed_attempts, created_at, ended_at FROM memberships
        WHERE customer_id = ANY($1) ORDER BY created_at, id"""),
    "cards": Section("saved cards", """SELECT id, brand, '•••• ' || last4 AS number, exp_month, exp_year, created_at
        FROM cards WHERE customer_id = ANY($1) ORDER BY created_at, id"""),
    "psp": Section("customer at the payment provider", """SELECT psp_customer_id, created_at FROM psp_customers
        WHERE customer_id = ANY($1) ORDER BY created_at"""),
    "disputes": Section("payment disputes", """SELECT d.id, d.payment_id, d.amount_cents, d.reason, d.status,
        d.opened_at, d.closed_at FROM disputes d JOIN payments p ON p.id = d.payment_id
        WHERE p.customer_id = ANY($1) ORDER BY d.opened_at, d.id"""),
}


def customers(request: ErasureRequest | ExportRequest) -> list[uuid.UUID]:
    """Whom the request is about, as this service knows people: by customer id only (it holds
    no e-mail address or phone number; a guest's payments carry only the order's id)."""
    return [request.subject.customer_id] if request.subject.customer_id else []


async def export_chunk(conn: asyncpg.Connection, request: ExportRequest) -> ExportChunk:
    return await export.export_chunk(conn, request, "payments", SECTIONS, (customers(request),))


# --- erasure --------------------------------------------------------------------------------

async def holds(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> list[Held]:
    held = [Held(category="payments, saved cards and the membership", hold=f"chargeback {r['id']}")
            for r in await store.open_disputes(conn, ids)]
    held += [Held(category="payments in progress", hold=f"payment {r['id']} awaiting the payment provider")
             for r in await conn.fetch(
                 """SELECT id FROM payments WHERE customer_id = ANY($1)
                    AND status IN ('creating', 'requires_action', 'processing') ORDER BY created_at""", ids)]
    return held


async def erase(conn: asyncpg.Connection, request: ErasureRequest, gateway: psp.Psp, forget: Forget) -> ErasureOutcome:
    """Erase (or, with ``verify_only``, re-read) the customer's payment data in the caller's
    transaction; held back whole, and recorded for the sweep, while something holds it."""
    ids = customers(request)
    held = await holds(conn, ids)
    erased: list[Erased] = []
    retained: list[Retained] = []
    if held and not request.verify_only:
        await conn.execute("""INSERT INTO held_erasures (request_id, customer_id) VALUES ($1, $2)
                              ON CONFLICT (request_id) DO NOTHING""", request.request_id, ids[0])
    elif not request.verify_only and ids:
        erased, retained = await erase_now(conn, ids, gateway, forget)
    return ErasureOutcome(request_id=request.request_id, participant="payments", erased=erased, retained=retained,
                          held=held, remaining=[] if held else await leftovers(conn, ids),
                          completed_at=dt.datetime.now(dt.timezone.utc))


async def erase_now(conn: asyncpg.Connection, ids: list[uuid.UUID], gateway: psp.Psp,
                    forget: Forget) -> tuple[list[Erased], list[Retained]]:
    """At the PSP first (detach the cards, delete the customer: both idempotent, so an erasure
    that fails later and is asked again repeats them harmlessly), then here."""
    erased: list[Erased] = []

    def note(category: str, status: str) -> None:
        if (n := store.count(status)):
            erased.append(Erased(category=category, records=n))

    cards = await conn.fetch("SELECT psp_payment_method_id FROM cards WHERE customer_id = ANY($1)", ids)
    for card in cards:
        await gateway.detach(card["psp_payment_method_id"])
    psp_customers = await conn.fetch("SELECT psp_customer_id FROM psp_customers WHERE customer_id = ANY($1)", ids)
    for row in psp_customers:
        await gateway.delete_customer(row["psp_customer_id"])
    if psp_customers:
        erased.append(Erased(category="customer and cards at the payment provider", records=len(psp_customers)))
    # Only now the subject's lock (writers about the customer wait from here to the commit).
    if (unsent := await forget(conn, [Subject.customer(i) for i in ids])):
        erased.append(Erased(category="events about the customer", records=unsent))
    note("memberships", await conn.execute("DELETE FROM memberships WHERE customer_id = ANY($1)", ids))
    note("saved cards", await conn.execute("DELETE FROM cards WHERE customer_id = ANY($1)", ids))
    await conn.execute("DELETE FROM psp_customers WHERE customer_id = ANY($1)", ids)
    note("payment attempts without a charge", await conn.execute(
        "DELETE FROM payments WHERE customer_id = ANY($1) AND status IN ('failed', 'canceled')", ids))
    # What is left: captured payments, and any attempt recorded since the holds were read (it
    # keeps its row, so its answer still finds it, but not the customer or the card).
    kept = await conn.fetch(
        f"""UPDATE payments SET {", ".join(f"{c} = NULL" for c in [*LINK_FIELDS, *CARD_FIELDS, "failure_message"])},
                contact_erased_at = now()
            WHERE customer_id = ANY($1) RETURNING succeeded_at""", ids)
    if kept:
        erased.append(Erased(category="the link from payments to the customer and the card", records=len(kept)))
    if (published := await forget_mentions(conn, [str(i) for i in ids])):
        erased.append(Erased(category="published events", records=published))
    retained = []
    if (paid := [r["succeeded_at"] for r in kept if r["succeeded_at"] is not None]):
        retained.append(Retained(
            category="payment records", fields=KEPT_FIELDS, legal_basis=LegalBasis.LEGAL_OBLIGATION,
            reason="the Accounting Law keeps records of payments seven years (P25)",
            until=max(domain.fiscal_until(at) for at in paid)))
    return erased, retained


async def leftovers(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> list[str]:
    """The categories of the customer's data still found (the re-read that proves an erasure)."""
    checks = {
        "customer at the payment provider": "SELECT EXISTS (SELECT 1 FROM psp_customers WHERE customer_id = ANY($1))",
        "saved cards": "SELECT EXISTS (SELECT 1 FROM cards WHERE customer_id = ANY($1))",
        "memberships": "SELECT EXISTS (SELECT 1 FROM memberships WHERE customer_id = ANY($1))",
        "payments linked to the customer": "SELECT EXISTS (SELECT 1 FROM payments WHERE customer_id = ANY($1))",
    }
    remaining = [category for category, query in checks.items() if await conn.fetchval(query, ids)]
    if await mentioned(conn, [str(i) for i in ids]):
        remaining.append("events")
    return remaining


# --- retention ------------------------------------------------------------------------------

async def sweep(conn: asyncpg.Connection, gateway: psp.Psp, outbox: Outbox, forget: Forget) -> dict[str, int]:
    """Keep the declared periods; how many of each."""
    steps = Steps(conn, (asyncpg.PostgresError, psp.PspError))

    async def complete(conn: asyncpg.Connection, held: asyncpg.Record) -> list[Erased] | None:
        if await holds(conn, [held["customer_id"]]):
            return None
        return (await erase_now(conn, [held["customer_id"]], gateway, forget))[0]

    await steps.run("held erasures", lambda: complete_held_erasures(conn, outbox, "payments", complete, steps.errors))
    # P25: seven years after the payment it goes whole (its refunds and disputes with it).
    await steps.delete("payment records", """DELETE FROM payments p
        WHERE coalesce(p.succeeded_at, p.created_at) < now() - $1::interval
          AND NOT EXISTS (SELECT 1 FROM disputes d WHERE d.payment_id = p.id AND d.closed_at IS NULL)""",
                       ACCOUNTING_PERIOD)
    await steps.delete("failed payment attempts", """DELETE FROM payments
        WHERE status IN ('failed', 'canceled') AND created_at < now() - $1::interval""", domain.FAILED_ATTEMPTS)
    return steps.done


class RetentionSweep(NotifiedPoller):
    """Runs :func:`sweep` every ``retention_sweep_s`` seconds (and when notified)."""

    def __init__(self, pool: asyncpg.Pool, settings: PaymentsSettings, gateway: psp.Psp, outbox: Outbox,
                 forget: Forget) -> None:
        super().__init__(pool, "veikals_payments_sweep", "payments-retention", settings.retention_sweep_s)
        self.gateway, self.outbox, self.forget = gateway, outbox, forget

    async def work(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await sweep(conn, self.gateway, self.outbox, self.forget)
