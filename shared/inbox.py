"""The inbox: a consumer records each message id it handled, in the transaction of its effect.

``first_delivery`` returns False when ``consumer`` has already handled ``message_id``; the
caller then skips the effect. Because the row and the effect commit together, a redelivered
message (after a crash, a lost ack or a retry) changes nothing twice.
"""
from __future__ import annotations

import asyncpg


async def first_delivery(conn: asyncpg.Connection, consumer: str, message_id: str) -> bool:
    if not conn.is_in_transaction():
        raise RuntimeError("first_delivery must run inside the transaction of the effect")
    inserted = await conn.fetchval(
        """INSERT INTO inbox (consumer, message_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING true""", consumer, message_id)
    return bool(inserted)
