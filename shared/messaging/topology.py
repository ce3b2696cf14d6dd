"""The queues a service consumes, declared so that no declaration can take the service down.

Each queue is declared, with its arguments, on a plain channel of its own. When RabbitMQ
refuses the declaration because the queue exists with other arguments (a rolling deploy that
changed them, a queue made by hand), only that channel closes: the refusal is logged and
counted (``veikals_topology_mismatches``), and the service consumes the queue as it is. The
channels that consume declare their queue passively, so a reconnect never repeats a refused
declaration (a robust channel restores its declarations at every reconnect, and a refused one
would close it again, each time).

Work queues (``rpc-<service>`` and each event handler's queue) are quorum queues with
``x-delivery-limit``: a message delivered that many times without being settled (its handler
crashes the process, on every replica) goes to the dead letters instead of round again. The
cost, measured with ``bench/queues.py``, is in docs/architecture.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel, AbstractQueue

from shared.logging import get_logger
from shared.messaging.broker import DEAD_LETTER_EXCHANGE, RPC_EXCHANGE, Broker, events_exchange
from shared.metrics import TOPOLOGY_MISMATCHES

log = get_logger(__name__)

# Deliveries of one message before the broker dead-letters it (a constant, not a setting: a
# queue argument that changed would make every redeclaration a mismatch).
DELIVERY_LIMIT = 8


@dataclass(frozen=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    bindings: tuple[tuple[str, str], ...] = ()  # (exchange, routing key)


def _work_queue(name: str, bindings: tuple[tuple[str, str], ...]) -> list[QueueSpec]:
    """A quorum queue whose poison messages go to ``<name>.dead-letter``."""
    return [
        QueueSpec(name, {"x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT,
                         "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                         "x-dead-letter-routing-key": name}, bindings),
        dead_letter_queue(name),
    ]


def dead_letter_queue(name: str) -> QueueSpec:
    return QueueSpec(f"{name}.dead-letter", bindings=((DEAD_LETTER_EXCHANGE, name),))


def rpc_queues(service: str) -> list[QueueSpec]:
    return _work_queue(f"rpc-{service}", ((RPC_EXCHANGE, f"{service}.*"),))


def handler_queue_name(source: str, event_type: str, service: str, method: str) -> str:
    """nameko's name for a service-pool event handler's queue."""
    return f"evt-{source}-{event_type}--{service}.{method}"


def event_queues(source: str, event_type: str, service: str, method: str) -> list[QueueSpec]:
    """The handler's queue, its retry queue (a failed delivery waits there for its expiration,
    then returns to the queue) and its dead-letter queue."""
    name = handler_queue_name(source, event_type, service, method)
    retry = QueueSpec(f"{name}.retry", {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": name})
    return [*_work_queue(name, ((events_exchange(source), event_type),)), retry]


async def declare(broker: Broker, specs: list[QueueSpec]) -> set[str]:
    """Declare every queue with its bindings (and the exchanges they need); the names of those
    that exist with other arguments, which are left as they are and reported."""
    refused: set[str] = set()
    channel = await broker.scratch_channel()
    try:
        exchanges = {RPC_EXCHANGE, DEAD_LETTER_EXCHANGE} | {e for s in specs for e, _ in s.bindings}
        for exchange in sorted(exchanges):
            await broker.declare_topic_exchange(channel, exchange)
        for spec in specs:
            try:
                queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                refused.add(spec.name)
                TOPOLOGY_MISMATCHES.labels(broker.name, spec.name).set(1)
                log.error("queue exists with other arguments; consuming it as it is",
                          queue=spec.name, wanted=spec.arguments, error=str(exc)[:300])
                await _close_quietly(channel)
                channel = await broker.scratch_channel()  # the broker closed the other one
                queue = await channel.declare_queue(spec.name, passive=True)
            else:
                TOPOLOGY_MISMATCHES.labels(broker.name, spec.name).set(0)
            for exchange, routing_key in spec.bindings:
                await queue.bind(exchange, routing_key=routing_key)
    finally:
        await _close_quietly(channel)
    return refused


def suite_queues(services: list[str], subscriptions: list[Any]) -> list[QueueSpec]:
    """Every work queue of the suite: each service's RPC queue and each handler's queues
    (``subscriptions``: ``shared.outbox.Subscription`` s, the manifest)."""
    return ([spec for service in services for spec in rpc_queues(service)]
            + [spec for s in subscriptions for spec in event_queues(s.source, s.event_type, s.service, s.method)])


async def recreate_if_empty(broker: Broker, specs: list[QueueSpec], refused: set[str]) -> list[str]:
    """Delete the refused queues that hold no message and no consumer, and declare them anew
    with their arguments; the names recreated."""
    recreated = []
    for spec in specs:
        if spec.name not in refused:
            continue
        channel = await broker.scratch_channel()
        try:
            queue = await channel.declare_queue(spec.name, passive=True)
            if queue.declaration_result.message_count == 0 and queue.declaration_result.consumer_count == 0:
                await queue.delete(if_unused=True, if_empty=True)
                recreated.append(spec.name)
        except aiormq.exceptions.ChannelPreconditionFailed:
            pass  # a message or a consumer came meanwhile: it stays as it is
        finally:
            await _close_quietly(channel)
    if recreated:
        await declare(broker, [s for s in specs if s.name in recreated])
    return recreated


async def consumable(channel: AbstractChannel, name: str) -> AbstractQueue:
    """The queue ``name`` (declared already) on a consuming channel: passively, so restoring
    the channel after a reconnect cannot be refused."""
    return await channel.declare_queue(name, passive=True)


async def _close_quietly(channel: AbstractChannel) -> None:
    try:
        await channel.close()
    except Exception:
        pass
