"""The operator commands a deploy runs (``veikals migrate``, ``veikals sweep``) and the
dead-letter replay (``veikals dlq``), against real PostgreSQL and RabbitMQ."""
from __future__ import annotations

import pytest

from deploy import operations
from services.marketing.service import MarketingService
from services.marketing.settings import MarketingSettings
from services.topology import subscriptions
from shared.config import load_settings
from shared.messaging import Broker, topology
from shared.service import ServiceRuntime

QUEUE = topology.handler_queue_name("orders", "order_paid", "marketing", "on_order_paid")


@pytest.fixture
def marketing_env(monkeypatch, amqp_url, database):
    for name, value in {"DATABASE_URL": database, "AMQP_URL": amqp_url, "LINK_KEY": "k", "SUPPRESSION_KEY": "s",
                        "HTTP_PORT": "0", "SHUTDOWN_GRACE_S": "5"}.items():
        monkeypatch.setenv(f"VEIKALS_MARKETING_{name}", value)


async def test_migrate_creates_and_migrates_once_and_sweep_asks_the_running_service(marketing_env):
    applied = await operations.migrate("marketing")
    assert "marketing/0001_marketing.sql" in applied and any(a.startswith("shared/") for a in applied)
    assert await operations.migrate("marketing") == []
    runtime = ServiceRuntime(MarketingService, load_settings("marketing", MarketingSettings), subscriptions())
    await runtime.start()
    try:
        done = await operations.sweep("marketing", timeout=30)
    finally:
        await runtime.stop()
    assert {"unconfirmed e-mail consents", "campaign deliveries", "staff access records"} <= set(done)
    with pytest.raises(LookupError):
        await operations.migrate("nonsense")


async def test_dead_letters_are_listed_and_replayed_once_to_their_queue(amqp_url):
    broker = Broker(amqp_url, name="test-dlq")
    await broker.connect()
    try:
        await topology.declare(broker, topology.event_queues("orders", "order_paid", "marketing", "on_order_paid"))
        for n in range(3):
            await broker.publish("", f"{QUEUE}.dead-letter", b'{"n": %d}' % n, message_id=f"m{n}",
                                 headers={"x-veikals-error": "ValueError: bad", "x-veikals-attempt": 4,
                                          "nameko.call_id_stack": ["orders.relay.1"]})
        assert (await operations.dead_letter_counts(amqp_url))[QUEUE] == 3

        listed = await operations.replay(amqp_url, QUEUE, dry_run=True)
        assert [(d.message_id, d.error) for d in listed] == [(f"m{n}", "ValueError: bad") for n in range(3)]
        assert (await operations.dead_letter_counts(amqp_url))[QUEUE] == 3  # a dry run moves nothing

        moved = await operations.replay(amqp_url, f"{QUEUE}.dead-letter", dry_run=False, limit=2)
        assert [d.message_id for d in moved] == ["m0", "m1"]
        moved += await operations.replay(amqp_url, QUEUE, dry_run=False)
        assert [d.message_id for d in moved] == ["m0", "m1", "m2"]
        assert (await operations.dead_letter_counts(amqp_url))[QUEUE] == 0

        channel = await broker.channel(prefetch=10)
        queue = await channel.declare_queue(QUEUE, passive=True)
        replayed = [await queue.get(no_ack=True) for _ in range(3)]
        assert [m.message_id for m in replayed] == ["m0", "m1", "m2"]
        assert [m.body for m in replayed] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
        headers = replayed[0].headers
        assert "x-veikals-error" not in headers and "x-veikals-attempt" not in headers  # retries afresh
        assert headers["nameko.call_id_stack"] == ["orders.relay.1"]
        with pytest.raises(LookupError):
            await operations.replay(amqp_url, "no-such-queue", dry_run=True)
    finally:
        await broker.close()


async def test_the_audit_log_is_verified_and_checkpointed_by_the_operators_commands(monkeypatch, amqp_url, database):
    from services.privacy import store
    from services.privacy.service import PrivacyService
    from services.privacy.settings import PrivacySettings
    from tests.conftest import eventually

    for name, value in {"DATABASE_URL": database, "AMQP_URL": amqp_url, "HTTP_PORT": "0", "SHUTDOWN_GRACE_S": "5",
                        "OUTBOX_POLL_S": "0.1"}.items():
        monkeypatch.setenv(f"VEIKALS_PRIVACY_{name}", value)
    runtime = ServiceRuntime(PrivacyService, load_settings("privacy", PrivacySettings), subscriptions())
    await runtime.start()
    try:
        async with runtime.service.pool.acquire() as conn:
            for n in range(3):
                await store.add_audit(conn, kind="staff_access", service="orders", actor="staff:x", action=f"{n}")

        async def chained():
            return await runtime.service.pool.fetchval("SELECT count(*) FROM audit_log") == 3
        await eventually(chained)
        mark = await operations.audit_checkpoint()
        assert mark["seq"] == 3 and len(mark["hash"]) == 64
        found = await operations.verify_audit_log(f"{mark['seq']}:{mark['hash']}")
        assert found["intact"] and found["entries"] == 3 and found["last_hash"] == mark["hash"]
        wrong = await operations.verify_audit_log(f"2:{'0' * 64}")
        assert not wrong["intact"] and wrong["finding"]["seq"] == 2 and wrong["finding"]["problem"] == "changed"
        with pytest.raises(LookupError):
            await operations.verify_audit_log("not-an-anchor")
    finally:
        await runtime.stop()
