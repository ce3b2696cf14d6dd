"""What every service's retention sweep is made of: steps, each in a savepoint of its own so
one that fails does not hold back the others, and erasures a hold kept back, completed one at a
time when nothing holds them any more.

A held erasure is claimed (``FOR UPDATE SKIP LOCKED``) in its own savepoint: two instances'
sweeps never complete one twice, and one that fails waits for the next sweep without holding
back the rest. Its completion is published as ``held_erasure_completed``, for the privacy
service to tell the customer.
"""
from __future__ import annotations

import datetime as dt
from typing import Awaitable, Callable

import asyncpg

from shared.contracts.privacy import Erased, HeldErasureCompleted
from shared.db import count
from shared.logging import get_logger
from shared.outbox import Outbox

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
