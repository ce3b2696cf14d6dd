"""The outbox: an event is a row written in the business transaction; a relay publishes it.

``add_event(conn, ...)`` inserts the event inside the caller's transaction (and notifies the
relay on commit). The relay takes due rows in order with ``FOR UPDATE SKIP LOCKED`` (so
replicas never take the same row), publishes each with confirms and mandatory routing, and
marks it published in the same transaction. A crash before the mark republishes the event on
restart (consumers deduplicate by message id through the inbox); a crash before the publish
loses nothing, because the row is still there. A row that fails waits (doubling, up to
``MAX_BACKOFF``) before it is tried again, and the rows behind it go out meanwhile.

Published rows are deleted after ``PUBLISHED_RETENTION`` and inbox entries after
``INBOX_RETENTION``: event bodies may carry personal data, and a redelivery comes long before.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import asyncpg

from shared.contracts.privacy import InventoryEntry, LegalBasis, Retention
from shared.logging import get_logger, redact_text
from shared.messaging import context as ctx
from shared.messaging import wire
from shared.messaging.broker import Broker, Unroutable, events_exchange
from shared.metrics import OUTBOX_PUBLISHED, PUBLISH_FAILURES
from shared.poller import NotifiedPoller

log = get_logger(__name__)

NOTIFY_CHANNEL = "veikals_outbox"
MAX_BACKOFF = dt.timedelta(minutes=5)
PUBLISHED_RETENTION = dt.timedelta(days=7)
INBOX_RETENTION = dt.timedelta(days=30)

# Every service's part of the record of processing for its outbox.
OUTBOX_INVENTORY = InventoryEntry(
    category="events awaiting delivery to other services", table="outbox", fields=["body"],
    purpose="deliver each change to the services that act on it, exactly once",
    legal_basis=LegalBasis.CONTRACT,
    retention=Retention(period_days=PUBLISHED_RETENTION.days, after="the event is published"),
    recipients=["the shop's own services"])


async def add_event(conn: asyncpg.Connection, service: str, event_type: str, data: Any) -> uuid.UUID:
    """Record ``event_type`` from ``service`` in the caller's transaction; returns its id."""
    if not conn.is_in_transaction():
        raise RuntimeError("add_event must run inside the transaction of the change it reports")
    event_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO outbox (id, exchange, routing_key, body, headers) VALUES ($1, $2, $3, $4, $5)",
        event_id, events_exchange(service), event_type, wire.dumps(data),
        wire.dumps(ctx.outgoing_headers(service)).decode())
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return event_id


class OutboxRelay(NotifiedPoller):
    def __init__(self, pool: asyncpg.Pool, broker: Broker, service: str, *,
                 poll_interval: float = 1.0, batch_size: int = 100) -> None:
        super().__init__(pool, NOTIFY_CHANNEL, f"outbox-relay-{service}", poll_interval)
        self.broker = broker
        self.service = service
        self.batch_size = batch_size

    async def work(self) -> None:
        while await self.relay_once() == self.batch_size and not self.stopping:
            pass  # a full batch went out: there may be more

    async def relay_once(self) -> int:
        """Publish one batch of due events; returns how many were published."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT id, exchange, routing_key, body, headers FROM outbox
                   WHERE published_at IS NULL AND next_attempt_at <= now() ORDER BY seq
                   LIMIT $1 FOR UPDATE SKIP LOCKED""", self.batch_size)
            if not rows:
                return 0
            results = await asyncio.gather(*(self._publish(r) for r in rows),
                                           return_exceptions=True)
            published = [r["id"] for r, res in zip(rows, results) if res is None]
            failed = [(r["id"], redact_text(f"{type(res).__name__}: {res}")[:1000])
                      for r, res in zip(rows, results) if res is not None]
            if published:
                await conn.execute(
                    "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1)",
                    published)
                OUTBOX_PUBLISHED.labels(self.service).inc(len(published))
            if failed:
                await conn.executemany(
                    """UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                       next_attempt_at = now() + least(interval '1 second' * power(2, attempts), $3)
                       WHERE id = $1""", [(event_id, error, MAX_BACKOFF) for event_id, error in failed])
                log.warning("outbox events not published; will retry", count=len(failed))
            return len(published)

    async def prune(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute("DELETE FROM outbox WHERE published_at < now() - $1::interval",
                               PUBLISHED_RETENTION)
            await conn.execute("DELETE FROM inbox WHERE handled_at < now() - $1::interval",
                               INBOX_RETENTION)

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
