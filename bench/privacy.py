"""Data-subject requests end to end: a typical customer's export and erasure, a burst of erasures, a huge export.

The five services (accounts, orders, payments, marketing, privacy) each run as their own process
(``python -m services.<name>``) on free loopback ports, with databases
``veikals_bench_<random>_<service>`` and a RabbitMQ vhost of their own; an SMTP sink
(``deploy.mailsink.MailSink``) runs inside this process and takes every service's mail. All are
stopped, dropped and deleted at the end, also on failure or Ctrl-C. The partners file of every
process lists no partner: there is no processor, so every request is five tasks (the four
services over RPC, the privacy service's own records) and no task waits on a sandbox's webhook
and callback. Without a carrier no order can be placed through the orders API, so orders (and
the payments and marketing records that go with them) are written into those services'
databases by COPY; accounts are made through the accounts API. The privacy service runs with
``TASKS_POLL_S=0.2``; support enters the requests through ``POST /v1/staff/privacy-requests``
(a support account made by ``python -m services.accounts.admin create-staff``).

setup (not timed)
    ``--requests`` typical customers: an account registered, verified (the code from the sink)
    and signed in through the accounts API; two paid, delivered orders of three lines with their
    invoices and succeeded payments; a guest order placed with the same address and phone; a
    person in marketing who consents to offers by e-mail and to profiling, with a profile.
exports, erasures
    An export of each customer (subject: the account id, its address and phone, as the
    customer's own route makes it), ``--in-flight`` at a time (1: each alone), then an erasure of
    each. For each request the time from its receipt (``received_at``, stamped when the 202 is
    made) to ``completed_at``, both read from the privacy database at the end.
burst
    ``--burst`` guests, each known only by an e-mail address with a paid, delivered guest order
    of two lines (every other one also a consenting person in marketing); an erasure of each
    submitted, 32 at once, then waited for: the time from the first submission to the last
    completion; every request and task counted, the subject keys (a duplicate would be joined,
    so 1,000 distinct keys is 1,000 requests), the ``privacy_erase`` calls each service
    recorded in ``rpc_calls`` (its once-only store: one erase and one verify a request each, or
    an effect ran twice), and what the erasures left of the guests' contact details.
huge export
    A customer (through the accounts API) with ``--lines`` order lines (orders of 50 lines,
    paid and delivered, with invoices and payments, by COPY) asks for an export through
    ``POST /v1/me/privacy-requests`` with their own token; the time to complete it; then the
    archive is downloaded with the link from the completion mail and the customer's token,
    streamed to a file and its lines counted. Each process's RSS before, and its peak
    (``VmHWM``, reset through ``/proc/<pid>/clear_refs`` just before) from the request to the
    end of the download: the goal is growth under 100 MB.

Reported: p50/p99/max and requests/s of the exports and the erasures and when each
participant's task finished (mean); the burst's time (the goal: within 60 s), each request's
time in it, its counts and checks and the CPU seconds each process used; the huge export's
times, archive size and memory; then the warnings and errors each process logged and when (a
RabbitMQ restarted under the run shows there: its figures are then not clean). The benchmark
prints; it asserts no timing. Figures from a shared machine are noisy: compare runs made back to
back.

    .venv/bin/python bench/privacy.py
    .venv/bin/python bench/privacy.py --requests 10 --burst 100 --lines 5000
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections import Counter
from pathlib import Path

import aiohttp
import asyncpg

from deploy.mailsink import MailSink, code_in
from processes import bench_vhost, cpu_seconds, free_port, load, memory_mib, percentile, stop_process, wait_ready  # bench/processes.py
from services.accounts.tokens import new_signing_key
from shared import db
from shared.logging import configure_logging

ROOT = Path(__file__).resolve().parents[1]
PG_BASE = "postgresql://postgres@127.0.0.1:5432"
SERVICES = ("accounts", "orders", "payments", "marketing", "privacy")
PARTICIPANTS = ("accounts", "orders", "payments", "marketing")  # those asked over RPC
PASSWORD = "a long enough bench password"
STAFF_EMAIL = "bench.support@shop.example"
IDENTIFIED = "bench: the requester wrote from the address on the account"
CARRIER = "bench-carrier"  # stored on the orders; no partner of that name is registered
LINES_PER_ORDER = 50
PRODUCTS = 50
UNIT = (1210, 1000, 210)  # gross, net, VAT (21 %) of every line's one item
COMPLETE = "Your request is complete"
STARTED = time.time()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def expect(response: aiohttp.ClientResponse, status: int, what: str) -> dict:
    body = await response.json(content_type=None)
    if response.status != status:
        raise RuntimeError(f"{what}: {response.status} {body}")
    return body


# --- processes --------------------------------------------------------------------------------

def environment(dsns: dict[str, str], ports: dict[str, int], vhost: str, partners: Path, smtp_port: int) -> dict[str, str]:
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {**os.environ, "VEIKALS_PARTNERS_FILE": str(partners),
           "VEIKALS_ACCOUNTS_JWT_SIGNING_KEY": new_signing_key(),
           # Sign-ups and sign-ins by the hundred from loopback: cheap hashes, no throttling.
           "VEIKALS_ACCOUNTS_ARGON2_MEMORY_KIB": "8192", "VEIKALS_ACCOUNTS_ARGON2_TIME_COST": "1",
           "VEIKALS_ACCOUNTS_REGISTER_MAX_PER_NETWORK": "1000000", "VEIKALS_ACCOUNTS_LOGIN_MAX_FAILURES": "1000000",
           "VEIKALS_ACCOUNTS_NETWORK_MAX_FAILURES": "1000000", "VEIKALS_ACCOUNTS_ACCESS_TOKEN_TTL_S": "3600",
           "VEIKALS_MARKETING_LINK_KEY": secrets.token_hex(32), "VEIKALS_MARKETING_SUPPRESSION_KEY": secrets.token_hex(32),
           "VEIKALS_MARKETING_PUBLIC_URL": url["marketing"], "VEIKALS_PRIVACY_PUBLIC_URL": url["privacy"],
           "VEIKALS_PRIVACY_TASKS_POLL_S": "0.2",
           # No PSP runs: no saved card or PSP customer is made, so an erasure never calls one.
           "VEIKALS_PAYMENTS_PSP_API_BASE": f"http://127.0.0.1:{free_port()}",
           "VEIKALS_PAYMENTS_PSP_SECRET_KEY": "sk_test_" + secrets.token_hex(24),
           "VEIKALS_PAYMENTS_PSP_PUBLISHABLE_KEY": "pk_test_" + secrets.token_hex(24),
           "VEIKALS_PAYMENTS_PSP_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(24)}
    for name in SERVICES:
        prefix = f"VEIKALS_{name.upper()}_"
        env.update({prefix + "DATABASE_URL": dsns[name], prefix + "HTTP_PORT": str(ports[name]),
                    prefix + "AMQP_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
                    prefix + "JWKS_URL": f"{url['accounts']}/.well-known/jwks.json",
                    prefix + "SUBJECT_KEY": secrets.token_hex(32), prefix + "LOG_LEVEL": "warning",
                    prefix + "SMTP_HOST": "127.0.0.1", prefix + "SMTP_PORT": str(smtp_port)})
    return env


def reset_peak(pid: int) -> bool:
    """Start the process's VmHWM afresh from its current RSS (Linux 4.0+: ``clear_refs`` 5)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


async def main(args: argparse.Namespace) -> None:
    run = uuid.uuid4().hex[:8]
    dsns = {name: f"{PG_BASE}/veikals_bench_{run}_{name}" for name in SERVICES}
    ports = {name: free_port() for name in SERVICES}
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    processes: dict[str, subprocess.Popen] = {}
    sink = MailSink()
    with bench_vhost() as vhost, tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        partners = tmp / "partners.json"
        partners.write_text(json.dumps({"partners": []}))
        try:
            await sink.start()
            env = environment(dsns, ports, vhost, partners, sink.port)
            for name in SERVICES:
                with open(tmp / f"{name}.log", "w") as log:
                    processes[name] = subprocess.Popen([sys.executable, "-m", f"services.{name}"], cwd=ROOT, env=env,
                                                       stdout=log, stderr=subprocess.STDOUT)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                for name in SERVICES:
                    await wait_ready(http, url[name], processes[name])
                await benchmark(args, Bench(http, url, dsns, {n: p.pid for n, p in processes.items()}, sink, processes))
            for process in reversed(processes.values()):
                stop_process(process)  # so that their logs are whole
            print("warnings and errors the processes logged: " + "; ".join(
                f"{name} {logged(tmp / f'{name}.log')}" for name in SERVICES))
        except (Exception, SystemExit):
            for name in processes:  # what the processes said, before their folder goes
                lines = (tmp / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
                print(f"--- {name}.log, last lines\n" + "\n".join(lines), file=sys.stderr)
            raise
        finally:
            for process in reversed(processes.values()):
                stop_process(process)
            await sink.stop()
            for dsn in dsns.values():
                await db.drop_database(dsn)


def since_start() -> str:
    return f"[+{time.time() - STARTED:.0f} s]"


def logged(path: Path) -> str:
    """How many warnings and errors a process's log holds, the commonest, and when (seconds
    into the run: RabbitMQ restarted by someone else shows here)."""
    found: Counter[str] = Counter()
    when: list[float] = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            found[f"(not JSON) {line[:80]}"] += 1
            continue
        if isinstance(entry, dict) and entry.get("level") in ("warning", "error", "critical"):
            found[f"{entry['level']}: {str(entry.get('event'))[:70]}"] += 1
            try:
                when.append(dt.datetime.fromisoformat(entry["timestamp"]).timestamp() - STARTED)
            except (KeyError, TypeError, ValueError):
                pass
    if not found:
        return "none"
    return (f"{sum(found.values())}" + (f" from +{min(when):.0f} to +{max(when):.0f} s" if when else "") + " ("
            + ", ".join(f"{count} x {what}" for what, count in found.most_common(2)) + ")")


class Bench:
    """What every phase uses: the HTTP session, the services' addresses, databases and pids, the sink."""

    def __init__(self, http: aiohttp.ClientSession, url: dict[str, str], dsns: dict[str, str], pids: dict[str, int],
                 sink: MailSink, processes: dict[str, subprocess.Popen]) -> None:
        self.http, self.url, self.dsns, self.pids, self.sink, self.processes = http, url, dsns, pids, sink, processes
        self.invoice_seq = 0

    def alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise SystemExit(f"the {name} process exited with status {process.returncode}")

    async def staff_token(self) -> str:
        async with self.http.post(f"{self.url['accounts']}/v1/staff/auth/login",
                                  json={"email": STAFF_EMAIL, "password": PASSWORD}) as response:
            return (await expect(response, 200, "staff sign-in"))["access_token"]

    async def customer(self, n: int, email: str, phone: str) -> dict:
        """A customer account registered, verified and signed in through the accounts API."""
        accounts = self.url["accounts"]
        async with self.http.post(f"{accounts}/v1/accounts", json={
                "name": f"Bench Customer {n}", "email": email, "phone": phone, "password": PASSWORD,
                "terms_version": "2026-01"}) as response:
            await expect(response, 202, "registration")
        [message] = await self.sink.wait_for(email, timeout=60)
        async with self.http.post(f"{accounts}/v1/accounts/verify-email",
                                  json={"token": code_in(message), "password": PASSWORD}) as response:
            await expect(response, 200, "verification")
        token = await self.sign_in(email)
        async with self.http.get(f"{accounts}/v1/me", headers=auth(token)) as response:
            me = await expect(response, 200, "profile")
        return {"id": uuid.UUID(me["id"]), "email": email, "phone": phone, "name": me["name"], "token": token}

    async def sign_in(self, email: str) -> str:
        async with self.http.post(f"{self.url['accounts']}/v1/auth/login",
                                  json={"email": email, "password": PASSWORD}) as response:
            return (await expect(response, 200, "sign-in"))["access_token"]

    async def submit(self, token: str, kind: str, subject: dict, email: str) -> dict:
        async with self.http.post(f"{self.url['privacy']}/v1/staff/privacy-requests", headers=auth(token), json={
                "request": {"kind": kind}, "subject": subject, "contact_email": email,
                "identification": IDENTIFIED, "language": "en"}) as response:
            return await expect(response, 202, f"{kind} request")


# --- data written straight into the services' databases ---------------------------------------

class Orders:
    """Paid, delivered orders with their lines and invoices (orders), their payments (payments),
    gathered and then written by COPY."""

    def __init__(self, bench: Bench, products: list[tuple]) -> None:
        self.bench, self.products = bench, products
        self.orders: list[tuple] = []
        self.lines: list[tuple] = []
        self.invoices: list[tuple] = []
        self.payments: list[tuple] = []

    def add(self, customer_id: uuid.UUID | None, name: str, email: str, phone: str, lines: int,
            paid: bool = True, at: dt.datetime | None = None) -> None:
        order_id, payment_id = uuid.uuid4(), uuid.uuid4()
        at = at or dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
        gross, net, vat = (part * lines for part in UNIT)
        self.orders.append((
            order_id, customer_id, customer_id is None, "delivered" if paid else "created", CARRIER, name, email, phone,
            "Brīvības iela 1", "Rīga", "LV-1010", "LV", net, vat, gross, "EUR", str(payment_id) if paid else None, at,
            at if paid else None, at + dt.timedelta(days=1) if paid else None, at + dt.timedelta(days=2) if paid else None))
        for line_no in range(1, lines + 1):
            product_id, sku, product_name, category = self.products[(line_no - 1) % len(self.products)]
            # quantity 1: unit price, VAT rate, net, VAT, gross
            self.lines.append((order_id, line_no, product_id, sku, product_name, category, 1, UNIT[0], 21, UNIT[1],
                               UNIT[2], UNIT[0]))
        if not paid:
            return
        self.bench.invoice_seq += 1
        seq = self.bench.invoice_seq
        self.invoices.append((uuid.uuid4(), order_id, at.year, seq, f"VK-{at.year}-{seq:07d}", at.date(), name, net, vat,
                              gross, "EUR"))
        if customer_id is not None:
            self.payments.append((payment_id, order_id, 1, customer_id, gross, "EUR", "succeeded", f"bench-{payment_id}",
                                  f"pi_{payment_id.hex}", f"pm_{payment_id.hex}", "visa", "4242", 12,
                                  dt.date.today().year + 3, False, at))

    async def write(self) -> None:
        conn = await asyncpg.connect(self.bench.dsns["orders"])
        try:
            async with conn.transaction():
                await conn.copy_records_to_table("orders", records=self.orders, columns=[
                    "id", "customer_id", "guest", "status", "carrier", "contact_name", "contact_email", "contact_phone",
                    "address_line1", "address_city", "address_postal_code", "address_country", "net_cents", "vat_cents",
                    "gross_cents", "currency", "payment_id", "created_at", "paid_at", "shipped_at", "delivered_at"])
                await conn.copy_records_to_table("order_lines", records=self.lines, columns=[
                    "order_id", "line_no", "product_id", "sku", "name", "category", "quantity", "unit_price_cents",
                    "vat_rate", "net_cents", "vat_cents", "gross_cents"])
                await conn.copy_records_to_table("invoices", records=self.invoices, columns=[
                    "id", "order_id", "year", "seq", "number", "issued_on", "buyer_name", "net_cents", "vat_cents",
                    "gross_cents", "currency"])
            await conn.execute("ANALYZE orders; ANALYZE order_lines; ANALYZE invoices")
        finally:
            await conn.close()
        conn = await asyncpg.connect(self.bench.dsns["payments"])
        try:
            await conn.copy_records_to_table("payments", records=self.payments, columns=[
                "id", "order_id", "attempt", "customer_id", "amount_cents", "currency", "status", "idempotency_key",
                "psp_intent_id", "psp_payment_method_id", "card_brand", "card_last4", "card_exp_month", "card_exp_year",
                "off_session", "succeeded_at"])
            await conn.execute("ANALYZE payments")
        finally:
            await conn.close()


async def add_products(bench: Bench) -> list[tuple]:
    products = [(uuid.uuid4(), f"BENCH-{p:03d}", f"Bench item {p}", ("books", "home", "tea")[p % 3])
                for p in range(PRODUCTS)]
    conn = await asyncpg.connect(bench.dsns["orders"])
    try:
        await conn.copy_records_to_table("products", records=[(*p, UNIT[0], 21, 1_000_000) for p in products], columns=[
            "id", "sku", "name", "category", "price_cents", "vat_rate", "stock"])
    finally:
        await conn.close()
    return products


async def add_people(bench: Bench, people: list[tuple[uuid.UUID | None, str, str, str]], profiled: bool) -> None:
    """Marketing's records of (customer id or None for a guest, e-mail, phone, name): a double
    opt-in to offers by e-mail; with ``profiled``, consent to profiling and a profile too."""
    rows = [(uuid.uuid4(), customer_id, email, phone, name, "en") for customer_id, email, phone, name in people]
    entries = [(person_id, "email", "direct_marketing", True, "double_opt_in", "email-2026-11", email)
               for person_id, _, email, *_ in rows]
    at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    profiles = []
    if profiled:
        entries += [(person_id, None, "profiling", True, "web", "profiling-2026-11", None) for person_id, *_ in rows]
        profiles = [(person_id, 2, 2 * 3 * UNIT[0], "EUR", at, at) for person_id, *_ in rows]
    conn = await asyncpg.connect(bench.dsns["marketing"])
    try:
        async with conn.transaction():
            await conn.copy_records_to_table("people", records=rows, columns=[
                "id", "customer_id", "email", "phone", "name", "language"])
            await conn.copy_records_to_table("consent_entries", records=entries, columns=[
                "person_id", "channel", "purpose", "granted", "source", "wording_version", "address"])
            await conn.copy_records_to_table("profiles", records=profiles, columns=[
                "person_id", "orders", "spend_cents", "currency", "first_order_at", "last_order_at"])
    finally:
        await conn.close()


# --- the phases ---------------------------------------------------------------------------------

async def benchmark(args: argparse.Namespace, bench: Bench) -> None:
    started = time.perf_counter()
    print(f"{args.requests} customers' exports and erasures ({args.in_flight} in flight), a burst of {args.burst} "
          f"erasures, an export of {args.lines} order lines; {os.cpu_count()} cores, shared by every process, "
          "PostgreSQL and RabbitMQ; no partners (no processor tasks)", flush=True)
    done = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "services.accounts.admin", "create-staff", "--email", STAFF_EMAIL,
        "--name", "Bench Support", "--role", "support"], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "VEIKALS_STAFF_PASSWORD": PASSWORD, "VEIKALS_ACCOUNTS_DATABASE_URL": bench.dsns["accounts"]})
    if done.returncode != 0:
        raise SystemExit(f"create-staff failed: {done.stderr}")
    products = await add_products(bench)
    privacy = await asyncpg.create_pool(bench.dsns["privacy"], min_size=1, max_size=max(2, args.in_flight + 1))
    try:
        if args.requests:
            await typical(args, bench, products, privacy)
        if args.burst:
            await burst(args, bench, products, privacy)
        if args.lines:
            await huge_export(args, bench, products, privacy)
    finally:
        await privacy.close()
    print(f"{since_start()} the phases took {time.perf_counter() - started:.0f} s (the rest: starting and stopping)")


async def wait_done(pool: asyncpg.Pool, request_id: uuid.UUID, timeout: float, bench: Bench) -> asyncpg.Record:
    """The request once it is no longer open (completed, or needing staff), or as it is at the timeout."""
    deadline = time.perf_counter() + timeout
    while True:
        row = await pool.fetchrow("SELECT state, received_at, completed_at FROM requests WHERE id = $1", request_id)
        if row["state"] != "open" or time.perf_counter() > deadline:
            return row
        bench.alive()
        await asyncio.sleep(0.01)


async def typical(args: argparse.Namespace, bench: Bench, products: list[tuple], privacy: asyncpg.Pool) -> None:
    n = args.requests
    started = time.perf_counter()
    customers: list[dict] = [{}] * n

    async def one(i: int) -> None:
        customers[i] = await bench.customer(i, f"customer{i:04d}@example.lv", f"+37121{i:06d}")
    await load(8, n, one)
    orders = Orders(bench, products)
    for c in customers:
        for _ in range(2):
            orders.add(c["id"], c["name"], c["email"], c["phone"], 3)
        orders.add(None, c["name"], c["email"], c["phone"], 1, paid=False)  # the guest order they left unpaid
    await orders.write()
    await add_people(bench, [(c["id"], c["email"], c["phone"], c["name"]) for c in customers], profiled=True)
    print(f"{since_start()} setup: {n} customers (account, 2 paid orders of 3 lines with invoices and payments, "
          f"1 unpaid guest order, consents and a profile) in {time.perf_counter() - started:.1f} s", flush=True)

    print("results")
    for kind in ("export", "erasure"):
        token = await bench.staff_token()
        ids: list[uuid.UUID] = [uuid.UUID(int=0)] * n
        joined = 0

        async def request(i: int) -> None:
            nonlocal joined
            c = customers[i]
            view = await bench.submit(token, kind, {"customer_id": str(c["id"]), "emails": [c["email"]],
                                                    "phones": [c["phone"]]}, c["email"])
            ids[i] = uuid.UUID(view["id"])
            joined += view["joined"]
            await wait_done(privacy, ids[i], args.timeout, bench)
        began = time.perf_counter()
        await load(args.in_flight, n, request)
        wall = time.perf_counter() - began
        rows = await privacy.fetch("SELECT state, received_at, completed_at FROM requests WHERE id = ANY($1)", ids)
        took = [(r["completed_at"] - r["received_at"]).total_seconds() * 1000 for r in rows if r["completed_at"]]
        states = Counter(r["state"] for r in rows)
        finished = await privacy.fetch(
            """SELECT t.participant, avg(extract(epoch FROM t.updated_at - r.received_at)) * 1000 AS ms
               FROM tasks t JOIN requests r ON r.id = t.request_id WHERE r.id = ANY($1) GROUP BY 1 ORDER BY 2""", ids)
        label = f"{kind}s"
        if took:
            # (min: with few values the quantiles extrapolate beyond the largest)
            print(f"  {label:<9} p50 {percentile(took, 50):7.1f} ms   p99 {min(percentile(took, 99), max(took)):7.1f} ms   "
                  f"max {max(took):7.1f} ms   {n / wall:6.1f} requests/s   {states['completed']} of {n} completed"
                  + (f", {states['attention']} need staff" if states["attention"] else "")
                  + (f", {states['open']} still open" if states["open"] else "")
                  + (f", {joined} joined" if joined else ""))
        else:
            print(f"  {label:<9} none completed: " + ", ".join(f"{s} {c}" for s, c in states.items()))
        print("            each task finished after (mean ms): "
              + ", ".join(f"{r['participant']} {r['ms']:.0f}" for r in finished))
        if kind == "export":
            records = await privacy.fetchval(
                "SELECT count(*) FROM export_records WHERE request_id = ANY($1)", ids)
            print(f"            {records / n:.1f} records an export")
        sys.stdout.flush()


async def burst(args: argparse.Namespace, bench: Bench, products: list[tuple], privacy: asyncpg.Pool) -> None:
    n = args.burst
    started = time.perf_counter()
    guests = [(f"burst{i:05d}@example.lv", f"+37122{i:06d}", f"Burst Guest {i}") for i in range(n)]
    orders = Orders(bench, products)
    for email, phone, name in guests:
        orders.add(None, name, email, phone, 2)
    await orders.write()
    await add_people(bench, [(None, email, phone, name) for email, phone, name in guests[::2]], profiled=False)
    print(f"{since_start()} setup: {n} guests (a paid, delivered order of 2 lines each; {len(guests[::2])} of them "
          f"consenting to offers) in {time.perf_counter() - started:.1f} s", flush=True)

    token = await bench.staff_token()
    ids: list[uuid.UUID | None] = [None] * n
    failures: Counter[str] = Counter()
    joined = 0

    async def request(i: int) -> None:
        nonlocal joined
        email = guests[i][0]
        try:
            view = await bench.submit(token, "erasure", {"emails": [email]}, email)
        except (RuntimeError, aiohttp.ClientError) as exc:
            failures[str(exc)[:200]] += 1
            return
        ids[i] = uuid.UUID(view["id"])
        joined += view["joined"]
    cpu = {name: cpu_seconds(pid) for name, pid in bench.pids.items()}
    began = time.perf_counter()
    await load(32, n, request)
    submitted_s = time.perf_counter() - began
    wanted = [i for i in ids if i is not None]
    print(f"  burst     {len(wanted)} of {n} erasures accepted in {submitted_s:.1f} s ({len(wanted) / submitted_s:.0f}/s, "
          f"32 in flight)" + (f", {joined} joined" if joined else "")
          + "".join(f"; {count} x {failure}" for failure, count in failures.most_common(3)), flush=True)
    shown = began
    while True:
        counts = await privacy.fetchrow(
            """SELECT count(*) FILTER (WHERE state = 'completed') AS completed,
                      count(*) FILTER (WHERE state = 'attention') AS attention FROM requests WHERE id = ANY($1)""", wanted)
        now = time.perf_counter()
        if counts["completed"] + counts["attention"] >= len(wanted) or now - began > args.timeout:
            break
        if now - shown >= 15:
            shown = now
            print(f"            {now - began:5.0f} s: {counts['completed']} completed", flush=True)
        bench.alive()
        await asyncio.sleep(0.25)
    waited = time.perf_counter() - began
    used = {name: (cpu_seconds(pid) or 0) - (cpu[name] or 0) for name, pid in bench.pids.items()}
    span = await privacy.fetchrow(
        """SELECT min(received_at) AS first, max(completed_at) AS last, count(*) AS requests,
                  count(DISTINCT subject_key) AS subjects, count(*) FILTER (WHERE state = 'completed') AS completed
           FROM requests WHERE id = ANY($1)""", wanted)
    tasks = await privacy.fetch(
        "SELECT request_id, count(*) AS tasks, count(*) FILTER (WHERE state = 'done') AS done FROM tasks "
        "WHERE request_id = ANY($1) GROUP BY 1", wanted)
    per_request = Counter(r["tasks"] for r in tasks)
    not_done = sum(r["tasks"] - r["done"] for r in tasks)
    took = (span["last"] - span["first"]).total_seconds() if span["last"] else float("nan")
    each = [(r["completed_at"] - r["received_at"]).total_seconds() for r in await privacy.fetch(
        "SELECT received_at, completed_at FROM requests WHERE id = ANY($1) AND completed_at IS NOT NULL", wanted)]
    print(f"            {span['completed']} of {n} completed: {took:.1f} s from the first receipt to the last completion "
          f"(the goal: within 60 s); {waited:.1f} s by this process's clock"
          + ("" if span["completed"] == n else f" (stopped waiting after {args.timeout:.0f} s)"))
    if each:
        print(f"            each request from receipt to completion: p50 {percentile(each, 50):.1f} s, "
              f"p99 {min(percentile(each, 99), max(each)):.1f} s, min {min(each):.1f} s")
    print(f"            {span['requests']} requests in the database, {span['subjects']} distinct subject keys; tasks a "
          "request: " + ", ".join(f"{k} x {v}" for k, v in sorted(per_request.items()))
          + f"; {sum(r['done'] for r in tasks)} tasks done, {not_done} not")
    keys = [str(i) for i in wanted]
    calls = []
    for name in PARTICIPANTS:
        conn = await asyncpg.connect(bench.dsns[name])
        try:
            row = await conn.fetchrow(
                """SELECT count(*) FILTER (WHERE key LIKE '%:erase') AS erase,
                          count(*) FILTER (WHERE key LIKE '%:verify:%') AS verify,
                          count(DISTINCT split_part(key, ':', 1)) AS requests
                   FROM rpc_calls WHERE method = $1 AND split_part(key, ':', 1) = ANY($2)""",
                f"{name}.privacy_erase", keys)
        finally:
            await conn.close()
        calls.append(f"{name} {row['erase']} + {row['verify']} ({row['requests']} requests)")
    print(f"            privacy_erase calls recorded (erase + verify), expected {len(wanted)} + {len(wanted)} each: "
          + "; ".join(calls))
    conn = await asyncpg.connect(bench.dsns["orders"])
    try:
        left = await conn.fetchval("SELECT count(*) FROM orders WHERE contact_email LIKE 'burst%' "
                                   "OR contact_name LIKE 'Burst%' OR contact_phone LIKE '+37122%'")
    finally:
        await conn.close()
    conn = await asyncpg.connect(bench.dsns["marketing"])
    try:
        people = await conn.fetchval("SELECT count(*) FROM people WHERE email LIKE 'burst%'")
    finally:
        await conn.close()
    print(f"            left behind: {left} guest orders with their contact details, {people} people in marketing "
          f"(expected 0 and 0)")
    print("            CPU s during the burst: " + ", ".join(f"{name} {s:.1f}" for name, s in used.items()), flush=True)


async def huge_export(args: argparse.Namespace, bench: Bench, products: list[tuple], privacy: asyncpg.Pool) -> None:
    started = time.perf_counter()
    c = await bench.customer(9999, "huge.export@example.lv", "+37129999999")
    orders = Orders(bench, products)
    at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=400)
    left, count = args.lines, 0
    while left > 0:
        orders.add(c["id"], c["name"], c["email"], c["phone"], min(LINES_PER_ORDER, left),
                   at=at + dt.timedelta(minutes=count))
        left -= LINES_PER_ORDER
        count += 1
    await orders.write()
    print(f"{since_start()} setup: a customer with {args.lines} order lines ({count} paid orders with invoices and "
          f"payments) in {time.perf_counter() - started:.1f} s", flush=True)

    before = {name: memory_mib(pid) for name, pid in bench.pids.items()}
    reset = all([reset_peak(pid) for pid in bench.pids.values()])
    began = time.perf_counter()
    async with bench.http.post(f"{bench.url['privacy']}/v1/me/privacy-requests", headers=auth(c["token"]),
                               json={"request": {"kind": "export"}, "language": "en"}) as response:
        request_id = uuid.UUID((await expect(response, 202, "export request"))["id"])
    row = await wait_done(privacy, request_id, args.timeout, bench)
    waited = time.perf_counter() - began
    if row["state"] != "completed":
        print(f"  huge export: {row['state']} after {waited:.0f} s; no download")
        return
    took = (row["completed_at"] - row["received_at"]).total_seconds()
    records = await privacy.fetch("SELECT participant, count(*) AS n FROM export_records WHERE request_id = $1 "
                                  "GROUP BY 1 ORDER BY 1", request_id)
    mails: list = []
    for _ in range(240):  # the privacy service's mail sender takes it to the sink
        if mails := [m for m in bench.sink.to(c["email"]) if COMPLETE in m["Subject"]]:
            break
        await asyncio.sleep(0.5)
    if not mails:
        print("  huge export: no completion mail arrived; no download")
        return
    link = next(w for w in mails[0].get_content().split() if "/export?token=" in w)
    token = await bench.sign_in(c["email"])
    with tempfile.NamedTemporaryFile(suffix=".zip") as archive:
        size, first_byte = 0, None
        began = time.perf_counter()
        async with bench.http.get(link, headers=auth(token), timeout=aiohttp.ClientTimeout(total=None)) as response:
            if response.status != 200:
                raise RuntimeError(f"download: {response.status} {await response.text()}")
            async for piece in response.content.iter_chunked(256 * 1024):
                if first_byte is None:
                    first_byte = time.perf_counter() - began
                size += len(piece)
                archive.write(piece)
        download_s = time.perf_counter() - began
        after = {name: memory_mib(pid) for name, pid in bench.pids.items()}
        archive.flush()
        with zipfile.ZipFile(archive.name) as opened:
            names = opened.namelist()
            with opened.open("orders/purchase-history.json") as lines_file:
                exported_lines = len(json.load(lines_file))
            unpacked = sum(i.file_size for i in opened.infolist())
    from_orders = sum(r["n"] for r in records if r["participant"] == "orders")
    print(f"  huge export: {took:.1f} s from receipt to completion ({waited:.1f} s by this process's clock; orders "
          f"answered in {math.ceil(from_orders / 500)} RPC chunks of at most 500 records); records: "
          + ", ".join(f"{r['participant']} {r['n']}" for r in records))
    print(f"            download {download_s:.1f} s (first byte after {first_byte or 0:.2f} s): {size / 2**20:.2f} MiB "
          f"ZIP, {unpacked / 2**20:.1f} MiB unpacked, {len(names)} files, {exported_lines} lines in "
          f"orders/purchase-history.json (of {args.lines})")
    peak = "peak from the request to the end of the download" if reset else "peak since the process started"
    print(f"memory (MiB): RSS before the request, {peak}, growth (the goal: under 100 MB)")
    for name in SERVICES:
        growth = after[name]["VmHWM"] - before[name]["VmRSS"]
        print(f"  {name:<10} {before[name]['VmRSS']:7.1f} {after[name]['VmHWM']:7.1f} {growth:+7.1f}"
              f"   (RSS now {after[name]['VmRSS']:.1f})")
    sys.stdout.flush()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="customers: an export, then an erasure, of each")
    parser.add_argument("--in-flight", type=int, default=1, help="of those requests, submitted and awaited at once")
    parser.add_argument("--burst", type=int, default=1000, help="erasures of as many guests, submitted 32 at once")
    parser.add_argument("--lines", type=int, default=100_000, help="order lines of the customer whose export is made")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for a request, or for the burst")
    configure_logging("bench", "warning")
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        sys.exit(130)  # everything was stopped, dropped and deleted on the way out
