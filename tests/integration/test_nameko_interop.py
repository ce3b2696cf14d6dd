"""Stock nameko 2.14 as the peer, in its own process: our wire format must match exactly."""
import asyncio
import json
import subprocess
import sys

import pytest

from tests.conftest import eventually
from tests.integration.conftest import received

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def run_nameko(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "tests.nameko_peer", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
async def nameko_peer(amqp_url, tmp_path):
    events_file = tmp_path / "events.jsonl"
    events_file.touch()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.nameko_peer", "serve", amqp_url, str(events_file),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.strip() == b"ready", line
    yield events_file
    proc.terminate()
    await proc.wait()


async def test_nameko_proxy_calls_our_service(probe, amqp_url, nameko_peer):
    out = await asyncio.to_thread(run_nameko, "call", amqp_url, "probe")
    assert out["add"] == {"result": 5}
    assert out["remote_error"]["error"] == "nameko.exceptions.RemoteError"
    assert out["remote_error"]["exc_type"] == "ValueError"
    assert "no such order" in out["remote_error"]["value"]
    assert out["unknown_method"]["error"] == "nameko.exceptions.MethodNotFound"
    assert out["unknown_method"]["value"] == "nope"
    assert out["bad_arguments"]["error"] == "nameko.exceptions.IncorrectSignature"
    assert out["unknown_service"]["error"] == "nameko.exceptions.UnknownService"
    # The standalone proxy's call id, then ours, on one stack.
    stack = out["call_stack"]["result"]
    assert stack[0].startswith("standalone_rpc_proxy.call.") and stack[1].startswith("probe.call_stack.")
    # A nameko worker calling us: its stack is carried on and extended by our worker.
    stack = out["stack_via_nameko_worker"]["result"]
    assert [s.rsplit(".", 1)[0] for s in stack] == [
        "standalone_rpc_proxy.call", "nameko_peer.call_probe", "probe.call_stack"]
    # A state-changing call from stock nameko is applied once, keyed by its correlation id.
    [row] = await received(probe, "self", "record")
    assert out["state_changing"] == {"result": row["run"]} and row["value"] == 9
    assert await probe.service.pool.fetchval("SELECT count(*) FROM rpc_calls") == 1


async def test_our_client_calls_a_nameko_service(probe, nameko_peer):
    assert await probe.service.rpc.nameko_peer.multiply(6, 7) == 42


async def test_nameko_event_handler_receives_our_event(probe, rpc_client, nameko_peer):
    await rpc_client.probe.announce(7)

    async def delivered():
        return [json.loads(line) for line in nameko_peer.read_text().splitlines()]
    assert await eventually(delivered) == [{"value": 7}]


async def test_our_consumer_receives_a_nameko_event(probe, nameko_peer):
    assert await probe.service.rpc.nameko_peer.ping(11) == 11

    async def handled():
        return await received(probe, "nameko_peer", "pinged")
    assert await eventually(handled) == [{"value": 11}]


async def test_identical_nameko_events_are_each_applied(probe, amqp_url):
    """Stock nameko sets no message id: two equal events are two events, not a duplicate."""
    out = await asyncio.to_thread(run_nameko, "dispatch", amqp_url, "ticker", "tick",
                                  '{"n": 7}', "2")
    assert out == {"dispatched": 2}

    async def both():
        rows = await received(probe, "ticker", "tick")
        return rows if len(rows) == 2 else None
    assert await eventually(both) == [{"n": 7}, {"n": 7}]
