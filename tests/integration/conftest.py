from __future__ import annotations

import json

import pytest

from shared.config import load_settings
from shared.messaging import Broker, RpcClient
from shared.service import ServiceRuntime
from tests.integration.probe import ProbeService


@pytest.fixture
async def probe(amqp_url, database, free_port):
    settings = load_settings(
        "probe", amqp_url=amqp_url, database_url=database, http_port=free_port,
        max_retries=2, retry_delay_ms=100, outbox_poll_s=0.2, shutdown_grace_s=5)
    runtime = ServiceRuntime(ProbeService, settings)
    await runtime.start()
    yield runtime
    await runtime.stop()


@pytest.fixture
async def broker(amqp_url):
    broker = Broker(amqp_url, name="test-client")
    await broker.connect()
    yield broker
    await broker.close()


@pytest.fixture
async def rpc_client(broker):
    client = RpcClient(broker, "test-client", timeout=10)
    await client.start()
    yield client
    await client.stop()


async def received(runtime, source: str, event_type: str) -> list[dict]:
    rows = await runtime.service.pool.fetch(
        "SELECT data FROM received WHERE source = $1 AND event_type = $2 ORDER BY id",
        source, event_type)
    return [json.loads(r["data"]) for r in rows]
