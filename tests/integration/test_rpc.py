"""Our RPC client against our RPC server, over the real broker."""
import asyncio

import pytest

from shared.config import load_settings
from shared.messaging import (
    BrokerUnavailable, IncorrectSignature, MethodNotFound, RemoteError, RpcTimeout, UnknownService, wire,
)
from shared.service import ServiceRuntime
from tests.conftest import eventually
from tests.integration.probe import ProbeRefused, ProbeService
from tests.tcp_proxy import TcpProxy


async def test_result_comes_back(probe, rpc_client):
    assert await rpc_client.probe.add(2, 3) == 5
    assert await rpc_client.call("probe", "add", a=1, b=1) == 2


async def test_unregistered_remote_error_is_a_remote_error(probe, rpc_client):
    with pytest.raises(RemoteError) as info:
        await rpc_client.probe.fail("no such order")
    assert info.value.exc_type == "ValueError"
    assert info.value.value == "no such order"


async def test_registered_remote_error_is_raised_as_itself(probe, rpc_client):
    with pytest.raises(ProbeRefused, match="over the limit"):
        await rpc_client.probe.refuse("over the limit")


async def test_unknown_method_and_bad_arguments(probe, rpc_client):
    with pytest.raises(MethodNotFound, match="nope"):
        await rpc_client.probe.nope()
    with pytest.raises(IncorrectSignature):
        await rpc_client.probe.add(1)
    with pytest.raises(IncorrectSignature):
        await rpc_client.probe.add(1, 2, c=3)


async def test_unknown_service(rpc_client):
    with pytest.raises(UnknownService, match="ghost"):
        await rpc_client.ghost.health()


async def test_health_reports_database_and_broker(probe, rpc_client):
    assert await rpc_client.probe.health() == {
        "service": "probe", "database": "ok", "broker": "ok"}


async def test_each_call_gets_its_own_call_id(probe, rpc_client):
    first = await rpc_client.probe.call_stack()
    second = await rpc_client.probe.call_stack()
    assert len(first) == 2 and first[0].startswith("test-client.call.")
    assert first[1].startswith("probe.call_stack.")
    assert first[0] != second[0] and first[1] != second[1]


async def test_many_calls_in_flight(probe, rpc_client):
    results = await asyncio.gather(*(rpc_client.probe.add(i, i) for i in range(300)))
    assert results == [2 * i for i in range(300)]


async def test_no_reply_in_time_is_a_timeout(probe, rpc_client):
    with pytest.raises(RpcTimeout, match="probe.slow"):
        await rpc_client.call("probe", "slow", 2, timeout=0.3)


async def test_unserializable_result_is_reported_not_fatal(probe, rpc_client):
    with pytest.raises(RemoteError) as info:
        await rpc_client.probe.unserializable()
    assert info.value.exc_type == "UnserializableValueError"
    assert await rpc_client.probe.add(1, 1) == 2


@pytest.mark.parametrize("body,headers", [
    (b"not json", {}), (b'{"args": []}', {}), (b'["args", "kwargs"]', {}),
    (b'{"args": [NaN, 1], "kwargs": {}}', {}), (b'{"args": ["a\\u0000", 1], "kwargs": {}}', {}),
    (b'{"args": [1, 1], "kwargs": {}}', {"nameko.user_id": "a\x00b"}),  # it would reach the outbox
])
async def test_malformed_request_is_answered_as_nameko_does(probe, broker, body, headers):
    channel = await broker.channel(prefetch=1)
    replies = await channel.declare_queue(exclusive=True)
    await replies.bind("nameko-rpc", routing_key=replies.name)
    await broker.publish("nameko-rpc", "probe.add", body, reply_to=replies.name,
                         correlation_id="c-1", headers=headers)

    async def reply():
        return await replies.get(no_ack=True, fail=False)
    message = await eventually(reply)
    assert message.correlation_id == "c-1"
    error = wire.loads(message.body)["error"]
    assert error["exc_path"] == "nameko.exceptions.MalformedRequest"
    await channel.close()


async def test_broker_gone_calls_time_out_and_shutdown_is_bounded(
        amqp_url, database, free_port):
    proxy = TcpProxy("127.0.0.1", 5672)
    await proxy.start()
    via_proxy = amqp_url.replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
    runtime = ServiceRuntime(ProbeService, load_settings(
        "probe", amqp_url=via_proxy, database_url=database, http_port=free_port,
        shutdown_grace_s=2))
    await runtime.start()
    try:
        assert await runtime.service.rpc.probe.add(1, 2) == 3
        await proxy.cut()
        for _ in range(3):  # at once after the cut, and while it tries to reconnect
            started = asyncio.get_running_loop().time()
            with pytest.raises((RpcTimeout, BrokerUnavailable)):
                await runtime.service.rpc.call("probe", "add", 1, 2, timeout=1)
            assert asyncio.get_running_loop().time() - started < 2
        async def not_ready():
            return (await runtime.service.readiness())["broker"] == "unreachable"
        await eventually(not_ready, timeout=5)
    finally:
        started = asyncio.get_running_loop().time()
        await runtime.stop()
        assert asyncio.get_running_loop().time() - started < 10  # grace 2 s, not forever
        await proxy.close()
