"""Operator commands (``veikals migrate``, ``veikals sweep``, ``veikals dlq``, ``veikals audit``):
what a deploy runs as Jobs and CronJobs, what an operator runs after fixing the cause of dead
letters, and the audit log's verification and checkpoints.

Each reads the named service's settings from the environment (``VEIKALS_<SERVICE>_*``), as
the service itself does.
"""
from __future__ import annotations

from dataclasses import dataclass

import aio_pika

from shared import db
from shared.config import load_settings
from shared.messaging import Broker, RpcClient, topology


@dataclass(frozen=True)
class DeadLetter:
    queue: str          # the work queue it came from
    message_id: str | None
    error: str          # our handler's last error, or the broker's reason (x-death)
    routing_key: str


def service_class(name: str):
    from services.topology import service_classes
    found = {cls.name: cls for cls in service_classes()}
    if name not in found:
        raise LookupError(f"no service {name!r}; one of: {', '.join(sorted(found))}")
    return found[name]


async def migrate(name: str) -> list[str]:
    """Create the service's database if missing and apply its pending migrations (the names)."""
    cls = service_class(name)
    settings = load_settings(name, cls.settings_class)
    await db.ensure_database(settings.dsn)
    pool = await db.create_pool(settings.dsn, max_size=2)
    try:
        return await db.migrate(pool, cls.migration_scopes())
    finally:
        await pool.close()


async def call(name: str, method: str, *args, timeout: float = 600.0):
    """Call ``method`` of a running instance of the service over RPC (as ``nameko shell`` would)."""
    cls = service_class(name)
    if not hasattr(cls, method):
        raise LookupError(f"the {name} service has no {method}")
    broker = Broker(load_settings(name, cls.settings_class).amqp_url, name="veikals-operator")
    await broker.connect()
    client = RpcClient(broker, "veikals-operator", timeout=timeout)
    await client.start()
    try:
        return await client.call(name, method, *args)
    finally:
        await client.stop()
        await broker.close()


async def sweep(name: str, timeout: float = 600.0) -> dict[str, int]:
    """Ask a running instance of the service to run its retention sweep now."""
    if not hasattr(service_class(name), "run_retention_sweep"):
        raise LookupError(f"the {name} service keeps nothing that a sweep deletes")
    return await call(name, "run_retention_sweep", timeout=timeout)


async def verify_audit_log(anchor: str | None = None) -> dict:
    """The privacy service's check of its audit log's hash chain; ``anchor`` is a checkpoint
    kept elsewhere, ``seq:hash``."""
    from services.privacy.audit import parse_anchor
    try:
        seq, digest = parse_anchor(anchor) if anchor else (None, None)
    except ValueError as exc:
        raise LookupError(str(exc)) from None
    return await call("privacy", "verify_audit_log", seq, digest and digest.hex())


async def audit_checkpoint() -> dict:
    """Record the audit log's chain end now; the operator keeps what it prints elsewhere."""
    return await call("privacy", "audit_checkpoint")


# --- dead letters -------------------------------------------------------------------------

# What the broker and our retries add to a message; a replay starts afresh without them.
_DEATH_HEADERS = ("x-death", "x-first-death-", "x-last-death-", "x-veikals-error", "x-veikals-queue",
                  "x-veikals-attempt", "x-delivery-count")


def work_queues() -> list[str]:
    from services.topology import service_classes, subscriptions
    specs = topology.suite_queues([cls.name for cls in service_classes()], subscriptions())
    return [s.name for s in specs if s.arguments.get("x-queue-type") == "quorum"]


def _describe(queue: str, message: aio_pika.abc.AbstractIncomingMessage) -> DeadLetter:
    headers = message.headers or {}
    error = headers.get("x-veikals-error")
    if error is None:
        deaths = headers.get("x-death") or [{}]
        error = f"broker: {deaths[0].get('reason', 'unknown')}"
    return DeadLetter(queue=queue, message_id=message.message_id, error=str(error)[:300],
                      routing_key=message.routing_key or "")


async def dead_letter_counts(amqp_url: str) -> dict[str, int]:
    """Each work queue's dead letters waiting (every queue, zeros included)."""
    broker = Broker(amqp_url, name="veikals-dlq")
    await broker.connect()
    try:
        await topology.declare(broker, [topology.dead_letter_queue(q) for q in work_queues()])
        counts = {}
        channel = await broker.scratch_channel()
        try:
            for queue in work_queues():
                declared = await channel.declare_queue(f"{queue}.dead-letter", passive=True)
                counts[queue] = declared.declaration_result.message_count
        finally:
            await channel.close()
        return counts
    finally:
        await broker.close()


async def replay(amqp_url: str, queue: str, *, dry_run: bool, limit: int | None = None) -> list[DeadLetter]:
    """Move ``queue``'s dead letters back to it, oldest first, each published (confirmed) before
    it leaves the dead letters; with ``dry_run`` only list them (they stay where they are).
    A replayed message starts afresh with all its retries; the inbox makes a replay of a
    message already applied harmless."""
    queue = queue.removesuffix(".dead-letter")
    if queue not in work_queues():
        raise LookupError(f"no work queue {queue!r} (veikals dlq list names them)")
    if queue.startswith("rpc-") and not dry_run:  # its caller stopped waiting long ago, its deadline is past
        raise LookupError(f"{queue}: a dead RPC request is not replayed (its caller has given up); "
                          "list it with --dry-run, and call again from the caller")
    broker = Broker(amqp_url, name="veikals-dlq")
    await broker.connect()
    moved: list[DeadLetter] = []
    try:
        channel = await broker.channel(prefetch=1)
        try:
            dead = await channel.declare_queue(f"{queue}.dead-letter", passive=True)
            # Only the messages there now: a message failing again meanwhile waits for next time.
            waiting = dead.declaration_result.message_count
            for _ in range(min(waiting, limit) if limit is not None else waiting):
                message = await dead.get(no_ack=False, fail=False)
                if message is None:
                    break
                moved.append(_describe(queue, message))
                if dry_run:
                    continue  # held unacked: they return, in order, when the channel closes
                headers = {k: v for k, v in (message.headers or {}).items()
                           if not k.startswith(_DEATH_HEADERS)}
                await broker.publish("", queue, message.body, headers=headers,
                                     correlation_id=message.correlation_id, reply_to=message.reply_to,
                                     message_id=message.message_id)
                await message.ack()
        finally:
            await channel.close()
    finally:
        await broker.close()
    return moved
