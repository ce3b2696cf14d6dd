"""RPC in nameko's wire format over aio-pika, each state-changing call applied once.

A request is published to the durable topic exchange ``nameko-rpc`` with routing key
``<service>.<method>``, body ``{"args": [...], "kwargs": {...}}``, ``reply_to`` (the caller's
reply routing key) and ``correlation_id``. The service consumes ``rpc-<service>`` (bound
``<service>.*``; a quorum queue with a delivery limit, see ``topology``), runs the method,
publishes ``{"result": ..., "error": ...}`` to ``nameko-rpc`` with the ``reply_to`` as routing
key, and acks the request only after the reply is confirmed. Callers listen on
``rpc.reply-<caller>-<uuid>`` (``x-expires`` 5 minutes).

Delivery is at least once (a request is redelivered after a crash or a lost connection); the
effects are once. A method declares itself read-only or state-changing
(``shared.service.rpc``). A state-changing one runs through ``once``: in one transaction
that records the call's key with its reply, so a redelivered request returns the stored
reply without running again. The key is the caller's ``x-veikals-request-id`` header (one id
for a call the caller itself retries) or else the message's correlation id (what stock nameko
sends). Our callers also set ``x-veikals-deadline-ms``: a request that reaches the service
after its caller has given up is dropped, not run. (Not an AMQP ``expiration``: the quorum
queue would dead-letter expired requests, and the dead letters are for messages that failed.)
"""
from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from aio_pika.abc import AbstractIncomingMessage

from shared import inputs
from shared.logging import get_logger
from shared.messaging import context as ctx
from shared.messaging import topology, wire
from shared.messaging.broker import RPC_EXCHANGE, Broker, BrokerUnavailable, Unroutable
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
REQUEST_ID_HEADER = "x-veikals-request-id"
DEADLINE_HEADER = "x-veikals-deadline-ms"  # milliseconds since the epoch (an AMQP float is 32 bits)


@dataclass(frozen=True)
class RpcMethod:
    fn: Callable[..., Awaitable[Any]]
    # A state-changing method takes the connection of the transaction that records its reply
    # as its first argument.
    changes_state: bool = False


class Once(Protocol):
    """Runs ``run(conn)`` at most once to completion per (method, key), in a transaction that
    stores the reply it makes; returns that reply and whether it was stored before."""

    async def __call__(self, method: str, key: str,
                       run: Callable[[Any], Awaitable[bytes]]) -> tuple[bytes, bool]: ...


def reply_payload(result: Any = None, error: BaseException | None = None) -> bytes:
    serialized = serialize_exception(error) if error is not None else None
    try:
        return wire.dumps({"result": result, "error": serialized})
    except (TypeError, ValueError):
        return wire.dumps({"result": None, "error": serialize_exception(UnserializableValueError(result))})


class RpcServer:
    """Serves one service's RPC methods from its ``rpc-<service>`` queue."""

    def __init__(self, broker: Broker, service: str, methods: dict[str, RpcMethod], *,
                 prefetch: int, once: Once | None = None) -> None:
        if once is None and any(m.changes_state for m in methods.values()):
            raise ValueError("state-changing RPC methods need a store that applies each call once")
        self.broker = broker
        self.service = service
        self.methods = methods
        self.prefetch = prefetch
        self.once = once
        self.queue_name = RPC_QUEUE_TEMPLATE.format(service)
        self._signatures = {name: _callable_signature(m) for name, m in methods.items()}
        self._outcomes = {outcome: MESSAGES_HANDLED.labels(service, self.queue_name, outcome)
                          for outcome in ("ok", "error", "replayed", "expired")}
        self._consumer = Consumer(service, self._handle)

    async def start(self) -> None:
        await topology.declare(self.broker, topology.rpc_queues(self.service))
        channel = await self.broker.channel(self.prefetch)
        await self._consumer.consume(await topology.consumable(channel, self.queue_name))

    async def stop(self, grace: float) -> None:
        await self._consumer.stop(grace)

    def _resolve(self, routing_key: str) -> tuple[RpcMethod, inspect.Signature]:
        name = routing_key.split(".")[-1]
        method = self.methods.get(name)
        if method is None or routing_key != f"{self.service}.{name}":
            raise MethodNotFound(name)
        return method, self._signatures[name]

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        method_name = (message.routing_key or "").split(".")[-1]
        headers = message.headers or {}
        deadline = headers.get(DEADLINE_HEADER)
        if isinstance(deadline, int) and time.time() * 1000 > deadline:
            log.info("rpc request expired before it ran; dropped", method=method_name)
            await message.ack()
            self._outcomes["expired"].inc()
            return
        try:
            payload, outcome = await self._call(message, method_name, headers)
        except Exception as exc:
            if not isinstance(exc, (MethodNotFound, MalformedRequest, IncorrectSignature)):
                log.exception("rpc method failed", method=method_name)
            payload, outcome = reply_payload(error=exc), "error"
        if message.reply_to:
            try:
                await self.broker.publish(RPC_EXCHANGE, message.reply_to, payload,
                                          correlation_id=message.correlation_id)
            except Unroutable:
                log.warning("rpc caller gone before the reply", method=method_name)
        else:
            log.warning("rpc request without reply_to", method=method_name)
        await message.ack()
        self._outcomes[outcome].inc()

    async def _call(self, message: AbstractIncomingMessage, method_name: str,
                    headers: dict[str, Any]) -> tuple[bytes, str]:
        """The reply to the request, and ``ok`` or ``replayed`` (its stored reply)."""
        method, signature = self._resolve(message.routing_key or "")
        if (problem := inputs.header_problem(headers)) is not None:
            raise MalformedRequest(f"Message headers refused: {problem}")
        args, kwargs = _arguments(message.body)
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise IncorrectSignature(str(exc))
        token = ctx.enter_worker(ctx.worker_context(ctx.context_from_headers(headers), self.service, method_name))
        try:
            if not method.changes_state:
                return reply_payload(await method.fn(*args, **kwargs)), "ok"
            key = str(headers.get(REQUEST_ID_HEADER) or message.correlation_id or "")
            if not key:
                raise MalformedRequest("a state-changing call needs a correlation id or a request id")

            async def run(conn: Any) -> bytes:
                result = await method.fn(conn, *args, **kwargs)
                try:
                    return wire.dumps({"result": result, "error": None})
                except (TypeError, ValueError):
                    raise UnserializableValueError(result) from None  # and the effects roll back
            assert self.once is not None  # the constructor refuses state-changing methods without it
            with ctx.effects_of(f"{self.service}.{method_name}:{key}"):
                payload, replayed = await self.once(f"{self.service}.{method_name}", key, run)
            return payload, "replayed" if replayed else "ok"
        finally:
            ctx.leave_worker(token)


def _callable_signature(method: RpcMethod) -> inspect.Signature:
    """The arguments a caller passes: a state-changing method's connection is ours to give."""
    signature = inspect.signature(method.fn)
    if method.changes_state:
        parameters = list(signature.parameters.values())[1:]
        signature = signature.replace(parameters=parameters)
    return signature


def _arguments(body: bytes) -> tuple[list[Any], dict[str, Any]]:
    try:
        decoded = wire.loads(body)
        args, kwargs = decoded["args"], decoded["kwargs"]
    except (KeyError, TypeError):
        raise MalformedRequest("Message missing `args` or `kwargs`")
    except ValueError as exc:
        raise MalformedRequest(f"Message body refused: {exc}")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise MalformedRequest("`args` must be a list and `kwargs` an object")
    return args, kwargs


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
        # Declared on the consuming channel itself: after an outage longer than its x-expires
        # the queue is gone, and the channel's restore must make it again. (Its name is new
        # with every client, so no other declaration can disagree with this one.)
        channel = await self.broker.channel(self.prefetch)
        await self.broker.declare_topic_exchange(channel, RPC_EXCHANGE)
        queue = await channel.declare_queue(self.queue_name, durable=True,
                                            arguments={"x-expires": REPLY_QUEUE_TTL_MS})
        await queue.bind(RPC_EXCHANGE, routing_key=self._reply_key)
        await self._consumer.consume(queue)

    async def stop(self, grace: float = 1) -> None:
        await self._consumer.stop(grace)
        # The callers still waiting were not cancelled: they learn the client is gone.
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BrokerUnavailable("the RPC client stopped before the reply came"))

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            try:
                future.set_result(wire.loads(message.body, checked=False))
            except Exception as exc:  # not JSON, or a typed value kombu could not have written
                future.set_exception(MalformedRequest(f"reply cannot be read: {exc}"))
        else:
            log.debug("reply for an unknown or abandoned call")
        await message.ack()  # after the caller has it: a reply is never acked and lost

    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None,
                   request_id: str | None = None, **kwargs: Any) -> Any:
        """Call ``service.method``. Raises RpcTimeout when no reply comes within ``timeout``
        seconds, counted from now (the request's deadline then too: it is not run later), and
        BrokerUnavailable when the request cannot be published: a broker that is down never
        stalls the caller. ``request_id``: give the same one when calling again for the same
        purpose (after a timeout, say), and a state-changing method applies it once."""
        timeout = timeout or self.timeout
        correlation_id = str(uuid.uuid4())
        future = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        headers = {**ctx.outgoing_headers(self.caller), DEADLINE_HEADER: int((time.time() + timeout) * 1000)}
        if request_id is not None:
            headers[REQUEST_ID_HEADER] = request_id
        try:
            async with asyncio.timeout(timeout):
                try:
                    await self.broker.publish(
                        RPC_EXCHANGE, f"{service}.{method}",
                        wire.dumps({"args": args, "kwargs": kwargs}), headers=headers,
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
