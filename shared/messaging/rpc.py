"""RPC in nameko's wire format over aio-pika.

A request is published to the durable topic exchange ``nameko-rpc`` with routing key
``<service>.<method>``, body ``{"args": [...], "kwargs": {...}}``, ``reply_to`` (the caller's
reply routing key) and ``correlation_id``. The service consumes its durable ``rpc-<service>``
queue (bound ``<service>.*``), runs the method, publishes ``{"result": ..., "error": ...}`` to
``nameko-rpc`` with the ``reply_to`` as routing key, and acks the request only after the
reply is confirmed. Callers listen on ``rpc.reply-<caller>-<uuid>`` (``x-expires`` 5 minutes).
"""
from __future__ import annotations

import asyncio
import inspect
import uuid
from typing import Any, Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage

from shared.logging import get_logger
from shared.messaging import context as ctx
from shared.messaging import wire
from shared.messaging.broker import RPC_EXCHANGE, Broker, Unroutable
from shared.messaging.consumer import Consumer
from shared.messaging.exceptions import (
    MalformedRequest, IncorrectSignature, MethodNotFound, RpcTimeout, UnknownService,
    UnserializableValueError, deserialize_exception, serialize_exception,
)
from shared.metrics import MESSAGES_HANDLED

log = get_logger(__name__)

RPC_QUEUE_TEMPLATE = "rpc-{}"
REPLY_QUEUE_TEMPLATE = "rpc.reply-{}-{}"
REPLY_QUEUE_TTL_MS = 300_000

RpcMethod = Callable[..., Awaitable[Any]]


class RpcServer:
    """Serves one service's RPC methods from its ``rpc-<service>`` queue."""

    def __init__(self, broker: Broker, service: str, methods: dict[str, RpcMethod], *,
                 prefetch: int) -> None:
        self.broker = broker
        self.service = service
        self.methods = methods
        self.prefetch = prefetch
        self.queue_name = RPC_QUEUE_TEMPLATE.format(service)
        self._signatures = {name: inspect.signature(m) for name, m in methods.items()}
        self._outcomes = {outcome: MESSAGES_HANDLED.labels(service, self.queue_name, outcome)
                          for outcome in ("ok", "error")}
        self._consumer = Consumer(service, self._handle)

    async def start(self) -> None:
        channel = await self.broker.channel(self.prefetch)
        queue = await self.broker.declare_bound_queue(
            channel, self.queue_name, RPC_EXCHANGE, f"{self.service}.*")
        await self._consumer.consume(queue)

    async def stop(self, grace: float) -> None:
        await self._consumer.stop(grace)

    def _resolve(self, routing_key: str) -> tuple[RpcMethod, inspect.Signature]:
        name = routing_key.split(".")[-1]
        method = self.methods.get(name)
        if method is None or routing_key != f"{self.service}.{name}":
            raise MethodNotFound(name)
        return method, self._signatures[name]

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        result: Any = None
        error: dict[str, Any] | None = None
        method_name = (message.routing_key or "").split(".")[-1]
        try:
            method, signature = self._resolve(message.routing_key or "")
            try:
                body = wire.loads(message.body)
                args, kwargs = body["args"], body["kwargs"]
            except (KeyError, TypeError):
                raise MalformedRequest("Message missing `args` or `kwargs`")
            except ValueError as exc:
                raise MalformedRequest(f"Message body refused: {exc}")
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise IncorrectSignature(str(exc))
            worker = ctx.worker_context(ctx.context_from_headers(message.headers),
                                        self.service, method_name)
            token = ctx.enter_worker(worker)
            try:
                result = await method(*args, **kwargs)
            finally:
                ctx.leave_worker(token)
        except Exception as exc:
            if not isinstance(exc, (MethodNotFound, MalformedRequest, IncorrectSignature)):
                log.exception("rpc method failed", method=method_name)
            error = serialize_exception(exc)
        try:
            payload = wire.dumps({"result": result, "error": error})
        except (TypeError, ValueError):
            error = serialize_exception(UnserializableValueError(result))
            payload = wire.dumps({"result": None, "error": error})

        if message.reply_to:
            try:
                await self.broker.publish(RPC_EXCHANGE, message.reply_to, payload,
                                          correlation_id=message.correlation_id)
            except Unroutable:
                log.warning("rpc caller gone before the reply", method=method_name)
        else:
            log.warning("rpc request without reply_to", method=method_name)
        await message.ack()
        self._outcomes["error" if error else "ok"].inc()


class RpcClient:
    """Calls any service over ``nameko-rpc``: ``await client.orders.health()``."""

    def __init__(self, broker: Broker, caller: str, *, timeout: float = 30.0,
                 prefetch: int = 256) -> None:
        self.broker = broker
        self.caller = caller
        self.timeout = timeout
        self.prefetch = prefetch
        self._reply_key = str(uuid.uuid4())
        self._pending: dict[str, asyncio.Future] = {}
        self._consumer = Consumer(caller, self._on_reply)
        self.queue_name = REPLY_QUEUE_TEMPLATE.format(caller, self._reply_key)

    async def start(self) -> None:
        channel = await self.broker.channel(self.prefetch)
        queue = await self.broker.declare_bound_queue(
            channel, self.queue_name, RPC_EXCHANGE, self._reply_key,
            arguments={"x-expires": REPLY_QUEUE_TTL_MS})
        await self._consumer.consume(queue)

    async def stop(self, grace: float = 1) -> None:
        await self._consumer.stop(grace)
        for future in self._pending.values():
            future.cancel()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        future = self._pending.pop(message.correlation_id or "", None)
        if future is None or future.done():
            log.debug("reply for an unknown or abandoned call")
            return
        try:
            future.set_result(wire.loads(message.body))
        except ValueError as exc:
            future.set_exception(MalformedRequest(f"reply is not valid JSON: {exc}"))

    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None,
                   **kwargs: Any) -> Any:
        """Call ``service.method``. Raises RpcTimeout when no reply comes within ``timeout``
        seconds, counted from now, and BrokerUnavailable when the request cannot be published:
        a broker that is down never stalls the caller."""
        timeout = timeout or self.timeout
        correlation_id = str(uuid.uuid4())
        future = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            async with asyncio.timeout(timeout):
                try:
                    await self.broker.publish(
                        RPC_EXCHANGE, f"{service}.{method}",
                        wire.dumps({"args": args, "kwargs": kwargs}),
                        headers=ctx.outgoing_headers(self.caller),
                        reply_to=self._reply_key, correlation_id=correlation_id)
                except Unroutable:
                    raise UnknownService(service) from None
                reply = await future
        except TimeoutError:
            raise RpcTimeout(f"{service}.{method}: no reply in {timeout}s") from None
        finally:
            self._pending.pop(correlation_id, None)
        if reply.get("error"):
            raise deserialize_exception(reply["error"])
        return reply.get("result")

    def __getattr__(self, service: str) -> "_ServiceProxy":
        if service.startswith("_"):
            raise AttributeError(service)
        return _ServiceProxy(self, service)


class _ServiceProxy:
    def __init__(self, client: RpcClient, service: str) -> None:
        self._client = client
        self._service = service

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._client.call(self._service, method, *args, **kwargs)
        return call
