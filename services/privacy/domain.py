"""The privacy service's rules, without I/O: deadlines, who takes part in a request, backoff,
and when a request is complete."""
from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import hmac
import json
from typing import Iterable, Literal

from shared.contracts.privacy import DataSubject

Kind = Literal["export", "erasure", "rectification", "objection", "withdrawal"]
SERVICES = ("accounts", "orders", "payments", "marketing")
OWN = "privacy"  # the privacy service's own records of the subject's requests
# Partner kinds that hold a customer's data as our processors (P13-P15, P18).
PROCESSOR_KINDS = ("carrier", "accounting", "hosting", "psp", "email", "sms")
SENDERS = ("email", "sms")  # the processors that send marketing for us
MAX_EXTENSION_MONTHS = 2
MAX_ATTEMPTS = 8
FINISHED = ("done", "manual")


def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """The same day ``months`` later (the month's last day when it has no such day): a
    request received on 31 January is due on 28 or 29 February."""
    month = moment.month - 1 + months
    year, month = moment.year + month // 12, month % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def due_at(received: dt.datetime, extended_by_months: int = 0) -> dt.datetime:
    """P26, P27: one month after receipt, plus any extension (up to two months)."""
    return add_months(received, 1 + extended_by_months)


def subject_key(secret: bytes, kind: str, subject: DataSubject, details: dict | None = None) -> bytes:
    """The keyed hash that finds an open request the same as this one: the same kind, subject
    and, for a correction, objection or withdrawal, the same details (an objection to
    profiling does not swallow a later one to direct marketing)."""
    canonical = json.dumps({"kind": kind, "customer_id": str(subject.customer_id or ""),
                            "emails": sorted(subject.emails), "phones": sorted(subject.phones),
                            "details": details or {}}, sort_keys=True)
    return hmac.new(secret, canonical.encode(), hashlib.sha256).digest()


def participants(kind: str, processors: Iterable[tuple[str, str]]) -> list[str]:
    """The tasks a request becomes: an export and an erasure go to every service, the
    privacy service's own records and every processor; a rectification to accounts and every
    processor; an objection and a consent withdrawal to marketing, which holds the consents
    and the profiles, and the e-mail and SMS senders."""
    if kind in ("objection", "withdrawal"):  # and the senders that received the addresses (Art. 19)
        return ["marketing", *(f"partner:{name}" for name, partner_kind in processors if partner_kind in SENDERS)]
    if kind == "rectification":  # the account (its change reaches the services that copy it), and Art. 19
        return ["accounts", *(f"partner:{name}" for name, _ in processors)]
    return [*SERVICES, OWN, *(f"partner:{name}" for name, _ in processors)]


def backoff(attempts: int) -> dt.timedelta:
    return min(dt.timedelta(seconds=5 * 2 ** attempts), dt.timedelta(hours=1))


def request_state(task_states: Iterable[str]) -> str:
    """``completed`` when every task has finished, ``attention`` when one failed (staff act)."""
    states = list(task_states)
    if states and all(s in FINISHED for s in states):
        return "completed"
    return "attention" if "failed" in states else "open"


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
