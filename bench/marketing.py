"""Campaign e-mails per second to the SMTP sink, beside a bare aiosmtplib loop; profile updates per second.

The marketing service runs as its own process (``python -m services.marketing``) and the SMTP
sink as another (``python -m deploy.mailsink``, writing each message to a folder of the
benchmark's own), on free loopback ports, with a database ``veikals_bench_<random>_marketing``
and a RabbitMQ vhost of their own: all stopped, dropped and deleted at the end, also on failure
or Ctrl-C. No accounts service runs: the campaign is written and started in the marketing
database by the same store functions the staff routes call (``store.add_campaign``,
``store.start_campaign``, whose NOTIFY wakes the sender), so no staff token is needed.

setup (not timed)
    ``--customers`` customers who consent to offers by e-mail (a ``people`` row and a
    double-opt-in ``consent_entries`` row each, by COPY in one transaction); ``--orders`` of
    them consent to profiling too.
ours
    One campaign to all of them, sent by ``--concurrency`` senders of the service (its
    ``CAMPAIGN_CONCURRENCY``, no rate limit), timed from the start (recipients chosen) to the
    campaign's ``finished_at``, both by the database's clock.
bare
    The same messages, composed as the service composes them (``shared.mail.compose``, the body
    with its unsubscribe footer, the RFC 8058 headers), sent from this process by aiosmtplib
    over one connection, then over ``--concurrency`` connections at once.
profiles
    ``--orders`` ``order_paid`` events published on ``orders.events`` as the orders service's
    outbox relay publishes them (the body, the message id, the subject headers), 64 publishes in
    flight, timed from the first publish until the service's inbox holds them all (publishing
    overlaps handling; its own time is shown beside).

Each run gets a sink of its own (a fresh process: the sink keeps every message in memory).
Reported: messages/s of each run, ours/bare at the same concurrency (the goal: at least 0.5),
CPU ms a message of the process doing the sending and of the sink, profile updates/s, and the
marketing process's RSS. Figures from a shared machine are noisy: compare runs made back to back.

    .venv/bin/python bench/marketing.py
    .venv/bin/python bench/marketing.py --customers 2000 --concurrency 4
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

from processes import bench_vhost, cpu_seconds, free_port, load, memory_mib, stop_process, wait_ready  # bench/processes.py
from services.marketing import domain, store
from services.marketing.settings import MarketingSettings
from services.orders.schemas import OrderLine, OrderPaid
from shared import db, mail
from shared.config import load_settings
from shared.logging import configure_logging
from shared.messaging import Broker, wire
from shared.subjects import OCCURRED_HEADER, SUBJECT_HEADER, VERSION_HEADER, Subject

ROOT = Path(__file__).resolve().parents[1]
PG_BASE = "postgresql://postgres@127.0.0.1:5432"
SUBJECT = "Rudens atlaides"
# About the size of a real offer: a few paragraphs of plain text.
BODY = "Šonedēļ visām grāmatām un mājas precēm -20%. Atlaide ir spēkā līdz svētdienai.\n\n" * 8
INBOX_CONSUMER = "marketing.on_order_paid"


async def add_customers(dsn: str, customers: int, profiled: int) -> list[tuple[uuid.UUID, uuid.UUID, str, str]]:
    """Consenting customers, as the ledger holds them after a double opt-in: (person id,
    customer id, e-mail address, language) each; the first ``profiled`` consent to profiling."""
    people = [(uuid.uuid4(), uuid.uuid4(), f"bench{n}@example.lv", "lv") for n in range(customers)]
    entries = [(person_id, "email", "direct_marketing", True, "double_opt_in", "email-2026-11")
               for person_id, *_ in people]
    entries += [(person_id, None, "profiling", True, "double_opt_in", "profiling-2026-11")
                for person_id, *_ in people[:profiled]]
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.copy_records_to_table("people", records=people,
                                             columns=["id", "customer_id", "email", "language"])
            await conn.copy_records_to_table("consent_entries", records=entries, columns=[
                "person_id", "channel", "purpose", "granted", "source", "wording_version"])
    finally:
        await conn.close()
    return people


async def wait_listening(port: int, process: subprocess.Popen) -> None:
    """Until something accepts TCP connections on ``port`` (the sink has no /healthz)."""
    for _ in range(150):
        if process.poll() is not None:
            raise SystemExit(f"the mail sink exited with status {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise SystemExit(f"the mail sink never listened on port {port}")


class Sink:
    """The SMTP sink on a fixed port, started afresh for each run, its messages in a folder."""

    def __init__(self, port: int, tmp: Path) -> None:
        self.port, self.tmp, self.runs = port, tmp, 0
        self.process: subprocess.Popen | None = None

    async def fresh(self) -> Path:
        """A new sink process and its empty folder."""
        self.stop()
        self.runs += 1
        directory = self.tmp / f"mail{self.runs}"
        with open(self.tmp / "mailsink.log", "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "deploy.mailsink", "--port", str(self.port), "--dir", str(directory)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        await wait_listening(self.port, self.process)
        return directory

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


def received(directory: Path) -> int:
    return sum(1 for _ in directory.glob("*.eml")) if directory.exists() else 0


async def run_campaign(dsn: str, expected: int, service: subprocess.Popen) -> tuple[float, float, int]:
    """Write and start a campaign to everyone, wait until it is sent: (seconds by the database's
    clock, seconds spent choosing recipients, messages marked sent)."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            campaign_id = await store.add_campaign(conn, {
                "name": "Bench", "channel": "email", "subject_lv": SUBJECT, "subject_en": SUBJECT,
                "body_lv": BODY, "body_en": BODY, "audience": {}}, uuid.uuid4())  # created_by: a stand-in staff id
        started = time.perf_counter()
        async with conn.transaction():
            recipients = await store.start_campaign(conn, campaign_id, "email", {})
        choosing_s = time.perf_counter() - started
        if recipients != expected:
            raise SystemExit(f"the campaign chose {recipients} recipients of {expected}")
        deadline = time.perf_counter() + 600
        while await conn.fetchval("SELECT status FROM campaigns WHERE id = $1", campaign_id) != "sent":
            if time.perf_counter() > deadline or service.poll() is not None:
                raise SystemExit(f"the campaign was not sent (the service's exit status: {service.poll()})")
            await asyncio.sleep(0.05)
        took = await conn.fetchval("SELECT finished_at - started_at FROM campaigns WHERE id = $1", campaign_id)
        sent = await conn.fetchval(
            "SELECT count(*) FROM campaign_deliveries WHERE campaign_id = $1 AND status = 'sent'", campaign_id)
        return took.total_seconds(), choosing_s, sent
    finally:
        await conn.close()


async def send_bare(settings: MarketingSettings, recipients: list[tuple[uuid.UUID, str]], connections: int) -> float:
    """Compose and send every message as the service does, over ``connections`` SMTP connections
    at once, without a database: the seconds it took."""
    link_key, pending = settings.link_key.get_secret_value().encode(), iter(recipients)

    async def sender() -> None:
        smtp = mail.smtp_client(settings)
        await smtp.connect()
        for person_id, email in pending:
            token = domain.unsubscribe_token(link_key, person_id, "email", dt.date.today())
            links = domain.unsubscribe_links(settings.public_url, settings.unsubscribe_mailbox, token)
            await smtp.send_message(mail.compose(settings, email, SUBJECT, domain.email_body(BODY, "lv", links),
                                                 uuid.uuid4().hex, headers=domain.email_headers(links)))
        await smtp.quit()
    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(connections)))
    return time.perf_counter() - started


async def publish_orders_paid(amqp: str, customers: list[uuid.UUID]) -> float:
    """One ``order_paid`` for each customer, as orders' relay publishes it: the seconds publishing took."""
    broker = Broker(amqp, name="bench")
    await broker.connect()

    async def publish(i: int) -> None:
        at = dt.datetime.now(dt.timezone.utc)
        lines = [OrderLine(product_id=uuid.uuid4(), sku=f"BENCH-{n}", name=f"Bench item {n}", category=category,
                           quantity=n + 1, unit_price_cents=1000, vat_rate=21, net_cents=826 * (n + 1),
                           vat_cents=174 * (n + 1), gross_cents=1000 * (n + 1))
                 for n, category in enumerate(("books", "home"))]
        paid = OrderPaid(order_id=uuid.uuid4(), customer_id=customers[i], status="paid", gross_cents=3000,
                         currency="EUR", at=at, lines=lines)
        # The customer's second event (order_created was the first), as the relay stamps it.
        headers = {SUBJECT_HEADER: str(Subject.customer(customers[i])), VERSION_HEADER: 2,
                   OCCURRED_HEADER: at.isoformat()}
        await broker.publish("orders.events", "order_paid", wire.dumps(paid.model_dump(mode="json")),
                             headers=headers, message_id=str(uuid.uuid4()))
    try:
        started = time.perf_counter()
        await load(64, len(customers), publish)
        return time.perf_counter() - started
    finally:
        await broker.close()


async def main(args: argparse.Namespace) -> None:
    run = uuid.uuid4().hex[:8]
    dsn = f"{PG_BASE}/veikals_bench_{run}_marketing"
    port, sink_port = free_port(), free_port()
    settings = load_settings("marketing", MarketingSettings, smtp_host="127.0.0.1", smtp_port=sink_port,
                             link_key=secrets.token_hex(32), public_url=f"http://127.0.0.1:{port}")
    assert isinstance(settings, MarketingSettings)
    marketing: subprocess.Popen | None = None
    with bench_vhost() as vhost, tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        sink = Sink(sink_port, tmp)
        amqp = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
        own = {"DATABASE_URL": dsn, "AMQP_URL": amqp, "HTTP_PORT": str(port), "PUBLIC_URL": settings.public_url,
               "SMTP_HOST": settings.smtp_host, "SMTP_PORT": str(sink_port), "CAMPAIGN_RATE_PER_S": "0",
               "CAMPAIGN_CONCURRENCY": str(args.concurrency), "LINK_KEY": settings.link_key.get_secret_value(),
               "SUPPRESSION_KEY": secrets.token_hex(32), "SUBJECT_KEY": secrets.token_hex(32), "LOG_LEVEL": "warning",
               # Nothing serves it: no route that needs a token is called.
               "JWKS_URL": f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"}
        env = {**os.environ, **{f"VEIKALS_MARKETING_{key}": value for key, value in own.items()}}
        try:
            await sink.fresh()
            with open(tmp / "marketing.log", "w") as log:
                marketing = subprocess.Popen([sys.executable, "-m", "services.marketing"], cwd=ROOT, env=env,
                                             stdout=log, stderr=subprocess.STDOUT)
            async with aiohttp.ClientSession() as http:
                await wait_ready(http, f"http://127.0.0.1:{port}", marketing)  # migrated, queues declared
            await benchmark(args, dsn, amqp, settings, sink, marketing)
        except (Exception, SystemExit):
            for name in ("marketing.log", "mailsink.log"):  # what the processes said, before their folder goes
                lines = (tmp / name).read_text(errors="replace").splitlines()[-15:] if (tmp / name).exists() else []
                print(f"--- {name}, last lines\n" + "\n".join(lines), file=sys.stderr)
            raise
        finally:
            if marketing is not None:
                stop_process(marketing)
            sink.stop()
            await db.drop_database(dsn)


async def benchmark(args: argparse.Namespace, dsn: str, amqp: str, settings: MarketingSettings, sink: Sink,
                    service: subprocess.Popen) -> None:
    n, k, m = args.customers, args.concurrency, min(args.orders, args.customers)
    marketing = service.pid
    print(f"{n} consenting customers, {k} senders; {os.cpu_count()} cores, shared by every process and PostgreSQL",
          flush=True)
    started = time.perf_counter()
    people = await add_customers(dsn, n, m)
    print(f"setup: {n} customers ({m} of them profiled) in {time.perf_counter() - started:.1f} s", flush=True)

    def cpu_ms(pid: int, before: float | None, messages: int) -> str:
        after = cpu_seconds(pid)
        return "?" if before is None or after is None else f"{(after - before) * 1000 / messages:.2f}"

    print("results")
    memory_before = memory_mib(marketing)
    directory = await sink.fresh()
    cpu = {"ours": cpu_seconds(marketing), "sink": cpu_seconds(sink.process.pid)}
    took, choosing_s, sent = await run_campaign(dsn, n, service)
    ours = sent / took
    print(f"  ours    {ours:8.1f} messages/s   {sent} sent in {took:.2f} s (choosing recipients {choosing_s:.2f} s), "
          f"{received(directory)} at the sink")
    print(f"          CPU ms a message: marketing {cpu_ms(marketing, cpu['ours'], sent)}, "
          f"sink {cpu_ms(sink.process.pid, cpu['sink'], sent)}", flush=True)
    memory_after = memory_mib(marketing)

    recipients = [(person_id, email) for person_id, _, email, _ in people]
    bare: dict[int, float] = {}
    for connections in sorted({1, k}):
        directory = await sink.fresh()
        cpu = {"bench": cpu_seconds(os.getpid()), "sink": cpu_seconds(sink.process.pid)}
        bare[connections] = len(recipients) / await send_bare(settings, recipients, connections)
        print(f"  bare/{connections:<3}{bare[connections]:8.1f} messages/s   {received(directory)} at the sink")
        print(f"          CPU ms a message: this process {cpu_ms(os.getpid(), cpu['bench'], n)}, "
              f"sink {cpu_ms(sink.process.pid, cpu['sink'], n)}", flush=True)
    print(f"  ours/bare at {k} connections {ours / bare[k]:.2f} (goal: at least 0.50)")

    conn = await asyncpg.connect(dsn)
    try:
        cpu_before = cpu_seconds(marketing)
        started = time.perf_counter()
        publish_s = await publish_orders_paid(amqp, [customer_id for _, customer_id, *_ in people[:m]])
        while (handled := await conn.fetchval("SELECT count(*) FROM inbox WHERE consumer = $1", INBOX_CONSUMER)) < m:
            if time.perf_counter() - started > 600 or service.poll() is not None:
                raise SystemExit(f"only {handled} of {m} order_paid events handled (the service's exit status: "
                                 f"{service.poll()})")
            await asyncio.sleep(0.05)
        took = time.perf_counter() - started
        profiles = await conn.fetchval("SELECT count(*) FROM profiles")
        spend = await conn.fetchval("SELECT sum(spend_cents)::bigint FROM profiles")
    finally:
        await conn.close()
    print(f"  profiles {m / took:7.1f} updates/s   {m} order_paid handled in {took:.2f} s (publishing took "
          f"{publish_s:.2f} s, 64 in flight); {profiles} profiles, {spend or 0} cents in all"
          + ("" if (profiles, spend) == (m, 3000 * m) else f" (expected {m} profiles, {3000 * m} cents)"))
    print(f"          CPU ms an event: marketing {cpu_ms(marketing, cpu_before, m)}")
    memory_end = memory_mib(marketing)
    print(f"marketing process: RSS {memory_before['VmRSS']:.0f} MiB before the campaign, {memory_after['VmRSS']:.0f} "
          f"MiB after it, {memory_end['VmRSS']:.0f} MiB after the profiles (peak {memory_end['VmHWM']:.0f} MiB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000, help="consenting customers: the campaign's recipients")
    parser.add_argument("--concurrency", type=int, default=2, help="the service's senders, and the bare run's connections")
    parser.add_argument("--orders", type=int, default=5_000, help="order_paid events, one for each of as many customers")
    configure_logging("bench", "warning")
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        sys.exit(130)  # everything was stopped, dropped and deleted on the way out
