"""SQL for the privacy service's tables; nothing else touches them."""
from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg

from shared.db import count  # noqa: F401 (the privacy modules count rows through store)

REQUEST_COLUMNS = """id, kind, subject, customer_id, contact_email, language, details, source, identification,
    staff_id, guest_token_hash, state, received_at, due_at, extended_by_months, extension_reason, completed_at"""
TASK_COLUMNS = """request_id, participant, state, stage, attempts, outcome, remaining, last_error, updated_at,
    webhook_id, sent_at"""


async def open_request(conn: asyncpg.Connection, kind: str, subject_key: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {REQUEST_COLUMNS} FROM requests WHERE kind = $1 AND subject_key = $2 AND state <> 'completed'",
        kind, subject_key)


async def add_request(conn: asyncpg.Connection, request: dict[str, Any], participants: list[str]) -> asyncpg.Record | None:
    """The new request with its tasks, or None when an open one of the same kind and subject
    exists (the caller joins it)."""
    row = await conn.fetchrow(
        f"""INSERT INTO requests (id, kind, subject, subject_key, customer_id, contact_email, language, details,
                                  source, identification, staff_id, received_at, due_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
            ON CONFLICT (kind, subject_key) WHERE state <> 'completed' DO NOTHING RETURNING {REQUEST_COLUMNS}""",
        request["id"], request["kind"], json.dumps(request["subject"]), request["subject_key"],
        request.get("customer_id"), request.get("contact_email"), request.get("language", "lv"),
        json.dumps(request.get("details") or {}), request["source"], request.get("identification"),
        request.get("staff_id"), request["received_at"], request["due_at"])
    if row is not None:
        await conn.execute(
            "INSERT INTO tasks (request_id, participant) SELECT $1, unnest($2::text[])", row["id"], participants)
        await conn.execute("SELECT pg_notify('veikals_privacy_tasks', '')")
    return row


async def request(conn: asyncpg.Connection, request_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {REQUEST_COLUMNS} FROM requests WHERE id = $1"
                               + (" FOR UPDATE" if lock else ""), request_id)


async def requests_of(conn: asyncpg.Connection, customer_id: uuid.UUID, limit: int = 50) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {REQUEST_COLUMNS} FROM requests WHERE customer_id = $1 ORDER BY received_at DESC LIMIT $2",
        customer_id, limit)


async def queue(conn: asyncpg.Connection, state: str | None, due_within: dt.timedelta | None,
                limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT {REQUEST_COLUMNS} FROM requests WHERE ($1::text IS NULL OR state = $1)
              AND ($2::interval IS NULL OR (state <> 'completed' AND due_at <= now() + $2))
            ORDER BY due_at, id LIMIT $3""", state, due_within, limit)


async def tasks_of(conn: asyncpg.Connection, request_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {TASK_COLUMNS} FROM tasks WHERE request_id = ANY($1) ORDER BY participant",
                            request_ids)


async def task(conn: asyncpg.Connection, request_id: uuid.UUID, participant: str, *,
               lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {TASK_COLUMNS} FROM tasks WHERE request_id = $1 AND participant = $2"
                               + (" FOR UPDATE" if lock else ""), request_id, participant)


async def claim_tasks(conn: asyncpg.Connection, limit: int, lease: dt.timedelta) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""UPDATE tasks SET lease_until = now() + $2::interval, attempts = attempts + 1
            WHERE (request_id, participant) IN (
                SELECT request_id, participant FROM tasks WHERE state = 'pending' AND next_attempt_at <= now()
                  AND (lease_until IS NULL OR lease_until < now())
                ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
            RETURNING {TASK_COLUMNS}""", limit, lease)


async def set_task(conn: asyncpg.Connection, request_id: uuid.UUID, participant: str, state: str, *,
                   outcome: Any = None, remaining: list[str] | None = None, stage: str | None = None,
                   webhook_id: str | None = None, error: str | None = None) -> None:
    await conn.execute(
        """UPDATE tasks SET state = $3, outcome = coalesce($4::jsonb, outcome), remaining = coalesce($5, remaining),
               stage = coalesce($6, stage), webhook_id = coalesce($7, webhook_id),
               sent_at = CASE WHEN $7::text IS NOT NULL THEN now() ELSE sent_at END,
               last_error = $8, lease_until = NULL, updated_at = now(),
               next_attempt_at = CASE WHEN $3 = 'pending' THEN now() ELSE next_attempt_at END
           WHERE request_id = $1 AND participant = $2""",
        request_id, participant, state, None if outcome is None else json.dumps(outcome), remaining, stage,
        webhook_id, error)
    if state == "pending":
        await conn.execute("SELECT pg_notify('veikals_privacy_tasks', '')")


async def renew_lease(conn: asyncpg.Connection, request_id: uuid.UUID, participant: str,
                      lease: dt.timedelta) -> None:
    await conn.execute("UPDATE tasks SET lease_until = now() + $3::interval WHERE request_id = $1 AND participant = $2",
                       request_id, participant, lease)


async def retry_later(conn: asyncpg.Connection, request_id: uuid.UUID, participant: str, delay: dt.timedelta,
                      error: str, give_up: bool) -> None:
    await conn.execute(
        """UPDATE tasks SET lease_until = NULL, last_error = $4, updated_at = now(),
               state = CASE WHEN $5 THEN 'failed' ELSE state END, next_attempt_at = now() + $3::interval
           WHERE request_id = $1 AND participant = $2 AND state = 'pending'""",
        request_id, participant, delay, error, give_up)


async def task_by_webhook(conn: asyncpg.Connection, webhook_id: str) -> asyncpg.Record | None:
    """The task a processor's answer is for, locked (its request first: the order everywhere)."""
    found = await conn.fetchrow("SELECT request_id, participant FROM tasks WHERE webhook_id = $1", webhook_id)
    if found is None:
        return None
    await request(conn, found["request_id"], lock=True)
    return await task(conn, found["request_id"], found["participant"], lock=True)


async def set_state(conn: asyncpg.Connection, request_id: uuid.UUID, state: str) -> None:
    await conn.execute(
        """UPDATE requests SET state = $2,
               completed_at = CASE WHEN $2 = 'completed' THEN coalesce(completed_at, now()) END WHERE id = $1""",
        request_id, state)


async def extend(conn: asyncpg.Connection, request_id: uuid.UUID, months: int, due_at: dt.datetime,
                 reason: str) -> None:
    await conn.execute(
        "UPDATE requests SET extended_by_months = $2, due_at = $3, extension_reason = $4 WHERE id = $1",
        request_id, months, due_at, reason)


# --- export parts -------------------------------------------------------------------------------

async def clear_export(conn: asyncpg.Connection, request_id: uuid.UUID, participant: str) -> None:
    await conn.execute("DELETE FROM export_records WHERE request_id = $1 AND participant = $2",
                       request_id, participant)


async def add_export_records(conn: asyncpg.Connection, request_id: uuid.UUID, participant: str,
                             records: list[tuple[str, Any]]) -> None:
    await conn.executemany(
        "INSERT INTO export_records (request_id, participant, category, data) VALUES ($1, $2, $3, $4)",
        [(request_id, participant, category, json.dumps(data)) for category, data in records])


async def export_files(conn: asyncpg.Connection, request_id: uuid.UUID) -> list[asyncpg.Record]:
    """(participant, category, how many records) of an export, in a stable order."""
    return await conn.fetch(
        """SELECT participant, category, count(*) AS records FROM export_records WHERE request_id = $1
           GROUP BY participant, category ORDER BY participant, category""", request_id)


async def export_columns(conn: asyncpg.Connection, request_id: uuid.UUID, participant: str, category: str) -> list[str]:
    return [r["key"] for r in await conn.fetch(
        """SELECT DISTINCT jsonb_object_keys(data) AS key FROM export_records
           WHERE request_id = $1 AND participant = $2 AND category = $3 ORDER BY 1""", request_id, participant, category)]


async def add_link(conn: asyncpg.Connection, token_hash: bytes, request_id: uuid.UUID, ttl: dt.timedelta,
                   downloads: int) -> None:
    await conn.execute(
        "INSERT INTO export_links (token_hash, request_id, expires_at, downloads_left) VALUES ($1, $2, now() + $3, $4)",
        token_hash, request_id, ttl, downloads)


async def use_link(conn: asyncpg.Connection, token_hash: bytes, request_id: uuid.UUID) -> bool:
    """Count a download (False when the link is unknown, expired or used up)."""
    return count(await conn.execute(
        """UPDATE export_links SET downloads_left = downloads_left - 1
           WHERE token_hash = $1 AND request_id = $2 AND expires_at > now() AND downloads_left > 0""",
        token_hash, request_id)) == 1


async def link_exists(conn: asyncpg.Connection, token_hash: bytes, request_id: uuid.UUID) -> bool:
    return await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM export_links WHERE token_hash = $1 AND request_id = $2
                          AND expires_at > now() AND downloads_left > 0)""", token_hash, request_id)


async def to_verify(conn: asyncpg.Connection, request_id: uuid.UUID, participant: str, outcome: str) -> None:
    """The erasure's answer kept; what is left of the task is its re-read."""
    await conn.execute("UPDATE tasks SET stage = 'verify', outcome = $3 WHERE request_id = $1 AND participant = $2",
                       request_id, participant, outcome)


async def retry_afresh(conn: asyncpg.Connection, request_id: uuid.UUID, participant: str) -> None:
    """Staff's retry: the task pending again, with all its attempts."""
    await set_task(conn, request_id, participant, "pending")
    await conn.execute("UPDATE tasks SET attempts = 0 WHERE request_id = $1 AND participant = $2",
                       request_id, participant)


async def set_guest_token(conn: asyncpg.Connection, request_id: uuid.UUID, token_hash: bytes) -> None:
    await conn.execute("UPDATE requests SET guest_token_hash = $2 WHERE id = $1", request_id, token_hash)


async def requests_about(conn: asyncpg.Connection, customer_id: uuid.UUID | None, emails: list[str]) -> list[asyncpg.Record]:
    """The requests a subject made or that named them (the privacy service's own export)."""
    return await conn.fetch(
        """SELECT kind, source, state, received_at, due_at, completed_at FROM requests
           WHERE customer_id = $1 OR subject->>'customer_id' = $1::text OR subject->'emails' ?| $2::text[]
           ORDER BY received_at""", customer_id, emails)


async def deadline_counts(conn: asyncpg.Connection, due_soon: dt.timedelta) -> asyncpg.Record:
    return await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE state = 'open') AS open,
                  count(*) FILTER (WHERE state = 'attention') AS attention,
                  count(*) FILTER (WHERE due_at < now()) AS overdue,
                  count(*) FILTER (WHERE due_at >= now() AND due_at < now() + $1::interval) AS due_soon
           FROM requests WHERE state <> 'completed'""", due_soon)


async def late_processor_tasks(conn: asyncpg.Connection, after: dt.timedelta) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM tasks WHERE state = 'waiting' AND sent_at < now() - $1::interval", after)


# --- the audit log (services/privacy/audit.py) ---------------------------------------------------

AUDIT_COLUMNS = ("source", "at", "kind", "service", "actor", "subject_id", "request_id", "categories", "action",
                 "reason", "detail")


async def add_audit(conn: asyncpg.Connection, *, kind: str, service: str, actor: str, action: str,
                    source: str | None = None, at: dt.datetime | None = None, subject_id: uuid.UUID | None = None,
                    request_id: uuid.UUID | None = None, categories: list[str] | tuple[str, ...] = (),
                    reason: str | None = None, detail: dict[str, Any] | None = None) -> None:
    """An entry waiting for the chainer, in the caller's transaction; one from a source already
    written is not written again."""
    await conn.execute(
        """INSERT INTO audit_pending (source, at, kind, service, actor, subject_id, request_id, categories,
                                      action, reason, detail)
           SELECT $1, coalesce($2, clock_timestamp()), $3, $4, $5, $6, $7, $8, $9, $10, $11
           WHERE $1::text IS NULL OR NOT EXISTS (SELECT 1 FROM audit_log WHERE source = $1)""",
        source, at, kind, service, actor, subject_id, request_id, list(categories), action, reason,
        json.dumps(detail or {}))


async def audit_head(conn: asyncpg.Connection) -> asyncpg.Record:
    """The chain's end, locked: one chainer at a time."""
    return await conn.fetchrow("SELECT seq, hash FROM audit_head FOR UPDATE")


async def pending_audit(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT id, {', '.join(AUDIT_COLUMNS)} FROM audit_pending ORDER BY id LIMIT $1 FOR UPDATE", limit)


async def chained_sources(conn: asyncpg.Connection, sources: list[str]) -> set[str]:
    return {r["source"] for r in await conn.fetch("SELECT source FROM audit_log WHERE source = ANY($1)", sources)}


async def chain_audit(conn: asyncpg.Connection, entries: list[tuple], taken: list[int], seq: int, hash: bytes) -> None:
    """Append ``entries`` (seq, the columns, prev_hash, hash), drop what was taken from the
    pending entries and move the chain's end."""
    if entries:
        await conn.copy_records_to_table("audit_log", records=entries,
                                         columns=["seq", *AUDIT_COLUMNS, "prev_hash", "hash"])
    await conn.execute("DELETE FROM audit_pending WHERE id = ANY($1)", taken)
    await conn.execute("UPDATE audit_head SET seq = $1, hash = $2", seq, hash)


async def add_checkpoint(conn: asyncpg.Connection, seq: int, hash: bytes, kind: str) -> None:
    await conn.execute(
        """INSERT INTO audit_checkpoints (seq, hash, kind) VALUES ($1, $2, $3)
           ON CONFLICT (seq) DO UPDATE SET kind = excluded.kind""", seq, hash, kind)


async def checkpoints(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT seq, hash, kind, at FROM audit_checkpoints ORDER BY seq")


async def audit_bounds(conn: asyncpg.Connection) -> asyncpg.Record:
    """The chain's end as recorded, and the first and last entries held."""
    return await conn.fetchrow(
        """SELECT h.seq AS head_seq, h.hash AS head_hash,
                  (SELECT min(seq) FROM audit_log) AS first_seq, (SELECT max(seq) FROM audit_log) AS last_seq
           FROM audit_head h""")


def audit_walk(conn: asyncpg.Connection, from_seq: int):
    """Every entry from ``from_seq`` in order, read in batches (inside a transaction)."""
    return conn.cursor(f"SELECT seq, {', '.join(AUDIT_COLUMNS)}, prev_hash, hash FROM audit_log "
                       "WHERE seq >= $1 ORDER BY seq", from_seq, prefetch=2000)


async def audit_entries(conn: asyncpg.Connection, *, subject_id: uuid.UUID | None, actor: str | None,
                        since: dt.datetime | None, until: dt.datetime | None, after: int | None,
                        limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT seq, {', '.join(AUDIT_COLUMNS)}, hash FROM audit_log
            WHERE ($1::uuid IS NULL OR subject_id = $1) AND ($2::text IS NULL OR actor = $2)
              AND ($3::timestamptz IS NULL OR at >= $3) AND ($4::timestamptz IS NULL OR at < $4)
              AND ($5::bigint IS NULL OR seq < $5)
            ORDER BY seq DESC LIMIT $6""", subject_id, actor, since, until, after, limit)


async def prune_audit(conn: asyncpg.Connection, older_than: dt.timedelta) -> int:
    """Delete the oldest entries past their period, in order, keeping where the chain was cut
    as a checkpoint (verification starts from it)."""
    cut = await conn.fetchrow(
        """SELECT seq, hash FROM audit_log
           WHERE seq < coalesce((SELECT min(seq) FROM audit_log WHERE at >= now() - $1::interval),
                                (SELECT max(seq) + 1 FROM audit_log))
           ORDER BY seq DESC LIMIT 1""", older_than)
    if cut is None:
        return 0
    await conn.execute("SELECT set_config('veikals.audit_prune', 'on', true)")
    deleted = count(await conn.execute("DELETE FROM audit_log WHERE seq <= $1", cut["seq"]))
    await conn.execute("SELECT set_config('veikals.audit_prune', 'off', true)")
    await add_checkpoint(conn, cut["seq"], cut["hash"], "pruned")
    return deleted


async def act_as(conn: asyncpg.Connection, actor: str) -> None:
    """Who the steps this transaction takes are recorded as (the triggers read it)."""
    await conn.execute("SELECT set_config('veikals.actor', $1, true)", actor)


async def audit_about(conn: asyncpg.Connection, customer_id: uuid.UUID) -> list[asyncpg.Record]:
    """What the audit log holds about a customer, for their copy (staff are named by role of
    the entry, not by who they are)."""
    return await conn.fetch(
        """SELECT at, service, kind, action, categories, reason,
                  CASE WHEN actor LIKE 'staff:%' THEN 'staff' ELSE actor END AS by
           FROM (SELECT seq AS n, * FROM audit_log WHERE subject_id = $1
                 UNION ALL  -- and those the chainer has not taken yet
                 SELECT NULL, id, source, at, kind, service, actor, subject_id, request_id, categories, action,
                        reason, detail, NULL, NULL FROM audit_pending WHERE subject_id = $1) entries
           ORDER BY n NULLS LAST, at""", customer_id)
