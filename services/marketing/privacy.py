"""Personal data the marketing service holds (its part of the Art. 30 record), its export and
erasure (the privacy participant contract), and the retention sweep that keeps the periods.

An erasure deletes the person's rows and everything hanging from them (the consent ledger,
pending confirmations, objections, the profile, campaign deliveries, queued mail and texts).
What stays: a keyed hash of each e-mail address and phone number (``suppressions``), so the
address is not marketed to again until its holder consents afresh, and the records of staff
access (P16, P17), for their own period.
"""
from __future__ import annotations

import datetime as dt
from typing import Awaitable, Callable

import asyncpg

from services.marketing import domain, store
from services.marketing.consents import people_of
from services.marketing.settings import MarketingSettings
from shared import export
from shared.contracts.privacy import (
    DataInventory, Erased, ErasureOutcome, ErasureRequest, ExportChunk, ExportRequest, InventoryEntry, LegalBasis,
    Retained, Retention,
)
from shared.export import Section
from shared.outbox import forget_mentions, mentioned
from shared.poller import NotifiedPoller
from shared.retention import MAIL_SENT, Clocks, Steps
from shared.subjects import Subject

STAFF_ACCESS_RETENTION = dt.timedelta(days=365)
Forget = Callable[[asyncpg.Connection, list[Subject]], Awaitable[int]]

UNTIL_WITHDRAWN = Retention(after="the consent is withdrawn or the customer erased", clause="P28")
LEDGER = Retention(after="the holder's last entry, for three years once nothing is consented to "
                         "(setting ledger_retention_days); a customer's while the account is open", clause="P21")

INVENTORY = DataInventory(participant="marketing", entries=[
    InventoryEntry(
        category="contact details for marketing", table="people",
        fields=["customer_id", "email", "phone", "name", "language"],
        purpose="send offers to those who consented, in their language", legal_basis=LegalBasis.CONSENT,
        retention=LEDGER, recipients=["email", "sms", "marketing"], clauses=["P21", "P28"]),
    InventoryEntry(
        category="consent ledger", table="consent_entries",
        fields=["person_id", "channel", "purpose", "granted", "source", "wording_version", "address", "staff_id", "at"],
        purpose="show when, how and to which wording each consent was given or withdrawn (Art. 7(1))",
        legal_basis=LegalBasis.LEGAL_OBLIGATION, retention=LEDGER, recipients=["support"], clauses=["P21", "P28"]),
    InventoryEntry(
        category="e-mail consents awaiting confirmation", table="consent_confirmations",
        fields=["person_id", "email", "token_hash", "staff_id"],
        purpose="confirm a new e-mail consent by the link mailed to the address (double opt-in)",
        legal_basis=LegalBasis.CONSENT,
        retention=Retention(period_days=7, after="the request (setting confirmation_ttl_s)"), clauses=["P28"]),
    InventoryEntry(
        category="objections", table="objections", fields=["person_id", "purpose", "source", "at"],
        purpose="stop direct marketing or profiling for whoever objected (Art. 21)",
        legal_basis=LegalBasis.LEGAL_OBLIGATION,
        retention=Retention(after="the person consents afresh or is erased", clause="P29"), clauses=["P29"]),
    InventoryEntry(
        category="preference profile", table="profiles",
        fields=["person_id", "orders", "spend_cents", "currency", "first_order_at", "last_order_at"],
        purpose="offers that match what the customer buys (categories, frequency, spend)",
        legal_basis=LegalBasis.CONSENT, retention=UNTIL_WITHDRAWN, recipients=["marketing"], clauses=["P6", "P29"]),
    InventoryEntry(
        category="preference profile", table="profile_categories",
        fields=["person_id", "category", "items", "spend_cents"],
        purpose="offers that match what the customer buys (categories, frequency, spend)",
        legal_basis=LegalBasis.CONSENT, retention=UNTIL_WITHDRAWN, recipients=["marketing"], clauses=["P6", "P29"]),
    InventoryEntry(
        category="campaign deliveries", table="campaign_deliveries",
        fields=["person_id", "status", "sent_at", "delivered_at", "skipped_reason"],
        purpose="send each campaign once to each recipient, and show whom it reached",
        legal_basis=LegalBasis.CONSENT,
        retention=Retention(period_days=730, after="the send (setting delivery_retention_days)"),
        recipients=["email", "sms"], clauses=["P28"]),
    InventoryEntry(
        category="suppressed addresses", table="suppressions", fields=["key"],
        purpose="never market to an erased e-mail address or phone number without fresh consent",
        legal_basis=LegalBasis.LEGITIMATE_INTEREST,
        retention=Retention(after="its holder consents afresh; a keyed hash that names no one without "
                                  "the service's key", clause="P22"), clauses=["P22", "P28"]),
    InventoryEntry(
        category="staff access records", table="staff_access", fields=["staff_id", "person_id", "customer_id", "reason"],
        purpose="account for every staff look at or change of a customer's consents",
        legal_basis=LegalBasis.LEGITIMATE_INTEREST,
        retention=Retention(period_days=STAFF_ACCESS_RETENTION.days, after="the access"),
        recipients=["admin"], clauses=["P16", "P17"]),
    InventoryEntry(
        category="mail to customers", table="outgoing_mail", fields=["person_id", "recipient", "subject", "body"],
        purpose="mail the double opt-in link", legal_basis=LegalBasis.CONSENT,
        retention=Retention(period_days=7, after="the message is sent"), recipients=["email"], clauses=["P28"]),
])

# When the period of each record held starts, for every entry above with a period, read as the
# sweeps read it (for the retention report; a test fails on an entry without one).
CLOCKS: Clocks = {
    ("consent_confirmations", "e-mail consents awaiting confirmation"):
        "SELECT requested_at FROM consent_confirmations",
    ("campaign_deliveries", "campaign deliveries"): """SELECT coalesce(d.sent_at, c.finished_at, c.started_at)
        FROM campaign_deliveries d JOIN campaigns c ON c.id = d.campaign_id""",
    ("staff_access", "staff access records"): "SELECT at FROM staff_access",
    ("outgoing_mail", "mail to customers"): MAIL_SENT,
}

# Columns that hold no personal data by themselves; a test fails on a column neither declared
# above nor listed here.
NOT_PERSONAL = {
    *(("consent_wordings", c) for c in ("version", "channel", "purpose", "text_lv", "text_en", "published_at")),
    *(("people", c) for c in ("id", "created_at", "closed_at", "email_key", "phone_key")),
    ("consent_entries", "id"),
    *(("consent_confirmations", c) for c in ("wording_version", "source", "requested_at", "expires_at",
                                             "confirmed_at")),
    ("profiles", "updated_at"),
    *(("campaigns", c) for c in ("id", "name", "channel", "subject_lv", "subject_en", "body_lv", "body_en",
                                 "audience", "status", "created_by", "created_at", "started_at", "finished_at")),
    *(("campaign_deliveries", c) for c in ("campaign_id", "id", "attempts", "next_attempt_at", "lease_until",
                                           "last_error")),
    ("suppressions", "kind"), ("suppressions", "suppressed_at"),
    *(("staff_access", c) for c in ("id", "categories", "at")),
    *(("outgoing_mail", c) for c in ("id", "created_at", "attempts", "next_attempt_at", "lease_until", "sent_at",
                                     "last_error")),
}


# --- export ---------------------------------------------------------------------------------

SECTIONS: dict[str, Section] = {
    "people": Section("contact details for marketing", """SELECT id, customer_id, email, phone, name, language,
        created_at, closed_at FROM people WHERE id = ANY($1) ORDER BY created_at, id"""),
    "ledger": Section("consent ledger", """SELECT e.person_id, e.purpose, e.channel, e.granted, e.source,
        e.wording_version, w.text_lv AS wording_lv, w.text_en AS wording_en, e.address, e.staff_id IS NOT NULL AS by_staff,
        e.at FROM consent_entries e LEFT JOIN consent_wordings w ON w.version = e.wording_version
        WHERE e.person_id = ANY($1) ORDER BY e.id"""),
    "confirmations": Section("e-mail consents awaiting confirmation", """SELECT person_id, email, wording_version,
        requested_at, expires_at FROM consent_confirmations WHERE person_id = ANY($1) ORDER BY requested_at, email"""),
    "objections": Section("objections", """SELECT person_id, purpose, source, at FROM objections
        WHERE person_id = ANY($1) ORDER BY at, purpose"""),
    "profiles": Section("preference profile", """SELECT person_id, orders, spend_cents, currency, first_order_at,
        last_order_at, updated_at FROM profiles WHERE person_id = ANY($1) ORDER BY person_id"""),
    "profile_categories": Section("preference profile by category", """SELECT person_id, category, items,
        spend_cents FROM profile_categories WHERE person_id = ANY($1) ORDER BY person_id, category"""),
    "deliveries": Section("campaign deliveries", """SELECT c.name AS campaign, c.channel, d.status, d.sent_at,
        d.delivered_at, d.skipped_reason FROM campaign_deliveries d JOIN campaigns c ON c.id = d.campaign_id
        WHERE d.person_id = ANY($1) ORDER BY c.started_at, d.id"""),
    "staff_access": Section("staff access records", """SELECT at, categories, reason FROM staff_access
        WHERE person_id = ANY($1) OR customer_id = ANY($2) ORDER BY at, id""", uses=2),
}


async def export_chunk(conn: asyncpg.Connection, request: ExportRequest) -> ExportChunk:
    people = await people_of(conn, request.subject)
    customer_ids = [request.subject.customer_id] if request.subject.customer_id else []
    return await export.export_chunk(conn, request, "marketing", SECTIONS, ([p["id"] for p in people], customer_ids))


# --- erasure --------------------------------------------------------------------------------

async def erase(conn: asyncpg.Connection, request: ErasureRequest, forget: Forget,
                suppression_key: bytes) -> ErasureOutcome:
    """Erase (or, with ``verify_only``, re-read) the subject's marketing data in the caller's
    transaction; nothing holds it back."""
    now = dt.datetime.now(dt.timezone.utc)
    people = await people_of(conn, request.subject)
    customer_ids = sorted({*(p["customer_id"] for p in people if p["customer_id"]),
                           *([request.subject.customer_id] if request.subject.customer_id else [])}, key=str)
    emails = sorted({*request.subject.emails, *(p["email"] for p in people if p["email"])})
    phones = sorted({*request.subject.phones, *(p["phone"] for p in people if p["phone"])})
    erased: list[Erased] = []
    retained: list[Retained] = []
    if not request.verify_only:
        erased = await erase_now(conn, people, customer_ids, emails, phones, forget, suppression_key)
        retained = await kept_after_erasure(conn, people, customer_ids, bool(emails or phones))
    remaining = await leftovers(conn, customer_ids, emails, phones)
    return ErasureOutcome(request_id=request.request_id, participant="marketing", erased=erased,
                          retained=retained, remaining=remaining, completed_at=now)


async def kept_after_erasure(conn: asyncpg.Connection, people: list[asyncpg.Record], customer_ids: list,
                             suppressed: bool) -> list[Retained]:
    retained = []
    if suppressed:
        retained.append(Retained(
            category="suppressed addresses", fields=["keyed hash of each e-mail address and phone number"],
            legal_basis=LegalBasis.LEGITIMATE_INTEREST,
            reason="so that no campaign reaches the erased address without fresh consent (Art. 21(3), P28)",
            until=dt.date.max))
    last_access = await conn.fetchval(
        "SELECT max(at) FROM staff_access WHERE customer_id = ANY($1) OR person_id = ANY($2)",
        customer_ids, [p["id"] for p in people])
    if last_access is not None:
        retained.append(Retained(
            category="staff access records", fields=["staff_id", "customer_id", "reason"],
            legal_basis=LegalBasis.LEGITIMATE_INTEREST,
            reason="accountability for staff access to personal data (P16, P17)",
            until=(last_access + STAFF_ACCESS_RETENTION).date()))
    return retained


async def erase_now(conn: asyncpg.Connection, people: list[asyncpg.Record], customer_ids: list, emails: list[str],
                    phones: list[str], forget: Forget, suppression_key: bytes) -> list[Erased]:
    erased: list[Erased] = []
    subjects = [*map(Subject.customer, customer_ids), *map(Subject.email, emails), *map(Subject.phone, phones)]
    if subjects and (unsent := await forget(conn, subjects)):
        erased.append(Erased(category="events about the person", records=unsent))
    await store.suppress(conn, [(domain.keyed(suppression_key, "email", e), "email") for e in emails]
                         + [(domain.keyed(suppression_key, "phone", p), "phone") for p in phones])
    ids = [p["id"] for p in people]
    for category, table in (("consent ledger", "consent_entries"), ("preference profile", "profiles"),
                            ("campaign deliveries", "campaign_deliveries"), ("objections", "objections"),
                            ("e-mail consents awaiting confirmation", "consent_confirmations")):
        if (n := store.count(await conn.execute(f"DELETE FROM {table} WHERE person_id = ANY($1)", ids))):
            erased.append(Erased(category=category, records=n))
    texts = await conn.execute(
        """DELETE FROM webhook_deliveries WHERE event_type = 'sms.requested'
           AND EXISTS (SELECT 1 FROM unnest($1::text[]) v WHERE position(convert_to(v, 'UTF8') IN body) > 0)""",
        phones)
    if (n := store.count(texts)):
        erased.append(Erased(category="text messages to the SMS gateway", records=n))
    if (n := store.count(await conn.execute("DELETE FROM people WHERE id = ANY($1)", ids))):
        erased.append(Erased(category="contact details for marketing", records=n))
    if (published := await forget_mentions(conn, [*map(str, customer_ids), *emails, *phones])):
        erased.append(Erased(category="published events", records=published))
    return erased


async def leftovers(conn: asyncpg.Connection, customer_ids: list, emails: list[str], phones: list[str]) -> list[str]:
    """The categories of the subject's data still found (the re-read that proves an erasure)."""
    remaining = []
    if await conn.fetchval("""SELECT EXISTS (SELECT 1 FROM people WHERE customer_id = ANY($1)
                              OR (customer_id IS NULL AND (email = ANY($2) OR phone = ANY($3))))""",
                           customer_ids, emails, phones):
        remaining.append("contact details, consents and profile")
    if await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE event_type = 'sms.requested'
               AND EXISTS (SELECT 1 FROM unnest($1::text[]) v WHERE position(convert_to(v, 'UTF8') IN body) > 0))""",
            phones):
        remaining.append("text messages to the SMS gateway")
    if await mentioned(conn, [*map(str, customer_ids), *emails, *phones]):
        remaining.append("events")
    return remaining


# --- retention ------------------------------------------------------------------------------

async def sweep(conn: asyncpg.Connection, settings: MarketingSettings) -> dict[str, int]:
    """Keep the declared periods; how many of each."""
    steps = Steps(conn)
    await steps.delete("unconfirmed e-mail consents", "DELETE FROM consent_confirmations WHERE expires_at < now()")
    # A guest who never confirmed (nothing in the ledger, nothing pending) is no one to us.
    await steps.delete("unconfirmed guests", """DELETE FROM people p WHERE p.customer_id IS NULL
        AND NOT EXISTS (SELECT 1 FROM consent_entries e WHERE e.person_id = p.id)
        AND NOT EXISTS (SELECT 1 FROM consent_confirmations c WHERE c.person_id = p.id)
        AND NOT EXISTS (SELECT 1 FROM objections o WHERE o.person_id = p.id)""")
    # A guest whose consents are all withdrawn: the ledger is kept for its period, then goes.
    await steps.delete("withdrawn guests", """DELETE FROM people p WHERE p.customer_id IS NULL
        AND NOT EXISTS (SELECT 1 FROM consent_confirmations c WHERE c.person_id = p.id)
        AND NOT EXISTS (SELECT 1 FROM (SELECT DISTINCT ON (purpose, channel) granted FROM consent_entries e
                                       WHERE e.person_id = p.id ORDER BY purpose, channel, id DESC) s WHERE s.granted)
        AND (SELECT max(at) FROM consent_entries e WHERE e.person_id = p.id) < now() - $1::interval""",
                       dt.timedelta(days=settings.ledger_retention_days))
    await steps.delete("campaign deliveries", """DELETE FROM campaign_deliveries d USING campaigns c
        WHERE c.id = d.campaign_id AND coalesce(d.sent_at, c.finished_at, c.started_at) < now() - $1::interval""",
                       dt.timedelta(days=settings.delivery_retention_days))
    await steps.delete("staff access records", "DELETE FROM staff_access WHERE at < now() - $1::interval",
                       STAFF_ACCESS_RETENTION)
    return steps.done


class RetentionSweep(NotifiedPoller):
    """Runs :func:`sweep` every ``retention_sweep_s`` seconds (and when notified)."""

    def __init__(self, pool: asyncpg.Pool, settings: MarketingSettings) -> None:
        super().__init__(pool, "veikals_marketing_sweep", "marketing-retention", settings.retention_sweep_s)
        self.settings = settings

    async def work(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await sweep(conn, self.settings)
