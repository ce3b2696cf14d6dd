"""Personal data the orders service holds (its part of the Art. 30 record), its export and
erasure (the privacy participant contract), and the retention sweep that keeps the periods.

What an erasure keeps: a paid order inside the accounting period (P25) keeps its fiscal fields
(amounts, VAT, dates, lines, the invoice with its number) and the buyer's name on the invoice,
because the Accounting Law (Grāmatvedības likums, art. 10) has source documents kept as issued;
the contact details, the delivery address, the link to the customer and the complaints go.
An order not paid has no fiscal record and goes whole. A complaint (open, or resolved within
the limitation period, P24) or an order still on its way holds the whole erasure back: it is
reported as held and the sweep completes it when nothing holds it any more.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Awaitable, Callable

import asyncpg

from services.orders import domain, store
from services.orders.settings import OrdersSettings
from shared import export
from shared.contracts.privacy import (
    DataInventory, DataSubject, Erased, ErasureOutcome, ErasureRequest, ExportChunk, ExportRequest, Held,
    InventoryEntry, LegalBasis, Retained, Retention,
)
from shared.export import Section
from shared.outbox import Outbox, forget_mentions, mentioned
from shared.poller import NotifiedPoller
from shared.retention import Clocks, Steps, complete_held_erasures
from shared.subjects import Subject


STAFF_ACCESS_RETENTION = dt.timedelta(days=365)
Forget = Callable[[asyncpg.Connection, list[Subject]], Awaitable[int]]

UNTIL_ERASED = Retention(after="the order, until the customer's erasure; a guest's for three years", clause="P23")
FISCAL = Retention(period_days=domain.ACCOUNTING_PERIOD.days, after="payment of the order", clause="P25")
CONTACT_FIELDS = ["contact_name", "contact_email", "contact_phone"]
ADDRESS_FIELDS = ["address_line1", "address_line2", "address_city", "address_postal_code", "address_country"]
FISCAL_FIELDS = ["amounts and VAT", "dates", "lines (items, quantities, prices)", "invoice number",
                 "buyer name on the invoice"]

INVENTORY = DataInventory(participant="orders", entries=[
    InventoryEntry(
        category="contact details on orders", table="orders", fields=["customer_id", *CONTACT_FIELDS],
        purpose="take, deliver and support the order; reach the customer about it",
        legal_basis=LegalBasis.CONTRACT, retention=UNTIL_ERASED,
        recipients=["carrier", "support"], clauses=["P1", "P5", "P13", "P23"]),
    InventoryEntry(
        category="delivery address", table="orders", fields=ADDRESS_FIELDS,
        purpose="deliver the order to the customer", legal_basis=LegalBasis.CONTRACT,
        retention=UNTIL_ERASED, recipients=["carrier", "support"], clauses=["P2", "P5", "P13"]),
    InventoryEntry(
        category="purchase history", table="order_lines",
        fields=["sku", "name", "category", "quantity", "unit_price_cents", "net_cents", "vat_cents", "gross_cents"],
        purpose="the purchase history and summary the customer reads; the fiscal record of a paid order",
        legal_basis=LegalBasis.CONTRACT, retention=FISCAL, recipients=["accounting"],
        clauses=["P4", "P6", "P23", "P25"]),
    InventoryEntry(
        category="order amounts and payment", table="orders",
        fields=["net_cents", "vat_cents", "gross_cents", "refunded_cents", "payment_id"],
        purpose="charge, refund and account for the order", legal_basis=LegalBasis.LEGAL_OBLIGATION,
        retention=FISCAL, recipients=["accounting"], clauses=["P4", "P11", "P25"]),
    InventoryEntry(
        category="invoices", table="invoices", fields=["buyer_name", "number", "net_cents", "vat_cents", "gross_cents"],
        purpose="the invoice accounting law requires for a paid order", legal_basis=LegalBasis.LEGAL_OBLIGATION,
        retention=FISCAL, recipients=["accounting"], clauses=["P11", "P14", "P25"]),
    InventoryEntry(
        category="shipments sent to carriers", table="shipments", fields=["tracking_number"],
        purpose="follow the parcel the chosen carrier delivers", legal_basis=LegalBasis.CONTRACT,
        retention=UNTIL_ERASED, recipients=["carrier"], clauses=["P13"]),
    InventoryEntry(
        category="complaints", table="complaints", fields=["customer_id", "description", "resolution"],
        purpose="handle consumer complaints and disputes", legal_basis=LegalBasis.LEGAL_OBLIGATION,
        retention=Retention(after="resolution, for the limitation period (setting complaint_hold_days)",
                            clause="P24"),
        recipients=["support"], clauses=["P11", "P24"]),
    InventoryEntry(
        category="checkout retries", table="checkout_keys", fields=["request_hash"],
        purpose="answer a repeated checkout with the same order instead of a second one",
        legal_basis=LegalBasis.CONTRACT,
        retention=Retention(period_days=1, after="the checkout"), clauses=["P1"]),
    InventoryEntry(
        category="erasures held back", table="held_erasures", fields=["customer_id", "emails", "phones"],
        purpose="complete an erasure when the complaint or delivery that holds it ends",
        legal_basis=LegalBasis.LEGAL_OBLIGATION,
        retention=Retention(after="the erasure is completed", clause="P22"), clauses=["P22", "P24"]),
    InventoryEntry(
        category="staff access records", table="staff_access", fields=["customer_id", "order_id", "reason"],
        purpose="account for every staff look at a customer's orders",
        legal_basis=LegalBasis.LEGITIMATE_INTEREST,
        retention=Retention(period_days=STAFF_ACCESS_RETENTION.days, after="the access"),
        recipients=["admin"], clauses=["P16", "P17"]),
])

# When the period of each record held starts, for every entry above with a period, read as the
# sweeps read it (for the retention report; a test fails on an entry without one).
CLOCKS: Clocks = {
    ("order_lines", "purchase history"):
        "SELECT coalesce(o.paid_at, o.created_at) FROM order_lines l JOIN orders o ON o.id = l.order_id",
    ("orders", "order amounts and payment"): "SELECT coalesce(paid_at, created_at) FROM orders",
    ("invoices", "invoices"):
        "SELECT coalesce(o.paid_at, o.created_at) FROM invoices i JOIN orders o ON o.id = i.order_id",
    ("checkout_keys", "checkout retries"): "SELECT created_at FROM checkout_keys",
    ("staff_access", "staff access records"): "SELECT at FROM staff_access",
}

# Columns that hold no personal data by themselves; a test fails on a column neither declared
# above nor listed here.
NOT_PERSONAL = {
    *(("products", c) for c in ("id", "sku", "name", "category", "price_cents", "vat_rate", "stock",
                                "weight_grams", "active", "created_at", "updated_at")),
    *(("orders", c) for c in ("id", "guest", "status", "carrier", "currency", "created_at", "paid_at",
                              "shipped_at", "delivered_at", "cancelled_at", "refunded_at", "contact_erased_at",
                              "dispute_id", "disputed_at", "dispute_closed_at", "language")),
    *(("order_lines", c) for c in ("order_id", "line_no", "product_id", "vat_rate")),
    *(("checkout_keys", c) for c in ("scope", "key", "order_id", "created_at")),
    *(("shipments", c) for c in ("id", "order_id", "carrier", "webhook_id", "created_at", "accepted_at",
                                 "delivered_at")),
    ("invoice_counters", "year"), ("invoice_counters", "last"),
    *(("invoices", c) for c in ("id", "order_id", "year", "seq", "issued_on", "currency", "webhook_id",
                                "booked_on")),
    *(("complaints", c) for c in ("id", "order_id", "opened_by", "status", "opened_at", "resolved_at",
                                  "resolved_by")),
    *(("staff_access", c) for c in ("id", "staff_id", "categories", "at")),
    ("held_erasures", "request_id"), ("held_erasures", "requested_at"),
}


@dataclass
class Found:
    """The subject's orders and identifiers, as this service knows them."""

    order_ids: list[uuid.UUID]
    customer_ids: list[uuid.UUID]
    emails: list[str]
    phones: list[str]


async def find(conn: asyncpg.Connection, subject: DataSubject) -> Found:
    """The orders a request is about: the customer's, and the guest orders placed with the
    request's e-mail addresses or phone numbers or with the address on the customer's own
    orders (a customer who also ordered as a guest: that address is the account's, verified).
    Nothing is followed through a phone number, which no one verified and a family may share,
    nor through another customer's orders."""
    customer_ids = [subject.customer_id] if subject.customer_id else []
    own = await conn.fetch(
        "SELECT DISTINCT lower(contact_email) AS email FROM orders WHERE customer_id = ANY($1) AND contact_email IS NOT NULL",
        customer_ids)
    emails = sorted({*subject.emails, *(r["email"] for r in own)})
    phones = sorted(set(subject.phones))
    rows = await conn.fetch(
        """SELECT id FROM orders WHERE customer_id = ANY($1)
              OR (customer_id IS NULL AND (lower(contact_email) = ANY($2) OR contact_phone = ANY($3)))""",
        customer_ids, emails, phones)
    return Found(order_ids=[r["id"] for r in rows], customer_ids=customer_ids, emails=emails, phones=phones)


# --- export ---------------------------------------------------------------------------------

ORDER_EXPORT = """SELECT id, status, carrier, contact_name, contact_email, contact_phone, address_line1,
    address_line2, address_city, address_postal_code, address_country, net_cents, vat_cents, gross_cents,
    refunded_cents, currency, payment_id, created_at, paid_at, shipped_at, delivered_at, cancelled_at, refunded_at"""
SECTIONS: dict[str, Section] = {
    "orders": Section("orders", f"{ORDER_EXPORT} FROM orders WHERE id = ANY($1) ORDER BY created_at, id"),
    "lines": Section("purchase history", """SELECT order_id, line_no, sku, name, category, quantity,
        unit_price_cents, vat_rate, net_cents, vat_cents, gross_cents FROM order_lines
        WHERE order_id = ANY($1) ORDER BY order_id, line_no"""),
    "invoices": Section("invoices", """SELECT number, order_id, issued_on, buyer_name, net_cents, vat_cents,
        gross_cents, currency, booked_on FROM invoices WHERE order_id = ANY($1) ORDER BY year, seq"""),
    "shipments": Section("shipments sent to carriers", """SELECT order_id, carrier, tracking_number,
        created_at, accepted_at, delivered_at FROM shipments WHERE order_id = ANY($1) ORDER BY created_at, id"""),
    "complaints": Section("complaints", """SELECT id, order_id, opened_by, description, status, resolution,
        opened_at, resolved_at FROM complaints WHERE order_id = ANY($1) OR customer_id = ANY($2)
        ORDER BY opened_at, id""", uses=2),
    "staff_access": Section("staff access records", """SELECT at, order_id, categories, reason FROM staff_access
        WHERE order_id = ANY($1) OR customer_id = ANY($2) ORDER BY at, id""", uses=2),
}


async def export_chunk(conn: asyncpg.Connection, request: ExportRequest) -> ExportChunk:
    found = await find(conn, request.subject)
    return await export.export_chunk(conn, request, "orders", SECTIONS, (found.order_ids, found.customer_ids))


# --- erasure --------------------------------------------------------------------------------

async def holds(conn: asyncpg.Connection, found: Found, hold_days: int) -> list[Held]:
    """What holds the subject's order data back from erasure: complaints open or resolved
    within the limitation period and open chargebacks (P24), and orders paid but not yet
    delivered."""
    held = [Held(category="orders, contact details and complaints", hold=f"complaint {r['id']}",
                 until=domain.hold_until(r["resolved_at"], hold_days))
            for r in await conn.fetch(
                """SELECT id, resolved_at FROM complaints
                   WHERE (order_id = ANY($1) OR customer_id = ANY($2))
                     AND (status = 'open' OR resolved_at > now() - $3::interval) ORDER BY opened_at""",
                found.order_ids, found.customer_ids, dt.timedelta(days=hold_days))]
    held += [Held(category="orders under a payment dispute", hold=f"chargeback {r['dispute_id']}")
             for r in await conn.fetch(
                 """SELECT dispute_id FROM orders WHERE id = ANY($1) AND dispute_id IS NOT NULL
                    AND dispute_closed_at IS NULL ORDER BY disputed_at""", found.order_ids)]
    held += [Held(category="orders being delivered", hold=f"order {r['id']} on its way")
             for r in await conn.fetch(
                 "SELECT id FROM orders WHERE id = ANY($1) AND status IN ('paid', 'shipped') ORDER BY created_at",
                 found.order_ids)]
    return held


async def erase(conn: asyncpg.Connection, request: ErasureRequest, forget: Forget, hold_days: int) -> ErasureOutcome:
    """Erase (or, with ``verify_only``, re-read) the subject's order data, in the caller's
    transaction; held back whole, and recorded for the sweep, while something holds it."""
    now = dt.datetime.now(dt.timezone.utc)
    found = await find(conn, request.subject)
    held = await holds(conn, found, hold_days)
    erased: list[Erased] = []
    retained: list[Retained] = []
    if held and not request.verify_only:
        await conn.execute(
            """INSERT INTO held_erasures (request_id, customer_id, emails, phones) VALUES ($1, $2, $3, $4)
               ON CONFLICT (request_id) DO NOTHING""",
            request.request_id, request.subject.customer_id, request.subject.emails, request.subject.phones)
    elif not request.verify_only:
        erased, retained = await erase_now(conn, found, forget)
    remaining = [] if held else await leftovers(conn, found)
    return ErasureOutcome(request_id=request.request_id, participant="orders", erased=erased,
                          retained=retained, held=held, remaining=remaining, completed_at=now)


async def erase_now(conn: asyncpg.Connection, found: Found,
                    forget: Forget | None) -> tuple[list[Erased], list[Retained]]:
    """Erase the orders found. ``forget`` (``Service.forget``) tombstones the subject first; the
    retention sweep passes None: a guest's old orders go, but the guest's newer orders (and
    their events) stay."""
    erased: list[Erased] = []

    def note(category: str, status: str) -> None:
        if (n := store.count(status)):
            erased.append(Erased(category=category, records=n))

    subjects = [*map(Subject.customer, found.customer_ids), *map(Subject.email, found.emails),
                *map(Subject.phone, found.phones)]
    if forget is not None and subjects and (unsent := await forget(conn, subjects)):
        erased.append(Erased(category="events about the customer", records=unsent))
    ids = found.order_ids
    fiscal = await conn.fetch(
        """SELECT id, paid_at FROM orders WHERE id = ANY($1) AND paid_at IS NOT NULL
             AND paid_at > now() - $2::interval""", ids, domain.ACCOUNTING_PERIOD)
    kept = [r["id"] for r in fiscal]
    note("shipments sent to carriers", await conn.execute(
        """DELETE FROM webhook_deliveries WHERE id IN (SELECT webhook_id FROM shipments WHERE order_id = ANY($1))
             AND status <> 'pending'""", ids))
    note("complaints", await conn.execute(
        "DELETE FROM complaints WHERE order_id = ANY($1) OR customer_id = ANY($2)", ids, found.customer_ids))
    # An order still open for payment gives its stock back before it goes.
    for row in await conn.fetch("SELECT id FROM orders WHERE id = ANY($1) AND status = 'created'", ids):
        await store.return_stock(conn, row["id"])
    note("orders without a fiscal record", await conn.execute(
        "DELETE FROM orders WHERE id = ANY($1) AND NOT (id = ANY($2))", ids, kept))
    await conn.execute("DELETE FROM checkout_keys WHERE order_id = ANY($1)", kept)
    await conn.execute("UPDATE shipments SET tracking_number = NULL WHERE order_id = ANY($1)", kept)
    note("contact details and delivery addresses", await conn.execute(
        f"""UPDATE orders SET customer_id = NULL, {", ".join(f"{c} = NULL" for c in CONTACT_FIELDS + ADDRESS_FIELDS)},
                contact_erased_at = now() WHERE id = ANY($1) AND contact_erased_at IS NULL""", kept))
    if forget is not None and (published := await forget_mentions(
            conn, [*map(str, found.customer_ids), *found.emails, *found.phones])):
        erased.append(Erased(category="published events", records=published))
    retained = []
    if fiscal:
        retained.append(Retained(
            category="fiscal records of paid orders", fields=FISCAL_FIELDS, legal_basis=LegalBasis.LEGAL_OBLIGATION,
            reason="the Accounting Law keeps source documents seven years (P25); the invoice names the buyer",
            until=max(domain.fiscal_until(r["paid_at"]) for r in fiscal)))
    last_access = await conn.fetchval(
        "SELECT max(at) FROM staff_access WHERE customer_id = ANY($1) OR order_id = ANY($2)", found.customer_ids, ids)
    if last_access is not None:
        retained.append(Retained(
            category="staff access records", fields=["customer_id", "order_id", "reason"],
            legal_basis=LegalBasis.LEGITIMATE_INTEREST,
            reason="accountability for staff access to personal data (P16, P17)",
            until=(last_access + STAFF_ACCESS_RETENTION).date()))
    return erased, retained


async def leftovers(conn: asyncpg.Connection, found: Found) -> list[str]:
    """The categories of the subject's data still found (the re-read that proves an erasure)."""
    checks = {
        "orders with contact details": (
            """SELECT EXISTS (SELECT 1 FROM orders WHERE customer_id = ANY($1)
               OR (customer_id IS NULL AND (lower(contact_email) = ANY($2) OR contact_phone = ANY($3))))""",
            found.customer_ids, found.emails, found.phones),
        "complaints": ("SELECT EXISTS (SELECT 1 FROM complaints WHERE customer_id = ANY($1) OR order_id = ANY($2))",
                       found.customer_ids, found.order_ids),
        "shipments sent to carriers": (
            """SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE event_type = 'shipment.created'
               AND EXISTS (SELECT 1 FROM unnest($1::text[]) v WHERE position(convert_to(v, 'UTF8') IN body) > 0))""",
            [*found.emails, *found.phones]),
    }
    remaining = [category for category, (query, *args) in checks.items() if await conn.fetchval(query, *args)]
    if await mentioned(conn, [*map(str, found.customer_ids), *found.emails, *found.phones]):
        remaining.append("events")
    return remaining


# --- retention ------------------------------------------------------------------------------

async def sweep(conn: asyncpg.Connection, settings: OrdersSettings, outbox: Outbox, forget: Forget) -> dict[str, int]:
    """Keep the declared periods; how many of each."""
    steps = Steps(conn)

    async def complete(conn: asyncpg.Connection, held: asyncpg.Record) -> list[Erased] | None:
        found = await find(conn, DataSubject(customer_id=held["customer_id"], emails=held["emails"],
                                             phones=held["phones"]))
        if await holds(conn, found, settings.complaint_hold_days):
            return None
        return (await erase_now(conn, found, forget))[0]

    async def guest_history() -> int:
        """P23: a guest's purchase history goes after three years (a paid order's fiscal part stays)."""
        rows = await conn.fetch(
            """SELECT o.id FROM orders o WHERE o.guest AND o.contact_erased_at IS NULL
                 AND o.created_at < now() - $1::interval AND o.status NOT IN ('paid', 'shipped')
                 AND NOT EXISTS (SELECT 1 FROM complaints c WHERE c.order_id = o.id
                                 AND (c.status = 'open' OR c.resolved_at > now() - $2::interval))
               LIMIT 1000""", domain.GUEST_HISTORY, dt.timedelta(days=settings.complaint_hold_days))
        if not rows:
            return 0
        await erase_now(conn, await find_orders(conn, [r["id"] for r in rows]), None)
        return len(rows)

    await steps.run("held erasures", lambda: complete_held_erasures(conn, outbox, "orders", complete))
    # P25: seven years after payment (or creation, for an order never paid) an order goes whole.
    await steps.delete("fiscal records", """DELETE FROM orders o WHERE coalesce(o.paid_at, o.created_at) < now() - $1::interval
        AND NOT EXISTS (SELECT 1 FROM complaints c WHERE c.order_id = o.id
                        AND (c.status = 'open' OR c.resolved_at > now() - $2::interval))""",
                       domain.ACCOUNTING_PERIOD, dt.timedelta(days=settings.complaint_hold_days))
    await steps.run("guest purchase history", guest_history)
    await steps.delete("checkout keys", "DELETE FROM checkout_keys WHERE created_at < now() - $1::interval",
                       domain.CHECKOUT_KEY_TTL)
    await steps.delete("staff access records", "DELETE FROM staff_access WHERE at < now() - $1::interval",
                       STAFF_ACCESS_RETENTION)
    return steps.done


async def find_orders(conn: asyncpg.Connection, order_ids: list[uuid.UUID]) -> Found:
    """These orders alone, with the identifiers on them (not the rest of their customers' orders)."""
    rows = await conn.fetch(
        "SELECT id, lower(contact_email) AS email, contact_phone FROM orders WHERE id = ANY($1)", order_ids)
    return Found(order_ids=[r["id"] for r in rows], customer_ids=[],
                 emails=sorted({r["email"] for r in rows if r["email"]}),
                 phones=sorted({r["contact_phone"] for r in rows if r["contact_phone"]}))


class RetentionSweep(NotifiedPoller):
    """Runs :func:`sweep` every ``retention_sweep_s`` seconds (and when notified)."""

    def __init__(self, pool: asyncpg.Pool, settings: OrdersSettings, outbox: Outbox, forget: Forget) -> None:
        super().__init__(pool, "veikals_orders_sweep", "orders-retention", settings.retention_sweep_s)
        self.settings, self.outbox, self.forget = settings, outbox, forget

    async def work(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await sweep(conn, self.settings, self.outbox, self.forget)
