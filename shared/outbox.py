"""The outbox: an event is a row written in the business transaction; a relay publishes it.

``add_event(conn, ...)`` inserts the event inside the caller's transaction (and notifies the
relay on commit). The relay takes unpublished rows in order with ``FOR UPDATE SKIP LOCKED``
(so replicas never take the same row), publishes each with confirms and mandatory routing, and
marks it published in the same transaction. A crash before the mark republishes the event on
restart (consumers deduplicate by message id through the inbox); a crash before the publish
loses nothing, because the row is still there.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg

from shared.logging import get_logger
from shared.messaging import context as ctx
from shared.messaging import wire
from shared.messaging.broker import Broker, Unroutable, events_exchange
from shared.metrics import OUTBOX_PUBLISHED, PUBLISH_FAILURES

log = get_logger(__name__)

NOTIFY_CHANNEL = "veikals_outbox"


async def add_event(conn: asyncpg.Connection, service: str, event_type: str, data: Any) -> uuid.UUID:
    """Record ``event_type`` from ``service`` in the caller's transaction; returns its id."""
    if not conn.is_in_transaction():
        raise RuntimeError("add_event must run inside the transaction of the change it reports")
    event_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO outbox (id, exchange, routing_key, body, headers) VALUES ($1, $2, $3, $4, $5)",
        event_id, events_exchange(service), event_type, wire.dumps(data),
        json.dumps(ctx.outgoing_headers(service)))
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return event_id


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, broker: Broker, service: str, *,
                 poll_interval: float = 1.0, batch_size: int = 100) -> None:
        self.pool = pool
        self.broker = broker
        self.service = service
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._listener: asyncpg.Connection | None = None

    async def start(self) -> None:
        self._listener = await self.pool.acquire()
        await self._listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.service}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._listener is not None:
            try:
                await self._listener.remove_listener(NOTIFY_CHANNEL, self._on_notify)
            except Exception:
                pass
            await self.pool.release(self._listener)
            self._listener = None

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                while await self.relay_once() == self.batch_size:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay pass failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def relay_once(self) -> int:
        """Publish one batch of pending events; returns how many were taken."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT id, exchange, routing_key, body, headers FROM outbox
                   WHERE published_at IS NULL ORDER BY seq
                   LIMIT $1 FOR UPDATE SKIP LOCKED""", self.batch_size)
            if not rows:
                return 0
            results = await asyncio.gather(*(self._publish(r) for r in rows),
                                           return_exceptions=True)
            published = [r["id"] for r, res in zip(rows, results) if res is None]
            failed = [(r["id"], f"{type(res).__name__}: {res}") for r, res in zip(rows, results)
                      if res is not None]
            if published:
                await conn.execute(
                    "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1)",
                    published)
                OUTBOX_PUBLISHED.labels(self.service).inc(len(published))
            for event_id, error in failed:
                await conn.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
                    event_id, error[:1000])
            if failed:
                log.warning("outbox events not published; will retry", count=len(failed))
            return len(rows)

    async def _publish(self, row: asyncpg.Record) -> None:
        try:
            await self.broker.publish(
                row["exchange"], row["routing_key"], row["body"],
                headers=json.loads(row["headers"]), message_id=str(row["id"]))
        except Unroutable:
            # No service subscribes to this event type: nothing to deliver it to.
            PUBLISH_FAILURES.labels(self.service, "unroutable").inc()
            log.info("outbox event has no subscriber", routing_key=row["routing_key"])
        except Exception:
            PUBLISH_FAILURES.labels(self.service, "unconfirmed").inc()
            raise
