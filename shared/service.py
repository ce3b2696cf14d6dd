"""A service is a class with RPC methods, event handlers and HTTP endpoints; this runs it.

``ServiceRuntime`` builds everything a service needs from its settings (database, migrations,
broker, RPC server and client, event consumers, outbox relay, the feed of revoked tokens
(``shared.revocations``), HTTP app), passes the parts to the service's constructor, and takes
them down again in order on ``stop()``. ``serve()`` is what
``python -m services.<name>`` calls: it runs until SIGTERM or SIGINT, then stops taking work,
finishes what is in hand and closes cleanly.
"""
from __future__ import annotations

import asyncio
import gc
import inspect
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, ClassVar, Literal

import asyncpg
from aiohttp import web

from shared import db, http, retention
from shared.auth import Principal, TokenVerifier, check_token
from shared.config import ServiceSettings, load_settings
from shared.contracts.audit import StaffAccessed
from shared.contracts.privacy import DataInventory, RetentionReport
from shared.contracts.webhooks import PartnerPing, PartnerReply
from shared.inbox import RpcCalls, first_delivery
from shared.logging import configure_logging, get_logger
from shared.messaging import Broker, EventConsumer, RpcClient, RpcServer, remote_exception
from shared.messaging import context as ctx
from shared.messaging.events import Delivery
from shared.messaging.rpc import RpcMethod
from shared.outbox import OUTBOX_INVENTORY, RPC_REPLY_INVENTORY, Outbox, OutboxRelay, Subscription
from shared.poller import NotifiedPoller
from shared.revocations import RevocationFeed, Revocations
from shared.subjects import (
    PUBLISHED_VERSION_INVENTORY, SUBJECT_VERSION_INVENTORY, TOMBSTONE_INVENTORY, Subject, SubjectKeys, admit,
)
from shared.subjects import forget as forget_subjects
from shared.webhooks.inbound import callback_endpoint
from shared.webhooks.outbound import WEBHOOK_INVENTORY, DeliveryWorker, enqueue
from shared.webhooks.policy import DeliveryPolicy
from shared.webhooks.registry import Partner, PartnerRegistry
from shared.webhooks.staff import staff_endpoints

log = get_logger(__name__)

# What every service holds through shared/: part of each one's record of processing.
SHARED_INVENTORY = [OUTBOX_INVENTORY, RPC_REPLY_INVENTORY, TOMBSTONE_INVENTORY, SUBJECT_VERSION_INVENTORY,
                    PUBLISHED_VERSION_INVENTORY, *WEBHOOK_INVENTORY]


def with_shared(inventory: DataInventory) -> DataInventory:
    """A service's inventory with what it holds through shared/ (what ``privacy_inventory`` answers)."""
    return inventory.model_copy(update={"entries": [*inventory.entries, *SHARED_INVENTORY]})


def rpc(*, changes_state: bool):
    """Expose the method over RPC as ``<service>.<method>``; every method says whether it
    changes state.

    A read-only method (``changes_state=False``) runs as often as it is delivered. A
    state-changing one is ``async def m(self, conn, ...)``: it runs inside the transaction that
    records the call's key with its reply, so a redelivered call gets the stored reply and
    does not run again, and the events and webhooks it writes (through ``conn``) get ids
    derived from that key. Effects outside ``conn`` (another transaction, a partner's API) must
    be idempotent on their own, keyed by ``shared.messaging.context.effect_id()``.
    """
    def decorate(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        fn.__veikals_rpc__ = RpcMethod(fn, changes_state)  # type: ignore[attr-defined]
        return fn
    return decorate


def event_handler(source: str, event_type: str, *, keep: Literal["all", "newest"] = "all"):
    """Handle ``event_type`` events from ``source``: ``async def on_x(self, conn, data)``.

    The handler runs inside a database transaction that has already recorded the message id in
    the inbox; a redelivered message is acked without calling it again. A message without an
    id (stock nameko sets none) cannot be recognised again, so it is applied at least once:
    such handlers must be idempotent by their data. An event about a subject this service has
    erased is not applied (``shared.subjects``); with ``keep="newest"`` (events that carry a
    subject's current state) neither is one older than the newest applied.
    """
    def decorate(fn: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        fn.__veikals_event__ = (source, event_type, keep)  # type: ignore[attr-defined]
        return fn
    return decorate


def subscriptions_of(service_cls: type["Service"]) -> list[Subscription]:
    """The event types ``service_cls`` handles (its part of the topology manifest)."""
    found = []
    for name, member in inspect.getmembers(service_cls, inspect.isfunction):
        if (marker := getattr(member, "__veikals_event__", None)) is not None:
            source, event_type, _ = marker
            found.append(Subscription(source, event_type, service_cls.name, name))
    return found


@remote_exception
class UnknownPartner(LookupError):
    """No partner of that name is registered."""


@dataclass
class Dependencies:
    settings: ServiceSettings
    pool: asyncpg.Pool
    broker: Broker
    rpc: RpcClient
    partners: PartnerRegistry
    tokens: TokenVerifier
    subject_keys: SubjectKeys


class Service:
    name: ClassVar[str]
    migrations: ClassVar[Path | None] = None
    version: ClassVar[str] = "1"
    inventory: ClassVar[DataInventory]
    # How the retention clock of each of its entries with a period is read (beside the inventory).
    retention_clocks: ClassVar[retention.Clocks] = {}
    settings_class: ClassVar[type[ServiceSettings]] = ServiceSettings

    def __init__(self, deps: Dependencies) -> None:
        self.deps = deps
        self.pool = deps.pool
        self.rpc = deps.rpc
        self.partners = deps.partners
        self.tokens = deps.tokens
        self.subject_keys = deps.subject_keys
        self.outbox = Outbox(self.name, deps.subject_keys)

    @classmethod
    def migration_scopes(cls) -> dict[str, Path]:
        """The migrations a database of this service needs: the shared ones, then its own."""
        scopes = {"shared": db.SHARED_MIGRATIONS}
        if cls.migrations is not None:
            scopes[cls.name] = cls.migrations
        return scopes

    def endpoints(self) -> list[http.Endpoint]:
        return []

    def background(self) -> list[NotifiedPoller]:
        """The service's own background loops (mail, retention sweeps); started after the
        service and stopped before the broker and pool close."""
        return []

    async def close(self) -> None:
        """Release what the service opened itself (a partner's HTTP client); called after its
        background loops have stopped, before the broker and pool close."""

    async def authenticate(self, request: web.Request, access: http.Access) -> Principal:
        """The caller of an endpoint that needs ``access``: 401 without a valid token, 403 for
        the wrong kind or role. Every route of the service, the shared staff routes included,
        goes through this (a service that can check more, as accounts checks that the session
        is still open, overrides it)."""
        return await check_token(request, self.tokens, access)

    async def on_partner_callback(self, conn: asyncpg.Connection, partner: Partner,
                                  reply: PartnerReply) -> None:
        """React to a partner's verified callback, in the transaction that records it.
        By default the callback is only recorded (staff read it in the partner's log)."""

    async def staff_accessed(self, conn: asyncpg.Connection, access: StaffAccessed) -> None:
        """Tell the audit log that staff looked at personal data (P16), in the transaction of
        the look: published as ``staff_accessed`` without a subject, so the record outlives
        the customer's erasure. (The privacy service, which keeps the log, writes it directly.)"""
        await self.outbox.add(conn, "staff_accessed", access.model_dump(mode="json"))

    async def readiness(self) -> dict[str, str]:
        checks = {"broker": "ok" if self.deps.broker.connected else "unreachable"}
        try:
            async with asyncio.timeout(2):
                await self.pool.fetchval("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        return checks

    async def forget(self, conn: asyncpg.Connection, subjects: list[Subject]) -> int:
        """The first step of every erasure, in its transaction: wait for what is writing about
        ``subjects``, tombstone them (late events about them are dropped) and delete their
        events from the outbox. Delete the subject's data after it."""
        return await forget_subjects(conn, self.subject_keys, subjects)

    @rpc(changes_state=False)
    async def health(self) -> dict[str, str]:
        """The service's name and the state of its database and broker."""
        return {"service": self.name, **await self.readiness()}

    @rpc(changes_state=True)
    async def ping_partner(self, conn: asyncpg.Connection, partner: str, note: str = "ping") -> str:
        """Send a signed ``partner.ping`` webhook to ``partner``; returns its webhook-id.
        For operators: ``n.rpc.orders.ping_partner("sandbox-carrier")`` in ``nameko shell``."""
        target = self.partners.get(partner)
        if target is None:
            raise UnknownPartner(partner)
        return await enqueue(conn, target, PartnerPing(note=note))

    @rpc(changes_state=False)
    async def privacy_inventory(self) -> DataInventory:
        """The personal data this service holds (the privacy participant contract)."""
        return with_shared(self.inventory)

    @rpc(changes_state=False)
    async def privacy_retention(self) -> RetentionReport:
        """For each category with a retention period, the oldest record held and whether it is
        overdue (the privacy participant contract; the privacy service's retention report)."""
        inventory = await self.privacy_inventory()
        async with self.pool.acquire() as conn:
            return await retention.report(conn, inventory, {**retention.SHARED_CLOCKS, **self.retention_clocks})


def _members(service: Service, marker: str) -> dict[str, tuple[Any, Any]]:
    """name -> (the bound method, its marker) for the methods of ``service`` marked so."""
    return {name: (getattr(service, name), getattr(member, marker))
            for name, member in inspect.getmembers(type(service), inspect.isfunction)
            if hasattr(member, marker)}


class ServiceRuntime:
    """Runs one service. ``subscriptions`` is the topology manifest (every service's event
    handlers, ``services.topology``): the outbox relay declares the queues of those that
    receive this service's events before it publishes any. None runs without one (tests)."""

    def __init__(self, service_cls: type[Service], settings: ServiceSettings,
                 subscriptions: list[Subscription] | None = None) -> None:
        self.service_cls = service_cls
        self.settings = settings
        self.subscriptions = subscriptions
        self.service: Service | None = None
        self.http_port: int | None = None
        self._pool: asyncpg.Pool | None = None
        self._broker: Broker | None = None
        self._rpc_client: RpcClient | None = None
        self._rpc_server: RpcServer | None = None
        self._consumers: list[EventConsumer] = []
        self._relay: OutboxRelay | None = None
        self._webhooks: DeliveryWorker | None = None
        self._background: list[NotifiedPoller] = []
        self._revocations: RevocationFeed | None = None
        self._http: web.AppRunner | None = None

    async def start(self) -> None:
        s, name = self.settings, self.service_cls.name
        await db.ensure_database(s.dsn)
        self._pool = await db.create_pool(
            s.dsn, max_size=s.db_pool_size, acquire_timeout=s.db_acquire_timeout_s,
            statement_timeout=s.db_statement_timeout_s)
        await db.migrate(self._pool, self.service_cls.migration_scopes())

        self._broker = Broker(s.amqp_url, name=name)
        await self._broker.connect()
        self._rpc_client = RpcClient(self._broker, name, timeout=s.rpc_timeout_s)
        await self._rpc_client.start()
        partners = PartnerRegistry.load()
        tokens = TokenVerifier(s.jwks_url, revocations=Revocations())
        if not s.subject_key.get_secret_value():
            log.warning("SUBJECT_KEY is not set: subjects are hashed with an empty key")
        self.service = service = self.service_cls(Dependencies(
            settings=s, pool=self._pool, broker=self._broker, rpc=self._rpc_client,
            partners=partners, tokens=tokens,
            subject_keys=SubjectKeys(s.subject_key.get_secret_value().encode())))

        methods = {name: RpcMethod(bound, marker.changes_state)
                   for name, (bound, marker) in _members(service, "__veikals_rpc__").items()}
        self._rpc_server = RpcServer(self._broker, name, methods, prefetch=s.prefetch,
                                     once=RpcCalls(self._pool))
        await self._rpc_server.start()
        for method, (handler, (source, event_type, keep)) in _members(service, "__veikals_event__").items():
            consumer = EventConsumer(
                self._broker, service=name, method=method, source=source, event_type=event_type,
                handler=self._apply_once(method, handler, keep == "newest"), prefetch=s.prefetch,
                max_retries=s.max_retries, retry_delay_ms=s.retry_delay_ms,
                transient_retry_s=s.transient_retry_s)
            await consumer.start()
            self._consumers.append(consumer)
        self._relay = OutboxRelay(self._pool, self._broker, name, poll_interval=s.outbox_poll_s,
                                  subscriptions=self.subscriptions)
        await self._relay.start()
        service.outbox.relayed_by(self._relay)
        self._webhooks = DeliveryWorker(
            self._pool, partners, DeliveryPolicy(set(s.webhook_allowed_hosts)), name,
            schedule=s.webhook_retry_schedule_s, timeout=s.webhook_timeout_s,
            concurrency=s.webhook_concurrency, poll_interval=s.outbox_poll_s)
        await self._webhooks.start()
        if service.tokens.revocations is not None:  # accounts checks sessions in its database instead
            self._revocations = RevocationFeed(self._broker, self._rpc_client, name, service.tokens.revocations)
            await self._revocations.start()  # before the first request: a revoked token is refused at once
        for loop in service.background():
            await loop.start()
            self._background.append(loop)

        endpoints = [*service.endpoints(), *staff_endpoints(self._pool, partners, service.staff_accessed),
                     callback_endpoint(self._pool, partners, name, service.on_partner_callback)]
        app = http.make_app(name, version=service.version, endpoints=endpoints,
                            readiness=service.readiness, authenticate=service.authenticate)
        self._http = http.AppRunner(app, shutdown_timeout=s.shutdown_grace_s)
        await self._http.setup()
        site = web.TCPSite(self._http, s.http_host, s.port)
        await site.start()
        self.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("service started", http=f"http://{s.http_host}:{self.http_port}")

    def _apply_once(self, method: str, handler: Callable[..., Awaitable[None]], keep_newest: bool):
        """The handler in one transaction with its inbox entry, its subject's checks and the
        events it writes (whose ids derive from the message's)."""
        consumer = f"{self.service_cls.name}.{method}"

        async def handle(delivery: Delivery) -> str | None:
            assert self._pool is not None and self.service is not None
            async with self._pool.acquire() as conn, conn.transaction():
                if delivery.message_id is not None and not await first_delivery(
                        conn, consumer, delivery.message_id):
                    return "duplicate"
                refused = await admit(conn, self.service.subject_keys, consumer, delivery.headers, keep_newest)
                if refused is not None:
                    return refused
                if delivery.message_id is None:
                    await handler(conn, delivery.data)
                else:
                    with ctx.effects_of(f"{consumer}:{delivery.message_id}"):
                        await handler(conn, delivery.data)
            return None
        return handle

    async def stop(self) -> None:
        """Stop taking work, finish what is in hand, flush the outbox, close: all within
        ``shutdown_grace_s`` (a broker that is down cannot hold the process up)."""
        grace = self.settings.shutdown_grace_s
        deadline = asyncio.get_running_loop().time() + grace

        def left() -> float:
            return max(deadline - asyncio.get_running_loop().time(), 0.1)

        stoppers = [c.stop(grace) for c in self._consumers]
        if self._rpc_server is not None:
            stoppers.append(self._rpc_server.stop(grace))
        if self._http is not None:
            stoppers.append(self._http.cleanup())  # closes the listener, finishes requests
        try:
            async with asyncio.timeout(left()):
                await asyncio.gather(*stoppers, return_exceptions=True)
        except TimeoutError:
            log.warning("work still in hand at the end of the grace period")
        if self._revocations is not None:
            await self._revocations.stop()
        for loop in self._background:
            try:
                async with asyncio.timeout(left()):
                    await loop.stop(left())
            except TimeoutError:
                log.warning("background loop did not stop in time", loop=loop.name)
        if self.service is not None:
            try:
                async with asyncio.timeout(left()):
                    await self.service.close()
            except Exception:
                log.exception("the service did not close cleanly")
        if self._webhooks is not None:
            await self._webhooks.stop(left())  # a request cut short goes again, same webhook-id
        if self._relay is not None:
            self.service.outbox.relayed_by(None)  # from now on Outbox.add notifies the other instances
            await self._relay.stop(left())
            if self._broker is not None and self._broker.connected:
                try:
                    async with asyncio.timeout(left()):
                        while await self._relay.relay_once():  # what the last handlers wrote
                            pass
                except Exception:
                    log.warning("outbox not flushed; its events go out at the next start")
        if self._rpc_client is not None:
            await self._rpc_client.stop(0)
        if self._broker is not None:
            try:
                async with asyncio.timeout(left()):
                    await self._broker.close()
            except TimeoutError:
                pass
        if self._pool is not None:
            try:
                async with asyncio.timeout(left()):
                    await self._pool.close()
            except TimeoutError:
                self._pool.terminate()
        log.info("service stopped")


def serve(service_cls: type[Service], subscriptions: list[Subscription] | None = None) -> None:
    """Run ``service_cls`` until SIGTERM/SIGINT (``python -m services.<name>``)."""
    settings = load_settings(service_cls.name, service_cls.settings_class)
    configure_logging(service_cls.name, settings.log_level)

    async def main() -> None:
        runtime = ServiceRuntime(service_cls, settings, subscriptions)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        try:
            await runtime.start()
            # What importing and starting made lives as long as the process: the collector need
            # not walk it again (a full collection over it took ~5 % of a busy service's CPU).
            gc.collect()
            gc.freeze()
            await stopping.wait()
            log.info("shutting down")
        finally:
            await runtime.stop()

    asyncio.run(main())
