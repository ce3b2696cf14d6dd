"""SQL for the payments service's tables; nothing else touches them."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from shared.db import count  # noqa: F401 (the payments modules count rows through store)

PAYMENT_COLUMNS = """p.id, p.order_id, p.membership_id, p.period, p.attempt, p.customer_id, p.amount_cents,
    p.currency, p.status, p.idempotency_key, p.psp_payment_method_id, p.psp_customer_id, p.psp_intent_id,
    p.card_brand, p.card_last4, p.off_session, p.failure_code, p.failure_message, p.action_url,
    p.refunded_cents, p.created_at, p.succeeded_at, p.check_at"""
MEMBERSHIP_COLUMNS = """m.id, m.customer_id, m.card_id, m.status, m.price_cents, m.currency, m.period,
    m.period_start, m.period_end, m.cancel_at_period_end, m.failed_attempts, m.first_failed_at,
    m.next_charge_at, m.created_at, m.ended_at,
    (SELECT c.brand || ' •••• ' || c.last4 FROM cards c WHERE c.id = m.card_id) AS card"""
REFUND_COLUMNS = """r.id, r.payment_id, r.amount_cents, r.status, r.psp_refund_id, r.reason, r.requested_by,
    r.failure_message, r.created_at, r.succeeded_at, (SELECT p.order_id FROM payments p WHERE p.id = r.payment_id) AS order_id"""


def _set(columns: dict[str, Any], first: int) -> tuple[str, list[Any]]:
    """``a = $first, b = $first+1`` and the values, for an UPDATE."""
    return ", ".join(f"{k} = ${i}" for i, k in enumerate(columns, start=first)), list(columns.values())


# --- the PSP's customers and saved cards -------------------------------------------------------

async def psp_customer(conn: asyncpg.Connection, customer_id: uuid.UUID) -> str | None:
    return await conn.fetchval("SELECT psp_customer_id FROM psp_customers WHERE customer_id = $1", customer_id)


async def add_psp_customer(conn: asyncpg.Connection, customer_id: uuid.UUID, psp_customer_id: str) -> str:
    """The customer's PSP id: this one, or the one a concurrent request recorded first."""
    await conn.execute("""INSERT INTO psp_customers (customer_id, psp_customer_id) VALUES ($1, $2)
                          ON CONFLICT (customer_id) DO NOTHING""", customer_id, psp_customer_id)
    return await psp_customer(conn, customer_id)


async def add_card(conn: asyncpg.Connection, customer_id: uuid.UUID, card: Any) -> asyncpg.Record | None:
    """Save the card (a payment method already attached to the customer at the PSP); saving
    the same one twice gives the first; None when it is someone else's."""
    await conn.execute(
        """INSERT INTO cards (id, customer_id, psp_payment_method_id, brand, last4, exp_month, exp_year)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (psp_payment_method_id) DO NOTHING""",
        uuid.uuid4(), customer_id, card.payment_method_id, card.brand, card.last4, card.exp_month, card.exp_year)
    return await conn.fetchrow("SELECT * FROM cards WHERE psp_payment_method_id = $1 AND customer_id = $2",
                               card.payment_method_id, customer_id)


async def card(conn: asyncpg.Connection, card_id: uuid.UUID, customer_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM cards WHERE id = $1 AND customer_id = $2", card_id, customer_id)


async def cards(conn: asyncpg.Connection, customer_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM cards WHERE customer_id = $1 ORDER BY created_at, id", customer_id)


async def remove_card(conn: asyncpg.Connection, card_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM cards WHERE id = $1", card_id)


# --- payments ----------------------------------------------------------------------------------

async def add_payment(conn: asyncpg.Connection, payment: dict[str, Any]) -> asyncpg.Record:
    """Record an attempt before the PSP hears of it (raises UniqueViolationError when the order
    or the membership period has one in flight or paid)."""
    names = list(payment)
    row = await conn.fetchrow(
        f"""INSERT INTO payments AS p ({", ".join(names)}) VALUES ({", ".join(f"${i}" for i in range(1, len(names) + 1))})
            RETURNING {PAYMENT_COLUMNS}""", *payment.values())
    return row


async def payment(conn: asyncpg.Connection, payment_id: uuid.UUID, *, customer_id: uuid.UUID | None = None,
                  lock: bool = False) -> asyncpg.Record | None:
    where, args = "p.id = $1", [payment_id]
    if customer_id is not None:
        where, args = where + " AND p.customer_id = $2", [*args, customer_id]
    return await conn.fetchrow(f"SELECT {PAYMENT_COLUMNS} FROM payments p WHERE {where}"
                               + (" FOR UPDATE" if lock else ""), *args)


async def payment_by_intent(conn: asyncpg.Connection, intent_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {PAYMENT_COLUMNS} FROM payments p WHERE p.psp_intent_id = $1", intent_id)


async def paid_payment_of_order(conn: asyncpg.Connection, order_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {PAYMENT_COLUMNS} FROM payments p WHERE p.order_id = $1 AND p.status = 'succeeded'"
        + (" FOR UPDATE" if lock else ""), order_id)


async def next_attempt_of_order(conn: asyncpg.Connection, order_id: uuid.UUID) -> int:
    """The number of the order's next attempt (after the highest, as failed ones may be gone)."""
    return await conn.fetchval("SELECT coalesce(max(attempt) + 1, 0) FROM payments WHERE order_id = $1", order_id)


async def period_payment(conn: asyncpg.Connection, membership_id: uuid.UUID, period: int,
                         attempt: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {PAYMENT_COLUMNS} FROM payments p WHERE p.membership_id = $1 AND p.period = $2 AND p.attempt = $3",
        membership_id, period, attempt)


async def update_payment(conn: asyncpg.Connection, payment_id: uuid.UUID, **columns: Any) -> asyncpg.Record:
    assignments, values = _set({**columns, "updated_at": dt.datetime.now(dt.timezone.utc)}, 2)
    return await conn.fetchrow(f"UPDATE payments AS p SET {assignments} WHERE p.id = $1 RETURNING {PAYMENT_COLUMNS}",
                               payment_id, *values)


async def history(conn: asyncpg.Connection, customer_id: uuid.UUID, after: tuple[dt.datetime, uuid.UUID] | None,
                  limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT {PAYMENT_COLUMNS} FROM payments p WHERE p.customer_id = $1
              AND ($2::timestamptz IS NULL OR (p.created_at, p.id) < ($2, $3))
            ORDER BY p.created_at DESC, p.id DESC LIMIT $4""",
        customer_id, after and after[0], after and after[1], limit)


async def claim_due_payments(conn: asyncpg.Connection, lease: dt.timedelta, limit: int) -> list[asyncpg.Record]:
    """In-flight payments due to be asked about; pushed ``lease`` ahead so another instance
    does not ask at the same time."""
    return await conn.fetch(
        f"""UPDATE payments AS p SET check_at = now() + $1::interval
            WHERE p.id IN (SELECT id FROM payments WHERE check_at <= now() ORDER BY check_at
                           LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING {PAYMENT_COLUMNS}""", lease, limit)


# --- refunds -----------------------------------------------------------------------------------

async def refunded_or_pending(conn: asyncpg.Connection, payment_id: uuid.UUID) -> int:
    return await conn.fetchval(
        "SELECT coalesce(sum(amount_cents), 0) FROM refunds WHERE payment_id = $1 AND status <> 'failed'", payment_id)


async def add_refund(conn: asyncpg.Connection, refund: dict[str, Any]) -> asyncpg.Record:
    await conn.execute(
        """INSERT INTO refunds (id, payment_id, amount_cents, status, reason, requested_by, check_at)
           VALUES ($1, $2, $3, 'pending', $4, $5, $6)""",
        refund["id"], refund["payment_id"], refund["amount_cents"], refund["reason"], refund["requested_by"],
        refund["check_at"])
    return await refund_row(conn, refund["id"])


async def refund_row(conn: asyncpg.Connection, refund_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    if lock:
        await conn.execute("SELECT 1 FROM refunds WHERE id = $1 FOR UPDATE", refund_id)
    return await conn.fetchrow(f"SELECT {REFUND_COLUMNS} FROM refunds r WHERE r.id = $1", refund_id)


async def refund_by_psp_id(conn: asyncpg.Connection, psp_refund_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {REFUND_COLUMNS} FROM refunds r WHERE r.psp_refund_id = $1", psp_refund_id)


async def update_refund(conn: asyncpg.Connection, refund_id: uuid.UUID, **columns: Any) -> None:
    assignments, values = _set(columns, 2)
    await conn.execute(f"UPDATE refunds SET {assignments} WHERE id = $1", refund_id, *values)


async def add_refunded(conn: asyncpg.Connection, payment_id: uuid.UUID, amount: int) -> int:
    return await conn.fetchval(
        "UPDATE payments SET refunded_cents = refunded_cents + $2, updated_at = now() WHERE id = $1 RETURNING refunded_cents",
        payment_id, amount)


async def claim_due_refunds(conn: asyncpg.Connection, lease: dt.timedelta, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""WITH due AS (UPDATE refunds SET check_at = now() + $1::interval
                         WHERE id IN (SELECT id FROM refunds WHERE check_at <= now() ORDER BY check_at
                                      LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id)
            SELECT {REFUND_COLUMNS} FROM refunds r WHERE r.id IN (SELECT id FROM due)""", lease, limit)


# --- memberships -------------------------------------------------------------------------------

async def add_membership(conn: asyncpg.Connection, membership: dict[str, Any]) -> asyncpg.Record:
    """Raises UniqueViolationError when the customer has a live membership."""
    await conn.execute(
        """INSERT INTO memberships (id, customer_id, card_id, status, price_cents, currency)
           VALUES ($1, $2, $3, 'incomplete', $4, $5)""",
        membership["id"], membership["customer_id"], membership["card_id"], membership["price_cents"],
        membership["currency"])
    return await membership_row(conn, membership["id"])


async def membership_row(conn: asyncpg.Connection, membership_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    if lock:
        await conn.execute("SELECT 1 FROM memberships WHERE id = $1 FOR UPDATE", membership_id)
    return await conn.fetchrow(f"SELECT {MEMBERSHIP_COLUMNS} FROM memberships m WHERE m.id = $1", membership_id)


async def membership_of(conn: asyncpg.Connection, customer_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    """The customer's live membership, or else the last one they had."""
    found = await conn.fetchval(
        """SELECT id FROM memberships WHERE customer_id = $1
           ORDER BY status IN ('incomplete', 'active', 'past_due') DESC, created_at DESC LIMIT 1""", customer_id)
    return found and await membership_row(conn, found, lock=lock)


async def update_membership(conn: asyncpg.Connection, membership_id: uuid.UUID, **columns: Any) -> asyncpg.Record:
    assignments, values = _set(columns, 2)
    await conn.execute(f"UPDATE memberships SET {assignments} WHERE id = $1", membership_id, *values)
    return await membership_row(conn, membership_id)


async def claim_due_membership(conn: asyncpg.Connection, lease: dt.timedelta) -> asyncpg.Record | None:
    """A membership due to be charged (or ended), pushed ``lease`` ahead so that no other
    instance takes it meanwhile; None when none is due."""
    found = await conn.fetchval(
        """UPDATE memberships SET next_charge_at = now() + $1::interval
           WHERE id = (SELECT id FROM memberships WHERE status IN ('active', 'past_due') AND next_charge_at <= now()
                       ORDER BY next_charge_at LIMIT 1 FOR UPDATE SKIP LOCKED)
           RETURNING id""", lease)
    return found and await membership_row(conn, found)


# --- disputes ----------------------------------------------------------------------------------

async def record_dispute(conn: asyncpg.Connection, dispute: dict[str, Any]) -> bool:
    """Insert or update the dispute; True when its state changed (a closed one stays closed,
    whatever late update arrives)."""
    status = await conn.execute(
        """INSERT INTO disputes (id, payment_id, amount_cents, reason, status, closed_at)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, closed_at = EXCLUDED.closed_at
           WHERE disputes.closed_at IS NULL AND disputes.status IS DISTINCT FROM EXCLUDED.status""",
        dispute["id"], dispute["payment_id"], dispute["amount_cents"], dispute["reason"], dispute["status"],
        dispute["closed_at"])
    return count(status) > 0


async def open_disputes(conn: asyncpg.Connection, customer_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT d.id, d.opened_at FROM disputes d JOIN payments p ON p.id = d.payment_id
           WHERE p.customer_id = ANY($1) AND d.closed_at IS NULL ORDER BY d.opened_at""", customer_ids)
