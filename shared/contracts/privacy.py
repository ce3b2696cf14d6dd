"""The privacy participant contract.

The privacy service asks every participant (each service, and each processor adapter) to
export or erase one data subject's data; each participant answers with these messages. Over
RPC a participant serves four methods:

- ``privacy_inventory() -> DataInventory``: what personal data it holds, declared in code.
- ``privacy_export(ExportRequest) -> ExportChunk``: one bounded chunk of the subject's data;
  the caller asks again with ``cursor=chunk.next_cursor`` until ``next_cursor`` is None, so a
  long history is streamed and never held whole.
- ``privacy_erase(ErasureRequest) -> ErasureOutcome``: what was erased, what is retained (with
  legal basis and until when) and what is held by a legal hold; ``re-check`` with
  ``ErasureRequest(verify_only=True)`` re-reads and lists what is still there.
- ``privacy_retention() -> RetentionReport``: for each category with a retention period, when
  the period of the oldest record still held started, and whether it is overdue (read-only:
  the privacy service's retention report, which shows that the sweeps run).

Requests and answers travel as JSON (``model_dump(mode="json")``) and are validated on both
sides with ``model_validate``.
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_CHUNK_RECORDS = 500
# P25: accounting records (invoices, payments) are kept seven years (Accounting Law, art. 10).
ACCOUNTING_PERIOD = dt.timedelta(days=7 * 366)
PARTICIPANT_METHODS = ("privacy_inventory", "privacy_export", "privacy_erase", "privacy_retention")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9]{6,15}$")


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LegalBasis(StrEnum):
    """GDPR Art. 6(1) bases the policy relies on."""

    CONTRACT = "contract"                    # Art. 6(1)(b), policy P10
    LEGAL_OBLIGATION = "legal_obligation"    # Art. 6(1)(c), policy P11
    CONSENT = "consent"                      # Art. 6(1)(a), policy P21, P28
    LEGITIMATE_INTEREST = "legitimate_interest"  # Art. 6(1)(f), e.g. security logs (P9)


class DataSubject(_Contract):
    """Who the request is about: a customer id and/or the contact details of a guest."""

    customer_id: uuid.UUID | None = None
    emails: list[str] = Field(default_factory=list, max_length=20)
    phones: list[str] = Field(default_factory=list, max_length=20)

    @field_validator("emails")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        out = []
        for email in value:
            email = email.strip().lower()
            if not _EMAIL.match(email):
                raise ValueError(f"not an e-mail address: {email!r}")
            out.append(email)
        return out

    @field_validator("phones")
    @classmethod
    def _phones(cls, value: list[str]) -> list[str]:
        out = []
        for phone in value:
            normalized = re.sub(r"[\s().-]", "", phone)
            if normalized.startswith("00"):  # as shared.fields.Phone stores it
                normalized = "+" + normalized[2:]
            if not _PHONE.match(normalized):
                raise ValueError(f"not a phone number (digits, optional leading +): {phone!r}")
            out.append(normalized)
        return out

    @model_validator(mode="after")
    def _identified(self) -> "DataSubject":
        if self.customer_id is None and not self.emails and not self.phones:
            raise ValueError("a data subject needs a customer_id, an e-mail or a phone number")
        return self


class Retention(_Contract):
    """How long data is kept: a period after an event, or until an event."""

    period_days: int | None = Field(default=None, ge=1)
    after: str = Field(description="what starts the period, e.g. 'account closed', 'invoice date'")
    clause: str | None = Field(default=None, pattern=r"^P\d+$",
                               description="the policy clause (P22-P25) that sets it, if one does")


class InventoryEntry(_Contract):
    category: str = Field(description="e.g. 'contact details', 'delivery address'")
    table: str
    fields: list[str] = Field(min_length=1)
    purpose: str
    legal_basis: LegalBasis
    retention: Retention
    recipients: list[str] = Field(default_factory=list,
                                  description="partner kinds or staff roles that receive it")
    clauses: list[Annotated[str, Field(pattern=r"^P\d+$")]] = Field(default_factory=list)


class DataInventory(_Contract):
    participant: str
    entries: list[InventoryEntry] = Field(default_factory=list)

    def declared_columns(self) -> set[tuple[str, str]]:
        return {(e.table, f) for e in self.entries for f in e.fields}


class ExportRequest(_Contract):
    request_id: uuid.UUID
    subject: DataSubject
    cursor: str | None = None
    max_records: int = Field(default=MAX_CHUNK_RECORDS, ge=1, le=MAX_CHUNK_RECORDS)


class ExportRecord(_Contract):
    category: str
    data: dict[str, Any]


class ExportChunk(_Contract):
    request_id: uuid.UUID
    participant: str
    records: list[ExportRecord] = Field(default_factory=list, max_length=MAX_CHUNK_RECORDS)
    next_cursor: str | None = None

    @property
    def last(self) -> bool:
        return self.next_cursor is None


class ErasureRequest(_Contract):
    request_id: uuid.UUID
    subject: DataSubject
    verify_only: bool = False


class Erased(_Contract):
    category: str
    records: int = Field(ge=0)


class Retained(_Contract):
    category: str
    fields: list[str] = Field(min_length=1)
    legal_basis: LegalBasis
    reason: str
    until: dt.date


class Held(_Contract):
    category: str
    hold: str = Field(description="what holds it, e.g. 'complaint 42', 'chargeback ch_123'")
    until: dt.date | None = Field(default=None, description="None: until the hold is released")


class ErasureOutcome(_Contract):
    request_id: uuid.UUID
    participant: str
    erased: list[Erased] = Field(default_factory=list)
    retained: list[Retained] = Field(default_factory=list)
    held: list[Held] = Field(default_factory=list)
    remaining: list[str] = Field(default_factory=list,
                                 description="with verify_only: categories still found")
    completed_at: dt.datetime

    @property
    def complete(self) -> bool:
        """Nothing is left but what is declared retained or held."""
        return not self.remaining


class HeldErasureCompleted(_Contract):
    """An erasure a hold had kept back is done (published as ``held_erasure_completed``, for
    the privacy service to tell the customer)."""

    request_id: uuid.UUID
    participant: str
    erased: list[Erased] = Field(default_factory=list)
    at: dt.datetime


class RetentionAge(_Contract):
    """How long one category of data with a retention period has been kept: a row of the
    retention report. A record's period starts at the event its entry names (``after``); the
    sweep removes it ``period_days`` later."""

    category: str
    table: str
    period_days: int = Field(ge=1)
    after: str
    oldest: dt.datetime | None = Field(
        default=None, description="when the period of the oldest record still held started (None: no record's has)")
    due: dt.datetime | None = Field(default=None, description="oldest + period: when the sweep was to remove it")
    records: int = Field(default=0, ge=0, description="records held whose period has started")
    past_due: int = Field(default=0, ge=0, description="of those, records past their period")
    overdue: bool = Field(default=False, description="the oldest is past its period by more than a day: "
                                                      "the sweeps, which run hourly, have not removed it")
    error: str | None = Field(default=None, description="why the figures could not be read (they are then empty)")


class RetentionReport(_Contract):
    participant: str
    entries: list[RetentionAge] = Field(default_factory=list)
    at: dt.datetime
