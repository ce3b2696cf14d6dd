"""Payments per second through our API and PSP adapter, beside the same calls straight to the sandbox PSP.

The accounts, orders and payments services each run as their own process (``python -m
services.<name>``), with the sandbox PSP (``python -m deploy.sandbox.psp``) and a sandbox carrier
(``python -m deploy.sandbox.partner``, the only partner in a partners file of the benchmark's
own), all on free loopback ports, with databases ``veikals_bench_<random>_<service>`` and a
RabbitMQ vhost of their own, all stopped, dropped and deleted at the end (also on Ctrl-C).

setup (not timed)
    ``--payments`` guest orders (``POST /v1/guest-orders``, one line each), and twice as many
    card tokens (4242...) made as a browser makes them: ``POST /v1/payment_methods`` at the PSP
    with the publishable key.
ours
    K clients (``--concurrency``) pay every order once: ``POST /v1/guest-payments`` on the
    payments service, each expected to answer 201 with status "succeeded".
direct
    The same number of payments, K at once, straight to the sandbox PSP with the official stripe
    client made and called as ``services/payments/psp.py`` makes and calls it (one
    ``payment_intents.create_async``, confirm=True, an idempotency key), each with a fresh token.

Reported for each: payments/s, p50/p99 latency in ms, failures; then ours/direct (the goal: at
least 0.5), what our path does per payment beyond the direct call (PSP requests and database
commits counted during the run), and the payments process's RSS before and after. Between the
two runs the benchmark waits until the work ours leaves behind (the PSP's webhooks, orders paid,
shipped and delivered through the carrier sandbox) is done, so it does not land in direct's time.
Both runs make the PSP send two webhooks per payment to the payments service, as Stripe would.

    .venv/bin/python bench/payments.py
    .venv/bin/python bench/payments.py --payments 1000 --concurrency 64
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import asyncpg
import stripe

from processes import bench_vhost, free_port, load, percentile, stop_process, wait_ready  # bench/processes.py
from services.accounts.tokens import new_signing_key
from shared import db
from shared.logging import configure_logging
from shared.messaging import Broker, RpcClient
from shared.webhooks.signing import new_secret

ROOT = Path(__file__).resolve().parents[1]
PG_BASE = "postgresql://postgres@127.0.0.1:5432"
SERVICES = ("accounts", "orders", "payments")
ADDRESS = {"line1": "Brīvības iela 1", "city": "Rīga", "postal_code": "LV-1010", "country": "LV"}
CARRIER, CARRIER_SECRET_ENV = "bench-carrier", "VEIKALS_PARTNER_BENCH_CARRIER_SECRET"
PSP_KEYS = {"VEIKALS_PAYMENTS_PSP_SECRET_KEY": "sk_test_", "VEIKALS_PAYMENTS_PSP_PUBLISHABLE_KEY": "pk_test_",
            "VEIKALS_PAYMENTS_PSP_WEBHOOK_SECRET": "whsec_"}
PER_PAYMENT = """per payment, our path does beyond the direct call:
  1 RPC over RabbitMQ   orders.order_for_payment (the order's amount, currency, owner, state)
  1 PSP read            GET /v1/payment_methods/{id} (the card behind the token: brand, last4, owner)
  1 DB transaction      the attempt recorded ("creating") and committed before the PSP hears of it
  (the PSP charge       POST /v1/payment_intents: the same call direct makes)
  1 DB transaction      the answer applied ("succeeded") with payment_succeeded into the outbox,
                        relayed to RabbitMQ after commit (orders then marks the order paid)"""


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MiB (Linux /proc)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


async def wait_healthy(http: aiohttp.ClientSession, base: str, process: subprocess.Popen) -> None:
    """The sandboxes answer /healthz, not /readyz (``wait_ready`` is for the services)."""
    for _ in range(150):
        if process.poll() is not None:
            raise SystemExit(f"{base} exited with status {process.returncode}")
        try:
            async with http.get(f"{base}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"{base} never became healthy")


async def settle(http: aiohttp.ClientSession, psp: str, orders_db: asyncpg.Connection, timeout: float = 180) -> float:
    """Wait until the PSP has delivered its webhooks and no order is paid or shipped but not yet
    delivered (the carrier's callbacks): the seconds it took."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        async with http.get(f"{psp}/_control/events") as response:
            events = await response.json()
        sending = sum(not e["delivered"] and not e["dropped"] and len(e["attempts"]) < 5 for e in events)
        moving = await orders_db.fetchval("SELECT count(*) FROM orders WHERE status IN ('paid', 'shipped')")
        if not sending and not moving:
            return time.perf_counter() - started
        await asyncio.sleep(0.25)
    print(f"  (not settled after {timeout:.0f} s: {sending} webhooks being sent, {moving} orders on their way)")
    return timeout


async def psp_requests(http: aiohttp.ClientSession, psp: str) -> list[dict]:
    async with http.get(f"{psp}/_control/requests") as response:
        return await response.json()


def per_payment(requests: list[dict], n: int) -> str:
    """The PSP requests a run made, per payment, by route ('pm_...' and 'pi_...' ids folded)."""
    routes = Counter(f"{r['method']} {re.sub(r'/(pm|pi|ch|cus)_[A-Za-z0-9]+', '/{id}', r['path'])}" for r in requests)
    return f"{len(requests) / n:.2f} (" + ", ".join(f"{route} {count / n:.2f}" for route, count in routes.most_common()) + ")"


async def commits(conn: asyncpg.Connection, database: str) -> int:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    return await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database)


def report(label: str, rate: float, latencies: list[float], failures: list[str]) -> None:
    print(f"  {label:<8} {rate:9.1f} payments/s   p50 {percentile(latencies, 50):8.2f} ms   "
          f"p99 {percentile(latencies, 99):8.2f} ms   failures {len(failures)}"
          + (f" (first: {failures[0][:300]})" if failures else ""), flush=True)


async def main(args: argparse.Namespace) -> None:
    configure_logging("bench", "warning")
    run = uuid.uuid4().hex[:8]
    dsns = {name: f"{PG_BASE}/veikals_bench_{run}_{name}" for name in SERVICES}
    ports = {name: free_port() for name in (*SERVICES, "psp", "carrier")}
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    keys = {name: prefix + secrets.token_hex(24) for name, prefix in PSP_KEYS.items()}
    processes: dict[str, subprocess.Popen] = {}
    with bench_vhost() as vhost, tempfile.TemporaryDirectory() as tmp:
        partners = Path(tmp) / "partners.json"
        partners.write_text(json.dumps({"partners": [{
            "name": CARRIER, "kind": "carrier", "endpoint": f"{url['carrier']}/webhooks",
            "secret_env": [CARRIER_SECRET_ENV], "description": "the benchmark's sandbox carrier"}]}))
        env = {**os.environ, **keys, "VEIKALS_PARTNERS_FILE": str(partners), CARRIER_SECRET_ENV: new_secret(),
               "VEIKALS_ACCOUNTS_JWT_SIGNING_KEY": new_signing_key(), "VEIKALS_PAYMENTS_PSP_API_BASE": url["psp"],
               "VEIKALS_ORDERS_WEBHOOK_ALLOWED_HOSTS": json.dumps([f"127.0.0.1:{ports['carrier']}"])}
        for name in SERVICES:
            prefix = f"VEIKALS_{name.upper()}_"
            env.update({prefix + "DATABASE_URL": dsns[name], prefix + "HTTP_PORT": str(ports[name]),
                        prefix + "AMQP_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
                        prefix + "JWKS_URL": f"{url['accounts']}/.well-known/jwks.json",
                        prefix + "SUBJECT_KEY": secrets.token_hex(32), prefix + "LOG_LEVEL": "warning"})
        commands = {
            "psp": ["deploy.sandbox.psp", "--port", str(ports["psp"]),
                    "--secret-key-env", "VEIKALS_PAYMENTS_PSP_SECRET_KEY",
                    "--publishable-key-env", "VEIKALS_PAYMENTS_PSP_PUBLISHABLE_KEY",
                    "--webhook-secret-env", "VEIKALS_PAYMENTS_PSP_WEBHOOK_SECRET",
                    "--webhook-url", f"{url['payments']}/v1/psp/webhooks"],
            "carrier": ["deploy.sandbox.partner", "--name", CARRIER, "--kind", "carrier", "--port", str(ports["carrier"]),
                        "--secret-env", CARRIER_SECRET_ENV, "--callback-url",
                        f"{url['orders']}/v1/partners/{CARRIER}/callbacks"],
            **{name: [f"services.{name}"] for name in SERVICES}}
        try:
            for name, command in commands.items():
                with open(Path(tmp) / f"{name}.log", "w") as log:
                    processes[name] = subprocess.Popen([sys.executable, "-m", *command], cwd=ROOT, env=env,
                                                       stdout=log, stderr=subprocess.STDOUT)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                for name in commands:
                    wait = wait_ready if name in SERVICES else wait_healthy
                    await wait(http, url[name], processes[name])
                await run_benchmark(args, http, url, keys, dsns, processes["payments"].pid, env)
        except Exception:
            for name in processes:  # what the processes said, before their folder goes
                lines = (Path(tmp) / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
                if lines:
                    print(f"--- {name}.log (last lines)\n" + "\n".join(lines), file=sys.stderr)
            raise
        finally:
            for process in reversed(processes.values()):
                stop_process(process)
            for dsn in dsns.values():
                await db.drop_database(dsn)


async def run_benchmark(args: argparse.Namespace, http: aiohttp.ClientSession, url: dict[str, str],
                        keys: dict[str, str], dsns: dict[str, str], payments_pid: int, env: dict[str, str]) -> None:
    n, k, run = args.payments, args.concurrency, uuid.uuid4().hex[:8]
    secret, publishable, _ = keys.values()
    print(f"{n} payments, {k} at once; {os.cpu_count()} cores (every process and PostgreSQL share them)", flush=True)

    # --- setup: a catalogue, the guest orders, the card tokens ---------------------------------
    broker = Broker(env["VEIKALS_ORDERS_AMQP_URL"], name="bench")
    await broker.connect()
    rpc = RpcClient(broker, "bench", timeout=30)
    await rpc.start()
    await rpc.call("orders", "add_products", [
        {"sku": f"BENCH-{p}", "name": f"Bench item {p}", "category": "books", "price_cents": 500 + p,
         "vat_rate": 5, "stock": 1_000_000} for p in range(args.products)])
    await rpc.stop()
    await broker.close()
    async with http.get(f"{url['orders']}/v1/products?limit=200") as response:
        products = [p["id"] for p in (await response.json())["items"]]
    orders: list[dict] = [{}] * n
    tokens: list[str] = [""] * (2 * n)  # the first n for ours, the rest for direct

    async def guest_order(i: int) -> None:
        async with http.post(f"{url['orders']}/v1/guest-orders", json={
                "carrier": CARRIER, "address": ADDRESS, "lines": [{"product_id": products[i % len(products)], "quantity": 1}],
                "contact": {"name": "Bench Guest", "email": f"g{i}@bench.example", "phone": "+37120000000"}}) as response:
            if response.status != 201:
                raise SystemExit(f"guest order: {response.status} {await response.text()}")
            orders[i] = await response.json()

    async def card_token(i: int) -> None:
        async with http.post(f"{url['psp']}/v1/payment_methods", headers={"Authorization": f"Bearer {publishable}"}, data={
                "type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12",
                "card[exp_year]": str(dt.date.today().year + 3), "card[cvc]": "123"}) as response:
            if response.status != 200:
                raise SystemExit(f"card token: {response.status} {await response.text()}")
            tokens[i] = (await response.json())["id"]
    started = time.perf_counter()
    await load(16, n, guest_order)
    await load(16, 2 * n, card_token)
    print(f"setup: {n} guest orders and {2 * n} card tokens in {time.perf_counter() - started:.1f} s", flush=True)

    orders_db = await asyncpg.connect(dsns["orders"])
    payments_db = await asyncpg.connect(dsns["payments"])
    try:
        await settle(http, url["psp"], orders_db)

        # --- ours: POST /v1/guest-payments ---------------------------------------------------------
        ours_failures: list[str] = []

        async def ours(i: int) -> None:
            body = {"order_id": orders[i]["id"], "amount_cents": orders[i]["gross_cents"], "currency": "EUR",
                    "payment_method": tokens[i]}
            try:
                async with http.post(f"{url['payments']}/v1/guest-payments", json=body) as response:
                    answer = await response.json(content_type=None)
                if response.status != 201 or answer.get("status") != "succeeded":
                    ours_failures.append(f"{response.status} {answer.get('title')}: {answer.get('errors') or answer}"
                                         f" (order {orders[i]['id']})")
            except (aiohttp.ClientError, ValueError) as exc:
                ours_failures.append(repr(exc))
        memory_before = memory_mib(payments_pid)
        seen, commits_before = len(await psp_requests(http, url["psp"])), await commits(payments_db, dsns["payments"].rsplit("/", 1)[1])
        ours_rate, ours_latencies = await load(k, n, ours)
        memory_after = memory_mib(payments_pid)
        ours_requests = (await psp_requests(http, url["psp"]))[seen:]
        settled_s = await settle(http, url["psp"], orders_db)
        await asyncio.sleep(11)  # PostgreSQL 15 counts an idle connection's transactions up to 10 s late
        commits_ours = await commits(payments_db, dsns["payments"].rsplit("/", 1)[1]) - commits_before
        succeeded = await payments_db.fetchval("SELECT count(*) FROM payments WHERE status = 'succeeded'")
        delivered = await orders_db.fetchval("SELECT count(*) FROM orders WHERE status = 'delivered'")

        # --- direct: the stripe client, as services/payments/psp.py calls it ---------------------
        direct_failures: list[str] = []
        http_client = stripe.AIOHTTPClient()
        client = stripe.StripeClient(secret, http_client=http_client, base_addresses={"api": url["psp"]},
                                     max_network_retries=0)

        async def direct(i: int) -> None:
            payment_id = uuid.uuid4()
            try:
                intent = await client.v1.payment_intents.create_async(params={
                    "amount": orders[i]["gross_cents"], "currency": "eur", "payment_method": tokens[n + i],
                    "payment_method_types": ["card"], "confirm": True,
                    "metadata": {"veikals_payment_id": str(payment_id), "order_id": orders[i]["id"]},
                    "return_url": f"http://127.0.0.1:8102/payments/{payment_id}/return"},
                    options={"idempotency_key": f"bench-{run}-{i}"})
                if intent.status != "succeeded":
                    direct_failures.append(f"status {intent.status}")
            except stripe.StripeError as exc:
                direct_failures.append(repr(exc))
        seen = len(await psp_requests(http, url["psp"]))
        try:
            direct_rate, direct_latencies = await load(k, n, direct)
        finally:
            await http_client.close_async()
        direct_requests = (await psp_requests(http, url["psp"]))[seen:]
        await settle(http, url["psp"], orders_db)
    finally:
        await orders_db.close()
        await payments_db.close()

    print("results")
    report("ours", ours_rate, ours_latencies, ours_failures)
    report("direct", direct_rate, direct_latencies, direct_failures)
    print(f"  ours/direct {ours_rate / direct_rate:.2f} (goal: at least 0.50)")
    print(f"  after ours: {succeeded} payments succeeded in the payments database, {delivered} orders delivered; "
          f"its background work (webhooks, orders paid, shipped, delivered) settled {settled_s:.1f} s after the run")
    print(PER_PAYMENT)
    print(f"measured: PSP requests per payment, ours {per_payment(ours_requests, n)}")
    print(f"          PSP requests per payment, direct {per_payment(direct_requests, n)}")
    print(f"          payments database commits per payment, ours {commits_ours / n:.1f} (every transaction and "
          "single statement until settled: the two above, the PSP's two webhooks, the outbox relay)")
    print(f"payments process: RSS {memory_before['VmRSS']:.0f} MiB before ours, {memory_after['VmRSS']:.0f} MiB "
          f"after (peak {memory_after['VmHWM']:.0f} MiB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=1000, help="payments in each run (and guest orders)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients at once, in both runs")
    parser.add_argument("--products", type=int, default=100, help="products the guest orders spread over")
    asyncio.run(main(parser.parse_args()))
