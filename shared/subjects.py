"""Erasure wins: the data subjects events are about, their versions and their tombstones.

An event that carries a data subject's personal data names the subject (``Subject``): a
customer id, or an e-mail address or phone number (a guest). The publisher numbers the events
about each subject (``x-veikals-subject-version``, in commit order: the counter row is locked
by the transaction that writes the event) and stamps when they occurred.

A consumer then:

- drops an event about a subject it has erased (a tombstone, below): every later event about
  an erased customer (an id is never used again), and every event about an erased e-mail
  address or phone number that occurred before the erasure (a guest who orders again later
  is a new relationship, and its events apply);
- with ``keep="newest"`` (events that carry the subject's current state), drops one whose
  version is not newer than the last it applied, so a late event never overwrites a newer
  state.

``forget`` is what an erasure calls first, in its transaction: it waits for the transactions
that are writing about the subject (they hold the subject's advisory lock, shared: a handler
applying an event about it, a change writing an event about it), then writes the tombstones
and deletes the subject's events from the outbox, published or not, so nothing already written
goes out after the erasure. Its lock is exclusive until the erasure commits: what starts
writing about the subject meanwhile waits, then sees the tombstone. Nothing here stores an
identifier in the clear: subjects are kept as keyed hashes (HMAC-SHA256 with the service's
``SUBJECT_KEY``).
"""
from __future__ import annotations

import datetime as dt
import hmac
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Literal

import asyncpg

from shared.contracts.privacy import DataSubject, InventoryEntry, LegalBasis, Retention

SUBJECT_HEADER = "x-veikals-subject"
VERSION_HEADER = "x-veikals-subject-version"
# When the event occurred, by the publisher's database clock: ISO 8601 text, not epoch
# milliseconds (13 digits that a card-number scan could not tell from a card number).
OCCURRED_HEADER = "x-veikals-occurred-at"

Kind = Literal["customer", "email", "phone"]


@dataclass(frozen=True)
class Subject:
    kind: Kind
    value: str

    @classmethod
    def customer(cls, customer_id: uuid.UUID | str) -> "Subject":
        return cls("customer", str(uuid.UUID(str(customer_id))))

    @classmethod
    def email(cls, address: str) -> "Subject":
        return cls("email", address.strip().lower())

    @classmethod
    def phone(cls, number: str) -> "Subject":
        return cls("phone", number)

    @classmethod
    def parse(cls, text: str) -> "Subject | None":
        kind, _, value = text.partition(":")
        if kind not in ("customer", "email", "phone") or not value:
            return None
        return cls(kind, value)  # type: ignore[arg-type]

    @property
    def reusable(self) -> bool:
        """Whether the identifier can name a new relationship after an erasure."""
        return self.kind != "customer"

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def subjects_of(subject: DataSubject, customer_ids: Iterable[uuid.UUID] = ()) -> list[Subject]:
    """Every identifier an erasure request (and what the service found for it) names."""
    ids = {*customer_ids, *([subject.customer_id] if subject.customer_id else [])}
    return ([Subject.customer(i) for i in sorted(ids, key=str)]
            + [Subject.email(e) for e in subject.emails] + [Subject.phone(p) for p in subject.phones])


class SubjectKeys:
    """The keyed hash under which this service stores a subject."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def __call__(self, subject: Subject) -> bytes:
        return hmac.digest(self._secret, str(subject).encode(), "sha256")  # one call in C


def lock_id(key: bytes) -> int:
    """The advisory lock of a subject: 64 bits of its keyed hash."""
    return int.from_bytes(key[:8], "big", signed=True)


async def writing_about(conn: asyncpg.Connection, key: bytes) -> None:
    """Hold the subject (shared) until this transaction ends: an erasure waits for it."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", lock_id(key))


LEGACY_OCCURRED_HEADER = "x-veikals-occurred-at-ms"  # epoch milliseconds, from before the ISO header


def occurred_at(headers: dict[str, Any]) -> dt.datetime | None:
    """When the event occurred, by either header (None when neither holds a time with a zone)."""
    value, legacy = headers.get(OCCURRED_HEADER), headers.get(LEGACY_OCCURRED_HEADER)
    if isinstance(legacy, int) and not isinstance(legacy, bool):
        return dt.datetime.fromtimestamp(legacy / 1000, dt.timezone.utc)
    try:
        moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


async def admit(conn: asyncpg.Connection, keys: SubjectKeys, consumer: str, headers: dict[str, Any],
                keep_newest: bool) -> str | None:
    """Why the event in ``headers`` must not be applied (``erased``, ``stale``), or None.
    Runs in the handler's transaction: the version it records commits with the effect."""
    subject = Subject.parse(str(headers.get(SUBJECT_HEADER) or ""))
    if subject is None:
        return None
    key = keys(subject)
    await writing_about(conn, key)
    erased_at = await conn.fetchval("SELECT erased_at FROM erased_subjects WHERE subject = $1", key)
    if erased_at is not None:
        occurred = occurred_at(headers)
        if not subject.reusable or occurred is None or occurred <= erased_at:
            return "erased"
    version = headers.get(VERSION_HEADER)
    if keep_newest and isinstance(version, int):
        newer = await conn.fetchval(
            """INSERT INTO subject_versions_seen (consumer, subject, version) VALUES ($1, $2, $3)
               ON CONFLICT (consumer, subject) DO UPDATE SET version = EXCLUDED.version
               WHERE subject_versions_seen.version < EXCLUDED.version RETURNING true""",
            consumer, key, version)
        if not newer:
            return "stale"
    return None


async def forget(conn: asyncpg.Connection, keys: SubjectKeys, subjects: Iterable[Subject]) -> int:
    """Tombstone ``subjects`` and delete their events from the outbox; the events deleted.
    Call it before deleting the subject's data, in the same transaction (see above)."""
    if not conn.is_in_transaction():
        raise RuntimeError("forget must run inside the erasure's transaction")
    hashed = sorted(keys(s) for s in subjects)  # one order, so two erasures cannot deadlock
    if not hashed:
        return 0
    await conn.execute("SELECT pg_advisory_xact_lock(id) FROM unnest($1::bigint[]) AS id",
                       [lock_id(k) for k in hashed])
    await conn.execute(
        """INSERT INTO erased_subjects (subject, erased_at) SELECT unnest($1::bytea[]), now()
           ON CONFLICT (subject) DO UPDATE SET erased_at = now()""", hashed)
    await conn.execute("DELETE FROM subject_versions_seen WHERE subject = ANY($1)", hashed)
    deleted = await conn.execute("DELETE FROM outbox WHERE subject = ANY($1)", hashed)
    return int(deleted.split()[-1])


TOMBSTONE_INVENTORY = InventoryEntry(
    category="erased data subjects (tombstones)", table="erased_subjects", fields=["subject", "erased_at"],
    purpose="drop late events about a subject after its erasure, so none writes the data back",
    legal_basis=LegalBasis.LEGAL_OBLIGATION,
    retention=Retention(after="the service is retired (a late event may come at any time); a keyed hash that "
                                  "names no one without the service's key"),
    clauses=["P22"])

SUBJECT_VERSION_INVENTORY = InventoryEntry(
    category="event order per data subject", table="subject_versions_seen", fields=["subject"],
    purpose="apply only the newest state of a subject that events carry",
    legal_basis=LegalBasis.CONTRACT,
    retention=Retention(after="the subject is erased; a keyed hash that names no one by itself"))

PUBLISHED_VERSION_INVENTORY = InventoryEntry(
    category="event counters per data subject", table="subject_versions", fields=["subject"],
    purpose="number the events about each subject in the order they happened",
    legal_basis=LegalBasis.CONTRACT,
    retention=Retention(after="the service is retired; a keyed hash that names no one by itself"))
