"""Messaging in nameko's AMQP wire format over aio-pika: RPC, events, dead letters."""
from shared.messaging.broker import Broker, BrokerUnavailable, Unroutable
from shared.messaging.events import EventConsumer
from shared.messaging.exceptions import (
    IncorrectSignature, MalformedRequest, MethodNotFound, RemoteError, RpcTimeout,
    UnknownService, remote_exception,
)
from shared.messaging.rpc import RpcClient, RpcServer

__all__ = [
    "Broker", "BrokerUnavailable", "Unroutable", "EventConsumer", "IncorrectSignature", "MalformedRequest",
    "MethodNotFound", "RemoteError", "RpcTimeout", "UnknownService", "remote_exception",
    "RpcClient", "RpcServer",
]
