"""Run as a process: commit a business change with its event, start the relay, and be killed
(SIGKILL, no clean-up) at the moment the relay is about to publish.

    python -m tests.integration.outbox_crash DSN AMQP_URL
"""
import asyncio
import os
import signal
import sys

from shared import db
from shared.messaging import Broker
from shared.outbox import OutboxRelay, add_event


class DyingBroker(Broker):
    async def publish(self, *args, **kwargs):
        print("killed before publish", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


async def main(dsn: str, amqp_url: str) -> None:
    pool = await db.create_pool(dsn)
    async with pool.acquire() as conn, conn.transaction():
        await add_event(conn, "probe", "announced", {"value": 99})
    print("committed", flush=True)
    broker = DyingBroker(amqp_url, name="outbox-crash")
    await broker.connect()
    relay = OutboxRelay(pool, broker, "probe", poll_interval=0.1)
    await relay.start()
    await asyncio.sleep(30)  # never reached: the relay's first publish kills us


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
