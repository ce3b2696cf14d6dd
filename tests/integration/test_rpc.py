"""Our RPC client against our RPC server, over the real broker."""
import pytest

from shared.messaging import IncorrectSignature, MethodNotFound, RemoteError, UnknownService
from tests.integration.probe import ProbeRefused


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
    import asyncio
    results = await asyncio.gather(*(rpc_client.probe.add(i, i) for i in range(300)))
    assert results == [2 * i for i in range(300)]
