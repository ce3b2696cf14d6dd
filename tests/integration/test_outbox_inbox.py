"""The outbox publishes each committed event once, even across a crash; the inbox makes a
redelivered message change nothing twice."""
import asyncio
import subprocess
import sys
from pathlib import Path

from shared.messaging import wire
from shared.outbox import OutboxRelay, add_event
from tests.conftest import eventually
from tests.integration.conftest import bind_listener, drain, migrated_pool, received

ROOT = Path(__file__).resolve().parents[2]


def crash_relay(dsn: str, amqp_url: str, when: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.outbox_crash", dsn, amqp_url, when],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == -9, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


async def test_relay_killed_between_commit_and_publish_publishes_once_on_restart(
        database, amqp_url, broker):
    pool = await migrated_pool(database)
    queue = await bind_listener(broker, "ticker", "tick")
    assert "killed before publish" in await asyncio.to_thread(crash_relay, database, amqp_url, "before")
    assert await drain(queue, 0.5) == []
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 1

    relay = OutboxRelay(pool, broker, "ticker")
    assert await relay.relay_once() == 1
    assert await relay.relay_once() == 0
    messages = await drain(queue)
    assert [wire.loads(m.body) for m in messages] == [{"n": 99}]
    assert messages[0].message_id == await pool.fetchval("SELECT id::text FROM outbox")
    assert messages[0].headers["nameko.call_id_stack"][0].startswith("ticker.call.")
    await pool.close()


async def test_relay_killed_after_publish_before_mark_is_applied_once(
        probe, other_database, amqp_url, broker):
    """The event goes out twice (the relay cannot know it was confirmed); the inbox absorbs it.

    The crashing relay is the ``ticker`` service's, with a database of its own."""
    pool = await migrated_pool(other_database)
    assert "killed after publish" in await asyncio.to_thread(
        crash_relay, other_database, amqp_url, "after")

    async def first_copy_applied():
        return await received(probe, "ticker", "tick")
    assert await eventually(first_copy_applied) == [{"n": 99}]
    assert await OutboxRelay(pool, broker, "ticker").relay_once() == 1  # the second copy
    await asyncio.sleep(1)
    assert await received(probe, "ticker", "tick") == [{"n": 99}]
    await pool.close()


async def test_rolled_back_change_publishes_nothing(database, broker):
    pool = await migrated_pool(database)
    queue = await bind_listener(broker, "probe", "announced")
    try:
        async with pool.acquire() as conn, conn.transaction():
            await add_event(conn, "probe", "announced", {"value": 1})
            raise RuntimeError("the business change failed half-way")
    except RuntimeError:
        pass
    assert await OutboxRelay(pool, broker, "probe").relay_once() == 0
    assert await drain(queue, 0.5) == []
    await pool.close()


async def test_two_relays_never_publish_the_same_event(database, broker):
    pool = await migrated_pool(database, max_size=20)
    queue = await bind_listener(broker, "probe", "announced")
    async with pool.acquire() as conn, conn.transaction():
        for n in range(300):
            await add_event(conn, "probe", "announced", {"value": n})
    relays = [OutboxRelay(pool, broker, "probe", batch_size=50) for _ in range(3)]

    async def run(relay):
        while await relay.relay_once():
            pass
    await asyncio.gather(*(run(r) for r in relays))
    values = [wire.loads(m.body)["value"] for m in await drain(queue, 2.0)]
    assert sorted(values) == list(range(300))
    await pool.close()


async def test_a_refused_event_waits_and_does_not_hold_up_the_rest(database, broker):
    pool = await migrated_pool(database)
    # A full queue that refuses more: the broker nacks every publish routed to it.
    await bind_listener(broker, "probe", "refused",
                        arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    accepted = await bind_listener(broker, "probe", "accepted")
    async with pool.acquire() as conn, conn.transaction():
        await add_event(conn, "probe", "refused", {"n": 0})
        for n in range(1, 4):
            await add_event(conn, "probe", "accepted", {"n": n})
    relay = OutboxRelay(pool, broker, "probe", batch_size=2)
    assert await relay.relay_once() == 1  # the refused one failed, the one beside it went out
    assert await relay.relay_once() == 2  # the refused one waits; the rest go out
    assert await relay.relay_once() == 0
    row = await pool.fetchrow("SELECT * FROM outbox WHERE routing_key = 'refused'")
    assert row["published_at"] is None and row["attempts"] == 1
    assert "DeliveryError" in row["last_error"] and row["next_attempt_at"] > row["created_at"]
    assert sorted(wire.loads(m.body)["n"] for m in await drain(accepted)) == [1, 2, 3]
    await pool.close()


async def test_event_nobody_subscribes_to_is_not_retried_forever(database, broker):
    pool = await migrated_pool(database)
    async with pool.acquire() as conn, conn.transaction():
        await add_event(conn, "probe", "nobody_listens", {"n": 1})
    assert await OutboxRelay(pool, broker, "probe").relay_once() == 1
    assert await pool.fetchval("SELECT published_at IS NOT NULL FROM outbox")
    await pool.close()


async def test_service_event_reaches_the_broker_through_the_outbox(probe, rpc_client, broker):
    queue = await bind_listener(broker, "probe", "announced")
    await rpc_client.probe.announce(5)

    async def published():
        return await drain(queue, 0.2)
    messages = await eventually(published)
    assert [wire.loads(m.body) for m in messages] == [{"value": 5}]


async def test_same_message_delivered_twice_has_one_effect(probe, broker):
    for _ in range(2):
        await broker.publish("ticker.events", "tick", wire.dumps({"n": 1}), message_id="tick-1")
    await broker.publish("ticker.events", "tick", wire.dumps({"n": 2}), message_id="tick-2")

    async def handled():
        rows = await received(probe, "ticker", "tick")
        return rows if len(rows) >= 2 else None
    await eventually(handled)
    await asyncio.sleep(0.5)  # let the duplicate, if it were handled, land too
    assert sorted(r["n"] for r in await received(probe, "ticker", "tick")) == [1, 2]
    assert await probe.service.pool.fetchval(
        "SELECT count(*) FROM inbox WHERE consumer = 'probe.on_tick'") == 2
