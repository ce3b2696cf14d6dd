"""Two robust connections to RabbitMQ per service, one to publish and one to consume, with
confirmed, mandatory publishing.

Every publish waits for the broker's confirm and is mandatory: a message no queue would take
comes back as :class:`Unroutable` instead of vanishing. aio-pika's robust connections restore
channels, exchanges, queues, bindings and consumers after the broker comes back; a publish
that was in flight when the connection dropped raises, and the caller decides to retry (the
outbox relay does). Publishing and consuming are apart because RabbitMQ blocks a connection
that publishes while a resource alarm is on: the consuming one keeps acking meanwhile, so the
work in hand can finish and free the broker.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

import aio_pika
import aiormq
from aio_pika.channel import Channel
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from shared.logging import get_logger
from shared.messaging import wire

log = get_logger(__name__)

RPC_EXCHANGE = "nameko-rpc"
DEAD_LETTER_EXCHANGE = "veikals.dead-letter"


def events_exchange(service: str) -> str:
    return f"{service}.events"


class Unroutable(Exception):
    """The broker returned a mandatory message: no queue is bound for its routing key."""

    def __init__(self, exchange: str, routing_key: str) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        super().__init__(f"no queue bound for {routing_key!r} on exchange {exchange!r}")


class BrokerUnavailable(Exception):
    """The broker could not be reached, or did not confirm the publish in time."""


_CONNECTION_ERRORS = (
    aiormq.exceptions.AMQPConnectionError, aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ChannelClosed, ConnectionError,
)


class Broker:
    def __init__(self, url: str, *, name: str, publish_timeout: float = 30.0) -> None:
        self.url = url
        self.name = name
        self.publish_timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None  # publishing
        self._consuming: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self.url, client_properties={"connection_name": f"{self.name} (publish)"}, reconnect_interval=1)
        self._consuming = await aio_pika.connect_robust(
            self.url, client_properties={"connection_name": f"{self.name} (consume)"}, reconnect_interval=1)
        # Returns raise only on a channel opened with on_return_raises=True.
        self._publish_channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True)

    @property
    def connected(self) -> bool:
        return all(c is not None and not c.is_closed and c.connected.is_set()
                   for c in (self._connection, self._consuming))

    async def channel(self, prefetch: int) -> AbstractChannel:
        """A channel for consuming, with bounded prefetch; restored after reconnects."""
        assert self._consuming is not None, "connect() first"
        channel = await self._consuming.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=prefetch)
        return channel

    async def scratch_channel(self) -> AbstractChannel:
        """A plain channel for one declaration: an error closes it alone, and it is never
        restored (a robust channel would redeclare a refused queue at every reconnect)."""
        assert self._consuming is not None, "connect() first"
        channel = Channel(self._consuming)
        await channel.initialize()
        return channel

    async def transient_channel(self, prefetch: int) -> AbstractChannel:
        """A consuming channel that is never restored, for a queue that lives only as long as
        this connection (an exclusive one): after a reconnect, declare a new queue on a new
        channel (``on_reconnect``)."""
        channel = await self.scratch_channel()
        await channel.set_qos(prefetch_count=prefetch)
        return channel

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` each time the consuming connection is back after a loss, once its
        robust channels are restored. Whatever was published to a queue that lived only on
        the lost connection is gone."""
        assert self._consuming is not None, "connect() first"
        self._consuming.reconnect_callbacks.add(lambda _connection: callback())

    async def declare_topic_exchange(self, channel: AbstractChannel, name: str) -> AbstractExchange:
        return await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)

    async def _exchange(self, name: str) -> AbstractExchange:
        assert self._publish_channel is not None, "connect() first"
        if name == "":
            return self._publish_channel.default_exchange
        exchange = self._exchanges.get(name)
        if exchange is None:
            async with self._lock:
                exchange = self._exchanges.get(name)
                if exchange is None:
                    exchange = await self.declare_topic_exchange(self._publish_channel, name)
                    self._exchanges[name] = exchange
        return exchange

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, *,
        headers: dict[str, Any] | None = None, correlation_id: str | None = None,
        reply_to: str | None = None, message_id: str | None = None,
        expiration_ms: int | None = None,
    ) -> None:
        """Publish persistent, mandatory, and wait for the confirm.

        Raises :class:`Unroutable` when no queue takes the message, aio-pika's DeliveryError
        when the broker nacks it, and :class:`BrokerUnavailable` when the connection is lost
        or no confirm comes within ``publish_timeout`` (a robust channel would otherwise wait
        for the broker to come back, however long that takes).
        """
        # The properties aio_pika.Message would make, without building one (a relay publishes
        # thousands a second, and the Message was most of a publish's cost).
        properties = aiormq.spec.Basic.Properties(
            content_type=wire.CONTENT_TYPE, content_encoding=wire.CONTENT_ENCODING, headers=headers or {},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value, correlation_id=correlation_id,
            reply_to=reply_to, message_id=message_id,
            expiration=None if expiration_ms is None else str(int(expiration_ms)))
        try:
            async with asyncio.timeout(self.publish_timeout):
                await self._exchange(exchange)  # declared once
                assert self._publish_channel is not None
                if self._publish_channel.is_closed:
                    raise aiormq.exceptions.ChannelInvalidStateError("the publishing channel is closed")
                channel = await self._publish_channel.get_underlay_channel()
                await channel.basic_publish(body, exchange=exchange, routing_key=routing_key,
                                            properties=properties, mandatory=True)
        except aiormq.exceptions.PublishError as exc:  # a basic.return; a nack stays DeliveryError
            raise Unroutable(exchange, routing_key) from exc
        except TimeoutError as exc:
            raise BrokerUnavailable(f"no confirm within {self.publish_timeout}s") from exc
        except _CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        for connection in (self._consuming, self._connection):
            if connection is not None:
                await connection.close()
        self._connection = self._consuming = None

