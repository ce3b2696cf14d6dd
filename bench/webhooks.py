"""Outbound webhooks to a local sandbox partner: the durable path's throughput and added latency.

The durable path is ``shared.webhooks.outbound``: ``enqueue`` writes the message into
``webhook_deliveries`` inside the caller's transaction (and sends a NOTIFY), and a
``DeliveryWorker`` claims due rows, POSTs each one signed and records the attempt. The partner
is ``deploy.sandbox.partner`` run in a subprocess of its own (``python -m
deploy.sandbox.partner``), so it never shares an event loop or a core's time slices with the
worker being measured; it verifies every request with the ``standardwebhooks`` package, answers
200 and keeps a list of the requests it saw (``GET /_control/attempts``, each with its
``webhook_id`` and the wall-clock time ``at`` it handled it).

throughput
    For each K in ``--concurrency``: ``--deliveries`` ShipmentCreated messages are enqueued
    one transaction each, one after another on one connection, with no worker running
    (reported as enqueue rows/s); then a ``DeliveryWorker(concurrency=K)`` starts and the clock
    runs until ``SELECT count(*) ... WHERE status = 'delivered'`` (polled every 20 ms) reaches
    the number enqueued (reported as deliveries/s). The tables are emptied between runs.
    Over each drain: "bench CPU", "sandbox CPU" and "rest CPU" are shares of one core used by
    this process (the worker and the poller), by the sandbox's process, and by everything else
    (mostly PostgreSQL; the machine's busy time less the other two); "machine busy" is the share
    of all cores (Linux ``/proc``; n/a elsewhere).
latency
    ``--latency-deliveries`` messages (ShipmentCreated, about 420 bytes of body) one at a
    time, after ``--warmup`` unmeasured ones, with a 5 ms pause before each on both paths.
    durable: a worker (concurrency 16) is running, idle, woken by the enqueue's NOTIFY; the
    clock starts when the enqueue transaction begins, and the next message is enqueued once
    this one is ``delivered`` (polled every 2 ms, in this process). direct: a plain signed
    ``aiohttp`` POST of the same kind of body to the same endpoint, on a kept-alive
    connection; the clock starts before the body is built and signed.
    "-> sandbox" figures end when the sandbox handled the request (its ``at``, after it
    verified the signature, before its answer is sent), so both paths are cut at the same point
    and the polling interval does not enter the figures; all clocks are the one wall clock of
    this machine. "-> sender has 2xx" figures end when the sender learns of the success: for
    direct, the POST returned; for durable, the worker's recording transaction began
    (``delivered_at``). The added latency is the difference of the percentiles.

Everything runs in a database of its own, ``veikals_bench_<random>`` (created, migrated with
``shared/migrations`` and dropped at the end, whatever happens), against a sandbox on a free
loopback port. Figures from a shared machine are noisy: compare runs made back to back.

    .venv/bin/python bench/webhooks.py                   # everything: under a minute on 2 cores
    .venv/bin/python bench/webhooks.py --concurrency 64 --deliveries 2000 --latency-deliveries 0
    .venv/bin/python bench/webhooks.py --concurrency "" --latency-deliveries 300
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import aiohttp
import asyncpg

import shared.db
from shared.contracts.webhooks import Address, Contact, Parcel, ShipmentCreated
from shared.logging import configure_logging
from shared.webhooks.outbound import DeliveryWorker, WebhookEnvelope, enqueue
from shared.webhooks.policy import DeliveryPolicy
from shared.webhooks.registry import Partner, PartnerRegistry
from shared.webhooks.signing import new_secret, signature_headers
from processes import cpu_seconds, free_port, machine_busy, stop_process  # bench/processes.py (the script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
PG_BASE = "postgresql://postgres@127.0.0.1:5432"
PARTNER = "bench-carrier"
SECRET_ENV = "VEIKALS_BENCH_PARTNER_SECRET"
READY_TIMEOUT = 30.0
DRAIN_POLL_S = 0.02
DELIVERED_POLL_S = 0.002
LATENCY_CONCURRENCY = 16


def shipment(n: int) -> ShipmentCreated:
    return ShipmentCreated(
        shipment_id=uuid.uuid4(), order_id=uuid.uuid4(),
        recipient=Contact(name="Anna Bērziņa", email=f"anna{n}@example.lv", phone="+37120000000"),
        address=Address(line1="Brīvības iela 1", city="Rīga", postcode="LV-1010", country="LV"),
        parcels=[Parcel(weight_grams=900, contents="mug")])


# --- the sandbox partner, in a process of its own --------------------------------------------

def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def sandbox_process(port: int) -> Iterator[subprocess.Popen]:
    """The sandbox partner on ``port`` until the block ends; the secret is in the environment."""
    command = [sys.executable, "-m", "deploy.sandbox.partner", "--name", PARTNER,
               "--kind", "carrier", "--port", str(port), "--secret-env", SECRET_ENV]
    process = subprocess.Popen(command, cwd=ROOT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"sandbox exited with {process.returncode}")
            try:
                get_json(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sandbox not ready after {READY_TIMEOUT}s") from None
                time.sleep(0.1)
        yield process
    finally:
        stop_process(process)


# --- the environment -------------------------------------------------------------------------

@dataclass
class Env:
    pool: asyncpg.Pool
    partner: Partner
    registry: PartnerRegistry
    policy: DeliveryPolicy
    sandbox: str  # base URL
    sandbox_pid: int

    def worker(self, concurrency: int) -> DeliveryWorker:
        return DeliveryWorker(self.pool, self.registry, self.policy, "bench", schedule=[1, 1, 1],
                              timeout=10, concurrency=concurrency, poll_interval=0.5)

    async def reset(self) -> None:
        await self.pool.execute("TRUNCATE webhook_deliveries, webhook_attempts, "
                                "webhook_disabled_endpoints")
        await asyncio.to_thread(self._post, "/_control/reset")

    def _post(self, path: str) -> None:
        request = urllib.request.Request(self.sandbox + path, data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    async def sandbox_attempts(self) -> list[dict]:
        return await asyncio.to_thread(get_json, self.sandbox + "/_control/attempts")


def percentiles_ms(latencies_s: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(latencies_s, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


# --- throughput ------------------------------------------------------------------------------

@dataclass
class Throughput:
    concurrency: int
    enqueue_per_s: float
    drain_s: float
    delivered: int
    attempts: int           # rows in webhook_attempts
    sandbox_requests: int   # requests the sandbox saw
    non_200: int            # of those, answered otherwise
    bench_cpu: float        # share of one core over the drain
    sandbox_cpu: float | None
    machine_busy: float | None  # share of all cores over the drain

    @property
    def rest_cpu(self) -> float | None:
        """Share of one core used by everything else over the drain: mostly PostgreSQL."""
        if self.machine_busy is None or self.sandbox_cpu is None:
            return None
        return max(self.machine_busy * (os.cpu_count() or 1) - self.bench_cpu - self.sandbox_cpu, 0.0)

    @property
    def deliveries_per_s(self) -> float:
        return self.delivered / self.drain_s


async def enqueue_sequentially(env: Env, events: list[ShipmentCreated]) -> float:
    """Seconds to enqueue ``events``, one transaction each, one after another."""
    async with env.pool.acquire() as conn:
        started = time.perf_counter()
        for event in events:
            async with conn.transaction():
                await enqueue(conn, env.partner, event)
        return time.perf_counter() - started


async def throughput(env: Env, concurrency: int, deliveries: int, deadline: float) -> Throughput:
    await env.reset()
    events = [shipment(n) for n in range(deliveries)]
    enqueue_s = await enqueue_sequentially(env, events)

    worker = env.worker(concurrency)
    cpu_before, sandbox_before = time.process_time(), cpu_seconds(env.sandbox_pid)
    machine_before = machine_busy()
    started = time.perf_counter()
    await worker.start()
    try:
        while True:
            delivered, failed = await env.pool.fetchrow(
                """SELECT count(*) FILTER (WHERE status = 'delivered'),
                          count(*) FILTER (WHERE status = 'failed') FROM webhook_deliveries""")
            if delivered + failed >= deliveries:
                break
            if time.perf_counter() - started > deadline:
                raise RuntimeError(f"concurrency {concurrency}: {delivered} of {deliveries} "
                                   f"delivered after {deadline}s")
            await asyncio.sleep(DRAIN_POLL_S)
        drain_s = time.perf_counter() - started
        cpu_after, sandbox_after = time.process_time(), cpu_seconds(env.sandbox_pid)
        machine_after = machine_busy()
    finally:
        await worker.stop()
    if failed:
        raise RuntimeError(f"concurrency {concurrency}: {failed} deliveries failed")

    attempts = await env.pool.fetchval("SELECT count(*) FROM webhook_attempts")
    seen = await env.sandbox_attempts()
    sandbox_cpu = (None if sandbox_before is None or sandbox_after is None
                   else (sandbox_after - sandbox_before) / drain_s)
    machine = None
    if machine_before is not None and machine_after is not None:
        machine = (machine_after[0] - machine_before[0]) / max(machine_after[1] - machine_before[1], 1)
    return Throughput(concurrency, deliveries / enqueue_s, drain_s, delivered, attempts, len(seen),
                      sum(1 for a in seen if a["status"] != 200),
                      (cpu_after - cpu_before) / drain_s, sandbox_cpu, machine)


# --- latency ---------------------------------------------------------------------------------

@dataclass
class Latency:
    measured: int
    durable_arrival: list[float]   # enqueue begins -> sandbox handled it
    durable_commit: list[float]    # enqueue begins -> committed
    durable_dispatch: list[float]  # committed -> sandbox handled it
    durable_known: list[float]     # enqueue begins -> worker records the 2xx (delivered_at)
    direct_arrival: list[float]    # POST begins -> sandbox handled it
    direct_round_trip: list[float]  # POST begins -> response read


def arrivals(seen: list[dict]) -> dict[str, float]:
    return {a["webhook_id"]: dt.datetime.fromisoformat(a["at"]).timestamp()
            for a in seen if a["status"] == 200}


async def wait_delivered(pool: asyncpg.Pool, webhook_id: str, timeout: float = 30.0) -> None:
    started = time.monotonic()
    while True:
        status = await pool.fetchval("SELECT status FROM webhook_deliveries WHERE id = $1",
                                     webhook_id)
        if status == "delivered":
            return
        if status == "failed" or time.monotonic() - started > timeout:
            raise RuntimeError(f"{webhook_id} is {status} after {time.monotonic() - started:.1f}s")
        await asyncio.sleep(DELIVERED_POLL_S)


async def durable_one_by_one(env: Env, count: int, warmup: int
                             ) -> tuple[list[float], list[float], list[float], list[float]]:
    await env.reset()
    events = [shipment(n) for n in range(warmup + count)]
    began: dict[str, float] = {}
    committed: dict[str, float] = {}
    worker = env.worker(LATENCY_CONCURRENCY)
    await worker.start()
    try:
        async with env.pool.acquire() as conn:
            for n, event in enumerate(events):
                await asyncio.sleep(0.005)  # let the worker settle back into waiting
                start = time.time()
                async with conn.transaction():
                    webhook_id = await enqueue(conn, env.partner, event)
                end = time.time()
                if n >= warmup:
                    began[webhook_id], committed[webhook_id] = start, end
                await wait_delivered(env.pool, webhook_id)
    finally:
        await worker.stop()
    at = arrivals(await env.sandbox_attempts())
    delivered_at = {r["id"]: r["delivered_at"].timestamp() for r in await env.pool.fetch(
        "SELECT id, delivered_at FROM webhook_deliveries WHERE id = ANY($1)", list(began))}
    return ([at[w] - began[w] for w in began], [committed[w] - began[w] for w in began],
            [at[w] - committed[w] for w in began], [delivered_at[w] - began[w] for w in began])


async def direct_one_by_one(env: Env, count: int, warmup: int) -> tuple[list[float], list[float]]:
    await env.reset()
    events = [shipment(n) for n in range(warmup + count)]
    url = str(env.partner.endpoint)
    began: dict[str, float] = {}
    round_trips: list[float] = []
    async with aiohttp.ClientSession() as session:
        for n, event in enumerate(events):
            await asyncio.sleep(0.005)  # the same pause as on the durable path
            start, started = time.time(), time.perf_counter()
            webhook_id = f"msg_{uuid.uuid4().hex}"
            body = WebhookEnvelope(type=event.event_type, timestamp=dt.datetime.now(dt.timezone.utc),
                                   data=event.model_dump(mode="json")).model_dump_json().encode()
            headers = signature_headers(webhook_id, body, env.partner.secrets())
            headers["Content-Type"] = "application/json"
            async with session.post(url, data=body, headers=headers,
                                    allow_redirects=False) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"direct POST answered {response.status}")
            if n >= warmup:
                round_trips.append(time.perf_counter() - started)
                began[webhook_id] = start
    at = arrivals(await env.sandbox_attempts())
    return [at[w] - began[w] for w in began], round_trips


async def latency(env: Env, count: int, warmup: int) -> Latency:
    arrival, commit, dispatch, known = await durable_one_by_one(env, count, warmup)
    direct_arrival, direct_round_trip = await direct_one_by_one(env, count, warmup)
    return Latency(count, arrival, commit, dispatch, known, direct_arrival, direct_round_trip)


# --- report ----------------------------------------------------------------------------------

def cpu_text(share: float | None) -> str:
    return "n/a" if share is None else f"{share * 100:.0f}%"


def report(runs: list[Throughput], lat: Latency | None, args: argparse.Namespace) -> None:
    print(f"\nOutbound webhooks to a sandbox partner in its own process, on {os.cpu_count()} CPUs "
          f"(pool max_size {args.pool_size})")
    if runs:
        print(f"\nthroughput: {args.deliveries} deliveries per run, enqueued one transaction each "
              f"on one connection, then drained by a DeliveryWorker\n")
        header = (f"{'concurrency':>11}{'enqueue rows/s':>16}{'drain s':>9}{'deliveries/s':>14}"
                  f"{'attempts':>10}{'sandbox reqs':>14}{'non-200':>9}{'bench CPU':>11}"
                  f"{'sandbox CPU':>13}{'rest CPU':>10}{'machine busy':>14}")
        print(header)
        print("-" * len(header))
        for r in runs:
            print(f"{r.concurrency:>11}{r.enqueue_per_s:>16.0f}{r.drain_s:>9.2f}"
                  f"{r.deliveries_per_s:>14.0f}{r.attempts:>10}{r.sandbox_requests:>14}"
                  f"{r.non_200:>9}{cpu_text(r.bench_cpu):>11}{cpu_text(r.sandbox_cpu):>13}"
                  f"{cpu_text(r.rest_cpu):>10}{cpu_text(r.machine_busy):>14}")
    if lat is not None:
        print(f"\nlatency: {lat.measured} deliveries one at a time after {args.warmup} warm-up "
              f"(durable: worker concurrency {LATENCY_CONCURRENCY}, woken by NOTIFY)\n")
        rows = [
            ("durable: enqueue begins -> sandbox", lat.durable_arrival),
            ("direct:  POST begins -> sandbox", lat.direct_arrival),
            None,
            ("durable: enqueue begins -> sender has 2xx", lat.durable_known),
            ("direct:  POST begins -> sender has 2xx", lat.direct_round_trip),
            None,
            ("durable: enqueue transaction", lat.durable_commit),
            ("durable: commit -> sandbox", lat.durable_dispatch),
        ]
        header = f"{'ms':<48}{'p50':>9}{'p99':>9}"
        print(header)
        print("-" * len(header))
        for row in rows:
            if row is None:
                continue
            name, values = row
            p50, p99 = percentiles_ms(values)
            print(f"{name:<48}{p50:>9.2f}{p99:>9.2f}")
        for what, durable, direct in (
                ("added, to the sandbox", lat.durable_arrival, lat.direct_arrival),
                ("added, until the sender knows", lat.durable_known, lat.direct_round_trip)):
            d50, d99 = percentiles_ms(durable)
            p50, p99 = percentiles_ms(direct)
            print(f"{'durable - direct: ' + what:<48}{d50 - p50:>9.2f}{d99 - p99:>9.2f}")


# --- main ------------------------------------------------------------------------------------

async def run(args: argparse.Namespace, port: int, sandbox_pid: int
              ) -> tuple[list[Throughput], Latency | None]:
    dsn = f"{args.postgres}/veikals_bench_{uuid.uuid4().hex[:8]}"
    runs: list[Throughput] = []
    lat: Latency | None = None
    try:
        await shared.db.ensure_database(dsn)
        pool = await shared.db.create_pool(dsn, max_size=args.pool_size)
        try:
            await shared.db.migrate(pool, {"shared": shared.db.SHARED_MIGRATIONS})
            partner = Partner(name=PARTNER, kind="carrier",
                              endpoint=f"http://127.0.0.1:{port}/webhooks", secret_env=[SECRET_ENV])
            env = Env(pool, partner, PartnerRegistry([partner]),
                      DeliveryPolicy({f"127.0.0.1:{port}"}), f"http://127.0.0.1:{port}", sandbox_pid)
            if args.warmup and (args.concurrency or args.latency_deliveries):
                print("warming up ...", file=sys.stderr, flush=True)
                await throughput(env, args.concurrency[0] if args.concurrency else 16,
                                 args.warmup, args.deadline)
            for k in args.concurrency:
                print(f"throughput at concurrency {k} ...", file=sys.stderr, flush=True)
                runs.append(await throughput(env, k, args.deliveries, args.deadline))
            if args.latency_deliveries:
                print("latency ...", file=sys.stderr, flush=True)
                lat = await latency(env, args.latency_deliveries, args.warmup)
        finally:
            await pool.close()
    finally:
        await shared.db.drop_database(dsn)
    return runs, lat


def comma_ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=5000,
                        help="deliveries per throughput run (default %(default)s)")
    parser.add_argument("--concurrency", type=comma_ints, default=[16, 64],
                        help="worker concurrency per throughput run, comma-separated "
                             "(default 16,64; empty for none)")
    parser.add_argument("--latency-deliveries", type=int, default=1000,
                        help="deliveries measured one at a time, per path (default %(default)s; "
                             "0 for none)")
    parser.add_argument("--warmup", type=int, default=100,
                        help="unmeasured deliveries before the throughput runs and before each "
                             "latency path (default %(default)s)")
    parser.add_argument("--pool-size", type=int, default=20,
                        help="the asyncpg pool's max_size (default %(default)s)")
    parser.add_argument("--deadline", type=float, default=60.0,
                        help="seconds a throughput run may take to drain (default %(default)s)")
    parser.add_argument("--postgres", default=PG_BASE,
                        help="server URL without the database (default %(default)s)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    configure_logging("bench-webhooks", level="warning")
    # As in bench/rpc.py: Ctrl-C and `kill` both unwind as a SIGINT, so the sandbox is
    # terminated and the database dropped.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    os.environ[SECRET_ENV] = new_secret()
    port = free_port()
    try:
        with sandbox_process(port) as sandbox:
            runs, lat = asyncio.run(run(args, port, sandbox.pid))
    except KeyboardInterrupt:
        sys.exit("interrupted")
    report(runs, lat, args)


if __name__ == "__main__":
    main()
