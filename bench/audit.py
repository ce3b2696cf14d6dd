"""The audit log (services/privacy/audit.py): entries appended under concurrent staff reads, and
the cost of verifying the chain.

Everything runs in this process against a database of its own, ``veikals_bench_<random>``,
migrated as the privacy service's (``PrivacyService.migration_scopes()``) and dropped at the
end, whatever happens. ``--requests`` data-subject requests (with their tasks) are written
first, as the rows staff read; their own audit entries are chained before anything is timed.

appends
    For each N in ``--writers``, four phases of ``--seconds`` each, N writers on a pool of their
    own, each running one transaction after another, as the privacy service's staff route
    ``GET /v1/staff/privacy-requests/{id}`` does: a request and its tasks read, then
    ``read only``: nothing more (no chainer running);
    ``write``: one plain row inserted (what the other services' staff reads already write, their
    ``staff_accesses`` row), so the cost of a read becoming a write is apart from the log's;
    ``audited``: ``store.add_audit`` of a staff look, with a ``source`` as the entries of other
    services' ``staff_accessed`` events carry (the costlier path: it is checked against the
    chained ones), while an ``audit.Chainer`` (polling every ``--poll-s``, batches of
    ``audit.BATCH``) chains them: the service as it runs.
    Reported: transactions/s and p50/p99 latency of each phase; what ``audited`` adds to
    ``read only`` and to ``write``; for ``audited``, the rate at which entries became chained,
    from the first write to the last one chained (end to end), the age of the oldest entry
    still waiting, sampled every 20 ms while writing (how far the chain lags), the backlog
    when the writers stopped and the time it took to drain.
verify
    The log is filled to ``--verify-entries`` by entries written straight into
    ``audit_pending`` (one INSERT ... SELECT) and chained by ``audit.chain_pending`` as the
    chainer does, timed (the chainer's rate with a backlog); then ``audit.verify`` walks it
    ``--verify-rounds`` times. Reported: seconds per 100,000 entries, the time reading the rows
    alone takes (the same cursor, no hashing), and this process's peak memory above where it
    was before (``VmHWM`` reset through ``/proc/self/clear_refs``; Linux only).

The benchmark prints; it asserts nothing. Figures from a shared machine are noisy: compare runs
made back to back.

    .venv/bin/python bench/audit.py
    .venv/bin/python bench/audit.py --writers 1,16 --seconds 10 --verify-entries 500000
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.privacy import audit, store
from services.privacy.service import PrivacyService
from shared import db
from shared.logging import configure_logging
from processes import percentile  # bench/processes.py (the script's folder is on sys.path)

PG_BASE = "postgresql://postgres@127.0.0.1:5432"
STAFF = uuid.uuid4()
CATEGORIES = ["data-subject requests", "outcomes of each participant"]


@dataclass
class Phase:
    transactions: int
    seconds: float
    latencies_ms: list[float]

    @property
    def per_s(self) -> float:
        return self.transactions / self.seconds


@dataclass
class Appends:
    writers: int
    read_only: Phase
    write: Phase
    audited: Phase
    chained_per_s: float  # entries, from the first write to the last one chained
    drain_s: float  # after the writers stopped, until nothing waited
    backlog_at_stop: int
    oldest_waiting_ms: list[float]  # samples while writing


@dataclass
class Verify:
    entries: int
    chain_s: float
    chained: int
    rounds_s: list[float]
    read_only_s: float
    peak_mib: float | None


# --- setup ------------------------------------------------------------------------------------

async def seed_requests(pool: asyncpg.Pool, count: int) -> list[uuid.UUID]:
    ids = []
    async with pool.acquire() as conn, conn.transaction():
        for i in range(count):
            now = dt.datetime.now(dt.timezone.utc)
            row = await store.add_request(conn, {
                "id": uuid.uuid4(), "kind": "export", "subject": {"emails": [f"bench{i}@example.lv"]},
                "subject_key": uuid.uuid4().bytes, "customer_id": uuid.uuid4(), "contact_email": f"bench{i}@example.lv",
                "source": "staff", "staff_id": STAFF, "identification": "replied from the order's address",
                "received_at": now, "due_at": now + dt.timedelta(days=30)}, ["accounts", "orders", "payments"])
            ids.append(row["id"])
    return ids


async def chain_everything(pool: asyncpg.Pool) -> int:
    chained = 0
    while taken := await audit.chain_pending(pool):
        chained += taken
    return chained


async def head_seq(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT seq FROM audit_head")


# --- appends ----------------------------------------------------------------------------------

async def staff_reads(pool: asyncpg.Pool, writers: int, seconds: float, requests: list[uuid.UUID],
                      then: str) -> Phase:
    """``writers`` loops of staff reads for ``seconds``; each read a transaction of its own,
    ``then`` (``read``, ``write`` or ``audit``) what it does after reading."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def writer() -> None:
        async with pool.acquire() as conn:
            while time.perf_counter() < deadline:
                request_id = random.choice(requests)
                started = time.perf_counter()
                async with conn.transaction():
                    row = await store.request(conn, request_id)
                    await store.tasks_of(conn, [request_id])
                    if then == "write":
                        await conn.execute("INSERT INTO bench_staff_reads (staff_id, request_id) VALUES ($1, $2)",
                                           STAFF, request_id)
                    elif then == "audit":
                        await store.add_audit(
                            conn, kind="staff_access", service="orders", actor=f"staff:{STAFF}",
                            action=f"request {request_id}", source=f"orders:access:{uuid.uuid4()}",
                            subject_id=row["customer_id"], request_id=request_id, categories=CATEGORIES,
                            reason="the customer asked about it by e-mail")
                latencies.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    return Phase(len(latencies), time.perf_counter() - started, latencies)


async def appends(dsn: str, writers: int, seconds: float, poll_s: float, requests: list[uuid.UUID]) -> Appends:
    pool = await db.create_pool(dsn, min_size=writers + 3, max_size=writers + 3)
    try:
        read_only = await staff_reads(pool, writers, seconds, requests, "read")
        write = await staff_reads(pool, writers, seconds, requests, "write")
        chainer = audit.Chainer(pool, poll_s)
        await chainer.start()
        try:
            first = await head_seq(pool)
            samples: list[float] = []
            writing = asyncio.ensure_future(staff_reads(pool, writers, seconds, requests, "audit"))
            started = time.perf_counter()
            async with pool.acquire() as watcher:
                while not writing.done():
                    age = await watcher.fetchval(
                        "SELECT coalesce(extract(epoch FROM clock_timestamp() - min(at)), 0) FROM audit_pending")
                    samples.append(float(age) * 1000)
                    await asyncio.sleep(0.02)
                audited = await writing
                stopped = time.perf_counter()
                backlog = await watcher.fetchval("SELECT count(*) FROM audit_pending")
                while await watcher.fetchval("SELECT seq FROM audit_head") < first + audited.transactions:
                    await asyncio.sleep(0.005)
                done = time.perf_counter()
        finally:
            await chainer.stop()
    finally:
        await pool.close()
    return Appends(writers, read_only, write, audited, audited.transactions / (done - started),
                   done - stopped, backlog, samples)


# --- verify -----------------------------------------------------------------------------------

def peak_reset() -> float | None:
    """This process's RSS now (MiB), after resetting its peak; None where /proc cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return rss("VmRSS")
    except OSError:
        return None


def rss(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


async def verification(dsn: str, entries: int, rounds: int) -> Verify:
    pool = await db.create_pool(dsn, max_size=2, statement_timeout=600)
    try:
        missing = entries - await head_seq(pool)
        if missing > 0:
            # What staff looks look like: a subject, a reason, two categories, a small detail.
            await pool.execute(
                """INSERT INTO audit_pending (source, kind, service, actor, subject_id, categories, action, reason,
                                              detail)
                   SELECT 'orders:access:' || gen_random_uuid(), 'staff_access', 'orders', $2, gen_random_uuid(),
                          $3, 'order ' || gen_random_uuid(), 'the customer asked about a parcel',
                          jsonb_build_object('n', n)
                   FROM generate_series(1, $1) n""", missing, f"staff:{STAFF}", CATEGORIES, timeout=600)
        started = time.perf_counter()
        chained = await chain_everything(pool)
        chain_s = time.perf_counter() - started
        async with pool.acquire() as conn:
            await conn.execute("SET statement_timeout = 0")
            started = time.perf_counter()
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                walked = 0
                async for _ in store.audit_walk(conn, 1):
                    walked += 1
            read_only_s = time.perf_counter() - started
            rounds_s, peak = [], None
            for _ in range(rounds):
                before = peak_reset()
                started = time.perf_counter()
                result = await audit.verify(conn)
                rounds_s.append(time.perf_counter() - started)
                if not result.intact:
                    print(f"verify found: {result.finding}", file=sys.stderr)
                if before is not None:
                    peak = max(peak or 0.0, rss("VmHWM") - before)
        return Verify(walked, chain_s, chained, rounds_s, read_only_s, peak)
    finally:
        await pool.close()


# --- report -----------------------------------------------------------------------------------

def report_appends(runs: list[Appends], args: argparse.Namespace) -> None:
    print(f"\nappends: staff reads of a request and its tasks, {args.seconds:g} s per phase, on {os.cpu_count()} CPUs")
    header = (f"{'writers':>7}  {'phase':<10} {'txn/s':>7} {'p50 ms':>7} {'p99 ms':>7}  "
              f"{'chained/s':>9} {'lag p50':>7} {'p99':>5} {'max':>5} {'backlog':>7} {'drain s':>7}")
    print(header)
    print("-" * len(header))
    for r in runs:
        phases = [("read only", r.read_only), ("write", r.write), ("audited", r.audited)]
        for name, phase in phases:
            lat = phase.latencies_ms
            line = (f"{r.writers if name == 'read only' else '':>7}  {name:<10} {phase.per_s:>7.0f} "
                    f"{percentile(lat, 50):>7.2f} {percentile(lat, 99):>7.2f}")
            if phase is r.audited:
                lag = r.oldest_waiting_ms or [0.0]
                line += (f"  {r.chained_per_s:>9.0f} {percentile(lag, 50):>7.0f} {percentile(lag, 99):>5.0f} "
                         f"{max(lag):>5.0f} {r.backlog_at_stop:>7} {r.drain_s:>7.2f}")
            print(line)
    print("\nwhat an entry adds to a staff read's transaction (audited - read only; audited - write), ms:")
    header = f"{'writers':>7}  {'p50':>7} {'p99':>7}   {'p50':>7} {'p99':>7}"
    print(header)
    print("-" * len(header))
    for r in runs:
        au, ro, wr = r.audited.latencies_ms, r.read_only.latencies_ms, r.write.latencies_ms
        print(f"{r.writers:>7}  {percentile(au, 50) - percentile(ro, 50):>7.2f} "
              f"{percentile(au, 99) - percentile(ro, 99):>7.2f}   {percentile(au, 50) - percentile(wr, 50):>7.2f} "
              f"{percentile(au, 99) - percentile(wr, 99):>7.2f}")
    print("(lag: the age in ms of the oldest entry waiting to be chained, from its insert (its own commit is in "
          "it), sampled every 20 ms while writing; backlog: entries waiting when the writers stopped; drain: until "
          "the last was chained)")


def report_verify(v: Verify) -> None:
    per = 100_000 / v.entries
    best = min(v.rounds_s)
    print(f"\nverify: {v.entries:,} entries chained ({v.chained:,} of them just now, by chain_pending in batches "
          f"of {audit.BATCH}: {v.chained / v.chain_s:,.0f} entries/s)")
    print(f"  audit.verify, {len(v.rounds_s)} rounds: " + ", ".join(f"{s:.2f} s" for s in v.rounds_s)
          + f"; best {best * per:.2f} s per 100,000 entries ({v.entries / best:,.0f} entries/s)")
    print(f"  of which reading the rows (same cursor, no hashing): {v.read_only_s * per:.2f} s per 100,000")
    if v.peak_mib is not None:
        print(f"  peak memory above the start of a verification: {v.peak_mib:.1f} MiB (VmHWM)")


# --- main -------------------------------------------------------------------------------------

async def run(args: argparse.Namespace) -> tuple[list[Appends], Verify | None]:
    dsn = f"{args.postgres}/veikals_bench_{uuid.uuid4().hex[:8]}"
    runs: list[Appends] = []
    checked = None
    try:
        await db.ensure_database(dsn)
        pool = await db.create_pool(dsn, max_size=2)
        try:
            await db.migrate(pool, PrivacyService.migration_scopes())
            await pool.execute("""CREATE TABLE bench_staff_reads (id bigserial PRIMARY KEY, staff_id uuid NOT NULL,
                                      request_id uuid NOT NULL, at timestamptz NOT NULL DEFAULT now())""")
            requests = await seed_requests(pool, args.requests)
            await chain_everything(pool)
        finally:
            await pool.close()
        for writers in args.writers:
            print(f"appends with {writers} writers ...", file=sys.stderr, flush=True)
            runs.append(await appends(dsn, writers, args.seconds, args.poll_s, requests))
        if args.verify_entries:
            print("verify ...", file=sys.stderr, flush=True)
            checked = await verification(dsn, args.verify_entries, args.verify_rounds)
    finally:
        await db.drop_database(dsn)
    return runs, checked


def comma_ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=comma_ints, default=[1, 8, 32],
                        help="concurrent writers per append run, comma-separated (default 1,8,32; empty for none)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per phase (default %(default)s)")
    parser.add_argument("--requests", type=int, default=500, help="requests staff read (default %(default)s)")
    parser.add_argument("--poll-s", type=float, default=0.5,
                        help="the chainer's poll interval, as the service's AUDIT_CHAIN_S (default %(default)s)")
    parser.add_argument("--verify-entries", type=int, default=100_000,
                        help="entries in the log verified (default %(default)s; 0 for none)")
    parser.add_argument("--verify-rounds", type=int, default=3, help="verifications timed (default %(default)s)")
    parser.add_argument("--postgres", default=PG_BASE, help="server URL without the database (default %(default)s)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    configure_logging("bench-audit", level="warning")
    # As in bench/webhooks.py: Ctrl-C and `kill` both unwind as a SIGINT, so the database is dropped.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        runs, checked = asyncio.run(run(args))
    except KeyboardInterrupt:
        sys.exit("interrupted")
    if runs:
        report_appends(runs, args)
    if checked is not None:
        report_verify(checked)


if __name__ == "__main__":
    main()
