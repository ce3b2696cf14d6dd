"""RabbitMQ restarted while a service runs: consumers come back and no confirmed message is lost.

The restart is ``rabbitmqctl stop_app`` / ``start_app``: every connection drops and the broker
comes back from what it persisted, as after a node restart, without the Erlang VM's start-up.
"""
import asyncio

import pytest

from shared.messaging import wire
from tests.conftest import eventually, rabbitmqctl
from tests.integration.conftest import received

pytestmark = pytest.mark.broker_restart

TOTAL = 400


async def publish_until_confirmed(broker, n: int) -> None:
    """What any producer must do: a publish the broker never confirmed is tried again."""
    while True:
        try:
            await broker.publish("ticker.events", "tick", wire.dumps({"n": n}), message_id=f"t-{n}")
            return
        except Exception:
            await asyncio.sleep(0.2)


async def test_consumers_return_and_no_confirmed_message_is_lost(probe, broker, rpc_client):
    confirmed: list[int] = []

    async def produce():
        for n in range(TOTAL):
            await publish_until_confirmed(broker, n)
            confirmed.append(n)
            await asyncio.sleep(0.005)

    producer = asyncio.create_task(produce())
    await eventually(lambda: asyncio.sleep(0, len(confirmed) > 100), timeout=30)
    await asyncio.to_thread(rabbitmqctl, "stop_app")
    stopped_at = len(confirmed)
    await asyncio.to_thread(rabbitmqctl, "start_app")
    await asyncio.wait_for(producer, 120)
    assert stopped_at < TOTAL, "the restart happened after publishing ended; it proved nothing"

    async def all_handled():
        rows = await received(probe, "ticker", "tick")
        return rows if len(rows) >= TOTAL else None
    rows = await eventually(all_handled, timeout=60)
    assert sorted(r["n"] for r in rows) == list(range(TOTAL))  # every one, each once
    # RPC consumers came back too, and the service is ready again.
    assert await eventually(lambda: _health(rpc_client), timeout=30) == {
        "service": "probe", "database": "ok", "broker": "ok"}


async def _health(rpc_client):
    try:
        return await rpc_client.probe.health(timeout=2)
    except Exception:
        return None
