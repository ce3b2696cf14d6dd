"""Run as a process: serve the probe until the first ``record`` call, and be killed (SIGKILL,
no clean-up) at one point of it:

- ``before-commit``: the method has written its row and event, the transaction is open;
- ``before-reply``: the call is committed with its reply, the reply is not yet published;
- ``before-ack``: the reply is published and confirmed, the request is not yet acked.

    python -m tests.integration.rpc_crash DSN AMQP_URL before-commit|before-reply|before-ack
"""
import asyncio
import os
import signal
import sys

from shared import service as runtime_module
from shared.config import load_settings
from shared.logging import configure_logging
from shared.messaging import Broker
from shared.messaging.broker import RPC_EXCHANGE
from shared.service import ServiceRuntime
from tests.integration.probe import ProbeService

WHEN = sys.argv[3] if len(sys.argv) > 3 else ""


def die(where: str) -> None:
    print(f"killed {where}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


class DyingProbe(ProbeService):
    async def record(self, conn, value: int) -> str:
        run = await super().record(conn, value)
        if WHEN == "before-commit":
            die(WHEN)
        return run


DyingProbe.record.__veikals_rpc__ = ProbeService.record.__veikals_rpc__


class DyingBroker(Broker):
    async def publish(self, exchange: str, routing_key: str, body: bytes, **kwargs) -> None:
        is_reply = exchange == RPC_EXCHANGE and kwargs.get("reply_to") is None and "." not in routing_key
        if is_reply and WHEN == "before-reply":
            die(WHEN)
        await super().publish(exchange, routing_key, body, **kwargs)
        if is_reply and WHEN == "before-ack":
            die(WHEN)


async def main(dsn: str, amqp_url: str) -> None:
    configure_logging("probe", stream=sys.stderr)  # stdout says only where it is
    runtime_module.Broker = DyingBroker  # the runtime builds its broker from this name
    settings = load_settings("probe", amqp_url=amqp_url, database_url=dsn, http_port=0,
                             outbox_poll_s=60, shutdown_grace_s=1)
    runtime = ServiceRuntime(DyingProbe, settings)
    await runtime.start()
    print("ready", flush=True)
    await asyncio.sleep(120)  # the first record call kills us before this ends


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
