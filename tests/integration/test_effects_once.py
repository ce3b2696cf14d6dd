"""Effects exactly once over at-least-once messaging, with real RabbitMQ and PostgreSQL.

A state-changing call interrupted anywhere has one effect and one set of events, and its caller
gets the first run's reply; an event older than an erasure does not restore what was erased;
a database outage delays events without dead-lettering them; a queue with other arguments does
not stop the service; an expired request is not run; replicas can start together.
"""
import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import REGISTRY

from shared import db
from shared.config import load_settings
from shared.messaging import BrokerUnavailable, RemoteError, RpcClient, RpcTimeout, wire
from shared.messaging.events import ATTEMPT_HEADER, ERROR_HEADER
from shared.messaging.topology import DELIVERY_LIMIT
from shared.outbox import OutboxRelay, Subscription, add_event
from shared.service import ServiceRuntime
from shared.subjects import SUBJECT_HEADER, VERSION_HEADER, Subject, SubjectKeys, admit, forget
from tests.conftest import PG_BASE, eventually, rabbitmqctl
from tests.integration.conftest import bind_listener, drain, migrated_pool, received
from tests.integration.probe import ProbeService
from tests.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]


def probe_settings(amqp_url: str, dsn: str, **overrides):
    return load_settings("probe", amqp_url=amqp_url, database_url=dsn, http_port=0, max_retries=2,
                         retry_delay_ms=100, outbox_poll_s=0.2, shutdown_grace_s=5, **overrides)


@pytest.mark.parametrize("when", ["before-commit", "before-reply", "before-ack"])
async def test_a_call_interrupted_anywhere_has_one_effect_and_the_first_reply(
        when, amqp_url, database, broker, rpc_client):
    crashing = subprocess.Popen([sys.executable, "-u", "-m", "tests.integration.rpc_crash", database, amqp_url, when],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert await asyncio.to_thread(crashing.stdout.readline) == "ready\n"
        listener = await bind_listener(broker, "probe", "recorded")
        call = asyncio.create_task(rpc_client.call("probe", "record", 7, timeout=60))
        output = await asyncio.to_thread(crashing.communicate, timeout=60)
        assert crashing.returncode == -9 and f"killed {when}" in output[0], output
    finally:
        if crashing.poll() is None:
            crashing.kill()
    runtime = ServiceRuntime(ProbeService, probe_settings(amqp_url, database))
    await runtime.start()  # the request was never acked: it comes to this replica
    try:
        reply = await asyncio.wait_for(call, 60)
        [row] = await received(runtime, "self", "record")
        assert reply == row["run"] and row["value"] == 7  # the run whose effect stands
        pool = runtime.service.pool
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 1
        assert await pool.fetchval("SELECT count(*) FROM rpc_calls") == 1
        await eventually(lambda: pool.fetchval("SELECT count(*) = 1 FROM outbox WHERE published_at IS NOT NULL"))
        messages = await drain(listener)
        assert {m.message_id for m in messages} == {str(await pool.fetchval("SELECT id FROM outbox"))}
        assert {json.dumps(wire.loads(m.body)) for m in messages} == {json.dumps({"value": 7, "run": reply})}
        redelivered = REGISTRY.get_sample_value("veikals_messages_handled_total", {
            "service": "probe", "queue": "rpc-probe", "outcome": "replayed"})
        assert (redelivered or 0) >= (0 if when == "before-commit" else 1)
    finally:
        await runtime.stop()


async def test_the_same_request_id_is_applied_once(probe, rpc_client):
    first = await rpc_client.call("probe", "record", 1, request_id="order-42")
    again = await rpc_client.call("probe", "record", 1, request_id="order-42")
    other = await rpc_client.call("probe", "record", 1, request_id="order-43")
    assert first == again != other
    assert len(await received(probe, "self", "record")) == 2


async def test_a_change_whose_reply_cannot_be_sent_does_not_stand(probe, rpc_client):
    with pytest.raises(RemoteError) as refused:
        await rpc_client.probe.record_unanswerable(3)
    assert refused.value.exc_type == "UnserializableValueError"
    assert await received(probe, "self", "record") == []
    assert await probe.service.pool.fetchval("SELECT count(*) FROM rpc_calls") == 0


async def test_read_only_calls_are_not_recorded(probe, rpc_client):
    assert await rpc_client.probe.add(1, 2) == 3
    assert await probe.service.pool.fetchval("SELECT count(*) FROM rpc_calls") == 0


# --- erasure wins ---------------------------------------------------------------------------

@pytest.fixture
async def people(other_database, broker):
    """A publisher of ``people`` events: the outbox of a service of its own, and its relay."""
    pool = await migrated_pool(other_database)
    relay = OutboxRelay(pool, broker, "people", poll_interval=0.1)
    keys = SubjectKeys(b"people's key")

    async def publish(event_type: str, data: dict, subject: Subject) -> str:
        async with pool.acquire() as conn, conn.transaction():
            event_id = await add_event(conn, "people", event_type, data, subject=subject, keys=keys)
        await relay.relay_once()
        return str(event_id)
    yield publish
    await pool.close()


async def profile(probe, customer_id: uuid.UUID) -> str | None:
    return await probe.service.pool.fetchval("SELECT name FROM profiles WHERE customer_id = $1", customer_id)


async def handled(probe, queue: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("veikals_messages_handled_total", {
        "service": "probe", "queue": queue, "outcome": outcome}) or 0


async def test_an_older_state_never_overwrites_a_newer_one(probe, people, broker):
    anna = uuid.uuid4()
    subject = Subject.customer(anna)
    # Three changes in order; the broker delivers the second late (here: it is replayed late).
    await people("profile_changed", {"customer_id": str(anna), "name": "Anna 1"}, subject)
    await eventually(lambda: _equals(profile(probe, anna), "Anna 1"))
    channel = await broker.channel(prefetch=1)
    hold = await channel.declare_queue("", exclusive=True)
    await hold.bind("people.events", "profile_changed")
    await people("profile_changed", {"customer_id": str(anna), "name": "Anna 2"}, subject)
    second = await eventually(lambda: hold.get(no_ack=True, fail=False))
    await people("profile_changed", {"customer_id": str(anna), "name": "Anna 3"}, subject)
    await eventually(lambda: _equals(profile(probe, anna), "Anna 3"))
    queue = "evt-people-profile_changed--probe.on_profile_changed"
    stale_before = await handled(probe, queue, "stale")
    await broker.publish("", queue, second.body, headers=dict(second.headers), message_id=str(uuid.uuid4()))
    await eventually(lambda: _greater(handled(probe, queue, "stale"), stale_before))
    assert await profile(probe, anna) == "Anna 3"
    await channel.close()


async def test_an_event_older_than_the_erasure_does_not_restore_the_data(probe, people, broker, rpc_client):
    anna, email = uuid.uuid4(), "anna@example.lv"
    await people("profile_changed", {"customer_id": str(anna), "name": "Anna"}, Subject.customer(anna))
    await people("guest_ordered", {"email": email, "order": 1}, Subject.email(email))
    await eventually(lambda: _equals(profile(probe, anna), "Anna"))
    await eventually(lambda: _count(received(probe, "people", "guest_ordered"), 1))
    # Both events were delivered once; a copy of each is still on its way (a retry, a replay).
    channel = await broker.channel(prefetch=10)
    late = {}
    for event_type, data, subject in [("profile_changed", {"customer_id": str(anna), "name": "Anna"},
                                       Subject.customer(anna)),
                                      ("guest_ordered", {"email": email, "order": 1}, Subject.email(email))]:
        hold = await channel.declare_queue("", exclusive=True)
        await hold.bind("people.events", event_type)
        await people(event_type, data, subject)
        late[event_type] = await eventually(lambda: hold.get(no_ack=True, fail=False))
    await eventually(lambda: _count(received(probe, "people", "guest_ordered"), 2))

    assert await rpc_client.probe.erase_person(str(anna), email) == 0  # the probe's own outbox: none
    assert await profile(probe, anna) is None
    assert await received(probe, "people", "guest_ordered") == []
    for event_type, message in late.items():
        queue = f"evt-people-{event_type}--probe.on_{event_type}"
        erased_before = await handled(probe, queue, "erased")
        await broker.publish("", queue, message.body, headers=dict(message.headers), message_id=str(uuid.uuid4()))
        await eventually(lambda: _greater(handled(probe, queue, "erased"), erased_before))
    assert await profile(probe, anna) is None
    assert await received(probe, "people", "guest_ordered") == []
    # A customer id is never used again: nothing about Anna applies any more. An address is
    # reused by whoever orders with it next: an order placed after the erasure applies.
    await people("profile_changed", {"customer_id": str(anna), "name": "Anna"}, Subject.customer(anna))
    await people("guest_ordered", {"email": email, "order": 2}, Subject.email(email))
    rows = await eventually(lambda: received(probe, "people", "guest_ordered"))
    assert [r["order"] for r in rows] == [2]
    assert await profile(probe, anna) is None
    await channel.close()


async def test_an_erasure_takes_the_subjects_unsent_events_with_it(database):
    pool = await migrated_pool(database)
    keys = SubjectKeys(b"key")
    async with pool.acquire() as conn, conn.transaction():
        await add_event(conn, "people", "profile_changed", {"name": "Anna"}, subject=Subject.email("a@b.lv"), keys=keys)
        await add_event(conn, "people", "profile_changed", {"name": "Bob"}, subject=Subject.email("b@b.lv"), keys=keys)
    async with pool.acquire() as conn, conn.transaction():
        assert await forget(conn, keys, [Subject.email("A@b.lv")]) == 1
    assert [json.loads(bytes(r["body"])) for r in await pool.fetch("SELECT body FROM outbox")] == [{"name": "Bob"}]
    # What the tables keep names no one: keyed hashes only.
    for table in ("erased_subjects", "subject_versions"):
        for row in await pool.fetch(f"SELECT subject FROM {table}"):
            assert b"a@b.lv" not in bytes(row["subject"])
    await pool.close()


# --- retries, limits, topology, deadlines ---------------------------------------------------

async def test_a_database_outage_of_15_seconds_dead_letters_nothing(amqp_url, database, broker):
    await db.ensure_database(database)
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    dsn = f"{PG_BASE.replace('5432', str(proxy.port))}/{database.rsplit('/', 1)[1]}"
    runtime = ServiceRuntime(ProbeService, probe_settings(amqp_url, dsn, db_acquire_timeout_s=2,
                                                          db_statement_timeout_s=2))
    await runtime.start()
    try:
        for n in range(5):
            await broker.publish("ticker.events", "tick", wire.dumps({"n": n}), message_id=f"t-{n}")
        await eventually(lambda: _count(received(runtime, "ticker", "tick"), 5))
        await proxy.cut()
        for n in range(5, 15):
            await broker.publish("ticker.events", "tick", wire.dumps({"n": n}), message_id=f"t-{n}")
        await asyncio.sleep(15)  # the outage itself
        await proxy.start()

        async def ticks():  # read past the proxy: the service's pool is the one under test
            conn = await asyncpg.connect(database)
            try:
                rows = await conn.fetch("SELECT data FROM received WHERE event_type = 'tick'")
            finally:
                await conn.close()
            return [json.loads(r["data"]) for r in rows] if len(rows) >= 15 else None
        rows = await eventually(ticks, timeout=90)
        assert sorted(r["n"] for r in rows) == list(range(15))
        channel = await broker.channel(prefetch=1)
        dead = await channel.declare_queue("evt-ticker-tick--probe.on_tick.dead-letter", passive=True)
        assert dead.declaration_result.message_count == 0
        await channel.close()
    finally:
        await runtime.stop()
        await proxy.close()


async def test_a_replayed_dead_letter_starts_afresh(probe, broker):
    queue = "evt-ticker-tick--probe.on_tick"
    await broker.publish("ticker.events", "tick", wire.dumps({"n": 0, "poison": True}), message_id="p-0")
    channel = await broker.channel(prefetch=1)
    dead = await channel.declare_queue(f"{queue}.dead-letter", passive=True)
    first = await eventually(lambda: dead.get(no_ack=True, fail=False))
    assert first.headers[ATTEMPT_HEADER] == 2 and ERROR_HEADER in first.headers
    retried_before = await handled(probe, queue, "retried")
    # An operator replays it into its queue (as a shovel or the management UI would).
    await broker.publish("", queue, first.body, headers=dict(first.headers), message_id=first.message_id)
    again = await eventually(lambda: dead.get(no_ack=True, fail=False))
    assert await handled(probe, queue, "retried") - retried_before == 2  # both retries, not none
    assert again.headers[ATTEMPT_HEADER] == 2
    await channel.close()


async def test_a_message_that_kills_its_consumer_stops_at_the_delivery_limit(amqp_url, database, broker):
    """A consumer process that dies mid-message leaves it unacked: the broker redelivers it.
    Here each 'death' is a channel closed with the message in hand, as a crash closes it."""
    runtime = ServiceRuntime(ProbeService, probe_settings(amqp_url, database))
    await runtime.start()  # declares the queues
    await runtime.stop()  # and leaves the message to the crashing consumer below
    queue_name = "evt-ticker-tick--probe.on_tick"
    await broker.publish("ticker.events", "tick", wire.dumps({"n": 1}), message_id="crasher")
    deliveries = 0
    while True:
        channel = await broker.channel(prefetch=1)
        queue = await channel.declare_queue(queue_name, passive=True)
        message = await queue.get(no_ack=False, fail=False, timeout=5)
        await channel.close()
        if message is None:
            break
        deliveries += 1
        assert deliveries <= DELIVERY_LIMIT + 1
    assert deliveries == DELIVERY_LIMIT + 1  # the first delivery and DELIVERY_LIMIT redeliveries
    channel = await broker.channel(prefetch=1)
    dead = await channel.declare_queue(f"{queue_name}.dead-letter", passive=True)
    message = await eventually(lambda: dead.get(no_ack=True, fail=False))
    assert message.message_id == "crasher"
    await channel.close()


async def test_a_queue_with_other_arguments_leaves_the_service_working(amqp_url, database, broker, rpc_client):
    mismatched = "evt-ticker-tick--probe.on_tick"
    channel = await broker.channel(prefetch=1)
    await channel.declare_queue(mismatched, durable=True, arguments={"x-max-length": 1000})  # classic
    await channel.close()
    proxy = TcpProxy("127.0.0.1", 5672)
    await proxy.start()
    runtime = ServiceRuntime(ProbeService, probe_settings(amqp_url.replace("5672", str(proxy.port)), database))
    await runtime.start()
    try:
        assert REGISTRY.get_sample_value("veikals_topology_mismatches",
                                         {"service": "probe", "queue": mismatched}) == 1
        assert await rpc_client.probe.add(2, 2) == 4
        await broker.publish("ticker.events", "tick", wire.dumps({"n": 1}), message_id="t-1")
        await eventually(lambda: _count(received(runtime, "ticker", "tick"), 1))
        # A reconnect restores every channel without declaring the refused queue again.
        await proxy.cut()
        await proxy.start()
        assert await eventually(lambda: _call(rpc_client.probe.add(3, 3)), timeout=30) == 6
        await broker.publish("ticker.events", "tick", wire.dumps({"n": 2}), message_id="t-2")
        await eventually(lambda: _count(received(runtime, "ticker", "tick"), 2), timeout=30)
    finally:
        await runtime.stop()
        await proxy.close()


async def test_an_expired_request_is_dropped_not_run(amqp_url, database, broker, rpc_client):
    runtime = ServiceRuntime(ProbeService, probe_settings(amqp_url, database))
    await runtime.start()
    await runtime.stop()  # the durable request queue stays; nobody consumes it now
    with pytest.raises(RpcTimeout):
        await rpc_client.call("probe", "record", 1, timeout=0.5)
    expired = {"service": "probe", "queue": "rpc-probe", "outcome": "expired"}
    before = REGISTRY.get_sample_value("veikals_messages_handled_total", expired) or 0
    runtime = ServiceRuntime(ProbeService, probe_settings(amqp_url, database))
    await runtime.start()  # now the request arrives, its caller long gone
    try:
        await eventually(lambda: _greater(asyncio.sleep(0, REGISTRY.get_sample_value(
            "veikals_messages_handled_total", expired) or 0), before))
        assert await rpc_client.probe.add(1, 1) == 2
        assert await received(runtime, "self", "record") == []
        assert await runtime.service.pool.fetchval("SELECT count(*) FROM rpc_calls") == 0
        channel = await broker.channel(prefetch=1)
        dead = await channel.declare_queue("rpc-probe.dead-letter", passive=True)
        assert dead.declaration_result.message_count == 0  # dropped, not a dead letter
        await channel.close()
    finally:
        await runtime.stop()


async def test_twenty_replicas_start_together_on_a_new_database(amqp_url, database):
    runtimes = [ServiceRuntime(ProbeService, probe_settings(amqp_url, database, db_pool_size=3, prefetch=1))
                for _ in range(20)]
    results = await asyncio.gather(*(r.start() for r in runtimes), return_exceptions=True)
    try:
        assert [r for r in results if isinstance(r, BaseException)] == []
        versions = await runtimes[0].service.pool.fetch("SELECT scope, version FROM schema_migrations")
        assert len(versions) == len({(r["scope"], r["version"]) for r in versions})
    finally:
        await asyncio.gather(*(r.stop() for r in runtimes), return_exceptions=True)


async def test_the_subscribers_queues_exist_before_the_first_publish(amqp_url, database, broker):
    """And an event a named subscriber's queue cannot take waits, as an alarm."""
    subscriptions = [Subscription("probe", "recorded", "elsewhere", "on_recorded")]
    runtime = ServiceRuntime(ProbeService, probe_settings(amqp_url, database), subscriptions)
    await runtime.start()
    try:
        channel = await broker.channel(prefetch=1)
        queue = await channel.declare_queue("evt-probe-recorded--elsewhere.on_recorded", passive=True)
        client = RpcClient(broker, "test-caller", timeout=10)
        await client.start()
        await client.probe.record(5)
        pool = runtime.service.pool
        await eventually(lambda: pool.fetchval("SELECT published_at IS NOT NULL FROM outbox"))
        message = await eventually(lambda: queue.get(no_ack=True, fail=False))
        assert wire.loads(message.body)["value"] == 5
        await queue.delete(if_unused=False, if_empty=False)
        await client.probe.record(6)
        await eventually(lambda: pool.fetchval(
            "SELECT count(*) = 1 FROM outbox WHERE published_at IS NULL AND attempts > 0 AND last_error LIKE 'Unroutable%'"))
        assert REGISTRY.get_sample_value("veikals_publish_failures_total",
                                         {"service": "probe", "reason": "unroutable"}) >= 1
        await client.stop()
        await channel.close()
    finally:
        await runtime.stop()


async def test_publishing_and_consuming_use_connections_of_their_own(probe, amqp_url):
    vhost = amqp_url.rsplit("/", 1)[1]
    listing = await asyncio.to_thread(rabbitmqctl, "list_connections", "vhost", "client_properties")
    ours = [line for line in listing.splitlines() if line.startswith(vhost)]
    assert any("probe (publish)" in line for line in ours) and any("probe (consume)" in line for line in ours)


async def test_a_stopped_client_fails_its_callers_without_cancelling_them(probe, broker):
    client = RpcClient(broker, "short-lived", timeout=10)
    await client.start()
    call = asyncio.create_task(client.probe.slow(3))
    await asyncio.sleep(0.3)
    await client.stop()
    with pytest.raises(BrokerUnavailable):
        await call


# --- helpers --------------------------------------------------------------------------------

async def _equals(value, expected):
    return (await value) == expected


async def _greater(value, floor):
    return (await value) > floor


async def _count(rows, n):
    found = await rows
    return found if len(found) >= n else None


async def _call(call):
    try:
        return await call
    except Exception:
        return None


async def test_an_erasure_and_a_handler_writing_about_the_subject_never_interleave(database):
    """The handler that got in first finishes (and its write is erased); one that comes during
    the erasure waits for it, then sees the tombstone."""
    pool = await migrated_pool(database)
    await pool.execute("CREATE TABLE people (id text, name text)")
    keys, anna = SubjectKeys(b"key"), Subject.customer(uuid.uuid4())
    headers = {SUBJECT_HEADER: str(anna), VERSION_HEADER: 1}
    waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    handler, eraser, late = [await pool.acquire() for _ in range(3)]
    handling, erasure, arriving = handler.transaction(), eraser.transaction(), late.transaction()
    try:
        await handling.start()
        assert await admit(handler, keys, "probe.on_x", headers, keep_newest=True) is None
        await erasure.start()
        erasing = asyncio.create_task(forget(eraser, keys, [anna]))
        await eventually(lambda: _equals(pool.fetchval(waiting), 1))  # the erasure waits
        await handler.execute("INSERT INTO people VALUES ($1, 'Anna')", anna.value)
        await handling.commit()
        await erasing
        await eraser.execute("DELETE FROM people WHERE id = $1", anna.value)
        await arriving.start()
        late_admit = asyncio.create_task(admit(late, keys, "probe.on_x", {**headers, VERSION_HEADER: 2},
                                               keep_newest=True))
        await eventually(lambda: _equals(pool.fetchval(waiting), 1))  # it waits for the erasure
        await erasure.commit()
        assert await late_admit == "erased"
        await arriving.rollback()
        assert await pool.fetch("SELECT * FROM people") == []
    finally:
        for conn in (handler, eraser, late):
            await pool.release(conn)
        await pool.close()
