"""The audit log (P16, P17): append-only, and tamper-evident by a hash chain.

Entries come from every service's ``staff_accessed`` events, from this service's own staff
routes, and from every step of every data-subject request (database triggers on ``requests``,
``tasks`` and ``export_links``, so no code path can skip one). Each is written to
``audit_pending`` in the transaction of what it records; the chainer moves them into
``audit_log`` in batches, giving each the next ``seq`` and ``hash = SHA-256(prev_hash ||
canonical entry)``. Business transactions never wait for one another on the chain's end; only
the chainer (one instance at a time, by the lock on ``audit_head``) does.

Every ``CHECKPOINT_EVERY`` entries the chain's end is recorded as a checkpoint and logged, so an
operator can keep it elsewhere. ``verify`` walks the chain and names the first entry that was
changed (its hash no longer matches it), removed (a gap in ``seq``) or moved (it does not
follow the entry before it), and checks the checkpoints, the chain's end and an anchor the
operator kept. The retention sweep cuts the oldest entries off and records the cut as a
checkpoint, where verification then starts.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

import asyncpg

from services.privacy import store
from shared.logging import get_logger
from shared.poller import NotifiedPoller

log = get_logger(__name__)

GENESIS = bytes(32)
BATCH = 500
CHECKPOINT_EVERY = 10_000


def canonical(entry: Mapping[str, Any]) -> bytes:
    """The bytes an entry's hash covers: its recorded columns as sorted, compact JSON."""
    detail = entry["detail"]
    at: dt.datetime = entry["at"]
    return json.dumps({
        "source": entry["source"], "at": at.astimezone(dt.timezone.utc).isoformat(timespec="microseconds"),
        "kind": entry["kind"], "service": entry["service"], "actor": entry["actor"],
        "subject_id": None if entry["subject_id"] is None else str(entry["subject_id"]),
        "request_id": None if entry["request_id"] is None else str(entry["request_id"]),
        "categories": list(entry["categories"]), "action": entry["action"], "reason": entry["reason"],
        "detail": json.loads(detail) if isinstance(detail, str) else detail,
    }, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(prev_hash: bytes, entry: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(prev_hash + canonical(entry)).digest()


@dataclass(frozen=True)
class Finding:
    seq: int
    problem: str  # changed, removed, moved, truncated, anchor
    detail: str


@dataclass(frozen=True)
class Verification:
    entries: int
    first_seq: int | None
    last_seq: int | None
    last_hash: str | None
    finding: Finding | None

    @property
    def intact(self) -> bool:
        return self.finding is None


class Chainer(NotifiedPoller):
    """Moves pending entries into the chain, in batches, every ``poll_interval`` (nothing
    notifies it: that would serialise the commits of the transactions that write entries)."""

    def __init__(self, pool: asyncpg.Pool, poll_interval: float) -> None:
        super().__init__(pool, "veikals_audit", "audit-chainer", poll_interval)

    async def work(self) -> None:
        while not self.stopping and await chain_pending(self.pool) == BATCH:
            pass


async def chain_pending(pool: asyncpg.Pool, batch: int = BATCH) -> int:
    """Chain up to ``batch`` pending entries; how many were taken."""
    async with pool.acquire() as conn, conn.transaction():
        head = await store.audit_head(conn)
        rows = await store.pending_audit(conn, batch)
        if not rows:
            return 0
        seen = await store.chained_sources(conn, [r["source"] for r in rows if r["source"] is not None])
        seq, last = head["seq"], head["hash"]
        entries = []
        for row in rows:
            if row["source"] is not None:
                if row["source"] in seen:
                    continue  # a redelivered event: written once
                seen.add(row["source"])
            seq, prev = seq + 1, last
            last = entry_hash(prev, row)
            entries.append((seq, *(row[c] for c in store.AUDIT_COLUMNS), prev, last))
        await store.chain_audit(conn, entries, [r["id"] for r in rows], seq, last)
        if seq // CHECKPOINT_EVERY > head["seq"] // CHECKPOINT_EVERY:
            await store.add_checkpoint(conn, seq, last, "periodic")
            log.info("audit checkpoint: keep it elsewhere to verify the log against", seq=seq, hash=last.hex())
    return len(rows)


async def verify(conn: asyncpg.Connection, anchor: tuple[int, bytes] | None = None) -> Verification:
    """Walk the chain; the first thing wrong with it, if anything. ``anchor`` is a checkpoint
    the operator kept elsewhere: (seq, hash). Reads one snapshot (the chainer may go on)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        marks = {r["seq"]: r for r in await store.checkpoints(conn)}
        bounds = await store.audit_bounds(conn)
        cut = max((s for s, r in marks.items() if r["kind"] == "pruned"), default=0)
        wanted = {s: bytes(r["hash"]) for s, r in marks.items() if s > cut}
        if anchor is not None:
            if anchor[0] <= cut:
                return Verification(0, None, None, None, Finding(
                    anchor[0], "anchor", f"the anchor is older than the oldest entry kept (the log was cut at {cut})"))
            wanted[anchor[0]] = anchor[1]
        expected_seq, prev = cut + 1, bytes(marks[cut]["hash"]) if cut else GENESIS
        entries, first, finding = 0, None, None
        async for row in store.audit_walk(conn, cut + 1):
            seq = row["seq"]
            first = first or seq
            if seq != expected_seq:
                finding = Finding(expected_seq, "removed", f"entries {expected_seq} to {seq - 1} are missing")
            elif entry_hash(bytes(row["prev_hash"]), row) != bytes(row["hash"]):
                finding = Finding(seq, "changed", f"entry {seq} no longer matches its hash")
            elif bytes(row["prev_hash"]) != prev:
                finding = Finding(seq, "moved", f"entry {seq} does not follow entry {seq - 1}: one of them was "
                                                "removed, rewritten or put in another place")
            elif seq in wanted and wanted.pop(seq) != bytes(row["hash"]):
                finding = Finding(seq, "changed", f"entry {seq} differs from the checkpoint kept of it")
            if finding is not None:
                break
            entries, prev, expected_seq = entries + 1, bytes(row["hash"]), seq + 1
    last_seq = expected_seq - 1
    if finding is None and wanted:
        seq = min(wanted)
        finding = Finding(seq, "truncated", f"the log ends at {last_seq}, but a checkpoint was kept of entry {seq}")
    if finding is None and (bounds["head_seq"] != last_seq or bytes(bounds["head_hash"]) != prev):
        finding = Finding(last_seq + 1, "truncated", f"the chain was extended to {bounds['head_seq']}, "
                                                     f"but the log ends at {last_seq}")
    return Verification(entries, first, last_seq if entries else None, prev.hex() if entries else None, finding)


async def checkpoint(conn: asyncpg.Connection) -> tuple[int, bytes]:
    """The chain's end now, recorded as a checkpoint (for the operator to keep elsewhere)."""
    bounds = await store.audit_bounds(conn)
    seq, digest = bounds["head_seq"], bytes(bounds["head_hash"])
    if seq:
        await store.add_checkpoint(conn, seq, digest, "periodic")
    return seq, digest


async def staff_look(conn: asyncpg.Connection, staff_id: uuid.UUID, *, action: str, categories: tuple[str, ...],
                     reason: str | None = None, subject_id: uuid.UUID | None = None,
                     request_id: uuid.UUID | None = None, detail: dict[str, Any] | None = None,
                     kind: str = "staff_access") -> None:
    """Record a staff member's look at personal data held here."""
    await store.add_audit(conn, kind=kind, service="privacy", actor=f"staff:{staff_id}", action=action,
                          categories=list(categories), reason=reason, subject_id=subject_id,
                          request_id=request_id, detail=detail)


def parse_anchor(text: str) -> tuple[int, bytes]:
    """A checkpoint as ``veikals audit checkpoint`` prints it, ``seq:hash`` (ValueError otherwise)."""
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise ValueError("an anchor is seq:hash, as 'veikals audit checkpoint' prints it")
    return int(seq), bytes.fromhex(digest)


def report(result: Verification) -> dict[str, Any]:
    """A verification as plain data (the RPC answer, the command's output)."""
    finding = result.finding
    return {"intact": result.intact, "entries": result.entries, "first_seq": result.first_seq,
            "last_seq": result.last_seq, "last_hash": result.last_hash,
            "finding": None if finding is None else {"seq": finding.seq, "problem": finding.problem,
                                                     "detail": finding.detail}}
