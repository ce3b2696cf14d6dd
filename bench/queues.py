"""Classic against quorum queues on the local RabbitMQ, as our consumers use them.

For each queue type: ``--messages`` persistent messages published with confirms, K in flight,
while a consumer with prefetch ``--prefetch`` acks each (manual acks) on a channel of its own
connection; reported as messages/s end to end. Then the same again for a round trip: a
publish, its consumption and ack, one at a time, as p50 and p99 latency in ms.

The point is the choice in docs/architecture.md: quorum queues count deliveries themselves
(``x-delivery-limit``), so a message that crashes its consumer stops after N tries without a
table of our own; they cost raft writes on every publish and ack.

    .venv/bin/python bench/queues.py
    .venv/bin/python bench/queues.py --messages 20000 --in-flight 256
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aio_pika

from processes import bench_vhost  # bench/processes.py (the script's folder is on sys.path)

AMQP_BASE = "amqp://guest:guest@127.0.0.1:5672"


async def measure(url: str, queue_type: str, messages: int, in_flight: int, prefetch: int,
                  round_trips: int) -> dict[str, float]:
    publisher = await aio_pika.connect(url)
    consumer = await aio_pika.connect(url)
    try:
        pub_channel = await publisher.channel(publisher_confirms=True)
        con_channel = await consumer.channel()
        await con_channel.set_qos(prefetch_count=prefetch)
        name = f"bench-{queue_type}"
        queue = await con_channel.declare_queue(name, durable=True, arguments={"x-queue-type": queue_type})
        received = 0
        done = asyncio.Event()
        arrived: asyncio.Queue[float] = asyncio.Queue()
        target = messages

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            arrived.put_nowait(time.perf_counter())
            if received >= target:
                done.set()

        await queue.consume(on_message)
        body = b'{"type": "order_placed", "customer_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6"}'

        async def publish_many(count: int) -> None:
            for _ in range(count):
                await pub_channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=name, mandatory=True)

        started = time.perf_counter()
        share = [messages // in_flight + (1 if i < messages % in_flight else 0) for i in range(in_flight)]
        await asyncio.gather(*(publish_many(n) for n in share))
        await done.wait()
        throughput = messages / (time.perf_counter() - started)
        while not arrived.empty():
            arrived.get_nowait()

        latencies = []
        target = received + round_trips
        for _ in range(round_trips):
            sent = time.perf_counter()
            await publish_many(1)
            latencies.append((await arrived.get()) - sent)
        latencies.sort()
        await queue.delete(if_unused=False, if_empty=False)
        return {"msg_per_s": throughput, "p50_ms": statistics.median(latencies) * 1000,
                "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}
    finally:
        await consumer.close()
        await publisher.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--prefetch", type=int, default=32)
    parser.add_argument("--round-trips", type=int, default=500)
    args = parser.parse_args()
    with bench_vhost() as vhost:
        url = f"{AMQP_BASE}/{vhost}"
        print(f"{args.messages} persistent messages, {args.in_flight} publishes in flight, "
              f"prefetch {args.prefetch}; then {args.round_trips} round trips one at a time")
        print(f"{'queue':8} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for queue_type in ("classic", "quorum"):
            result = await measure(url, queue_type, args.messages, args.in_flight, args.prefetch,
                                   args.round_trips)
            print(f"{queue_type:8} {result['msg_per_s']:9.0f} {result['p50_ms']:8.2f} {result['p99_ms']:8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
