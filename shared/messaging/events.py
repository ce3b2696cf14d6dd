"""Events in nameko's wire format, with retries that ride out a blip and a dead-letter path.

A service's events go to its durable topic exchange ``<service>.events`` with the event type
as routing key and the event's data as body. A handler consumes a queue named as nameko's
service-pool handlers do, ``evt-<source>-<event>--<service>.<method>`` (declared by
``topology``: a quorum queue with a delivery limit).

When the handler fails:

- a transient failure (``retry.is_transient``: the database away, a deadlock, a timeout) is
  tried again in place, with backoff and jitter, for up to ``transient_retry_s``: a database
  failover delays the queue, it does not empty it into the dead letters;
- any other failure is republished (same body, headers and message id, attempt count in
  ``x-veikals-attempt``) to ``<queue>.retry`` with an expiration of ``retry_delay_ms``,
  doubling with jitter per attempt; when it expires the retry queue dead-letters it back;
- after ``max_retries`` such retries, or at once for a body that cannot be decoded, it is
  published to the ``veikals.dead-letter`` exchange and lands in ``<queue>.dead-letter`` with
  the error, where an operator can inspect and replay it. A replayed dead letter starts
  afresh (its attempt count and error go).

The original is acked only after that publish is confirmed, so nothing is dropped on the way.
A message that crashes the process never gets that far: the queue's delivery limit sends it
to ``<queue>.dead-letter`` after ``topology.DELIVERY_LIMIT`` deliveries.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage

from shared import inputs
from shared.logging import get_logger, redact_text
from shared.messaging import context as ctx
from shared.messaging import topology, wire
from shared.messaging.broker import DEAD_LETTER_EXCHANGE, Broker
from shared.messaging.consumer import Consumer
from shared.messaging.retry import backoff, is_transient
from shared.metrics import MESSAGES_HANDLED

log = get_logger(__name__)

ATTEMPT_HEADER = "x-veikals-attempt"
ERROR_HEADER = "x-veikals-error"
QUEUE_HEADER = "x-veikals-queue"
# The broker's bookkeeping of earlier dead-lettering, dropped when we republish a message.
_BROKER_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
                   "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason", "x-delivery-count")
TRANSIENT_BASE_S, TRANSIENT_CAP_S = 0.5, 30.0


@dataclass(frozen=True)
class Delivery:
    data: Any
    message_id: str | None  # None when the publisher set none, as stock nameko does
    headers: dict[str, Any]


# Handles one delivery; returns its outcome for the metrics (``ok``, ``duplicate``, ``stale``,
# ``erased``), or None for ``ok``.
EventHandler = Callable[[Delivery], Awaitable[str | None]]


class EventConsumer:
    def __init__(self, broker: Broker, *, service: str, method: str, source: str,
                 event_type: str, handler: EventHandler, prefetch: int, max_retries: int,
                 retry_delay_ms: int, transient_retry_s: float = 600.0) -> None:
        self.broker = broker
        self.service = service
        self.method = method
        self.source = source
        self.event_type = event_type
        self.handler = handler
        self.prefetch = prefetch
        self.max_retries = max_retries
        self.retry_delay_ms = retry_delay_ms
        self.transient_retry_s = transient_retry_s
        self.queue_name = topology.handler_queue_name(source, event_type, service, method)
        self.retry_queue = f"{self.queue_name}.retry"
        self.dead_letter_queue = f"{self.queue_name}.dead-letter"
        self._outcomes = {outcome: MESSAGES_HANDLED.labels(service, self.queue_name, outcome)
                          for outcome in ("ok", "duplicate", "stale", "erased", "retried", "dead_lettered")}
        self._consumer = Consumer(service, self._handle)
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self._stopping.clear()
        await topology.declare(self.broker, topology.event_queues(
            self.source, self.event_type, self.service, self.method))
        channel = await self.broker.channel(self.prefetch)
        await self._consumer.consume(await topology.consumable(channel, self.queue_name))

    async def stop(self, grace: float) -> None:
        self._stopping.set()  # a delivery waiting to retry a transient failure goes back now
        await self._consumer.stop(grace)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        headers = dict(message.headers or {})
        replayed = ERROR_HEADER in headers or any(
            isinstance(d, dict) and d.get("reason") == "delivery_limit" for d in headers.get("x-death") or [])
        for name in (ERROR_HEADER, QUEUE_HEADER, *_BROKER_HEADERS):
            headers.pop(name, None)
        attempt = 0 if replayed else int(headers.get(ATTEMPT_HEADER, 0) or 0)
        try:
            data = wire.loads(message.body)
        except Exception as exc:  # not JSON, refused text, or a typed value kombu could not have written
            await self._dead_letter(message, headers, f"undecodable body: {exc}")
            return
        if (problem := inputs.header_problem(headers)) is not None:
            await self._dead_letter(message, headers, f"headers refused: {problem}")
            return
        delivery = Delivery(data, message.message_id, headers)
        worker = ctx.worker_context(ctx.context_from_headers(headers), self.service, self.method)
        token = ctx.enter_worker(worker)
        try:
            outcome = await self._run(delivery)
        except _Requeue:
            await message.nack(requeue=True)
            return
        except Exception as exc:
            log.exception("event handler failed", queue=self.queue_name, attempt=attempt)
            if attempt < self.max_retries:
                headers[ATTEMPT_HEADER] = attempt + 1
                delay = backoff(attempt, self.retry_delay_ms / 1000, 3600)
                await self._republish("", self.retry_queue, message, headers, expiration_ms=int(delay * 1000))
                self._outcomes["retried"].inc()
            else:
                await self._dead_letter(message, headers, f"{type(exc).__name__}: {exc}")
            return
        finally:
            ctx.leave_worker(token)
        await message.ack()
        self._outcomes[outcome or "ok"].inc()

    async def _run(self, delivery: Delivery) -> str | None:
        """The handler, tried again in place while it fails transiently."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.transient_retry_s
        tries = 0
        while True:
            try:
                return await self.handler(delivery)
            except Exception as exc:
                if not is_transient(exc) or loop.time() >= deadline:
                    raise
                if self._stopping.is_set():
                    raise _Requeue() from exc
                delay = min(backoff(tries, TRANSIENT_BASE_S, TRANSIENT_CAP_S), deadline - loop.time())
                tries += 1
                log.warning("transient failure; trying again", queue=self.queue_name,
                            error=type(exc).__name__, retry_in_s=round(delay, 2), tries=tries)
                try:
                    await asyncio.wait_for(self._stopping.wait(), delay)
                except asyncio.TimeoutError:
                    pass

    async def _dead_letter(self, message: AbstractIncomingMessage, headers: dict[str, Any],
                           error: str) -> None:
        error = redact_text(error)[:1000]
        log.error("message dead-lettered", queue=self.queue_name, error=error)
        headers = {**headers, ERROR_HEADER: error, QUEUE_HEADER: self.queue_name}
        await self._republish(DEAD_LETTER_EXCHANGE, self.queue_name, message, headers)
        self._outcomes["dead_lettered"].inc()

    async def _republish(self, exchange: str, routing_key: str,
                         message: AbstractIncomingMessage, headers: dict[str, Any],
                         expiration_ms: int | None = None) -> None:
        await self.broker.publish(
            exchange, routing_key, message.body, headers=headers,
            message_id=message.message_id, correlation_id=message.correlation_id,
            expiration_ms=expiration_ms)
        await message.ack()


class _Requeue(Exception):
    """The service is stopping while a delivery waits to retry: it goes back to its queue."""
