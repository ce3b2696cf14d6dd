"""Access tokens that accounts has revoked, refused by every instance of every service.

An access token is verified by its signature alone, so before this a token of a closed account
or an ended session lived on in other services until it expired. Now accounts publishes
``access_revoked`` (:class:`AccessRevoked`) in the transaction that ends a session or closes
an account, and every instance keeps the revocations in memory (:class:`Revocations`, which
``shared.auth.TokenVerifier`` asks on each request: no database round trip).

:class:`RevocationFeed` keeps one instance's list current. Every instance must see every
revocation, so a service-pool queue (one instance gets each event) will not do: like nameko's
broadcast handlers, each instance binds a queue of its own, exclusive and auto-deleted,
``evt-accounts-access_revoked--<service>.revocations-<uuid>``, to ``accounts.events``. Then it
loads the revocations accounts still knows (``accounts.access_revocations``, over RPC): bound
first, loaded second, so none falls between. The queue lives only as long as the broker
connection; after a reconnect the instance binds a new one and loads again, since what was
published meanwhile is lost to it.

When accounts cannot be asked (not started yet, away), the instance serves anyway, with the
revocations it has received since it bound its queue, and asks again in the background (1 s
doubling to 30 s); ``veikals_revocations_behind`` is 1 meanwhile, each failure is logged. A
token revoked before then is refused by accounts at once and here only once accounts answers
or the token expires, as before; a fresh instance that cannot reach accounts usually cannot
read its JWKS either, and then refuses every token with 503 anyway.

Nobody subscribes to ``access_revoked`` in the topology manifest (``services/topology.py``
lists durable handler queues), so when no instance is listening the outbox relay marks it
published (``reason="no_subscriber"``) instead of holding it: an instance that starts later
loads it over RPC.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from typing import Callable, Literal

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from pydantic import BaseModel, ConfigDict, Field

from shared.logging import get_logger
from shared.messaging import Broker, RpcClient, wire
from shared.messaging.broker import events_exchange
from shared.messaging.retry import backoff
from shared.metrics import REVOCATION_LOADS, REVOCATIONS_BEHIND, REVOCATIONS_HELD

log = get_logger(__name__)

SOURCE, EVENT_TYPE = "accounts", "access_revoked"
LOAD_METHOD = "access_revocations"
LOAD_TIMEOUT_S = 5.0
RETRY_BASE_S, RETRY_CAP_S = 1.0, 30.0
PRUNE_EVERY_S = 60.0


class AccessRevoked(BaseModel):
    """Accounts revoked access tokens: of one session (signed out, ended, its refresh token
    reused) or of every session of the account (closed). Published by accounts on
    ``accounts.events``; declared here because every service's token verifier reads it."""

    model_config = ConfigDict(frozen=True)  # extra fields (a publisher's newer version) are ignored

    type: Literal["access_revoked"] = "access_revoked"
    account_id: uuid.UUID
    session_id: uuid.UUID | None = Field(
        default=None, description="the session whose tokens stop; none: every session of the account")
    revoked_at: dt.datetime = Field(description="tokens issued at or before this instant are refused")
    expires_at: dt.datetime = Field(
        description="the last of those tokens expires by then (revoked_at + the access-token lifetime)")
    reason: str


class Revocations:
    """The revocations whose tokens may still be alive, by (account, session or None); no I/O.

    A token is refused when its ``sub`` is the account, its ``sid`` the session (or the
    revocation covers every session), and its ``iat`` is at or before ``revoked_at``. A token
    without ``iat`` cannot show it came later, so it is refused too. An entry is forgotten at
    its ``expires_at``: every token it covers has expired by then."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._entries: dict[tuple[str, str | None], tuple[float, float]] = {}  # -> (revoked_at, expires_at)
        self._pruned_at = clock()

    def add(self, revoked: AccessRevoked) -> None:
        now = self._clock()
        at, until = revoked.revoked_at.timestamp(), revoked.expires_at.timestamp()
        if until <= now:
            return
        key = (str(revoked.account_id), None if revoked.session_id is None else str(revoked.session_id))
        if (known := self._entries.get(key)) is not None:  # the later of both covers both
            at, until = max(at, known[0]), max(until, known[1])
        self._entries[key] = (at, until)
        if now - self._pruned_at >= PRUNE_EVERY_S:
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
            self._pruned_at = now

    def refuses(self, account: str, session: str | None, issued_at: float | None) -> bool:
        now = self._clock()
        for key in ((account, session), (account, None)):
            entry = self._entries.get(key)
            if entry is not None and entry[1] > now and (issued_at is None or issued_at <= entry[0]):
                return True
        return False

    def __len__(self) -> int:
        now = self._clock()
        return sum(1 for _, until in self._entries.values() if until > now)


def queue_name(service: str) -> str:
    """nameko's name for a broadcast handler's queue: the service-pool name plus an id of the
    instance (here, of the instance's current broker connection)."""
    return f"evt-{SOURCE}-{EVENT_TYPE}--{service}.revocations-{uuid.uuid4().hex}"


class RevocationFeed:
    """Feeds ``revocations`` from ``accounts.events`` and ``accounts.access_revocations``."""

    def __init__(self, broker: Broker, rpc: RpcClient, service: str, revocations: Revocations) -> None:
        self.broker = broker
        self.rpc = rpc
        self.service = service
        self.revocations = revocations
        self._channel: AbstractChannel | None = None
        self._catching_up: asyncio.Task | None = None
        self._stopped = False
        self._behind = REVOCATIONS_BEHIND.labels(service)
        REVOCATIONS_HELD.labels(service).set_function(lambda: len(revocations))
        self._loads = {outcome: REVOCATION_LOADS.labels(service, outcome) for outcome in ("ok", "failed")}

    async def start(self) -> None:
        """Bind this instance's queue, then load what accounts knows (one try; after a failure
        the service starts anyway and the feed tries again in the background)."""
        self._behind.set(1)
        await self._bind()
        self.broker.on_reconnect(self._reconnected)
        try:
            await self._load()
        except Exception as exc:
            self._failed(exc, 0)
            self._catching_up = asyncio.create_task(self._catch_up(rebind=False, tries=1), name="revocations")

    async def stop(self) -> None:
        self._stopped = True
        if self._catching_up is not None:
            self._catching_up.cancel()
            await asyncio.gather(self._catching_up, return_exceptions=True)
        await self._close_channel()

    async def _bind(self) -> None:
        # A channel that is never restored: the exclusive queue dies with its connection, and
        # a restored channel would declare it again under its old name (refused while the
        # broker still holds the dead connection). After a reconnect a new queue is bound.
        channel = await self.broker.transient_channel(prefetch=256)
        try:
            exchange = await self.broker.declare_topic_exchange(channel, events_exchange(SOURCE))
            queue = await channel.declare_queue(queue_name(self.service), exclusive=True, auto_delete=True)
            await queue.bind(exchange, routing_key=EVENT_TYPE)
            # No acks: the effect is this process's memory, and a queue of its own dies with it.
            await queue.consume(self._on_message, no_ack=True)
        except BaseException:
            await _close_quietly(channel)
            raise
        self._channel = channel

    async def _load(self) -> None:
        found = await self.rpc.call(SOURCE, LOAD_METHOD, timeout=LOAD_TIMEOUT_S)
        for item in found:
            self.revocations.add(AccessRevoked.model_validate(item))
        self._behind.set(0)
        self._loads["ok"].inc()
        log.info("access revocations loaded", count=len(found))

    def _failed(self, exc: BaseException, tries: int) -> None:
        self._loads["failed"].inc()
        log.warning("access revocations not loaded from accounts; tokens revoked before now may pass "
                    "until it answers", error=f"{type(exc).__name__}: {exc}"[:300], tries=tries + 1)

    async def _catch_up(self, *, rebind: bool, tries: int = 0) -> None:
        """(Bind a new queue, then) load, until both are done; ``tries`` failed already."""
        while True:
            if tries:
                await asyncio.sleep(backoff(tries - 1, RETRY_BASE_S, RETRY_CAP_S))
            try:
                if rebind:
                    await self._close_channel()
                    await self._bind()
                    rebind = False
                await self._load()
                return
            except Exception as exc:
                self._failed(exc, tries)
            tries += 1

    def _reconnected(self) -> None:
        """The broker connection is back: our queue went with the old one, and so did every
        revocation published meanwhile."""
        if self._stopped:
            return
        self._behind.set(1)
        if self._catching_up is not None:
            self._catching_up.cancel()
        self._catching_up = asyncio.create_task(self._catch_up(rebind=True), name="revocations")

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            revoked = AccessRevoked.model_validate(wire.loads(message.body))
        except Exception as exc:  # nothing to retry: an entry that cannot be read refuses nothing
            log.error("access_revoked event cannot be read; dropped", error=str(exc)[:300])
            return
        self.revocations.add(revoked)

    async def _close_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await _close_quietly(channel)


async def _close_quietly(channel: AbstractChannel) -> None:
    try:
        async with asyncio.timeout(2):
            await channel.close()
    except Exception:
        pass
