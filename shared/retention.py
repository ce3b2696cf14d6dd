"""What every service's retention sweep is made of: steps, each in a savepoint of its own so
one that fails does not hold back the others, and erasures a hold kept back, completed one at a
time when nothing holds them any more.

A held erasure is claimed (``FOR UPDATE SKIP LOCKED``) in its own savepoint: two instances'
sweeps never complete one twice, and one that fails waits for the next sweep without holding
back the rest. Its completion is published as ``held_erasure_completed``, for the privacy
service to tell the customer.

And the retention report: each service declares, beside its inventory, how the retention
clock of each entry with a period is read (``Clocks``); :func:`report` reads them all and says
when the period of the oldest record still held started, and whether it is overdue.
"""
from __future__ import annotations

import datetime as dt
from typing import Awaitable, Callable

import asyncpg

from shared import mail
from shared.contracts.privacy import (
    DataInventory, Erased, HeldErasureCompleted, InventoryEntry, RetentionAge, RetentionReport,
)
from shared.db import count
from shared.logging import get_logger
from shared.outbox import Outbox
from shared.webhooks.outbound import FAILED_RETENTION, SETTLED_RETENTION

log = get_logger(__name__)

Errors = tuple[type[BaseException], ...]


class Steps:
    """The steps of one sweep in the caller's transaction; ``done`` says how many rows each took."""

    def __init__(self, conn: asyncpg.Connection, errors: Errors = (asyncpg.PostgresError,)) -> None:
        self.conn = conn
        self.errors = errors
        self.done: dict[str, int] = {}

    async def run(self, name: str, work: Callable[[], Awaitable[int]]) -> None:
        try:
            async with self.conn.transaction():
                self.done[name] = await work()
        except self.errors as exc:
            log.warning("retention sweep step failed; it runs again next time", step=name, error=type(exc).__name__)

    async def delete(self, name: str, sql: str, *args) -> None:
        """A step that is one statement (the rows it deletes are counted)."""
        await self.run(name, lambda: self._count(sql, *args))

    async def _count(self, sql: str, *args) -> int:
        return count(await self.conn.execute(sql, *args))


# Completes the held erasure of the (locked) ``held_erasures`` row: what it erased, or None
# while something still holds it.
Complete = Callable[[asyncpg.Connection, asyncpg.Record], Awaitable[list[Erased] | None]]


async def complete_held_erasures(conn: asyncpg.Connection, outbox: Outbox, participant: str, complete: Complete,
                                 errors: Errors = (asyncpg.PostgresError,)) -> int:
    """Complete every held erasure nothing holds any more; how many were."""
    completed = 0
    for (request_id,) in await conn.fetch("SELECT request_id FROM held_erasures ORDER BY requested_at"):
        try:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "SELECT * FROM held_erasures WHERE request_id = $1 FOR UPDATE SKIP LOCKED", request_id)
                erased = None if row is None else await complete(conn, row)
                if erased is None:
                    continue
                await conn.execute("DELETE FROM held_erasures WHERE request_id = $1", request_id)
                await outbox.add(conn, "held_erasure_completed", HeldErasureCompleted(
                    request_id=request_id, participant=participant, erased=erased,
                    at=dt.datetime.now(dt.timezone.utc)).model_dump(mode="json"))
                completed += 1
        except errors as exc:
            log.warning("a held erasure could not be completed; the next sweep tries again",
                        request=str(request_id), error=type(exc).__name__)
    return completed


# --- the retention report -------------------------------------------------------------------

# How the retention clock of each inventory entry with a period is read, by (table, category):
# a SELECT of one column, the instant each record held started its period (NULL, or a time
# still to come, for one whose period has not started).
Clocks = dict[tuple[str, str], str]

# A record this long past its period is overdue: the sweeps run hourly, so it has outlived a
# day of them.
OVERDUE_AFTER = dt.timedelta(days=1)

# Mail, as shared.mail prunes it: from when it was sent, or written if it was given up.
MAIL_SENT = ("SELECT CASE WHEN sent_at IS NOT NULL THEN sent_at "
             f"WHEN attempts >= {mail.MAX_ATTEMPTS} THEN created_at END FROM outgoing_mail")

# The entries every service holds through shared/ (shared.service.SHARED_INVENTORY), as their
# loops prune them.
SHARED_CLOCKS: Clocks = {
    ("outbox", "events awaiting delivery to other services"): "SELECT published_at FROM outbox",
    ("rpc_calls", "replies to state-changing calls"): "SELECT created_at FROM rpc_calls",
    # A failed message is kept longer than a delivered one: its clock starts that much later.
    ("webhook_deliveries", "messages to processors"): f"""SELECT CASE status
        WHEN 'delivered' THEN delivered_at
        WHEN 'failed' THEN created_at + interval '{(FAILED_RETENTION - SETTLED_RETENTION).days} days' END
        FROM webhook_deliveries""",
    ("webhook_callbacks", "processors' confirmations"): "SELECT received_at FROM webhook_callbacks",
}


def unclocked(inventory: DataInventory, clocks: Clocks) -> list[InventoryEntry]:
    """The entries with a retention period whose clock is not declared."""
    return [e for e in inventory.entries if e.retention.period_days and (e.table, e.category) not in clocks]


async def report(conn: asyncpg.Connection, inventory: DataInventory, clocks: Clocks) -> RetentionReport:
    """For each entry with a retention period: how old the oldest record held is, by its clock."""
    now = dt.datetime.now(dt.timezone.utc)
    return RetentionReport(participant=inventory.participant, at=now, entries=[
        await _age(conn, entry, clocks.get((entry.table, entry.category)), now)
        for entry in inventory.entries if entry.retention.period_days])


async def _age(conn: asyncpg.Connection, entry: InventoryEntry, clock: str | None, now: dt.datetime) -> RetentionAge:
    assert entry.retention.period_days is not None
    period = dt.timedelta(days=entry.retention.period_days)
    row = {"category": entry.category, "table": entry.table, "period_days": entry.retention.period_days,
           "after": entry.retention.after}
    if clock is None:
        return RetentionAge(**row, error="no retention clock is declared for it")
    try:  # one statement, no transaction: an entry that fails leaves the others readable
        found = await conn.fetchrow(
            f"""SELECT min(started)::timestamptz AS oldest, count(*) AS records,
                       count(*) FILTER (WHERE started < $1::timestamptz - $2::interval) AS past_due
                FROM ({clock}) AS clock (started) WHERE started <= $1""", now, period)
    except asyncpg.PostgresError as exc:  # its name only: a message may quote a value
        log.error("a retention clock cannot be read", table=entry.table, category=entry.category,
                  error=type(exc).__name__)
        return RetentionAge(**row, error=type(exc).__name__)
    due = None if found["oldest"] is None else found["oldest"] + period
    return RetentionAge(**row, oldest=found["oldest"], due=due, records=found["records"], past_due=found["past_due"],
                        overdue=due is not None and now - due > OVERDUE_AFTER)
