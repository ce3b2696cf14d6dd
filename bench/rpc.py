"""RPC round trips on the local RabbitMQ: our messaging layer vs raw aio-pika vs stock nameko.

These implementations answer the same ``echo(value) -> value`` call:

ours
    ``shared.messaging``: ``RpcServer`` and ``RpcClient``, each on its own ``Broker``; a
    read-only method.
ours-write
    The same, with a state-changing method: it inserts a row, in the transaction that also
    records the call's key and reply (``shared.inbox.RpcCalls``): what exactly-once costs.
ours-write-plain
    The same insert in a transaction of its own, without the record: the write alone.
raw
    The ceiling: the least aio-pika code with the same durability as ours. Confirmed,
    mandatory, persistent publishes to a durable topic exchange; a request queue of the same
    type as ours (quorum; ``--raw-queue classic`` for the older kind) and a durable reply
    queue; manual acks, the request acked once its reply is confirmed; JSON.
nameko
    Stock nameko 2.14: an ``@rpc`` service under ``ServiceRunner`` and a ``ClusterRpcProxy``
    caller, each in its own process (see ``bench/nameko_echo.py``).

For each implementation the server runs in a subprocess of its own, so the client and the
server never share an event loop; ours and the raw client run in this process, nameko's
caller in another subprocess that prints its figures as JSON. After a warm-up the benchmark measures

* sequential: ``--calls`` calls one at a time, reported as p50 and p99 latency in ms;
* in flight: ``--in-flight-calls`` calls with exactly K outstanding at any time (K workers,
  each making one call after another), reported as calls/s, for each K in ``--in-flight``.
  nameko's caller keeps sliding windows of ``call_async`` replies instead, K in all, spread
  over ``--nameko-proxies`` standalone proxies: one proxy cannot be shared between greenthreads,
  and alone it cannot publish fast enough to keep K calls busy (see ``bench/nameko_echo.py``).

Everything runs in a vhost of its own, ``veikals-bench-<random>``, created with
``rabbitmqctl`` (so run it as a user that may) and deleted at the end, whatever happens.
Figures from a shared machine are noisy: compare runs made back to back, not across days.

    .venv/bin/python bench/rpc.py                    # everything: 2-3 minutes on 2 cores
    .venv/bin/python bench/rpc.py --only ours,raw --calls 500 --in-flight 64
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from shared import db
from shared.inbox import RpcCalls
from shared.logging import configure_logging
from shared.messaging import Broker, RpcClient, RpcServer
from shared.messaging.rpc import RpcMethod
from processes import bench_vhost, stop_process  # bench/processes.py (the script's folder is on sys.path)

AMQP_BASE = "amqp://guest:guest@127.0.0.1:5672"
PG_BASE = "postgresql://postgres@127.0.0.1:5432"
NAMEKO_SCRIPT = Path(__file__).resolve().parent / "nameko_echo.py"
IMPLEMENTATIONS = ("ours", "ours-write", "ours-write-plain", "raw", "nameko")
PREFETCH = 256  # every server's prefetch / nameko's max_workers
READY_TIMEOUT = 30.0

OURS_SERVICE = "benchsvc"
RAW_EXCHANGE = "raw-rpc"
RAW_QUEUE = "raw-rpc-benchsvc"
RAW_ROUTING_KEY = "benchsvc.echo"
REPLY_QUEUE_TTL_MS = 300_000

Call = Callable[[Any], Awaitable[Any]]


async def echo(value: Any) -> Any:
    return value


# --- ours ------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def bench_database() -> AsyncIterator[db.Pool]:
    """A database of the benchmark's own with the shared tables and one to write to."""
    dsn = f"{PG_BASE}/veikals_bench_{uuid.uuid4().hex[:8]}"
    await db.ensure_database(dsn)
    pool = await db.create_pool(dsn, max_size=64)
    try:
        await db.migrate(pool, {"shared": db.SHARED_MIGRATIONS})
        await pool.execute("CREATE TABLE writes (value bigint NOT NULL)")
        yield pool
    finally:
        await pool.close()
        await db.drop_database(dsn)


@contextlib.asynccontextmanager
async def ours_server(url: str, writes: str | None = None) -> AsyncIterator[None]:
    broker = Broker(url, name="bench-server")
    await broker.connect()
    async with contextlib.AsyncExitStack() as stack:
        methods, once = {"echo": RpcMethod(echo)}, None
        if writes is not None:
            pool = await stack.enter_async_context(bench_database())

            async def write(conn, value: int) -> int:  # in the transaction that records the call
                await conn.execute("INSERT INTO writes (value) VALUES ($1)", value)
                return value

            async def write_plain(value: int) -> int:  # the same write, nothing recorded
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute("INSERT INTO writes (value) VALUES ($1)", value)
                return value
            methods = {"echo": RpcMethod(write, changes_state=True) if writes == "once"
                       else RpcMethod(write_plain)}
            once = RpcCalls(pool)
        server = RpcServer(broker, OURS_SERVICE, methods, prefetch=PREFETCH, once=once)
        await server.start()
        try:
            yield
        finally:
            await server.stop(grace=1)
            await broker.close()


@contextlib.asynccontextmanager
async def ours_client(url: str) -> AsyncIterator[Call]:
    broker = Broker(url, name="bench-client")
    await broker.connect()
    client = RpcClient(broker, "bench-client", timeout=30)
    await client.start()
    try:
        yield lambda value: client.call(OURS_SERVICE, "echo", value)
    finally:
        await client.stop()
        await broker.close()


# --- raw aio-pika ----------------------------------------------------------------------------

def raw_message(payload: Any, correlation_id: str | None, reply_to: str | None = None
                ) -> aio_pika.Message:
    return aio_pika.Message(
        json.dumps(payload).encode(), content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        correlation_id=correlation_id, reply_to=reply_to)


async def raw_channel(url: str):
    """A connection, a confirming channel with bounded prefetch, and the durable exchange."""
    connection = await aio_pika.connect(url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=PREFETCH)
    exchange = await channel.declare_exchange(RAW_EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                              durable=True)
    return connection, channel, exchange


RAW_QUEUE_TYPE = os.environ.get("BENCH_RAW_QUEUE", "quorum")


@contextlib.asynccontextmanager
async def raw_server(url: str) -> AsyncIterator[None]:
    connection, channel, exchange = await raw_channel(url)
    queue = await channel.declare_queue(RAW_QUEUE, durable=True, arguments={"x-queue-type": RAW_QUEUE_TYPE})
    await queue.bind(exchange, routing_key=RAW_ROUTING_KEY)

    async def on_request(message: AbstractIncomingMessage) -> None:
        request = json.loads(message.body)
        result = await echo(*request["args"], **request["kwargs"])
        reply = raw_message({"result": result, "error": None}, message.correlation_id)
        await exchange.publish(reply, routing_key=message.reply_to, mandatory=True)
        await message.ack()

    await queue.consume(on_request)
    try:
        yield
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def raw_client(url: str) -> AsyncIterator[Call]:
    connection, channel, exchange = await raw_channel(url)
    reply_key = str(uuid.uuid4())
    queue = await channel.declare_queue(f"raw-rpc.reply-{reply_key}", durable=True,
                                        arguments={"x-expires": REPLY_QUEUE_TTL_MS})
    await queue.bind(exchange, routing_key=reply_key)
    pending: dict[str, asyncio.Future] = {}

    async def on_reply(message: AbstractIncomingMessage) -> None:
        await message.ack()
        pending.pop(message.correlation_id).set_result(json.loads(message.body))

    async def call(value: Any) -> Any:
        correlation_id = str(uuid.uuid4())
        reply = pending[correlation_id] = asyncio.get_running_loop().create_future()
        request = raw_message({"args": [value], "kwargs": {}}, correlation_id, reply_key)
        await exchange.publish(request, routing_key=RAW_ROUTING_KEY, mandatory=True)
        return (await reply)["result"]

    await queue.consume(on_reply)
    try:
        yield call
    finally:
        await connection.close()


SERVERS = {"ours": ours_server, "ours-write": lambda url: ours_server(url, writes="once"),
           "ours-write-plain": lambda url: ours_server(url, writes="plain"), "raw": raw_server}
CLIENTS = {"ours": ours_client, "ours-write": ours_client, "ours-write-plain": ours_client, "raw": raw_client}


# --- measuring -------------------------------------------------------------------------------

@dataclass
class Figures:
    name: str
    p50_ms: float
    p99_ms: float
    calls_per_s: dict[int, float]  # by calls in flight


def median_figures(name: str, rounds: list[Figures]) -> Figures:
    return Figures(name, statistics.median(f.p50_ms for f in rounds), statistics.median(f.p99_ms for f in rounds),
                   {k: statistics.median(f.calls_per_s[k] for f in rounds) for k in rounds[0].calls_per_s})


def percentiles_ms(latencies_s: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(latencies_s, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


async def sequential(call: Call, calls: int) -> list[float]:
    latencies = []
    for value in range(calls):
        started = time.perf_counter()
        result = await call(value)
        latencies.append(time.perf_counter() - started)
        if result != value:
            raise RuntimeError(f"echo({value!r}) returned {result!r}")
    return latencies


async def in_flight(call: Call, workers: int, calls: int) -> float:
    """Calls per second with ``workers`` calls outstanding at any time, over ``calls`` calls."""
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call(remaining)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return calls / (time.perf_counter() - started)


async def measure_asyncio(name: str, url: str, args: argparse.Namespace) -> Figures:
    async with CLIENTS[name](url) as call:
        await in_flight(call, args.in_flight[0], args.warmup)
        p50, p99 = percentiles_ms(await sequential(call, args.calls))
        rates = {k: await in_flight(call, k, args.in_flight_calls) for k in args.in_flight}
    return Figures(name, p50, p99, rates)


def measure_nameko(url: str, args: argparse.Namespace) -> Figures:
    command = [sys.executable, str(NAMEKO_SCRIPT), "call", url, "--calls", str(args.calls),
               "--in-flight", ",".join(map(str, args.in_flight)),
               "--in-flight-calls", str(args.in_flight_calls), "--warmup", str(args.warmup),
               "--proxies", str(args.nameko_proxies)]
    # run() kills the caller if this process is interrupted.
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    measured = json.loads(done.stdout)
    p50, p99 = percentiles_ms(measured["sequential_s"])
    return Figures("nameko", p50, p99,
                   {int(k): rate for k, rate in measured["calls_per_s"].items()})


# --- processes -----------------------------------------------------------------------------

def server_command(name: str, url: str) -> list[str]:
    if name == "nameko":
        return [sys.executable, str(NAMEKO_SCRIPT), "serve", url, str(PREFETCH)]
    return [sys.executable, __file__, "--serve", name, "--url", url]


@contextlib.contextmanager
def server_process(name: str, url: str) -> Iterator[None]:
    """Runs ``name``'s server until the block ends; it prints ``ready`` once it consumes."""
    process = subprocess.Popen(server_command(name, url), stdout=subprocess.PIPE, text=True)
    try:
        readable, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT)
        line = process.stdout.readline().strip() if readable else "nothing yet"
        if line != "ready":
            raise RuntimeError(f"{name} server not ready after {READY_TIMEOUT}s: {line or 'exited'}")
        yield
    finally:
        stop_process(process)


async def serve(name: str, url: str) -> None:
    """The server subprocess: serve until SIGTERM or SIGINT."""
    configure_logging(f"bench-{name}-server", level="warning")
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with SERVERS[name](url):
        print("ready", flush=True)
        await stop.wait()


# --- report ----------------------------------------------------------------------------------

def report(figures: list[Figures], args: argparse.Namespace) -> None:
    levels = args.in_flight
    print(f"\nRPC echo round trips on {os.cpu_count()} CPUs, medians of {args.rounds} interleaved rounds: {args.calls} sequential calls, "
          f"{args.in_flight_calls} calls per in-flight level, after {args.warmup} warm-up calls "
          f"(nameko's in flight over {args.nameko_proxies} standalone proxies)\n")
    header = f"{'implementation':<16}{'seq p50 ms':>12}{'seq p99 ms':>12}" + "".join(
        f"{f'{k} in flight/s':>18}" for k in levels)
    print(header)
    print("-" * len(header))
    for f in figures:
        print(f"{f.name:<16}{f.p50_ms:>12.2f}{f.p99_ms:>12.2f}" + "".join(
            f"{f.calls_per_s[k]:>18.0f}" for k in levels))

    by_name = {f.name: f for f in figures}
    plain, once = by_name.get("ours-write-plain"), by_name.get("ours-write")
    if plain and once:
        print("\nexactly-once (the call's record in its transaction) against the same write without it:")
        print(f"  sequential p50 {once.p50_ms - plain.p50_ms:+.2f} ms; " + ", ".join(
            f"{once.calls_per_s[k] / plain.calls_per_s[k]:.2f}x the calls/s at {k} in flight" for k in levels))
    ours = by_name.get("ours")
    if ours is None:
        return
    print(f"\nraw's request queue: {RAW_QUEUE_TYPE}; goals: ours >= 0.85x raw at 64 in flight, ours >= 2x nameko")
    goals = {"raw": 0.85, "nameko": 2.0}
    for other, goal in goals.items():
        if other not in by_name:
            continue
        for k in levels:
            ratio = ours.calls_per_s[k] / by_name[other].calls_per_s[k]
            # The raw-aio-pika goal is stated for 64 in flight only.
            judged = other == "nameko" or k == 64
            verdict = ("met" if ratio >= goal else "NOT met") if judged else "-"
            print(f"ours/{other:<7} at {k:>3} in flight: {ratio:5.2f}x   "
                  f"goal >= {goal}x: {verdict}")


# --- main ------------------------------------------------------------------------------------

def comma_ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def comma_names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",")]
    unknown = set(names) - set(IMPLEMENTATIONS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown implementation(s): {', '.join(sorted(unknown))}")
    return names


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000,
                        help="sequential calls per implementation (default %(default)s)")
    parser.add_argument("--in-flight", type=comma_ints, default=[64, 256],
                        help="calls kept outstanding, comma-separated (default 64,256)")
    parser.add_argument("--in-flight-calls", type=int, default=20_000,
                        help="calls per in-flight measurement (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=1000,
                        help="warm-up calls, at the first in-flight level (default %(default)s)")
    parser.add_argument("--nameko-proxies", type=int, default=4,
                        help="standalone proxies nameko's in-flight calls are spread over "
                             "(default %(default)s)")
    parser.add_argument("--only", type=comma_names, default=list(IMPLEMENTATIONS),
                        help="implementations to run, comma-separated (default all)")
    parser.add_argument("--amqp", default=AMQP_BASE,
                        help="broker URL without the vhost (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds over all implementations, interleaved; figures are medians (default %(default)s)")
    parser.add_argument("--raw-queue", choices=["quorum", "classic"], default="quorum",
                        help="raw's request queue type (default %(default)s, as ours)")
    parser.add_argument("--serve", choices=sorted(SERVERS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.url))
        return

    configure_logging("bench-client", level="warning")
    # Ctrl-C and `kill` both interrupt the run as a SIGINT, which asyncio.run and the
    # with-blocks below unwind cleanly: the servers stop and the vhost is deleted. (A shell
    # starts background jobs with SIGINT ignored, hence setting its handler too.)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    figures = []
    try:
        with bench_vhost() as vhost:
            url = f"{args.amqp}/{vhost}"
            rounds: dict[str, list[Figures]] = {name: [] for name in args.only}
            os.environ["BENCH_RAW_QUEUE"] = args.raw_queue  # the server subprocess reads it
            # Rounds interleave the implementations, so a slower minute of a shared machine
            # does not fall on one of them only; each figure is the median of its rounds.
            for round_ in range(args.rounds):
                for name in args.only:
                    print(f"measuring {name} (round {round_ + 1} of {args.rounds}) ...", file=sys.stderr, flush=True)
                    with server_process(name, url):
                        if name == "nameko":
                            rounds[name].append(measure_nameko(url, args))
                        else:
                            rounds[name].append(asyncio.run(measure_asyncio(name, url, args)))
            figures = [median_figures(name, measured) for name, measured in rounds.items()]
    except KeyboardInterrupt:
        sys.exit("interrupted")
    report(figures, args)


if __name__ == "__main__":
    main()
