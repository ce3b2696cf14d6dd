"""A queue consumer that runs each delivery as a task and can stop gracefully.

Manual acks only: the handler acks (or retries or dead-letters) when it is done. ``stop()``
cancels the broker-side consumer so no new deliveries arrive, then waits for the deliveries
in hand to finish; anything unacked when the connection closes is redelivered by RabbitMQ.
"""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from shared.logging import get_logger
from shared.metrics import MESSAGE_LATENCY

log = get_logger(__name__)


class Consumer:
    def __init__(self, service: str, handle: Callable[[AbstractIncomingMessage], Awaitable[None]]):
        self.service = service
        self._handle = handle
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._in_flight: set[asyncio.Task] = set()

    async def consume(self, queue: AbstractQueue) -> None:
        self._queue = queue
        self._latency = MESSAGE_LATENCY.labels(self.service, queue.name)
        self._tag = await queue.consume(self._on_message, no_ack=False)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # aio-pika runs each delivery in a task of its own; remember it for a graceful stop.
        task = asyncio.current_task()
        self._in_flight.add(task)
        started = time.perf_counter()
        try:
            await self._handle(message)
        except Exception:
            # The handler could not settle the message (a publish it needed failed, or the
            # channel is gone). Return it to the queue rather than hold a prefetch slot forever;
            # on a lost channel RabbitMQ requeues it anyway.
            log.exception("delivery not settled; requeued", queue=self._queue.name if self._queue else None)
            try:
                await message.nack(requeue=True)
            except Exception:
                pass
        finally:
            self._in_flight.discard(task)
            self._latency.observe(time.perf_counter() - started)

    async def stop(self, grace: float) -> None:
        if self._queue is not None and self._tag is not None:
            try:
                # A robust channel waits for the broker to return; a closing service does not.
                async with asyncio.timeout(min(grace, 5) or 0.1):
                    await self._queue.cancel(self._tag)
            except Exception:
                log.warning("consumer cancel failed; closing the connection ends it", queue=self._queue.name)
            self._tag = None
        if self._in_flight:
            done, pending = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in pending:
                task.cancel()
