"""A message that keeps failing ends on the dead-letter path; the consumer keeps serving."""
import asyncio

from shared.config import load_settings
from shared.messaging import wire
from shared.messaging.events import ATTEMPT_HEADER, ERROR_HEADER, QUEUE_HEADER
from tests.conftest import eventually
from shared.service import ServiceRuntime
from tests.integration.conftest import received
from tests.integration.probe import ProbeService

QUEUE = "evt-ticker-tick--probe.on_tick"


async def test_poison_message_is_dead_lettered_after_its_retries(probe, broker):
    await broker.publish("ticker.events", "tick", wire.dumps({"n": 0, "poison": True}),
                         message_id="poison-0")
    for n in range(1, 6):
        await broker.publish("ticker.events", "tick", wire.dumps({"n": n}), message_id=f"t-{n}")

    async def good_ones_handled():
        rows = await received(probe, "ticker", "tick")
        return rows if len(rows) == 5 else None
    assert sorted(r["n"] for r in await eventually(good_ones_handled)) == [1, 2, 3, 4, 5]

    channel = await broker.channel(prefetch=1)
    dead_letters = await channel.declare_queue(f"{QUEUE}.dead-letter", durable=True)

    async def dead_lettered():
        return await dead_letters.get(no_ack=True, fail=False)
    message = await eventually(dead_lettered)
    assert wire.loads(message.body) == {"n": 0, "poison": True}
    assert message.message_id == "poison-0"
    assert message.headers[ATTEMPT_HEADER] == 2  # max_retries=2 in the probe fixture
    assert message.headers[QUEUE_HEADER] == QUEUE
    assert "cannot handle tick 0" in message.headers[ERROR_HEADER]
    # Retried, not requeued forever: nothing is left in the queue or the retry queue.
    await asyncio.sleep(0.3)
    main = await channel.declare_queue(QUEUE, durable=True, passive=True)
    retry = await channel.declare_queue(f"{QUEUE}.retry", passive=True)
    assert main.declaration_result.message_count == 0
    assert retry.declaration_result.message_count == 0
    # The consumer still serves after the poison message is gone.
    await broker.publish("ticker.events", "tick", wire.dumps({"n": 6}), message_id="t-6")

    async def sixth():
        rows = await received(probe, "ticker", "tick")
        return rows if len(rows) == 6 else None
    assert {"n": 6} in await eventually(sixth)
    await channel.close()


async def test_undecodable_body_goes_straight_to_dead_letter(probe, broker):
    await broker.publish("ticker.events", "tick", b"\xff not json", message_id="garbage")
    channel = await broker.channel(prefetch=1)
    dead_letters = await channel.declare_queue(f"{QUEUE}.dead-letter", durable=True)

    async def dead_lettered():
        return await dead_letters.get(no_ack=True, fail=False)
    message = await eventually(dead_lettered)
    assert message.body == b"\xff not json"
    assert ATTEMPT_HEADER not in message.headers
    assert "undecodable" in message.headers[ERROR_HEADER]
    await channel.close()


async def test_changing_the_retry_settings_does_not_break_the_next_start(
        amqp_url, database, free_port):
    for delay, retries in ((100, 2), (5000, 7)):
        runtime = ServiceRuntime(ProbeService, load_settings(
            "probe", amqp_url=amqp_url, database_url=database, http_port=free_port,
            retry_delay_ms=delay, max_retries=retries))
        await runtime.start()
        await runtime.stop()


async def test_json_with_an_impossible_typed_value_is_dead_lettered(probe, broker):
    body = b'{"n": {"__type__": "decimal", "__value__": "not a number"}}'
    await broker.publish("ticker.events", "tick", body, message_id="bad-decimal")
    channel = await broker.channel(prefetch=1)
    dead_letters = await channel.declare_queue(f"{QUEUE}.dead-letter", durable=True)

    async def dead_lettered():
        return await dead_letters.get(no_ack=True, fail=False)
    message = await eventually(dead_lettered)
    assert message.message_id == "bad-decimal" and "undecodable" in message.headers[ERROR_HEADER]
    await channel.close()
