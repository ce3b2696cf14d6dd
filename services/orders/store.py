"""SQL for the orders service's tables; nothing else touches them."""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.db import count  # noqa: F401 (the orders modules count rows through store)
from shared.outbox import EventSql, PendingEvent

PRODUCT_COLUMNS = "id, sku, name, category, price_cents, vat_rate, stock, weight_grams, active"
ORDER_COLUMNS = """o.id, o.customer_id, o.guest, o.status, o.carrier, o.contact_name, o.contact_email,
    o.contact_phone, o.address_line1, o.address_line2, o.address_city, o.address_postal_code,
    o.address_country, o.net_cents, o.vat_cents, o.gross_cents, o.refunded_cents, o.currency,
    o.payment_id, o.created_at, o.paid_at, o.shipped_at, o.delivered_at, o.cancelled_at,
    o.refunded_at, o.contact_erased_at, o.language,
    (SELECT s.tracking_number FROM shipments s WHERE s.order_id = o.id) AS tracking_number,
    (SELECT i.number FROM invoices i WHERE i.order_id = o.id) AS invoice_number"""
LINE_COLUMNS = """order_id, product_id, sku, name, category, quantity, unit_price_cents, vat_rate,
    net_cents, vat_cents, gross_cents"""
COMPLAINT_COLUMNS = "id, order_id, customer_id, opened_by, description, status, resolution, opened_at, resolved_at"


# --- the catalogue ----------------------------------------------------------------------------

async def add_product(conn: asyncpg.Connection, product: dict[str, Any]) -> asyncpg.Record | None:
    """The new product, or None when its sku is taken."""
    return await conn.fetchrow(
        f"""INSERT INTO products (id, sku, name, category, price_cents, vat_rate, stock, weight_grams)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (sku) DO NOTHING RETURNING {PRODUCT_COLUMNS}""",
        uuid.uuid4(), product["sku"], product["name"], product["category"], product["price_cents"],
        product["vat_rate"], product["stock"], product["weight_grams"])


async def change_product(conn: asyncpg.Connection, product_id: uuid.UUID, changes: dict[str, Any]) -> asyncpg.Record | None:
    columns = [c for c in ("name", "category", "price_cents", "vat_rate", "stock", "active") if c in changes]
    assignments = ", ".join(f"{c} = ${i}" for i, c in enumerate(columns, start=2))
    return await conn.fetchrow(
        f"UPDATE products SET {assignments}, updated_at = now() WHERE id = $1 RETURNING {PRODUCT_COLUMNS}",
        product_id, *(changes[c] for c in columns))


async def active_product(conn: asyncpg.Connection, product_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1 AND active", product_id)


async def active_products(conn: asyncpg.Connection, category: str | None, after: str | None,
                          limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT {PRODUCT_COLUMNS} FROM products
            WHERE active AND ($1::text IS NULL OR category = $1) AND ($2::text IS NULL OR sku > $2)
            ORDER BY sku LIMIT $3""", category, after, limit)


async def lock_products(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    """The products, locked in id order before stock is taken from them (so two checkouts
    never wait for each other crosswise)."""
    return await conn.fetch(
        f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ANY($1) ORDER BY id FOR UPDATE", ids)


async def return_stock(conn: asyncpg.Connection, order_id: uuid.UUID) -> None:
    await conn.execute(
        """UPDATE products p SET stock = p.stock + l.quantity, updated_at = now()
           FROM (SELECT product_id, sum(quantity) AS quantity FROM order_lines WHERE order_id = $1
                 GROUP BY product_id ORDER BY product_id) l
           WHERE p.id = l.product_id""", order_id)


# --- orders -----------------------------------------------------------------------------------

_ORDER_COLUMNS = """id, customer_id, guest, status, carrier, contact_name, contact_email, contact_phone,
    address_line1, address_line2, address_city, address_postal_code, address_country, net_cents, vat_cents,
    gross_cents, currency, language, created_at"""
# Orders priced from the catalogue as last seen, as arrays: $1... the orders' columns, $18...
# their lines' (order id first), $30... the Idempotency-Keys they claim (scope, key, request
# hash, order id). Stored with their lines, their stock taken and their keys claimed only when
# every product, locked, is still active, as priced and named, and in stock for all of them.
PLACE_PARAMS = 33
CHECKOUT_KEY = "checkout_keys_pkey"  # the constraint a key used before violates
_PLACE_AS_PRICED = f"""
    WITH {{hold}}
        wanted AS MATERIALIZED (
            SELECT * FROM unnest($18::uuid[], $19::int[], $20::uuid[], $21::text[], $22::text[], $23::text[],
                $24::int[], $25::bigint[], $26::int[], $27::bigint[], $28::bigint[], $29::bigint[])
                AS w(order_id, line_no, product_id, sku, name, category, quantity, unit_price_cents, vat_rate,
                     net_cents, vat_cents, gross_cents)),
        needed AS MATERIALIZED (SELECT product_id AS id, sum(quantity) AS quantity FROM wanted GROUP BY 1),
        locked AS MATERIALIZED (  -- the buyers first, then all the products in id order, as lock_products does
            SELECT p.* FROM products p WHERE p.id IN (SELECT id FROM needed) AND (SELECT count(*) FROM held) >= 0
            ORDER BY p.id FOR UPDATE),
        placed AS (
            INSERT INTO orders ({_ORDER_COLUMNS})
            SELECT o.id, o.customer_id, o.customer_id IS NULL, 'created', o.carrier, o.contact_name, o.contact_email,
                o.contact_phone, o.address_line1, o.address_line2, o.address_city, o.address_postal_code,
                o.address_country, o.net_cents, o.vat_cents, o.gross_cents, o.currency, o.language, o.created_at
            FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[], $13::bigint[], $14::bigint[],
                $15::text[], $16::text[], $17::timestamptz[])
                AS o(id, customer_id, carrier, contact_name, contact_email, contact_phone, address_line1,
                     address_line2, address_city, address_postal_code, address_country, net_cents, vat_cents,
                     gross_cents, currency, language, created_at)
            WHERE (SELECT count(*) FROM locked p JOIN needed n USING (id) WHERE p.active AND p.stock >= n.quantity)
                    = (SELECT count(*) FROM needed)
              AND NOT EXISTS (SELECT FROM wanted w JOIN locked p ON p.id = w.product_id
                              WHERE (p.price_cents, p.vat_rate, p.sku, p.name, p.category)
                                    IS DISTINCT FROM (w.unit_price_cents, w.vat_rate, w.sku, w.name, w.category))
            RETURNING id),
        lines AS (
            INSERT INTO order_lines (order_id, line_no, product_id, sku, name, category, quantity,
                unit_price_cents, vat_rate, net_cents, vat_cents, gross_cents)
            SELECT * FROM wanted WHERE EXISTS (SELECT FROM placed)),
        taken AS (UPDATE products p SET stock = p.stock - n.quantity, updated_at = now()
                  FROM needed n WHERE p.id = n.id AND EXISTS (SELECT FROM placed)),
        claimed AS (INSERT INTO checkout_keys (scope, key, request_hash, order_id)
                    SELECT * FROM unnest($30::text[], $31::text[], $32::bytea[], $33::uuid[])
                    WHERE EXISTS (SELECT FROM placed)),
        {{store}}
    SELECT count(*) FROM placed"""
_PLACED_ORDER = ("id", "customer_id", "carrier", "contact_name", "contact_email", "contact_phone", "address_line1",
                 "address_line2", "address_city", "address_postal_code", "address_country", "net_cents", "vat_cents",
                 "gross_cents", "currency", "language", "created_at")
_PLACED_LINE = ("product_id", "sku", "name", "category", "quantity", "unit_price_cents", "vat_rate", "net_cents",
                "vat_cents", "gross_cents")


@dataclass(frozen=True)
class Priced:
    """An order priced from the catalogue as last seen, to be stored by ``add_orders_as_priced``."""

    order: dict[str, Any]
    lines: list[dict[str, Any]]
    claim: tuple[str, str, bytes] | None  # its Idempotency-Key: scope, key, request hash
    event: PendingEvent


async def add_orders_as_priced(conn: asyncpg.Connection, orders: list[Priced], events: EventSql) -> int:
    """Store orders and their lines and take their quantities off the shelf, in one statement
    with all they need: their buyers held
    (``events.hold``), their products locked and checked, their Idempotency-Keys claimed and
    ``events`` (parameters after ``PLACE_PARAMS``, stored after ``placed``) stored. How many were
    stored: all of them or, when any product changed or runs short, none (the caller looks again,
    order by order, in a transaction); a key used before raises UniqueViolationError, and nothing
    is stored either."""
    lines = [(p.order["id"], n, *(line[c] for c in _PLACED_LINE))
             for p in orders for n, line in enumerate(p.lines, start=1)]
    claims = [(*p.claim, p.order["id"]) for p in orders if p.claim is not None]
    return await conn.fetchval(
        _PLACE_AS_PRICED.format(hold=events.hold, store=events.store),
        *([p.order[c] for p in orders] for c in _PLACED_ORDER), *(list(c) for c in zip(*lines)),
        *(list(c) for c in zip(*claims)) if claims else ([],) * 4, *events.args)


async def order(conn: asyncpg.Connection, order_id: uuid.UUID, *, customer_id: uuid.UUID | None = None,
                lock: bool = False) -> asyncpg.Record | None:
    """The order; with ``customer_id``, only if it is that customer's."""
    return await conn.fetchrow(
        f"""SELECT {ORDER_COLUMNS} FROM orders o WHERE o.id = $1 AND ($2::uuid IS NULL OR o.customer_id = $2)
            {"FOR UPDATE OF o" if lock else ""}""", order_id, customer_id)


async def lines_of(conn: asyncpg.Connection, order_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {LINE_COLUMNS} FROM order_lines WHERE order_id = ANY($1) ORDER BY order_id, line_no", order_ids)


async def set_status(conn: asyncpg.Connection, order_id: uuid.UUID, status: str, **columns: Any) -> None:
    """Move the order to ``status``, setting ``<status>_at`` and ``columns``."""
    stamp = {"paid": "paid_at", "shipped": "shipped_at", "delivered": "delivered_at",
             "cancelled": "cancelled_at", "refunded": "refunded_at"}[status]
    names = list(columns)
    extra = "".join(f", {c} = ${i}" for i, c in enumerate(names, start=3))
    await conn.execute(
        f"UPDATE orders SET status = $2, {stamp} = coalesce({stamp}, now()){extra} WHERE id = $1",
        order_id, status, *(columns[c] for c in names))


async def add_refund(conn: asyncpg.Connection, order_id: uuid.UUID, refunded_total: int) -> None:
    await conn.execute("UPDATE orders SET refunded_cents = greatest(refunded_cents, $2) WHERE id = $1",
                       order_id, refunded_total)


async def history(conn: asyncpg.Connection, customer_id: uuid.UUID, after: tuple[dt.datetime, uuid.UUID] | None,
                  limit: int) -> list[asyncpg.Record]:
    """One page of the customer's orders, newest first (keyset: it reads only the page)."""
    created_at, order_id = after or (None, None)
    return await conn.fetch(
        """SELECT o.id, o.status, o.gross_cents, o.currency, o.created_at,
                  (SELECT sum(quantity) FROM order_lines l WHERE l.order_id = o.id) AS items
           FROM orders o WHERE o.customer_id = $1
             AND ($2::timestamptz IS NULL OR (o.created_at, o.id) < ($2, $3))
           ORDER BY o.created_at DESC, o.id DESC LIMIT $4""", customer_id, created_at, order_id, limit)


async def summary(conn: asyncpg.Connection, customer_id: uuid.UUID, since: dt.date | None,
                  until: dt.date | None) -> list[asyncpg.Record]:
    """Goods bought (paid orders, less those cancelled or refunded) by month and category,
    added up in the database."""
    return await conn.fetch(
        """SELECT to_char(date_trunc('month', o.paid_at AT TIME ZONE 'UTC'), 'YYYY-MM') AS month,
                  l.category, count(DISTINCT o.id) AS orders, sum(l.quantity) AS items,
                  sum(l.gross_cents) AS gross_cents
           FROM orders o JOIN order_lines l ON l.order_id = o.id
           WHERE o.customer_id = $1 AND o.status IN ('paid', 'shipped', 'delivered')
             AND ($2::date IS NULL OR o.paid_at >= $2) AND ($3::date IS NULL OR o.paid_at < $3)
           GROUP BY 1, 2 ORDER BY 1, 2""", customer_id, since, until)


async def customer_orders(conn: asyncpg.Connection, customer_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {ORDER_COLUMNS} FROM orders o WHERE o.customer_id = $1 ORDER BY o.created_at DESC, o.id DESC LIMIT $2",
        customer_id, limit)


# --- idempotent checkout ----------------------------------------------------------------------

async def claim_checkout_key(conn: asyncpg.Connection, scope: str, key: str, request_hash: bytes,
                             order_id: uuid.UUID) -> asyncpg.Record | None:
    """Bind ``key`` to the order being created; or, if the key was used before (a concurrent
    first use is waited for), the earlier binding."""
    claimed = await conn.fetchval(
        """INSERT INTO checkout_keys (scope, key, request_hash, order_id) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING RETURNING true""", scope, key, request_hash, order_id)
    if claimed:
        return None
    return await conn.fetchrow(
        "SELECT request_hash, order_id FROM checkout_keys WHERE scope = $1 AND key = $2", scope, key)


# --- shipments and invoices -------------------------------------------------------------------

async def add_shipment(conn: asyncpg.Connection, shipment_id: uuid.UUID, order_id: uuid.UUID,
                       carrier: str, webhook_id: str) -> None:
    await conn.execute(
        """INSERT INTO shipments (id, order_id, carrier, webhook_id) VALUES ($1, $2, $3, $4)
           ON CONFLICT (order_id) DO NOTHING""", shipment_id, order_id, carrier, webhook_id)


async def parcel_weight(conn: asyncpg.Connection, order_id: uuid.UUID) -> int:
    return await conn.fetchval(
        """SELECT sum(l.quantity * p.weight_grams) FROM order_lines l JOIN products p ON p.id = l.product_id
           WHERE l.order_id = $1""", order_id)


async def shipment(conn: asyncpg.Connection, shipment_id: uuid.UUID, carrier: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, order_id, webhook_id FROM shipments WHERE id = $1 AND carrier = $2", shipment_id, carrier)


async def shipment_accepted(conn: asyncpg.Connection, shipment_id: uuid.UUID, tracking_number: str) -> None:
    await conn.execute(
        """UPDATE shipments SET tracking_number = coalesce(tracking_number, $2),
               accepted_at = coalesce(accepted_at, now()) WHERE id = $1""", shipment_id, tracking_number)


async def shipment_delivered(conn: asyncpg.Connection, shipment_id: uuid.UUID) -> None:
    await conn.execute("UPDATE shipments SET delivered_at = coalesce(delivered_at, now()) WHERE id = $1",
                       shipment_id)


async def next_invoice_seq(conn: asyncpg.Connection, year: int) -> int:
    """The next number of ``year``: the counter row stays locked until the caller commits, so
    numbers are used in commit order and a rolled-back one is used again (no gaps)."""
    return await conn.fetchval(
        """INSERT INTO invoice_counters (year, last) VALUES ($1, 1)
           ON CONFLICT (year) DO UPDATE SET last = invoice_counters.last + 1 RETURNING last""", year)


async def add_invoice(conn: asyncpg.Connection, invoice: dict[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO invoices (id, order_id, year, seq, number, issued_on, buyer_name, net_cents,
               vat_cents, gross_cents, currency, webhook_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)""",
        invoice["id"], invoice["order_id"], invoice["year"], invoice["seq"], invoice["number"],
        invoice["issued_on"], invoice["buyer_name"], invoice["net_cents"], invoice["vat_cents"],
        invoice["gross_cents"], invoice["currency"], invoice["webhook_id"])


async def invoice_of(conn: asyncpg.Connection, order_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT id, order_id, number, issued_on, buyer_name, net_cents, vat_cents, gross_cents, currency
           FROM invoices WHERE order_id = $1""", order_id)


async def invoice_booked(conn: asyncpg.Connection, invoice_id: uuid.UUID, booked_on: dt.date) -> bool:
    return count(await conn.execute(
        "UPDATE invoices SET booked_on = coalesce(booked_on, $2) WHERE id = $1", invoice_id, booked_on)) == 1


# --- complaints and staff access --------------------------------------------------------------

async def add_complaint(conn: asyncpg.Connection, order_id: uuid.UUID, customer_id: uuid.UUID | None,
                        opened_by: str, description: str) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO complaints (id, order_id, customer_id, opened_by, description, status)
            VALUES ($1, $2, $3, $4, $5, 'open') RETURNING {COMPLAINT_COLUMNS}""",
        uuid.uuid4(), order_id, customer_id, opened_by, description)


async def complaint(conn: asyncpg.Connection, complaint_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {COMPLAINT_COLUMNS} FROM complaints WHERE id = $1 {'FOR UPDATE' if lock else ''}", complaint_id)


async def resolve_complaint(conn: asyncpg.Connection, complaint_id: uuid.UUID, resolution: str,
                            staff_id: uuid.UUID) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""UPDATE complaints SET status = 'resolved', resolution = $2, resolved_at = now(), resolved_by = $3
            WHERE id = $1 RETURNING {COMPLAINT_COLUMNS}""", complaint_id, resolution, staff_id)


async def complaints_of(conn: asyncpg.Connection, *, customer_id: uuid.UUID | None = None,
                        order_ids: list[uuid.UUID] | None = None) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT {COMPLAINT_COLUMNS} FROM complaints
            WHERE customer_id = $1 OR order_id = ANY($2::uuid[]) ORDER BY opened_at, id""",
        customer_id, order_ids or [])


async def record_staff_access(conn: asyncpg.Connection, staff_id: uuid.UUID, customer_id: uuid.UUID | None,
                              order_id: uuid.UUID | None, reason: str, categories: list[str]) -> asyncpg.Record:
    return await conn.fetchrow(
        """INSERT INTO staff_access (id, staff_id, customer_id, order_id, reason, categories)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, at""",
        uuid.uuid4(), staff_id, customer_id, order_id, reason, categories)


async def dispute(conn: asyncpg.Connection, order_id: uuid.UUID, dispute_id: str, *, opened: bool) -> None:
    """Record a chargeback opened on the order's payment, or closed (a closing for another
    dispute than the one recorded changes nothing)."""
    if opened:
        await conn.execute("""UPDATE orders SET dispute_id = $2, disputed_at = now(), dispute_closed_at = NULL
                              WHERE id = $1""", order_id, dispute_id)
    else:
        await conn.execute("UPDATE orders SET dispute_closed_at = now() WHERE id = $1 AND dispute_id = $2",
                           order_id, dispute_id)
