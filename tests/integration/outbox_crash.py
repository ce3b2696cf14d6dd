"""Run as a process: commit a business change with its event (``ticker``/``tick``), start the
relay, and be killed (SIGKILL, no clean-up) when it is about to publish (``before``) or just
after the broker confirmed the publish, before the relay could mark the row (``after``).

    python -m tests.integration.outbox_crash DSN AMQP_URL before|after
"""
import asyncio
import os
import signal
import sys

from shared import db
from shared.messaging import Broker
from shared.outbox import OutboxRelay, add_event


class DyingBroker(Broker):
    when = "before"

    async def publish(self, *args, **kwargs):
        if self.when == "after":
            await super().publish(*args, **kwargs)
        print(f"killed {self.when} publish", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


async def main(dsn: str, amqp_url: str, when: str) -> None:
    pool = await db.create_pool(dsn)
    async with pool.acquire() as conn, conn.transaction():
        await add_event(conn, "ticker", "tick", {"n": 99})
    print("committed", flush=True)
    broker = DyingBroker(amqp_url, name="outbox-crash")
    broker.when = when
    await broker.connect()
    relay = OutboxRelay(pool, broker, "ticker", poll_interval=0.1)
    await relay.start()
    await asyncio.sleep(30)  # never reached: the relay's first publish kills us


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
