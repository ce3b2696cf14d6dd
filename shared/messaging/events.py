"""Events in nameko's wire format, with retries and a dead-letter path.

A service's events go to its durable topic exchange ``<service>.events`` with the event type
as routing key and the event's data as body. A handler consumes a durable queue named as
nameko's service-pool handlers do, ``evt-<source>-<event>--<service>.<method>``.

A delivery whose handler fails is republished (same body, headers and message id, attempt
count in ``x-veikals-attempt``) to ``<queue>.retry`` with an expiration of ``retry_delay_ms``;
when it expires the retry queue dead-letters it back to the queue. After ``max_retries``
retries, or at once when the body cannot be decoded, it is published to the
``veikals.dead-letter`` exchange and lands in ``<queue>.dead-letter`` with the error, where an
operator can inspect and replay it. The original is acked only after that publish is
confirmed, so nothing is dropped on the way.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage

from shared.logging import get_logger, redact_text
from shared.messaging import context as ctx
from shared.messaging import wire
from shared.messaging.broker import DEAD_LETTER_EXCHANGE, Broker, events_exchange
from shared.messaging.consumer import Consumer
from shared.metrics import MESSAGES_HANDLED

log = get_logger(__name__)

ATTEMPT_HEADER = "x-veikals-attempt"
ERROR_HEADER = "x-veikals-error"
QUEUE_HEADER = "x-veikals-queue"

# Called with the event's data and its message id (None when the publisher set none, as stock
# nameko does). Returns False when it skipped a message it had already applied.
EventHandler = Callable[[Any, str | None], Awaitable[bool | None]]


def handler_queue_name(source: str, event_type: str, service: str, method: str) -> str:
    return f"evt-{source}-{event_type}--{service}.{method}"


class EventConsumer:
    def __init__(self, broker: Broker, *, service: str, method: str, source: str,
                 event_type: str, handler: EventHandler, prefetch: int, max_retries: int,
                 retry_delay_ms: int) -> None:
        self.broker = broker
        self.service = service
        self.method = method
        self.source = source
        self.event_type = event_type
        self.handler = handler
        self.prefetch = prefetch
        self.max_retries = max_retries
        self.retry_delay_ms = retry_delay_ms
        self.queue_name = handler_queue_name(source, event_type, service, method)
        self.retry_queue = f"{self.queue_name}.retry"
        self.dead_letter_queue = f"{self.queue_name}.dead-letter"
        self._outcomes = {outcome: MESSAGES_HANDLED.labels(service, self.queue_name, outcome)
                          for outcome in ("ok", "duplicate", "retried", "dead_lettered")}
        self._consumer = Consumer(service, self._handle)

    async def start(self) -> None:
        channel = await self.broker.channel(self.prefetch)
        queue = await self.broker.declare_bound_queue(
            channel, self.queue_name, events_exchange(self.source), self.event_type)
        # The delay is each message's expiration, not a queue argument: a changed setting must
        # not make the redeclaration fail.
        await channel.declare_queue(self.retry_queue, durable=True, arguments={
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.queue_name,
        })
        await self.broker.declare_bound_queue(
            channel, self.dead_letter_queue, DEAD_LETTER_EXCHANGE, self.queue_name)
        await self._consumer.consume(queue)

    async def stop(self, grace: float) -> None:
        await self._consumer.stop(grace)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        headers = dict(message.headers or {})
        attempt = int(headers.get(ATTEMPT_HEADER, 0) or 0)
        try:
            data = wire.loads(message.body)
        except Exception as exc:  # not JSON, or a typed value kombu could not have written
            await self._dead_letter(message, headers, f"undecodable body: {exc}")
            return
        worker = ctx.worker_context(ctx.context_from_headers(headers), self.service, self.method)
        token = ctx.enter_worker(worker)
        try:
            applied = await self.handler(data, message.message_id)
        except Exception as exc:
            log.exception("event handler failed", queue=self.queue_name, attempt=attempt)
            if attempt < self.max_retries:
                headers[ATTEMPT_HEADER] = attempt + 1
                await self._republish("", self.retry_queue, message, headers,
                                      expiration_ms=self.retry_delay_ms)
                self._outcomes["retried"].inc()
            else:
                await self._dead_letter(message, headers, f"{type(exc).__name__}: {exc}")
            return
        finally:
            ctx.leave_worker(token)
        await message.ack()
        self._outcomes["duplicate" if applied is False else "ok"].inc()

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
