"""Outbound webhooks: written in the business transaction, delivered by a worker, retried.

``enqueue(conn, partner, event)`` stores the message in ``webhook_deliveries`` in
the caller's transaction: if the change rolls back there is nothing to send, and once it
commits nothing is lost, whether this service or the partner is down. The id is the
``webhook-id`` header, the same on every retry, so the partner can process each message once.

The worker claims as many due deliveries as it has free request slots (``FOR UPDATE SKIP
LOCKED``, with a lease token, so a crash mid-request only delays the next try and a worker whose
lease ran out cannot overwrite a newer result) and POSTs each one signed. 2xx is success. Redirects are
not followed. 410 disables the partner's endpoint until staff enable it again (its deliveries
wait, none are dropped). Anything else is retried after the next delay of the schedule, with
±10% jitter, or later if the partner's ``Retry-After`` asks for it; after the last attempt the
delivery is ``failed``, visible to staff, who can redeliver it by hand (the schedule starts
again). An endpoint our policy refuses fails at once: retrying would not make it safe. A partner
whose secret is missing from the environment keeps its deliveries waiting on the schedule: that
is a deployment mistake to fix, not a reason to give up.

Delivered messages are deleted after ``SETTLED_RETENTION``, failed ones after
``FAILED_RETENTION``, callbacks after ``CALLBACK_RETENTION``: their bodies carry personal data.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import random
import time
from typing import Any

import aiohttp
import asyncpg
from pydantic import BaseModel

from shared.contracts.privacy import InventoryEntry, LegalBasis, Retention
from shared.contracts.webhooks import WebhookEvent
from shared.logging import get_logger, redact_text
from shared.messaging.context import effect_id
from shared.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_LATENCY
from shared.poller import NotifiedPoller
from shared.webhooks.policy import DeliveryPolicy, EndpointRefused
from shared.webhooks.registry import MissingSecret, Partner, PartnerRegistry
from shared.webhooks.signing import signature_headers

log = get_logger(__name__)

MAX_PAYLOAD_BYTES = 256 * 1024
DELIVERY_ID_PATTERN = r"^msg_[0-9a-f]{32}$"  # the webhook-id: msg_ and 32 hex digits
MAX_RETRY_AFTER = dt.timedelta(hours=24)
NOTIFY_CHANNEL = "veikals_webhooks"
LEASE = dt.timedelta(minutes=2)
USER_AGENT = "Veikals-Webhooks/1"
SETTLED_RETENTION = dt.timedelta(days=30)
FAILED_RETENTION = dt.timedelta(days=90)
CALLBACK_RETENTION = dt.timedelta(days=90)

# Every service's part of the record of processing for its webhooks.
WEBHOOK_INVENTORY = [
    InventoryEntry(
        category="messages to processors", table="webhook_deliveries", fields=["body"],
        purpose="send each processor what it needs for its part of the contract, reliably",
        legal_basis=LegalBasis.CONTRACT,
        retention=Retention(period_days=SETTLED_RETENTION.days,
                            after="delivery (failed messages: 90 days after creation)"),
        recipients=["carrier", "accounting", "hosting", "sms"], clauses=["P13", "P14", "P15", "P18"]),
    InventoryEntry(
        category="processors' confirmations", table="webhook_callbacks", fields=["data"],
        purpose="know what each processor did with the data we sent it",
        legal_basis=LegalBasis.LEGAL_OBLIGATION,
        retention=Retention(period_days=CALLBACK_RETENTION.days, after="receipt"),
        recipients=["support"], clauses=["P18"]),
]


class PayloadTooLarge(ValueError):
    pass


class WebhookEnvelope(BaseModel):
    """The body of every webhook we send: Standard Webhooks' recommended shape."""

    type: str
    timestamp: dt.datetime
    data: dict[str, Any]


async def enqueue(conn: asyncpg.Connection, partner: Partner, event: WebhookEvent) -> str:
    """Queue ``event`` for ``partner`` in the caller's transaction; returns the webhook-id."""
    if not conn.is_in_transaction():
        raise RuntimeError("enqueue must run inside the transaction of the change it reports")
    if not isinstance(event, WebhookEvent):
        raise TypeError(f"{type(event).__name__} is not a webhook event we send")
    event_type = event.event_type
    envelope = WebhookEnvelope(type=event_type, timestamp=dt.datetime.now(dt.timezone.utc),
                               data=event.model_dump(mode="json"))
    body = envelope.model_dump_json().encode()
    if len(body) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(f"{event_type} payload is {len(body)} bytes; the cap is {MAX_PAYLOAD_BYTES}")
    # Derived from the RPC call or event being handled, if any: work run again queues nothing new.
    webhook_id = f"msg_{effect_id().hex}"
    await conn.execute(
        """INSERT INTO webhook_deliveries (id, partner, event_type, body) VALUES ($1, $2, $3, $4)
           ON CONFLICT (id) DO NOTHING""", webhook_id, partner.name, event_type, body)
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return webhook_id


def retry_after(value: str | None, now: dt.datetime) -> dt.timedelta | None:
    """``Retry-After`` as seconds or an HTTP date, capped at a day; None if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = int(value.strip())
        delay = MAX_RETRY_AFTER if seconds > MAX_RETRY_AFTER.total_seconds() else dt.timedelta(seconds=max(seconds, 0))
    except ValueError:
        try:
            delay = email.utils.parsedate_to_datetime(value) - now
        except (TypeError, ValueError, OverflowError):
            return None
    return min(max(delay, dt.timedelta(0)), MAX_RETRY_AFTER)


class DeliveryWorker(NotifiedPoller):
    def __init__(self, pool: asyncpg.Pool, registry: PartnerRegistry, policy: DeliveryPolicy,
                 service: str, *, schedule: list[float], timeout: float = 15.0,
                 concurrency: int = 16, poll_interval: float = 1.0) -> None:
        super().__init__(pool, NOTIFY_CHANNEL, f"webhooks-{service}", poll_interval)
        self.registry = registry
        self.policy = policy
        self.service = service
        self.schedule = list(schedule)
        # sock_connect, not connect: the wait for a free connection is not the partner's fault.
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(5.0, timeout),
                                             sock_read=timeout)
        self.concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None
        self._in_flight: set[asyncio.Task] = set()

    @property
    def max_attempts(self) -> int:
        return len(self.schedule) + 1

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=self.policy.resolver(), limit=self.concurrency),
            timeout=self.timeout, headers={"User-Agent": USER_AGENT})
        await super().start()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming, let the requests in flight finish for ``grace`` seconds, then cancel
        the rest and hand their deliveries back at once (the same webhook-id goes again)."""
        await super().stop(grace)
        if self._in_flight:
            _, unfinished = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def work(self) -> None:
        await self.deliver_due()

    async def deliver_due(self) -> int:
        """Claim as many due deliveries as there are free slots and start them; returns how many."""
        free = self.concurrency - len(self._in_flight)
        if free <= 0 or (self._in_flight and free < max(1, self.concurrency // 4)):
            return 0  # claim in batches: one claim query per freed slot would cost more than it saves
        rows = await self.pool.fetch(
            """UPDATE webhook_deliveries SET next_attempt_at = now() + $2::interval,
                   lease = gen_random_uuid()
               WHERE id IN (
                   SELECT d.id FROM webhook_deliveries d
                   WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                     AND NOT EXISTS (SELECT 1 FROM webhook_disabled_endpoints e WHERE e.partner = d.partner)
                   ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
               RETURNING id, partner, body, attempts, lease""", free, LEASE)
        for row in rows:
            task = asyncio.create_task(self._attempt(row))
            self._in_flight.add(task)
            task.add_done_callback(self._done)
        return len(rows)

    def _done(self, task: asyncio.Task) -> None:
        self._in_flight.discard(task)
        self.wake()  # a slot is free: look for more work

    async def drain(self) -> None:
        """Deliver until nothing is due or in flight (for tests and benchmarks)."""
        while await self.deliver_due() or self._in_flight:
            if self._in_flight:
                await asyncio.wait(set(self._in_flight), return_when=asyncio.FIRST_COMPLETED)

    async def prune(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                """DELETE FROM webhook_deliveries WHERE
                   (status = 'delivered' AND delivered_at < now() - $1::interval)
                   OR (status = 'failed' AND created_at < now() - $2::interval)""",
                SETTLED_RETENTION, FAILED_RETENTION)
            await conn.execute("DELETE FROM webhook_callbacks WHERE received_at < now() - $1::interval",
                               CALLBACK_RETENTION)

    async def _attempt(self, row: asyncpg.Record) -> None:
        assert self._session is not None
        attempt = row["attempts"] + 1
        partner = self.registry.get(row["partner"])
        status: int | None = None
        error: str | None = None
        wait: dt.timedelta | None = None
        permanent = False
        started_at = dt.datetime.now(dt.timezone.utc)
        started = time.perf_counter()
        try:
            if partner is None:
                raise EndpointRefused(f"partner {row['partner']!r} is no longer registered")
            url = str(partner.endpoint)
            self.policy.check_url(url)
            headers = signature_headers(row["id"], row["body"], partner.secrets())
            headers["Content-Type"] = "application/json"
            async with self._session.post(url, data=row["body"], headers=headers,
                                          allow_redirects=False) as response:
                status = response.status
                await response.content.read(4096)  # a little of the answer; never all of it
                wait = retry_after(response.headers.get("Retry-After"), started_at)
                if not 200 <= status < 300:
                    error = f"HTTP {status}" + (" (redirect not followed)" if 300 <= status < 400 else "")
        except asyncio.CancelledError:
            await self._hand_back(row)
            raise
        except EndpointRefused as exc:
            error, permanent = str(exc), True
        except MissingSecret as exc:
            log.error("partner secret missing; deliveries wait", partner=row["partner"])
            error = str(exc)
        except Exception as exc:  # a timeout, a refused connection, or anything unforeseen
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        latency_ms = int((time.perf_counter() - started) * 1000)
        WEBHOOK_LATENCY.labels(self.service, row["partner"]).observe(latency_ms / 1000)
        error = redact_text(error)[:1000] if error else None
        await self._record(row, attempt, started_at, status, latency_ms, error, wait, permanent)

    async def _hand_back(self, row: asyncpg.Record) -> None:
        """Shutting down mid-request: make the delivery due again, for the next instance."""
        try:
            await asyncio.shield(self.pool.execute(
                """UPDATE webhook_deliveries SET next_attempt_at = now(), lease = NULL
                   WHERE id = $1 AND lease = $2""", row["id"], row["lease"]))
        except Exception:
            pass  # the lease runs out on its own

    async def _record(self, row: asyncpg.Record, attempt: int, started_at: dt.datetime,
                      status: int | None, latency_ms: int, error: str | None,
                      wait: dt.timedelta | None, permanent: bool) -> None:
        delivery_id, partner, lease = row["id"], row["partner"], row["lease"]
        if error is None:
            outcome, sql, args = "delivered", """
                UPDATE webhook_deliveries SET status = 'delivered', attempts = $3, lease = NULL,
                    delivered_at = now(), last_status = $4, last_error = NULL
                WHERE id = $1 AND lease = $2 RETURNING true""", (attempt, status)
        elif status == 410:
            outcome, sql, args = "disabled", """
                UPDATE webhook_deliveries SET attempts = $3, last_status = 410, last_error = $4,
                    next_attempt_at = now(), lease = NULL
                WHERE id = $1 AND lease = $2 RETURNING true""", (
                attempt, "endpoint gone (410): disabled until staff enable it")
        elif permanent or attempt >= self.max_attempts:
            outcome, sql, args = "failed", """
                UPDATE webhook_deliveries SET status = 'failed', attempts = $3, lease = NULL,
                    last_status = $4, last_error = $5
                WHERE id = $1 AND lease = $2 RETURNING true""", (attempt, status, error)
        else:
            delay = dt.timedelta(seconds=self.schedule[attempt - 1] * random.uniform(0.9, 1.1))
            if wait is not None and status in (429, 503):
                delay = max(delay, wait)
            outcome, sql, args = "retry", """
                UPDATE webhook_deliveries SET attempts = $3, last_status = $4, last_error = $5,
                    next_attempt_at = now() + $6::interval, lease = NULL
                WHERE id = $1 AND lease = $2 RETURNING true""", (attempt, status, error, delay)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO webhook_attempts (delivery_id, attempt, started_at, status_code, latency_ms, error)
                   VALUES ($1, $2, $3, $4, $5, $6)""",
                delivery_id, attempt, started_at, status, latency_ms, error)
            if not await conn.fetchval(sql, delivery_id, lease, *args):
                # The lease ran out and another worker (or a redelivery) took over: its result stands.
                log.warning("webhook attempt settled after its lease; result not applied",
                            delivery=delivery_id)
                outcome = "stale"
            elif outcome == "disabled":
                await conn.execute(
                    """INSERT INTO webhook_disabled_endpoints (partner, reason) VALUES ($1, $2)
                       ON CONFLICT (partner) DO NOTHING""",
                    partner, f"HTTP 410 Gone for {delivery_id}")
                log.warning("partner endpoint disabled after 410", partner=partner)
            elif outcome == "failed":
                log.error("webhook delivery failed for good", partner=partner, delivery=delivery_id)
        WEBHOOK_ATTEMPTS.labels(self.service, partner, outcome).inc()


async def redeliver(pool: asyncpg.Pool, delivery_id: str) -> str | None:
    """Send a settled (failed or delivered) message again, same webhook-id, on a fresh schedule.
    Returns the status it had, or None when there is no such message."""
    row = await pool.fetchrow(
        """UPDATE webhook_deliveries d SET status = 'pending', attempts = 0, next_attempt_at = now(),
               lease = NULL
           FROM (SELECT id, status FROM webhook_deliveries WHERE id = $1 FOR UPDATE) old
           WHERE d.id = old.id AND old.status IN ('failed', 'delivered')
           RETURNING old.status""", delivery_id)
    if row is not None:
        return row["status"]
    return await pool.fetchval("SELECT status FROM webhook_deliveries WHERE id = $1", delivery_id)


async def enable_endpoint(pool: asyncpg.Pool, partner: str) -> bool:
    """Lift a 410 disablement; the partner's waiting deliveries go out. False if it was not disabled."""
    return await pool.fetchval(
        "DELETE FROM webhook_disabled_endpoints WHERE partner = $1 RETURNING true", partner) is True
