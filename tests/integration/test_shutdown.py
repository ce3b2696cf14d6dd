"""Graceful shutdown: stop taking work, finish what is in hand, close cleanly."""
import asyncio

from shared.config import load_settings
from shared.service import ServiceRuntime
from tests.integration.probe import ProbeService


async def test_in_flight_call_is_answered_and_later_calls_wait_for_the_next_start(
        amqp_url, database, free_port, rpc_client):
    settings = load_settings("probe", amqp_url=amqp_url, database_url=database,
                             http_port=free_port, shutdown_grace_s=10)
    runtime = ServiceRuntime(ProbeService, settings)
    await runtime.start()
    in_flight = asyncio.create_task(rpc_client.probe.slow(1.0))
    await asyncio.sleep(0.3)
    await runtime.stop()
    assert await in_flight == "finished"

    # Stopped: the request waits in the durable queue rather than being lost...
    waiting = asyncio.create_task(rpc_client.call("probe", "add", 1, 2, timeout=15))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    # ...and the next instance answers it.
    runtime = ServiceRuntime(ProbeService, settings)
    await runtime.start()
    try:
        assert await waiting == 3
    finally:
        await runtime.stop()
