"""The outbox: an event is a row written in the business transaction; a relay publishes it.

``Outbox.add(conn, ...)`` inserts the event inside the caller's transaction, in one statement;
``Outbox.sql`` gives events (``Outbox.event``, built where they happen) as parts of the
caller's own statement instead, several at once if it stores several changes. Either wakes the
service's relay in this process, which looks for the event at once and a few times more while
the transaction commits (``OutboxRelay.expect``); relays also poll, so another instance
publishes what one that stopped left behind. It sends no NOTIFY (PostgreSQL serialises the
commits of the transactions that send one); ``add_event`` on its own (tools, tests) still does.
Its id comes from ``context.effect_id()``: derived from the RPC call or the
event being handled when there is one, so work run again writes the same ids, and a row whose
id exists is not written twice. An event about a data subject carries the subject, its
version and when it occurred (``shared.subjects``), and is deleted by that subject's erasure.

The relay takes due rows in order with ``FOR UPDATE SKIP LOCKED`` (so replicas never take the
same row), publishes each with confirms and mandatory routing, and marks it published in the
same transaction. A crash before the mark republishes the event on restart (consumers
deduplicate by message id through the inbox); a crash before the publish loses nothing,
because the row is still there. A row that fails waits (doubling, up to ``MAX_BACKOFF``)
before it is tried again, and the rows behind it go out meanwhile.

At start the relay declares the queues of every subscriber the manifest
(``Subscription``) names for its events, so no event is published before its queue exists.
An event the broker cannot route although a subscriber is named is an alarm (an error log and
``veikals_publish_failures_total{reason="unroutable"}``) and stays pending; one of a type
nobody subscribes to is marked published (``reason="no_subscriber"``).

Published rows are deleted after ``PUBLISHED_RETENTION``, inbox entries after
``INBOX_RETENTION`` and RPC replies after ``RPC_REPLY_RETENTION``: they may carry personal data,
and a redelivery comes long before.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.contracts.privacy import InventoryEntry, LegalBasis, Retention
from shared.logging import get_logger, redact_text
from shared.messaging import context as ctx
from shared.messaging import topology, wire
from shared.messaging.broker import Broker, Unroutable, events_exchange
from shared.metrics import OUTBOX_PUBLISHED, PUBLISH_FAILURES
from shared.poller import NotifiedPoller
from shared.subjects import OCCURRED_HEADER, SUBJECT_HEADER, VERSION_HEADER, Subject, SubjectKeys, lock_id

log = get_logger(__name__)

NOTIFY_CHANNEL = "veikals_outbox"
MAX_BACKOFF = dt.timedelta(minutes=5)
PUBLISHED_RETENTION = dt.timedelta(days=7)
INBOX_RETENTION = dt.timedelta(days=30)
RPC_REPLY_RETENTION = dt.timedelta(days=7)

# Every service's part of the record of processing for its outbox and its RPC replies.
OUTBOX_INVENTORY = InventoryEntry(
    category="events awaiting delivery to other services", table="outbox", fields=["body", "headers", "subject"],
    purpose="deliver each change to the services that act on it, exactly once",
    legal_basis=LegalBasis.CONTRACT,
    retention=Retention(period_days=PUBLISHED_RETENTION.days, after="the event is published"),
    recipients=[])  # our own services only: no recipient outside the shop
RPC_REPLY_INVENTORY = InventoryEntry(
    category="replies to state-changing calls", table="rpc_calls", fields=["reply"],
    purpose="answer a repeated call with its first reply instead of acting twice",
    legal_basis=LegalBasis.CONTRACT,
    retention=Retention(period_days=RPC_REPLY_RETENTION.days, after="the call"),
    recipients=[])  # our own services only: no recipient outside the shop


@dataclass(frozen=True)
class Subscription:
    """A handler of one service for one event type of another (the topology manifest)."""

    source: str
    event_type: str
    service: str
    method: str


@dataclass(frozen=True)
class PendingEvent:
    """An event about to be stored (``pending_event``): its id and headers come from the work
    that causes it, so it is built there, even when another task stores it."""

    id: uuid.UUID
    event_type: str
    body: bytes
    headers: str
    subject: bytes | None = None  # the subject's keyed hash
    subject_name: str | None = None


def pending_event(service: str, event_type: str, data: Any, *, subject: Subject | None = None,
                  keys: SubjectKeys | None = None) -> PendingEvent:
    headers = wire.dumps(ctx.outgoing_headers(service)).decode()
    if subject is None:
        return PendingEvent(ctx.effect_id(), event_type, wire.dumps(data), headers)
    if keys is None:
        raise ValueError("an event about a subject needs the service's subject keys")
    return PendingEvent(ctx.effect_id(), event_type, wire.dumps(data), headers, keys(subject), str(subject))


@dataclass(frozen=True)
class EventSql:
    """Events as parts of a statement (``events_sql``): ``hold``, a CTE ``held`` taking their
    subjects' locks; ``store``, CTEs that number and store the events (``counted``, ``event``);
    ``args`` fill their parameters. Where a CTE stands does not decide when it runs: a caller
    that locks rows must read ``held`` first (``(SELECT count(*) FROM held) >= 0`` in their
    WHERE), so the subjects come before its rows, as an erasure takes them; else the locks are
    taken late, by ``counted``."""

    hold: str
    store: str
    args: list[Any]


def events_sql(service: str, events: list[PendingEvent], *, after: str | None = None,
               offset: int = 0) -> EventSql:
    """The SQL that stores ``events`` (at most one per subject: a subject's version counts once
    a statement), all or, when the caller's CTE ``after`` has no row, none. Parameters are
    numbered from ``offset + 1``, after the caller's own."""
    subjects = [e.subject for e in events if e.subject is not None]
    if len(set(subjects)) < len(subjects):
        raise ValueError("one statement stores at most one event about each subject")
    # The subjects are held in the order an erasure of several takes them (``subjects.forget``).
    locks = list(dict.fromkeys(lock_id(subject) for subject in sorted(subjects)))
    args: list[Any] = [events_exchange(service), [e.id for e in events], [e.event_type for e in events],
                       [e.body for e in events], [e.headers for e in events], [e.subject for e in events],
                       [e.subject_name for e in events], locks]
    return EventSql(*_events_parts(after, offset), args)


@functools.cache
def _events_parts(after: str | None, offset: int) -> tuple[str, str]:
    """``events_sql``'s hold and store, their parameters numbered from ``offset + 1``."""
    store = _STORE.format(gate=f"WHERE EXISTS (SELECT FROM {after})" if after else "")
    return tuple(re.sub(r"\$(\d+)", lambda m: f"${int(m.group(1)) + offset}", sql) for sql in (_HOLD, store))


async def add_event(conn: asyncpg.Connection, service: str, event_type: str, data: Any, *,
                    subject: Subject | None = None, keys: SubjectKeys | None = None,
                    notify: bool = True) -> uuid.UUID:
    """Record ``event_type`` from ``service`` in the caller's transaction; returns its id.

    One statement (a checkout's round trips are its cost): it takes the subject's lock, numbers
    the event, stores it and, with ``notify``, notifies the relays, which hear of it when the
    transaction commits. (A NOTIFY serialises the commits that send one, database-wide: a
    service's ``Outbox`` wakes its own relay instead.)"""
    if not conn.is_in_transaction():
        raise RuntimeError("add_event must run inside the transaction of the change it reports")
    event = pending_event(service, event_type, data, subject=subject, keys=keys)
    sql = events_sql(service, [event])
    wake = f"pg_notify('{NOTIFY_CHANNEL}', '')" if notify else "1"
    await conn.execute(f"WITH {sql.hold} {sql.store} SELECT {wake} FROM event", *sql.args)
    return event.id


# $1 the exchange; per event $2 id, $3 routing key, $4 body, $5 headers, $6 its subject's keyed
# hash, $7 the subject's name (both NULL for an event about no subject); $8 the subjects'
# locks, in the order to take them. A row whose id exists is not written twice.
_HOLD = """held AS MATERIALIZED (
        SELECT pg_advisory_xact_lock_shared(l)
        FROM (SELECT l FROM unnest($8::bigint[]) WITH ORDINALITY AS s(l, n) ORDER BY n) AS s),"""
_STORE = f"""incoming AS MATERIALIZED (
        SELECT * FROM unnest($2::uuid[], $3::text[], $4::bytea[], $5::text[], $6::bytea[], $7::text[])
            WITH ORDINALITY AS e(id, routing_key, body, headers, subject, name, n) {{gate}}),
    counted AS (  -- in the subjects' order, as every writer counts them
        INSERT INTO subject_versions AS s (subject, version)
        SELECT subject, 1 FROM incoming WHERE subject IS NOT NULL AND (SELECT count(*) FROM held) >= 0
        ORDER BY subject
        ON CONFLICT (subject) DO UPDATE SET version = s.version + 1 RETURNING subject, version),
    event AS (
        INSERT INTO outbox (id, exchange, routing_key, body, headers, subject)
        SELECT e.id, $1::text, e.routing_key, e.body, CASE WHEN e.subject IS NULL THEN e.headers::jsonb
            ELSE e.headers::jsonb || jsonb_build_object('{SUBJECT_HEADER}', e.name, '{VERSION_HEADER}', c.version,
                                                        '{OCCURRED_HEADER}', now()) END, e.subject
        FROM incoming e LEFT JOIN counted c USING (subject) ORDER BY e.n
        ON CONFLICT (id) DO NOTHING RETURNING 1)"""


# An outbox row whose body contains one of the values $1 (text[]).
_MENTIONS = """EXISTS (SELECT 1 FROM unnest($1::text[]) AS v
                       WHERE position(convert_to(v, 'UTF8') IN outbox.body) > 0)"""


async def forget_mentions(conn: asyncpg.Connection, values: list[str]) -> int:
    """Delete the published events whose body mentions one of ``values`` (an erased subject's
    ids, addresses and numbers in events that name no subject); how many."""
    if not values:
        return 0
    return int((await conn.execute(
        f"DELETE FROM outbox WHERE published_at IS NOT NULL AND {_MENTIONS}", values)).split()[-1])


async def mentioned(conn: asyncpg.Connection, values: list[str]) -> bool:
    """Whether any event, published or not, mentions one of ``values`` (the erasure's re-read)."""
    return bool(values) and await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM outbox WHERE {_MENTIONS})", values)


class Outbox:
    """One service's outbox: ``await outbox.add(conn, "profile_changed", data, subject=...)``.

    Once the service's relay runs (``relayed_by``), an event wakes that relay in this process
    instead of notifying every relay through PostgreSQL; the other instances' relays find it by
    polling, should this one stop before it is published."""

    def __init__(self, service: str, keys: SubjectKeys) -> None:
        self.service = service
        self.keys = keys
        self._relay: OutboxRelay | None = None

    def relayed_by(self, relay: "OutboxRelay | None") -> None:
        self._relay = relay

    async def add(self, conn: asyncpg.Connection, event_type: str, data: Any,
                  subject: Subject | None = None) -> uuid.UUID:
        relay = self._relay
        event_id = await add_event(conn, self.service, event_type, data, subject=subject, keys=self.keys,
                                   notify=relay is None)
        if relay is not None:
            relay.expect()
        return event_id

    def event(self, event_type: str, data: Any, subject: Subject | None = None) -> PendingEvent:
        """The event, built by the work that causes it, to be stored by ``sql`` (maybe with others')."""
        return pending_event(self.service, event_type, data, subject=subject, keys=self.keys)

    def sql(self, events: list[PendingEvent], *, after: str, offset: int) -> EventSql:
        """The events as parts of the caller's own statement (``events_sql``), which must wake
        the relay (``written``) once it has run. It sends no NOTIFY: with no relay in this
        process (while the service stops), the other instances find the events by polling."""
        return events_sql(self.service, events, after=after, offset=offset)

    def written(self) -> None:
        """Events went into the outbox by the caller's own statement (``sql``): relay them."""
        if self._relay is not None:
            self._relay.expect()


class OutboxRelay(NotifiedPoller):
    def __init__(self, pool: asyncpg.Pool, broker: Broker, service: str, *,
                 poll_interval: float = 1.0, batch_size: int = 100, min_interval: float = 0.005,
                 subscriptions: list[Subscription] | None = None) -> None:
        super().__init__(pool, NOTIFY_CHANNEL, f"outbox-relay-{service}", poll_interval, min_interval)
        self._chase: float | None = None  # the next wait while events written here are looked for
        self.broker = broker
        self.service = service
        self.batch_size = batch_size
        # None: no manifest (an event nobody receives is then only counted, never held back).
        self.subscriptions = None if subscriptions is None else [
            s for s in subscriptions if s.source == service]

    async def start(self) -> None:
        if self.subscriptions:
            await topology.declare(self.broker, [
                spec for s in self.subscriptions
                for spec in topology.event_queues(s.source, s.event_type, s.service, s.method)])
        await super().start()

    def expect(self) -> None:
        """An event is being written in this process: look for it from now on, often at first
        and then less often (its transaction commits soon, or rolls back and is never found)."""
        self._chase = self.min_interval
        self.wake()

    def next_wait(self) -> float:
        if self._chase is None:
            return self.poll_interval
        wait, self._chase = self._chase, self._chase * 2
        if self._chase > self.poll_interval:
            self._chase = None
        return wait

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
            await conn.execute("DELETE FROM rpc_calls WHERE created_at < now() - $1::interval",
                               RPC_REPLY_RETENTION)

    def _subscribed(self, event_type: str) -> bool:
        return self.subscriptions is not None and any(s.event_type == event_type for s in self.subscriptions)

    async def _publish(self, row: asyncpg.Record) -> None:
        try:
            await self.broker.publish(
                row["exchange"], row["routing_key"], row["body"],
                headers=json.loads(row["headers"]), message_id=str(row["id"]))
        except Unroutable:
            if self._subscribed(row["routing_key"]):
                PUBLISH_FAILURES.labels(self.service, "unroutable").inc()
                log.error("event not routable although a subscriber is named; it waits",
                          routing_key=row["routing_key"])
                raise
            PUBLISH_FAILURES.labels(self.service, "no_subscriber").inc()
            log.info("outbox event has no subscriber", routing_key=row["routing_key"])
        except Exception:
            PUBLISH_FAILURES.labels(self.service, "unconfirmed").inc()
            raise
