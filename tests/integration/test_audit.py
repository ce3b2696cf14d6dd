"""The audit log's hash chain against real PostgreSQL: entries chained once, in order; any entry
changed, removed or moved afterwards is found and named, even by someone who can switch the
table's triggers off."""
from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import pytest

from services.privacy import audit, store
from services.privacy.service import PrivacyService
from shared import db

STAFF = uuid.uuid4()


@pytest.fixture
async def pool(database):
    pool = await db.create_pool(database, max_size=4)
    await db.migrate(pool, PrivacyService.migration_scopes())
    try:
        yield pool
    finally:
        await pool.close()


async def write(pool: asyncpg.Pool, n: int, *, source_prefix: str | None = None) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for i in range(n):
            await store.add_audit(
                conn, kind="staff_access", service="orders", actor=f"staff:{STAFF}", action=f"look {i}",
                source=source_prefix and f"{source_prefix}:{i}", subject_id=uuid.uuid4(), categories=["orders"],
                reason="a customer asked about a parcel", detail={"n": i, "nested": {"b": 1, "a": [1, 2]}})


async def chain_all(pool: asyncpg.Pool) -> None:
    while await audit.chain_pending(pool, batch=7):
        pass


async def verified(pool: asyncpg.Pool, anchor=None) -> audit.Verification:
    async with pool.acquire() as conn:
        return await audit.verify(conn, anchor)


async def tamper(pool: asyncpg.Pool, *statements: str) -> None:
    """What someone with the database's keys could do: triggers off, rows changed."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        for sql in statements:
            await conn.execute(sql)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")


async def test_entries_are_chained_in_order_and_verify(pool):
    await write(pool, 20)
    await chain_all(pool)
    result = await verified(pool)
    assert result.intact and result.entries == 20 and (result.first_seq, result.last_seq) == (1, 20)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_pending") == 0
        actions = [r["action"] for r in await conn.fetch("SELECT action FROM audit_log ORDER BY seq")]
    assert actions == [f"look {i}" for i in range(20)]


async def test_an_event_delivered_twice_is_one_entry(pool):
    await write(pool, 3, source_prefix="orders:access")
    await chain_all(pool)
    await write(pool, 3, source_prefix="orders:access")  # after chaining: not written again
    await chain_all(pool)
    async with pool.acquire() as conn:  # while pending: chained once
        for _ in range(2):
            await store.add_audit(conn, kind="staff_access", service="orders", actor="system", action="twice",
                                  source="orders:access:twice")
    await chain_all(pool)
    assert (await verified(pool)).entries == 4


async def test_the_log_refuses_changes_and_deletions(pool):
    await write(pool, 2)
    await chain_all(pool)
    async with pool.acquire() as conn:
        for sql in ("UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 1",
                    "DELETE FROM audit_log WHERE seq = 2", "TRUNCATE audit_log"):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(sql)
    assert (await verified(pool)).intact


@pytest.mark.parametrize("statements, seq, problem", [
    (["UPDATE audit_log SET reason = 'routine check' WHERE seq = 6"], 6, "changed"),
    (["UPDATE audit_log SET detail = '{\"n\": 99}' WHERE seq = 9"], 9, "changed"),
    (["UPDATE audit_log SET at = at - interval '1 day' WHERE seq = 3"], 3, "changed"),
    (["DELETE FROM audit_log WHERE seq = 5"], 5, "removed"),
    # two rows swapped: each keeps its own hash, but neither follows the one before it now
    (["UPDATE audit_log SET seq = -4 WHERE seq = 4", "UPDATE audit_log SET seq = 4 WHERE seq = 7",
      "UPDATE audit_log SET seq = 7 WHERE seq = -4"], 4, "moved"),
    # removed, and the rest renumbered to close the gap
    (["DELETE FROM audit_log WHERE seq = 8", "UPDATE audit_log SET seq = seq - 1 WHERE seq > 8"], 8, "moved"),
    (["DELETE FROM audit_log WHERE seq > 10"], 11, "truncated"),
    (["DELETE FROM audit_log WHERE seq = 1"], 1, "removed"),
])
async def test_tampering_is_found_and_the_first_entry_named(pool, statements, seq, problem):
    await write(pool, 12)
    await chain_all(pool)
    assert (await verified(pool)).intact
    await tamper(pool, *statements)
    result = await verified(pool)
    assert not result.intact
    assert (result.finding.seq, result.finding.problem) == (seq, problem), result.finding


async def test_a_rewritten_chain_is_caught_by_the_checkpoint_kept_elsewhere(pool):
    await write(pool, 10)
    await chain_all(pool)
    async with pool.acquire() as conn:
        kept = await audit.checkpoint(conn)  # the operator copies this somewhere else
    assert kept[0] == 10
    # Someone changes entry 4 and recomputes every hash after it, and deletes the checkpoints.
    async with pool.acquire() as conn:
        rows = [dict(r) for r in await conn.fetch("SELECT * FROM audit_log ORDER BY seq")]
    rows[3]["reason"] = "nothing happened"
    prev = audit.GENESIS
    statements = ["DELETE FROM audit_checkpoints"]
    for row in rows:
        digest = audit.entry_hash(prev, row)
        statements.append(f"UPDATE audit_log SET reason = '{row['reason']}', prev_hash = '\\x{prev.hex()}', "
                          f"hash = '\\x{digest.hex()}' WHERE seq = {row['seq']}")
        prev = digest
    statements.append(f"UPDATE audit_head SET hash = '\\x{prev.hex()}'")
    await tamper(pool, *statements)
    assert (await verified(pool)).intact  # consistent in itself...
    result = await verified(pool, kept)  # ...but not with what was kept
    assert (result.finding.seq, result.finding.problem) == (10, "changed")


async def test_the_retention_cut_is_where_verification_starts(pool):
    await write(pool, 6)
    await chain_all(pool)
    async with pool.acquire() as conn:
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")  # age the first four
        await conn.execute("UPDATE audit_log SET at = at - interval '4 years' WHERE seq <= 4")
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    # (those four no longer match their hashes; the cut takes them away)
    async with pool.acquire() as conn, conn.transaction():
        assert await store.prune_audit(conn, dt.timedelta(days=3 * 365)) == 4
    result = await verified(pool)
    assert result.intact and (result.first_seq, result.entries) == (5, 2)
    await write(pool, 2)
    await chain_all(pool)
    assert (await verified(pool)).last_seq == 8
    await tamper(pool, "DELETE FROM audit_log WHERE seq = 5")
    assert (await verified(pool)).finding.problem == "removed"


async def test_every_request_step_is_recorded_by_the_database(pool):
    request_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await store.add_request(conn, {
            "id": request_id, "kind": "erasure", "subject": {"emails": ["x@example.lv"]}, "subject_key": b"k",
            "source": "guest", "received_at": dt.datetime.now(dt.timezone.utc),
            "due_at": dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)}, ["accounts", "orders"])
    async with pool.acquire() as conn, conn.transaction():
        await store.act_as(conn, f"staff:{STAFF}")
        await store.set_task(conn, request_id, "accounts", "manual", outcome={"manual": "done"})
    async with pool.acquire() as conn, conn.transaction():
        await store.set_task(conn, request_id, "orders", "done", outcome={})
        await store.set_state(conn, request_id, "completed")
    await chain_all(pool)
    async with pool.acquire() as conn:
        steps = [(r["actor"], r["action"], r["detail"]) for r in await conn.fetch(
            "SELECT actor, action, detail FROM audit_log WHERE request_id = $1 ORDER BY seq", request_id)]
    assert [(a, s) for a, s, _ in steps] == [
        ("guest", "received"), ("system", "task created"), ("system", "task created"),
        (f"staff:{STAFF}", "task manual"), ("system", "task done"), ("system", "request completed")]
    assert all("x@example.lv" not in d for _, _, d in steps)  # ids, never addresses
