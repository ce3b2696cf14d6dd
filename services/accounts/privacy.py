"""Personal data the accounts service holds (its part of the Art. 30 record), its export and
its erasure (the privacy participant contract), and the retention sweep that keeps the periods.

Every column that holds personal data is declared here; the privacy service builds the record
of processing and the privacy notice from these declarations.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Awaitable, Callable

import asyncpg

from shared.contracts.privacy import (
    DataInventory, DataSubject, Erased, ErasureOutcome, ErasureRequest, ExportChunk,
    ExportRequest, InventoryEntry, LegalBasis, Retained, Retention,
)
from services.accounts.settings import AccountsSettings
from shared import export
from shared.export import Section
from shared.outbox import forget_mentions, mentioned
from shared.poller import NotifiedPoller
from shared.retention import MAIL_SENT, Clocks, Steps
from shared.subjects import Subject, subjects_of


STAFF_ACCESS_RETENTION = dt.timedelta(days=365)
TOMBSTONE_RETENTION = dt.timedelta(days=7 * 366)  # orders and payments refer to the id (P25)
VERIFICATION_RETENTION = dt.timedelta(days=1)
THROTTLE_RETENTION = dt.timedelta(days=1)
STATS_RETENTION_DAYS = 400

UNTIL_ERASED = Retention(after="the account is closed, until the privacy service erases it", clause="P22")


def inventory(session_log_days: int) -> DataInventory:
    """The declaration, with the session log period the service is configured with."""
    return DataInventory(participant="accounts", entries=[
        InventoryEntry(
            category="contact details", table="accounts", fields=["name", "email", "phone", "language"],
            purpose="the customer's account: sign-in, contact about orders and support",
            legal_basis=LegalBasis.CONTRACT, retention=UNTIL_ERASED,
            recipients=["support"], clauses=["P1", "P8", "P10", "P12", "P20"]),
        InventoryEntry(
            category="credentials", table="accounts", fields=["password_hash"],
            purpose="sign-in (an argon2id hash; the password itself is never stored)",
            legal_basis=LegalBasis.CONTRACT, retention=UNTIL_ERASED, clauses=["P10", "P17"]),
        InventoryEntry(
            category="acceptance of the terms", table="accounts",
            fields=["terms_version", "terms_accepted_at", "email_verified_at"],
            purpose="show which terms the customer accepted and that the address is theirs",
            legal_basis=LegalBasis.CONTRACT, retention=UNTIL_ERASED, clauses=["P10"]),
        InventoryEntry(
            category="delivery addresses", table="addresses",
            fields=["label", "recipient", "phone", "line1", "line2", "city", "postal_code", "country"],
            purpose="the customer's address book for deliveries",
            legal_basis=LegalBasis.CONTRACT, retention=UNTIL_ERASED,
            recipients=["support"], clauses=["P2", "P5", "P20"]),
        InventoryEntry(
            category="sessions (security log)", table="sessions", fields=["ip", "user_agent"],
            purpose="provide the shop securely: show the customer where they are signed in, end stolen sessions",
            legal_basis=LegalBasis.LEGITIMATE_INTEREST,
            retention=Retention(period_days=session_log_days, after="the session ends",
                                clause="P9"),
            clauses=["P9", "P19"]),
        InventoryEntry(
            category="e-mail verifications and registrations awaiting one", table="email_verifications",
            fields=["email", "name", "phone", "password_hash", "terms_version", "language"],
            purpose="confirm that an address belongs to the customer before an account or a change takes effect",
            legal_basis=LegalBasis.CONTRACT,
            retention=Retention(period_days=VERIFICATION_RETENTION.days, after="the code is used or expires"),
            clauses=["P20"]),
        InventoryEntry(
            category="e-mail to the customer", table="outgoing_mail", fields=["recipient", "body"],
            purpose="send verification codes and account notices",
            legal_basis=LegalBasis.CONTRACT,
            retention=Retention(period_days=7, after="the message is sent"),
            recipients=["email"], clauses=["P15"]),
        InventoryEntry(
            category="sign-in throttling", table="throttle", fields=["key"],
            purpose="stop password guessing (keyed hashes of addresses and networks, never in the clear)",
            legal_basis=LegalBasis.LEGITIMATE_INTEREST,
            retention=Retention(period_days=THROTTLE_RETENTION.days, after="the failed attempt"),
            clauses=["P17"]),
        InventoryEntry(
            category="usage statistics", table="login_stats", fields=["network"],
            purpose="web usage statistics, from truncated addresses (/24, /48) only, never tied to a customer",
            legal_basis=LegalBasis.LEGITIMATE_INTEREST,
            retention=Retention(period_days=STATS_RETENTION_DAYS, after="the day counted", clause="P9"),
            clauses=["P9", "P19"]),
        InventoryEntry(
            category="staff access records", table="staff_access", fields=["customer_id", "reason"],
            purpose="account for every staff look at a customer's data",
            legal_basis=LegalBasis.LEGITIMATE_INTEREST,
            retention=Retention(period_days=STAFF_ACCESS_RETENTION.days, after="the access"),
            recipients=["admin"], clauses=["P16", "P17"]),
    ])


INVENTORY = inventory(30)

# When the period of each record held starts, for every entry above with a period, read as the
# sweeps read it (for the retention report; a test fails on an entry without one).
CLOCKS: Clocks = {
    ("sessions", "sessions (security log)"): "SELECT coalesce(ended_at, expires_at) FROM sessions",
    ("email_verifications", "e-mail verifications and registrations awaiting one"):
        "SELECT coalesce(used_at, expires_at) FROM email_verifications",
    ("outgoing_mail", "e-mail to the customer"): MAIL_SENT,
    ("throttle", "sign-in throttling"): "SELECT at FROM throttle",
    ("login_stats", "usage statistics"): "SELECT (day + 1)::timestamptz FROM login_stats",  # the day's end
    ("staff_access", "staff access records"): "SELECT at FROM staff_access",
}

# Columns of our tables that hold no personal data by themselves (keys, times, states); a test
# fails when a column is neither declared above nor listed here.
NOT_PERSONAL = {
    *(("accounts", c) for c in ("id", "kind", "roles", "created_at", "updated_at", "closed_at", "erased_at")),
    *(("addresses", c) for c in ("id", "account_id", "created_at", "updated_at")),
    *(("sessions", c) for c in ("id", "account_id", "created_at", "last_used_at", "expires_at", "ended_at",
                                "end_reason")),
    *(("refresh_tokens", c) for c in ("token_hash", "session_id", "created_at", "rotated_at")),
    *(("email_verifications", c) for c in ("token_hash", "account_id", "purpose", "created_at", "expires_at",
                                           "used_at")),
    # A reset code is its hash and times; whose it is, is the account id, as everywhere.
    *(("password_resets", c) for c in ("token_hash", "account_id", "created_at", "expires_at", "used_at")),
    ("throttle", "at"), ("login_stats", "day"), ("login_stats", "logins"),
    *(("staff_access", c) for c in ("id", "staff_id", "categories", "at")),
    *(("outgoing_mail", c) for c in ("id", "account_id", "subject", "created_at", "attempts", "next_attempt_at",
                                     "lease_until", "sent_at", "last_error")),
}


async def subject_accounts(conn: asyncpg.Connection, subject: DataSubject) -> list[uuid.UUID]:
    """The customer accounts a request is about: by id, or by any of its e-mail addresses."""
    return [r["id"] for r in await conn.fetch(
        """SELECT id FROM accounts WHERE kind = 'customer'
           AND (id = $1 OR lower(email) = ANY($2::text[]))""", subject.customer_id, subject.emails)]


# --- export ---------------------------------------------------------------------------------

async def subject_emails(conn: asyncpg.Connection, ids: list[uuid.UUID], subject: DataSubject) -> list[str]:
    """The subject's addresses: those the request names and those of their accounts (never an
    address someone merely asked to move to, which may be another customer's)."""
    return sorted({*subject.emails, *(r["email"] for r in await conn.fetch(
        "SELECT lower(email) AS email FROM accounts WHERE id = ANY($1) AND email IS NOT NULL", ids))})


SECTIONS: dict[str, Section] = {
    "profile": Section("profile", """SELECT id, name, email, phone, language, email_verified_at, terms_version,
        terms_accepted_at, created_at, closed_at FROM accounts WHERE id = ANY($1) ORDER BY created_at, id"""),
    "addresses": Section("delivery addresses", """SELECT id, label, recipient, phone, line1, line2, city,
        postal_code, country, created_at, updated_at FROM addresses WHERE account_id = ANY($1)
        ORDER BY created_at, id"""),
    "sessions": Section("sessions", """SELECT id, host(ip) AS ip, user_agent, created_at, last_used_at,
        expires_at, ended_at, end_reason FROM sessions WHERE account_id = ANY($1) ORDER BY created_at, id"""),
    "email_verifications": Section("e-mail verifications", """SELECT email, purpose, name, phone, terms_version,
        language, created_at, expires_at, used_at FROM email_verifications
        WHERE account_id = ANY($1) OR (account_id IS NULL AND lower(email) = ANY($2))
        ORDER BY created_at, token_hash""", uses=2),
    "password_resets": Section("password resets", """SELECT created_at, expires_at, used_at FROM password_resets
        WHERE account_id = ANY($1) ORDER BY created_at, token_hash"""),
    "outgoing_mail": Section("e-mail to the customer", """SELECT recipient, subject, created_at, sent_at
        FROM outgoing_mail WHERE account_id = ANY($1) OR (account_id IS NULL AND lower(recipient) = ANY($2))
        ORDER BY created_at, id""", uses=2),
    "staff_access": Section("staff access records", """SELECT at, categories, reason FROM staff_access
        WHERE customer_id = ANY($1) ORDER BY at, id"""),
}


async def export_chunk(conn: asyncpg.Connection, request: ExportRequest) -> ExportChunk:
    ids = await subject_accounts(conn, request.subject)
    emails = await subject_emails(conn, ids, request.subject)
    return await export.export_chunk(conn, request, "accounts", SECTIONS, (ids, emails))


# --- erasure --------------------------------------------------------------------------------

async def erase(conn: asyncpg.Connection, request: ErasureRequest, throttle_keys: Callable[[str], list[bytes]],
                forget: Callable[[asyncpg.Connection, list[Subject]], Awaitable[int]]) -> ErasureOutcome:
    """Erase (or, with ``verify_only``, re-read) the subject's data, in the caller's transaction.
    ``throttle_keys(email)`` are the keyed hashes under which an address's failed sign-ins and
    password resets count;
    ``forget`` (``Service.forget``) tombstones the subject and deletes its events."""
    ids = await subject_accounts(conn, request.subject)
    now = dt.datetime.now(dt.timezone.utc)
    erased: list[Erased] = []
    emails = await subject_emails(conn, ids, request.subject)
    if not request.verify_only:
        # First: what is writing about the subject finishes, and what comes later sees the tombstones.
        if unsent := await forget(conn, subjects_of(request.subject, ids)):
            erased.append(Erased(category="events about the customer", records=unsent))
        for category, statement, *args in (
            ("delivery addresses", "DELETE FROM addresses WHERE account_id = ANY($1)", ids),
            ("sessions", "DELETE FROM sessions WHERE account_id = ANY($1)", ids),
            ("password resets", "DELETE FROM password_resets WHERE account_id = ANY($1)", ids),
            ("e-mail verifications", """DELETE FROM email_verifications
                WHERE account_id = ANY($1) OR (account_id IS NULL AND lower(email) = ANY($2))""", ids, emails),
            ("e-mail to the customer", """DELETE FROM outgoing_mail
                WHERE account_id = ANY($1) OR (account_id IS NULL AND lower(recipient) = ANY($2))""", ids, emails),
            ("sign-in throttling", "DELETE FROM throttle WHERE key = ANY($1)",
             [key for e in emails for key in throttle_keys(e)]),
            ("contact details", """UPDATE accounts SET name = NULL, email = NULL, phone = NULL,
                password_hash = NULL, email_verified_at = NULL, terms_accepted_at = NULL,
                terms_version = NULL, language = DEFAULT,
                closed_at = coalesce(closed_at, now()), erased_at = coalesce(erased_at, now()),
                updated_at = now() WHERE id = ANY($1) AND erased_at IS NULL""", ids),
        ):
            count = int((await conn.execute(statement, *args)).split()[-1])
            if count:
                erased.append(Erased(category=category, records=count))
        if published := await forget_mentions(conn, [*map(str, ids), *emails, *request.subject.phones]):
            erased.append(Erased(category="published events", records=published))
    retained: list[Retained] = []
    if ids:
        retained.append(Retained(
            category="account id", fields=["id"], legal_basis=LegalBasis.LEGAL_OBLIGATION,
            reason="orders and payments kept for accounting (P25) refer to it; it names no one by itself",
            until=(now + TOMBSTONE_RETENTION).date()))
        last_access = await conn.fetchval("SELECT max(at) FROM staff_access WHERE customer_id = ANY($1)", ids)
        if last_access is not None:
            retained.append(Retained(
                category="staff access records", fields=["customer_id", "reason"],
                legal_basis=LegalBasis.LEGITIMATE_INTEREST,
                reason="accountability for staff access to personal data (P16, P17)",
                until=(last_access + STAFF_ACCESS_RETENTION).date()))
    return ErasureOutcome(request_id=request.request_id, participant="accounts", erased=erased,
                          retained=retained, remaining=await leftovers(conn, ids, request.subject),
                          completed_at=now)


async def leftovers(conn: asyncpg.Connection, ids: list[uuid.UUID], subject: DataSubject) -> list[str]:
    """The categories of the subject's data still found (the re-read that proves an erasure)."""
    # Accounts are the subject's by id or (verified, unique) e-mail address; a phone number
    # another customer shares names no account of the subject's.
    emails, phones = subject.emails, subject.phones
    checks = {
        "contact details": ("""SELECT EXISTS (SELECT 1 FROM accounts WHERE kind = 'customer' AND (
            (id = ANY($1) AND (name IS NOT NULL OR email IS NOT NULL OR phone IS NOT NULL
                               OR password_hash IS NOT NULL OR language <> 'lv'))
            OR lower(email) = ANY($2)))""", ids, emails),
        "delivery addresses": ("SELECT EXISTS (SELECT 1 FROM addresses WHERE account_id = ANY($1))", ids),
        "sessions": ("SELECT EXISTS (SELECT 1 FROM sessions WHERE account_id = ANY($1))", ids),
        "password resets": ("SELECT EXISTS (SELECT 1 FROM password_resets WHERE account_id = ANY($1))", ids),
        "e-mail verifications": ("""SELECT EXISTS (SELECT 1 FROM email_verifications
            WHERE account_id = ANY($1) OR (account_id IS NULL AND lower(email) = ANY($2)))""", ids, emails),
        "e-mail to the customer": ("""SELECT EXISTS (SELECT 1 FROM outgoing_mail
            WHERE account_id = ANY($1) OR (account_id IS NULL AND lower(recipient) = ANY($2)))""", ids, emails),
    }
    found = []
    for category, (query, *args) in checks.items():
        if await conn.fetchval(query, *args):
            found.append(category)
    # Unpublished ones too: they go out, and a later erasure then removes them.
    if await mentioned(conn, [*map(str, ids), *emails, *phones]):
        found.append("events")
    return found


# --- retention ------------------------------------------------------------------------------

async def sweep(conn: asyncpg.Connection, session_log_days: int) -> dict[str, int]:
    """Delete what has been kept for its declared period; how many rows of each. Each kind is
    its own statement in a (sub)transaction of its own, so one that fails does not hold back the
    others. (Spent refresh tokens go with their session: until then a replay of one is
    recognised.)"""
    statements = {
        "sessions": ("DELETE FROM sessions WHERE coalesce(ended_at, expires_at) < now() - $1::interval",
                     dt.timedelta(days=session_log_days)),
        "account ids": ("""DELETE FROM accounts a WHERE erased_at < now() - $1::interval
            AND NOT EXISTS (SELECT 1 FROM staff_access s WHERE s.customer_id = a.id)""", TOMBSTONE_RETENTION),
        "e-mail verifications": ("""DELETE FROM email_verifications
            WHERE coalesce(used_at, expires_at) < now() - $1::interval""", VERIFICATION_RETENTION),
        "password resets": ("""DELETE FROM password_resets
            WHERE coalesce(used_at, expires_at) < now() - $1::interval""", VERIFICATION_RETENTION),
        "throttle": ("DELETE FROM throttle WHERE at < now() - $1::interval", THROTTLE_RETENTION),
        "usage statistics": ("DELETE FROM login_stats WHERE day < current_date - $1::interval",
                             dt.timedelta(days=STATS_RETENTION_DAYS)),
        "staff access records": ("DELETE FROM staff_access WHERE at < now() - $1::interval",
                                 STAFF_ACCESS_RETENTION),
    }
    steps = Steps(conn)
    for name, (sql, period) in statements.items():
        await steps.delete(name, sql, period)
    return steps.done


class RetentionSweep(NotifiedPoller):
    """Runs :func:`sweep` every ``interval`` seconds (and when ``accounts_sweep`` is notified)."""

    def __init__(self, pool: asyncpg.Pool, settings: AccountsSettings) -> None:
        super().__init__(pool, "veikals_accounts_sweep", "accounts-retention", settings.retention_sweep_s)
        self.settings = settings

    async def work(self) -> None:
        async with self.pool.acquire() as conn:
            await sweep(conn, self.settings.session_log_days)
