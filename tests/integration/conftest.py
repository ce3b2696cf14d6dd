from __future__ import annotations

import asyncio
import json

import aio_pika

import pytest

from shared import db
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


async def bind_listener(broker, source: str, event_type: str, arguments=None):
    channel = await broker.channel(prefetch=50)
    exchange = await broker.declare_topic_exchange(channel, f"{source}.events")
    queue = await channel.declare_queue(exclusive=True, arguments=arguments)
    await queue.bind(exchange, routing_key=event_type)
    return queue


async def drain(queue, wait: float = 1.0) -> list[aio_pika.abc.AbstractIncomingMessage]:
    messages = []
    deadline = asyncio.get_running_loop().time() + wait
    while asyncio.get_running_loop().time() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.05)
        else:
            messages.append(message)
    return messages


async def migrated_pool(dsn: str, **kwargs):
    pool = await db.create_pool(dsn, **kwargs)
    await db.migrate(pool, {"shared": db.SHARED_MIGRATIONS})
    return pool
