"""When a failure is worth trying again, and how long to wait before the next try.

A transient failure is one the same work would survive a little later: the database is
unreachable or restarting, a deadlock or a serialization failure chose this transaction, a
lock or statement timeout, no connection free in the pool, the broker or another service not
answering. Those are retried for minutes (``transient_retry_s``); any other error is the
message's own and is retried a few times only (``max_retries``), then dead-lettered.
"""
from __future__ import annotations

import asyncio
import random
import socket

import asyncpg

from shared.messaging.broker import BrokerUnavailable
from shared.messaging.exceptions import RpcTimeout

# Connection-level failures only: asyncpg's InterfaceError also means a programming error (a
# wrong number of arguments, a connection used twice), which no retry mends.
_TRANSIENT = (
    asyncpg.PostgresConnectionError, asyncpg.ConnectionDoesNotExistError, asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError, asyncpg.SerializationError, asyncpg.DeadlockDetectedError,
    asyncpg.LockNotAvailableError, asyncpg.QueryCanceledError, asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    ConnectionError, socket.gaierror, TimeoutError, asyncio.TimeoutError, BrokerUnavailable, RpcTimeout,
)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, _TRANSIENT)


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """The wait before try ``attempt + 1``: ``base`` doubling per attempt up to ``cap``, of which
    a random half ("equal jitter"), so that replicas that failed together do not retry together."""
    delay = min(cap, base * 2 ** attempt)
    return delay / 2 + (rng or random).uniform(0, delay / 2)
