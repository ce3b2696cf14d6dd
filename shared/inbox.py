"""The inbox: what a service has applied already, recorded in the transaction of its effect.

``first_delivery`` returns False when ``consumer`` has already handled ``message_id``; the
caller then skips the effect. Because the row and the effect commit together, a redelivered
message (after a crash, a lost ack or a retry) changes nothing twice.

``RpcCalls`` does the same for state-changing RPC calls, keyed by the call's request id (or
correlation id), and keeps the reply: a redelivered request is answered with the first reply.
"""
from __future__ import annotations

from typing import Awaitable, Callable

import asyncpg


async def first_delivery(conn: asyncpg.Connection, consumer: str, message_id: str) -> bool:
    if not conn.is_in_transaction():
        raise RuntimeError("first_delivery must run inside the transaction of the effect")
    inserted = await conn.fetchval(
        """INSERT INTO inbox (consumer, message_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING true""", consumer, message_id)
    return bool(inserted)


class RpcCalls:
    """Runs a state-changing call once per (method, key): in one transaction that first claims
    the key (a second delivery of the same call waits here for the first to commit or roll
    back), then runs the call, then stores its reply. A call that raises stores nothing, so
    nothing of it happened and it may run again."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def __call__(self, method: str, key: str,
                       run: Callable[[asyncpg.Connection], Awaitable[bytes]]) -> tuple[bytes, bool]:
        async with self.pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetchval(
                "INSERT INTO rpc_calls (method, key) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
                method, key)
            if not claimed:
                reply = await conn.fetchval("SELECT reply FROM rpc_calls WHERE method = $1 AND key = $2",
                                            method, key)
                return bytes(reply), True
            reply = await run(conn)
            await conn.execute("UPDATE rpc_calls SET reply = $3 WHERE method = $1 AND key = $2",
                               method, key, reply)
            return reply, False
