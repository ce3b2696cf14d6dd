"""Personal data the privacy service holds (its part of the Art. 30 record).

The requests themselves are kept as the record of how each was handled (Art. 5(2)): an
erasure does not erase its own request. An export's parts and its link go when the link
expires.
"""
from __future__ import annotations

import datetime as dt

import asyncpg

from services.privacy import store
from services.privacy.settings import PrivacySettings
from shared.contracts.privacy import DataInventory, InventoryEntry, LegalBasis, Retention
from shared.retention import MAIL_SENT, Clocks, Steps

AUDIT_RETENTION = dt.timedelta(days=3 * 365)  # as long as the requests it records
REQUESTS = Retention(period_days=3 * 365, after="the request is received", clause="P26")

INVENTORY = DataInventory(participant="privacy", entries=[
    InventoryEntry(
        category="data-subject requests", table="requests",
        fields=["subject", "customer_id", "contact_email", "identification", "staff_id", "details"],
        purpose="carry out access, erasure, objection and withdrawal requests, and show how each was handled",
        legal_basis=LegalBasis.LEGAL_OBLIGATION, retention=REQUESTS, recipients=["support", "admin"],
        clauses=["P20", "P21", "P26", "P27", "P29"]),
    InventoryEntry(
        category="outcomes of each participant", table="tasks", fields=["outcome", "remaining"],
        purpose="show the requester and staff what each part of the shop and each processor did",
        legal_basis=LegalBasis.LEGAL_OBLIGATION, retention=REQUESTS, recipients=["support"], clauses=["P22", "P26"]),
    InventoryEntry(
        category="exports being delivered", table="export_records", fields=["data", "category"],
        purpose="deliver a copy of the requester's data (Art. 15, 20)", legal_basis=LegalBasis.LEGAL_OBLIGATION,
        retention=Retention(period_days=7, after="the export is completed (setting export_link_ttl_s)", clause="P27"),
        clauses=["P27"]),
    InventoryEntry(
        category="guests' one-time codes", table="guest_codes", fields=["email", "code_hash", "asked", "request_id"],
        purpose="verify that a guest holds the address before their request runs or their export is opened",
        legal_basis=LegalBasis.LEGAL_OBLIGATION,
        retention=Retention(period_days=1, after="the code is made (it works 30 minutes)"), clauses=["P26"]),
    InventoryEntry(
        category="mail to requesters", table="outgoing_mail", fields=["request_id", "recipient", "subject", "body"],
        purpose="tell the requester of receipt, extension and outcome", legal_basis=LegalBasis.LEGAL_OBLIGATION,
        retention=Retention(period_days=7, after="the message is sent"), recipients=["email"], clauses=["P26", "P27"]),
    InventoryEntry(
        category="audit log", table="audit_log", fields=["actor", "subject_id", "request_id", "reason", "detail"],
        purpose="account for every staff look at personal data and every step of every data-subject request, "
                "tamper-evident (a hash chain)",
        legal_basis=LegalBasis.LEGAL_OBLIGATION,
        retention=Retention(period_days=AUDIT_RETENTION.days, after="the entry is written"), recipients=["admin"],
        clauses=["P16", "P17"]),
    InventoryEntry(
        category="audit entries being chained", table="audit_pending",
        fields=["actor", "subject_id", "request_id", "reason", "detail"],
        purpose="the audit log's entries until the chainer appends them (moments)",
        legal_basis=LegalBasis.LEGAL_OBLIGATION,
        retention=Retention(period_days=1, after="the entry is written"), clauses=["P16", "P17"]),
])

# When the period of each record held starts, for every entry above with a period, read as the
# sweeps read it (for the retention report; a test fails on an entry without one).
CLOCKS: Clocks = {
    ("requests", "data-subject requests"): "SELECT received_at FROM requests",
    ("tasks", "outcomes of each participant"):
        "SELECT q.received_at FROM tasks t JOIN requests q ON q.id = t.request_id",
    ("export_records", "exports being delivered"): """SELECT q.completed_at FROM export_records r
        JOIN requests q ON q.id = r.request_id WHERE q.state = 'completed'""",
    ("guest_codes", "guests' one-time codes"): "SELECT created_at FROM guest_codes",
    ("outgoing_mail", "mail to requesters"): MAIL_SENT,
    ("audit_log", "audit log"): "SELECT at FROM audit_log",
    ("audit_pending", "audit entries being chained"): "SELECT at FROM audit_pending",
}

NOT_PERSONAL = {
    *(("requests", c) for c in ("id", "kind", "subject_key", "language", "source", "state", "received_at", "due_at",
                                "extended_by_months", "extension_reason", "completed_at", "guest_token_hash")),
    *(("guest_codes", c) for c in ("id", "purpose", "attempts", "created_at", "expires_at", "used_at")),
    *(("tasks", c) for c in ("request_id", "participant", "state", "stage", "attempts", "next_attempt_at",
                             "lease_until", "sent_at", "webhook_id", "last_error", "updated_at")),
    *(("export_records", c) for c in ("request_id", "participant", "seq")),
    *(("audit_log", c) for c in ("seq", "source", "at", "kind", "service", "categories", "action", "prev_hash",
                                 "hash")),
    *(("audit_pending", c) for c in ("id", "source", "at", "kind", "service", "categories", "action")),
    *(("audit_head", c) for c in ("only_row", "seq", "hash")),
    *(("audit_checkpoints", c) for c in ("seq", "hash", "kind", "at")),
    *(("export_links", c) for c in ("token_hash", "request_id", "expires_at", "downloads_left")),
    *(("outgoing_mail", c) for c in ("id", "created_at", "attempts", "next_attempt_at", "lease_until", "sent_at",
                                     "last_error")),
}


async def sweep(conn: asyncpg.Connection, settings: PrivacySettings) -> dict[str, int]:
    """Keep the declared periods; how many of each."""
    steps = Steps(conn)
    await steps.delete("exports delivered", """DELETE FROM export_records r USING requests q
        WHERE q.id = r.request_id AND q.state = 'completed' AND q.completed_at < now() - $1::interval""",
                       dt.timedelta(seconds=settings.export_link_ttl_s))
    await steps.delete("export links", "DELETE FROM export_links WHERE expires_at < now()")
    await steps.delete("guest codes", "DELETE FROM guest_codes WHERE created_at < now() - interval '1 day'")
    await steps.delete("requests", """DELETE FROM requests WHERE state = 'completed'
        AND received_at < now() - $1::interval""", dt.timedelta(days=REQUESTS.period_days))
    await steps.run("audit log", lambda: store.prune_audit(conn, AUDIT_RETENTION))
    return steps.done
