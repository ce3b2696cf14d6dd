"""Payments per second through our API and PSP adapter, beside the same calls straight to the sandbox PSP.

The accounts, orders and payments services each run as their own process (``python -m
services.<name>``), with the sandbox PSP (``python -m deploy.sandbox.psp``) and a sandbox carrier
(``python -m deploy.sandbox.partner``, the only partner in a partners file of the benchmark's
own), on free loopback ports, with databases ``veikals_bench_<random>_<service>`` and a RabbitMQ
vhost of their own: all stopped, dropped and deleted at the end, also on failure or Ctrl-C.

setup (not timed)
    ``--payments`` guest orders (``POST /v1/guest-orders``, one line each), and twice as many
    card tokens (4242...) made as a browser makes them: ``POST /v1/payment_methods`` at the PSP
    with the publishable key.
ours
    K clients (``--concurrency``) pay every order once: ``POST /v1/guest-payments`` on the
    payments service, each expected to answer 201 with status "succeeded".
direct
    As many payments, K at once, straight to the sandbox PSP with the official stripe client made
    and called as ``services/payments/psp.py`` makes and calls it (``payment_intents.create_async``,
    confirm=True, an idempotency key), each with a fresh token.

Reported for each run: payments/s, p50/p99 latency, failures, and the CPU time per payment of
each process, of PostgreSQL and RabbitMQ, and of the rest (kernel, hypervisor, anything else on
the machine); then ours/direct (the goal: at least 0.5), what our path does per payment beyond
the direct call (PSP requests and payments-database commits, counted), how the orders ended, the
PSP webhooks the payments service refused, and the payments process's RSS before and after.
Before each run the benchmark waits until the work the last one left behind (the PSP's webhooks;
orders paid, shipped and delivered through the carrier) is done. In both runs the PSP sends two
webhooks a payment to the payments service, as Stripe would. Figures from a shared machine are
noisy: compare runs made back to back.

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

from processes import (bench_vhost, cpu_per, cpu_snapshot, free_port, load, machine_busy, memory_mib, percentile,  # bench/processes.py
                       stop_process, wait_ready)
from services.accounts.tokens import new_signing_key
from shared import db
from shared.cards import holds_card_number
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
 (1 PSP charge          POST /v1/payment_intents: the call direct makes)
  1 DB transaction      the answer applied ("succeeded"), payment_succeeded into the outbox (relayed
                        to RabbitMQ after commit; orders then marks the order paid)"""


async def psp_control(http: aiohttp.ClientSession, psp: str, what: str) -> list[dict]:
    """The sandbox PSP's record of every request or event (``/_control/requests``, ``/_control/events``)."""
    async with http.get(f"{psp}/_control/{what}") as response:
        return await response.json()


async def settle(http: aiohttp.ClientSession, psp: str, orders_db: asyncpg.Connection,
                 quiet_s: float = 5, timeout: float = 180) -> float:
    """Wait until the PSP has tried every webhook once and no order is paid or shipped, or those
    that are have not moved for ``quiet_s``: the seconds until the last move."""
    started = moved = time.perf_counter()
    last = None
    while True:
        untried = sum(not e["attempts"] and not e["dropped"] for e in await psp_control(http, psp, "events"))
        state = (untried, *await orders_db.fetchrow(
            "SELECT count(*) FILTER (WHERE status IN ('paid', 'shipped')), count(*) FILTER (WHERE status = 'delivered') FROM orders"))
        now = time.perf_counter()
        if state != last:
            last, moved = state, now
        if (not untried and (not state[1] or now - moved >= quiet_s)) or now - started > timeout:
            return moved - started
        await asyncio.sleep(0.25)


def refused(events: list[dict]) -> str:
    """The PSP's webhooks the payments service did not accept (the PSP tries again at 0.5, 2, 10, 60 s)."""
    statuses = Counter(e["attempts"][-1]["status"] or e["attempts"][-1]["error"]
                       for e in events if e["attempts"] and not e["delivered"])
    return f"{sum(statuses.values())} of {len(events)}" + "".join(f", {status} x {count}" for status, count in statuses.items())


def by_route(requests: list[dict], n: int) -> str:
    """The PSP requests of a run, per payment, by route (ids folded)."""
    routes = Counter(f"{r['method']} {re.sub(r'/(pm|pi)_[A-Za-z0-9]+', '/{id}', r['path'])}" for r in requests)
    return f"{len(requests) / n:.2f}: " + ", ".join(f"{route} {count / n:.2f}" for route, count in routes.most_common())


async def commits(conn: asyncpg.Connection) -> int:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    return await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")


async def timed(label: str, k: int, n: int, one, pids: dict[str, int]) -> float:
    """Run ``one(i) -> failure or None`` n times, k at once; print its figures; payments/s."""
    failures: list[str] = []

    async def counted(i: int) -> None:
        if (failure := await one(i)) is not None:
            failures.append(failure)
    before, busy = cpu_snapshot(pids), machine_busy()
    rate, latencies = await load(k, n, counted)
    used = cpu_per(before, cpu_snapshot(pids), n)
    total = (machine_busy()[0] - busy[0]) / os.sysconf("SC_CLK_TCK") * 1000 / n
    print(f"  {label:<7} {rate:8.1f} payments/s   p50 {percentile(latencies, 50):7.1f} ms   "
          f"p99 {percentile(latencies, 99):7.1f} ms   failures {len(failures)}", flush=True)
    print(f"          CPU ms a payment: {total:.1f} = " + ", ".join(f"{name} {ms:.1f}" for name, ms in used.items()
                                                             if ms >= 0.05) + f", rest {total - sum(used.values()):.1f}")
    for failure, count in Counter(failures).most_common(3):
        print(f"          {count} x {failure[:300]}")
    return rate


async def main(args: argparse.Namespace) -> None:
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
                        "--secret-env", CARRIER_SECRET_ENV, "--callback-url", f"{url['orders']}/v1/partners/{CARRIER}/callbacks"],
            **{name: [f"services.{name}"] for name in SERVICES}}
        try:
            for name, command in commands.items():
                with open(Path(tmp) / f"{name}.log", "w") as log:
                    processes[name] = subprocess.Popen([sys.executable, "-m", *command], cwd=ROOT, env=env,
                                                       stdout=log, stderr=subprocess.STDOUT)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                for name in commands:
                    await wait_ready(http, url[name], processes[name], "/readyz" if name in SERVICES else "/healthz")
                await benchmark(args, http, url, keys, dsns, {name: p.pid for name, p in processes.items()},
                                env["VEIKALS_ORDERS_AMQP_URL"])
        except Exception:
            for name in processes:  # what the processes said, before their folder goes
                lines = (Path(tmp) / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
                print(f"--- {name}.log, last lines\n" + "\n".join(lines), file=sys.stderr)
            raise
        finally:
            for process in reversed(processes.values()):
                stop_process(process)
            for dsn in dsns.values():
                await db.drop_database(dsn)


async def setup(args: argparse.Namespace, http: aiohttp.ClientSession, url: dict[str, str], publishable: str,
                amqp: str) -> tuple[list[dict], list[str]]:
    """A catalogue, ``--payments`` guest orders, and twice as many card tokens (untimed)."""
    broker = Broker(amqp, name="bench")
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
    refused_ids = [p for p in products if holds_card_number(p)]  # the service's inputs refuse these ids
    products = [p for p in products if p not in refused_ids]
    orders: list[dict] = [{}] * args.payments
    tokens: list[str] = [""] * (2 * args.payments)

    async def guest_order(i: int) -> None:
        async with http.post(f"{url['orders']}/v1/guest-orders", json={
                "carrier": CARRIER, "address": ADDRESS, "lines": [{"product_id": products[i % len(products)], "quantity": 1}],
                "contact": {"name": "Bench Guest", "email": f"g{i}@bench.example", "phone": "+37120000000"}}) as response:
            if response.status != 201:
                raise RuntimeError(f"guest order: {response.status} {await response.text()}")
            orders[i] = await response.json()

    async def card_token(i: int) -> None:
        async with http.post(f"{url['psp']}/v1/payment_methods", headers={"Authorization": f"Bearer {publishable}"}, data={
                "type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12",
                "card[exp_year]": str(dt.date.today().year + 3), "card[cvc]": "123"}) as response:
            if response.status != 200:
                raise RuntimeError(f"card token: {response.status} {await response.text()}")
            tokens[i] = (await response.json())["id"]
    started = time.perf_counter()
    await load(16, len(orders), guest_order)
    await load(16, len(tokens), card_token)
    print(f"setup: {len(orders)} guest orders and {len(tokens)} card tokens in {time.perf_counter() - started:.1f} s"
          + (f"; {len(refused_ids)} products left out: their ids read as card numbers" if refused_ids else ""), flush=True)
    return orders, tokens


async def benchmark(args: argparse.Namespace, http: aiohttp.ClientSession, url: dict[str, str], keys: dict[str, str],
                    dsns: dict[str, str], pids: dict[str, int], amqp: str) -> None:
    n, k, run = args.payments, args.concurrency, uuid.uuid4().hex[:8]
    secret, publishable, _ = keys.values()
    print(f"{n} payments, {k} at once; {os.cpu_count()} cores, shared by every process and PostgreSQL", flush=True)
    orders, tokens = await setup(args, http, url, publishable, amqp)  # tokens: the first n for ours, then direct's

    async def ours(i: int) -> str | None:
        body = {"order_id": orders[i]["id"], "amount_cents": orders[i]["gross_cents"], "currency": "EUR",
                "payment_method": tokens[i]}
        try:
            async with http.post(f"{url['payments']}/v1/guest-payments", json=body) as response:
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, ValueError) as exc:
            return repr(exc)
        if response.status != 201 or answer.get("status") != "succeeded":
            return f"{response.status} {answer.get('title') or answer.get('status')}: {answer.get('errors') or ''}"

    stripe_http = stripe.AIOHTTPClient()
    client = stripe.StripeClient(secret, http_client=stripe_http, base_addresses={"api": url["psp"]},
                                 max_network_retries=0)

    async def direct(i: int) -> str | None:
        payment_id = uuid.uuid4()  # in the metadata and return URL, as ours sends them
        try:
            intent = await client.v1.payment_intents.create_async(params={
                "amount": orders[i]["gross_cents"], "currency": "eur", "payment_method": tokens[n + i],
                "payment_method_types": ["card"], "confirm": True,
                "metadata": {"veikals_payment_id": str(payment_id), "order_id": orders[i]["id"]},
                "return_url": f"http://127.0.0.1:8102/payments/{payment_id}/return"},
                options={"idempotency_key": f"bench-{run}-{i}"})
        except stripe.StripeError as exc:
            return repr(exc)
        return None if intent.status == "succeeded" else f"status {intent.status}"

    everyone = {"bench": os.getpid(), **pids}
    orders_db, payments_db = await asyncpg.connect(dsns["orders"]), await asyncpg.connect(dsns["payments"])
    try:
        await settle(http, url["psp"], orders_db)
        print("results")
        memory_before = memory_mib(pids["payments"])
        mark = {what: len(await psp_control(http, url["psp"], what)) for what in ("requests", "events")}
        commits_before = await commits(payments_db)
        ours_rate = await timed("ours", k, n, ours, everyone)
        memory_after = memory_mib(pids["payments"])
        ours_requests = (await psp_control(http, url["psp"], "requests"))[mark["requests"]:]
        settled_s = await settle(http, url["psp"], orders_db)
        ours_events = (await psp_control(http, url["psp"], "events"))[mark["events"]:]
        await asyncio.sleep(11)  # PostgreSQL 15 counts an idle connection's transactions up to 10 s late
        commits_ours = await commits(payments_db) - commits_before
        succeeded = await payments_db.fetchval("SELECT count(*) FROM payments WHERE status = 'succeeded'")
        statuses = await orders_db.fetch("SELECT status, count(*) FROM orders GROUP BY 1 ORDER BY 2 DESC")
        mark = {what: len(await psp_control(http, url["psp"], what)) for what in ("requests", "events")}
        direct_rate = await timed("direct", k, n, direct, everyone)
        direct_requests = (await psp_control(http, url["psp"], "requests"))[mark["requests"]:]
        await settle(http, url["psp"], orders_db)
        direct_events = (await psp_control(http, url["psp"], "events"))[mark["events"]:]
    finally:
        await stripe_http.close_async()
        await orders_db.close()
        await payments_db.close()

    print(f"  ours/direct {ours_rate / direct_rate:.2f} (goal: at least 0.50)")
    print(f"  after ours: {succeeded} payments succeeded; orders " + ", ".join(f"{r[0]} {r[1]}" for r in statuses)
          + f" (their last move {settled_s:.1f} s after the run)")
    print(f"  PSP webhooks refused by the payments service: ours {refused(ours_events)}; direct {refused(direct_events)}")
    print(PER_PAYMENT)
    print(f"counted: PSP requests a payment, ours {by_route(ours_requests, n)}")
    print(f"         PSP requests a payment, direct {by_route(direct_requests, n)}")
    print(f"         payments database commits a payment, ours {commits_ours / n:.1f} (every transaction and lone "
          "statement until settled: the two above, the PSP's two webhooks, the outbox relay, reads)")
    print(f"payments process: RSS {memory_before['VmRSS']:.0f} MiB before ours, {memory_after['VmRSS']:.0f} MiB "
          f"after (peak {memory_after['VmHWM']:.0f} MiB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=1000, help="payments in each run (and guest orders)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients at once, in both runs")
    parser.add_argument("--products", type=int, default=100, help="products the guest orders spread over")
    configure_logging("bench", "warning")
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        sys.exit(130)  # everything was stopped, dropped and deleted on the way out
