"""Checkouts per second end to end, beside a bare endpoint; history and summary of a big customer.

The orders service runs as its own process (``python -m services.orders``) on a database and
vhost of the benchmark's own. Customer tokens are signed by a stand-in JWKS in this process.

checkouts
    For each K in ``--concurrency``, K clients place ``--checkouts`` guest orders in all
    (``POST /v1/guest-orders``: validated, priced, stock locked and taken, order and lines and
    ``order_created`` in the outbox, one transaction), two lines each from ``--products``
    products (few products: checkouts queue for the same stock rows). Beside it, in the same run, a bare
    aiohttp + asyncpg endpoint (its own process, ``bench/bare_insert.py``) that reads a JSON body
    and does one INSERT. Both take ``--warmup`` requests first, unmeasured. Reported: requests/s
    and p50/p99 latency of each, the ratio, and the CPU each used a request.
history
    ``--history-orders`` paid orders (three lines each) are written for one customer straight
    into the database; the customer then pages through all of them (``GET /v1/me/orders``, 100
    a page) and reads the purchase summary. Reported: time of each, and the service's resident
    memory before and its peak (VmHWM) after: it must not load all rows at once.

    .venv/bin/python bench/orders.py
    .venv/bin/python bench/orders.py --concurrency 16 64 --checkouts 3000
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

from processes import (bench_vhost, cpu_per, cpu_snapshot, free_port, load, memory_mib, percentile,  # bench/processes.py
                       stop_process, wait_ready)
from shared import db
from shared.logging import configure_logging
from shared.messaging import Broker, RpcClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.tokens import TokenIssuer  # noqa: E402  (the stand-in JWKS the tests use)

ROOT = Path(__file__).resolve().parents[1]
PG_BASE = "postgresql://postgres@127.0.0.1:5432"
ADDRESS = {"line1": "Brīvības iela 1", "city": "Rīga", "postal_code": "LV-1010", "country": "LV"}


async def post_all(http: aiohttp.ClientSession, url: str, bodies: list[dict], concurrency: int) -> tuple[float, list[float]]:
    """POST each body, ``concurrency`` at once: (per second, latencies in ms)."""
    async def one(i: int) -> None:
        async with http.post(url, json=bodies[i]) as response:
            await response.read()
            if response.status >= 300:
                raise SystemExit(f"{url}: {response.status} {await response.text()}")
    return await load(concurrency, len(bodies), one)


async def drained(conn: asyncpg.Connection) -> tuple[int, float]:
    """Events waiting in the outbox now, and the milliseconds until the relay had published them."""
    started, waiting = time.perf_counter(), None
    while (left := await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")) > 0:
        waiting = left if waiting is None else waiting
        await asyncio.sleep(0.01)
    return waiting or 0, (time.perf_counter() - started) * 1000


async def main(args: argparse.Namespace) -> None:
    configure_logging("bench", "warning")
    run = uuid.uuid4().hex[:8]
    orders_dsn, bare_dsn = f"{PG_BASE}/veikals_bench_{run}_orders", f"{PG_BASE}/veikals_bench_{run}_bare"
    tokens = TokenIssuer()
    await tokens.start()
    processes: list[subprocess.Popen] = []
    with bench_vhost() as vhost, tempfile.TemporaryDirectory() as tmp:
        amqp = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
        await db.ensure_database(bare_dsn)
        port, bare_port = free_port(), free_port()
        env = {**os.environ, "VEIKALS_ORDERS_DATABASE_URL": orders_dsn, "VEIKALS_ORDERS_AMQP_URL": amqp,
               "VEIKALS_ORDERS_HTTP_PORT": str(port), "VEIKALS_ORDERS_JWKS_URL": tokens.url,
               "VEIKALS_ORDERS_LOG_LEVEL": "warning", "VEIKALS_ORDERS_DB_POOL_SIZE": "20"}
        log = open(Path(tmp) / "orders.log", "w")
        try:
            orders = subprocess.Popen([sys.executable, "-m", "services.orders"], cwd=ROOT, env=env,
                                      stdout=log, stderr=subprocess.STDOUT)
            processes.append(orders)
            processes.append(subprocess.Popen([sys.executable, str(ROOT / "bench" / "bare_insert.py"),
                                               "--port", str(bare_port), "--dsn", bare_dsn], cwd=ROOT))
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                base = f"http://127.0.0.1:{port}"
                await wait_ready(http, base, orders)
                await wait_ready(http, f"http://127.0.0.1:{bare_port}", processes[1])
                broker = Broker(amqp, name="bench")
                await broker.connect()
                rpc = RpcClient(broker, "bench", timeout=30)
                await rpc.start()
                await rpc.call("orders", "add_products", [
                    {"sku": f"BENCH-{n}", "name": f"Bench item {n}", "category": ["food", "books", "home"][n % 3],
                     "price_cents": 100 + n, "vat_rate": [21, 12, 5][n % 3], "stock": 1_000_000}
                    for n in range(args.products)])
                await rpc.stop()
                await broker.close()
                async with http.get(f"{base}/v1/products?limit=200") as response:
                    products = [p["id"] for p in (await response.json())["items"]]

                pids, cpu, pending = {"bench": os.getpid(), "orders": orders.pid, "bare": processes[1].pid}, [], []
                orders_db = await asyncpg.connect(orders_dsn)
                print(f"checkouts: {args.checkouts} per run (after {args.warmup} to warm up), guest orders of 2 lines "
                      f"from {len(products)} products")
                def checkouts(count: int, run: str) -> list[dict]:
                    return [{"carrier": "sandbox-carrier", "address": ADDRESS,
                             "contact": {"name": "Bench Guest", "email": f"g{n}.{run}@bench.example",
                                         "phone": "+37120000000"},
                             "lines": [{"product_id": products[n % len(products)], "quantity": 1},
                                       {"product_id": products[(n + 1) % len(products)], "quantity": 2}]}
                            for n in range(count)]

                # Both warm up first (connections opened, statements prepared, the catalogue seen):
                # the runs measure the steady state, not the first second of a process's life.
                await post_all(http, f"{base}/v1/guest-orders", checkouts(args.warmup, "warmup"), max(args.concurrency))
                await drained(orders_db)
                await post_all(http, f"http://127.0.0.1:{bare_port}/insert", checkouts(args.warmup, "warmup"),
                               max(args.concurrency))
                print(f"{'K':>4} {'orders/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'bare/s':>9} {'p50 ms':>8} "
                      f"{'p99 ms':>8} {'ratio':>6}")
                for k in args.concurrency:
                    bodies = checkouts(args.checkouts, f"k{k}")
                    before = cpu_snapshot(pids)
                    rate, lat = await post_all(http, f"{base}/v1/guest-orders", bodies, k)
                    pending.append(await drained(orders_db))  # the relay's backlog is ours, not bare's
                    between = cpu_snapshot(pids)
                    bare_rate, bare_lat = await post_all(http, f"http://127.0.0.1:{bare_port}/insert", bodies, k)
                    cpu.append((k, cpu_per(before, between, len(bodies)), cpu_per(between, cpu_snapshot(pids), len(bodies))))
                    print(f"{k:>4} {rate:>10.0f} {percentile(lat, 50):>8.2f} {percentile(lat, 99):>8.2f} "
                          f"{bare_rate:>9.0f} {percentile(bare_lat, 50):>8.2f} "
                          f"{percentile(bare_lat, 99):>8.2f} {rate / bare_rate:>6.2f}")
                print("order_created events not yet published when the last checkout was answered: "
                      + ", ".join(f"K={k} {n} (published {ms:.0f} ms later)" for k, (n, ms) in zip(args.concurrency, pending)))
                print("CPU ms a request (the load generator is 'bench'; ours includes publishing the events)")
                for k, ours, bare in cpu:
                    for label, used in (("orders", ours), ("bare", bare)):
                        print(f"{k:>4} {label:<7} {sum(used.values()):5.2f} = "
                              + ", ".join(f"{name} {ms:.2f}" for name, ms in used.most_common() if ms >= 0.01))

                await orders_db.close()
                customer = uuid.uuid4()
                pool = await db.create_pool(orders_dsn)
                await pool.execute(
                    """WITH o AS (
                           INSERT INTO orders (id, customer_id, guest, status, carrier, contact_name, contact_email,
                               contact_phone, address_line1, address_city, address_postal_code, address_country,
                               net_cents, vat_cents, gross_cents, created_at, paid_at, payment_id)
                           SELECT gen_random_uuid(), $1, false, 'delivered', 'sandbox-carrier', 'Big Buyer',
                               'big@bench.example', '+37120000000', 'Iela 1', 'Rīga', 'LV-1010', 'LV', 900, 100, 1000,
                               now() - (n || ' hours')::interval, now() - (n || ' hours')::interval, 'pi_' || n
                           FROM generate_series(1, $2) AS n RETURNING id)
                       INSERT INTO order_lines (order_id, line_no, product_id, sku, name, category, quantity,
                           unit_price_cents, vat_rate, net_cents, vat_cents, gross_cents)
                       SELECT o.id, l, p.id, p.sku, p.name, p.category, 1, 333, p.vat_rate, 300, 33, 333
                       FROM o CROSS JOIN generate_series(1, 3) AS l JOIN products p ON p.sku = 'BENCH-' || (l - 1)""",
                    customer, args.history_orders)
                await pool.close()
                headers = {"Authorization": f"Bearer {tokens.token(kind='customer', roles=(), subject=str(customer), expires_in=3600)}"}
                before = memory_mib(orders.pid)
                started, pages, seen, after = time.perf_counter(), 0, 0, None
                while True:
                    url = f"{base}/v1/me/orders?limit=100" + (f"&after={after}" if after else "")
                    async with http.get(url, headers=headers) as response:
                        page = await response.json()
                    pages, seen, after = pages + 1, seen + len(page["items"]), page["next_cursor"]
                    if after is None:
                        break
                history_s = time.perf_counter() - started
                started = time.perf_counter()
                async with http.get(f"{base}/v1/me/purchase-summary", headers=headers) as response:
                    summary = await response.json()
                summary_s = time.perf_counter() - started
                after_mem = memory_mib(orders.pid)
                print(f"\nhistory: {seen} orders in {pages} pages, {history_s:.2f} s "
                      f"({history_s / pages * 1000:.1f} ms a page)")
                print(f"summary: {len(summary['rows'])} rows over {summary['total_items']} items, {summary_s * 1000:.0f} ms")
                print(f"service memory: RSS {before['VmRSS']:.0f} MiB before, peak {after_mem['VmHWM']:.0f} MiB")
        finally:
            for process in processes:
                stop_process(process)
            log.close()
            await tokens.stop()
            await db.drop_database(orders_dsn)
            await db.drop_database(bare_dsn)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--checkouts", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=1000, help="requests to each endpoint before the runs")
    parser.add_argument("--products", type=int, default=100,
                        help="how many products the orders spread over (3: every checkout locks the same rows)")
    parser.add_argument("--history-orders", type=int, default=10_000)
    asyncio.run(main(parser.parse_args()))
