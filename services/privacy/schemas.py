"""The privacy service's boundary: HTTP bodies, answers and the events it publishes."""
from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.contracts.privacy import DataSubject
from shared.fields import Email, Int, Phone, omittable, text

Reason = text(500, min_length=10, trim=False)
Language = Literal["lv", "en"]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Export(Body):
    """A copy of everything held about you (Art. 15, 20)."""
    kind: Literal["export"]


class Erasure(Body):
    """Erase everything that may be erased (Art. 17); what must be kept is told, with why and until when."""
    kind: Literal["erasure"]


class Rectification(Body):
    """Correct your name or phone (Art. 16); everyone who received them is told (Art. 19)."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [{"required": ["name"]},
                                                                          {"required": ["phone"]}]})
    kind: Literal["rectification"]
    name: text(200) = omittable()
    phone: Phone = omittable()

    @model_validator(mode="after")
    def _something(self) -> "Rectification":
        if self.name is None and self.phone is None:
            raise ValueError("give the corrected name, phone or both")
        return self


class Objection(Body):
    """Object to direct marketing or profiling (Art. 21)."""
    kind: Literal["objection"]
    purpose: Literal["direct_marketing", "profiling"]


class Withdrawal(Body):
    """Withdraw consent (Art. 7(3)): all of it, or one purpose or channel."""
    kind: Literal["withdrawal"]
    purpose: Literal["direct_marketing", "profiling"] = omittable()
    channel: Literal["email", "sms"] = omittable()


What = Annotated[Union[Export, Erasure, Rectification, Objection, Withdrawal], Field(discriminator="kind")]


class RequestIn(Body):
    request: What
    language: Language = "lv"


class GuestRequestIn(Body):
    """A guest's request, by the e-mail address they ordered with: a code goes to it."""
    email: Email
    request: What
    language: Language = "lv"


class GuestCode(Body):
    email: Email
    code: Annotated[str, Field(pattern=r"^[A-Za-z0-9]{8}$")]


class GuestRequestCreated(BaseModel):
    request: "RequestView"
    status_token: str = Field(description="opens GET /v1/guest-privacy-requests/{id}?token=...; keep it")


class DownloadQuery(BaseModel):
    token: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{20,100}$")]
    code: Annotated[str, Field(pattern=r"^[A-Za-z0-9]{8}$")]


class Accepted(BaseModel):
    status: str
    detail: str


class SubjectIn(Body):
    """Who the request is about, as support identified them: an account, or the e-mail
    addresses and phone numbers a guest used."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"required": ["customer_id"]}, {"required": ["emails"], "properties": {"emails": {"minItems": 1}}},
        {"required": ["phones"], "properties": {"phones": {"minItems": 1}}}]})

    customer_id: uuid.UUID = omittable()
    emails: list[Email] = Field(default_factory=list, max_length=5)
    phones: list[Phone] = Field(default_factory=list, max_length=5)

    @model_validator(mode="after")
    def _someone(self) -> "SubjectIn":
        if self.customer_id is None and not self.emails and not self.phones:
            raise ValueError("name the customer_id, or an e-mail address or phone number")
        return self

    def subject(self) -> DataSubject:
        return DataSubject(customer_id=self.customer_id, emails=self.emails, phones=self.phones)


class StaffRequestIn(Body):
    """A request that arrived by e-mail or letter, entered by support (P26)."""
    request: What
    subject: SubjectIn
    contact_email: Email = Field(description="where the outcome is told")
    identification: Reason = Field(description="how the requester's identity was verified")
    language: Language = "lv"


class Extension(Body):
    months: Int = Field(ge=1, le=2, description="one or two more months (P27)")
    reason: Reason = Field(description="told to the requester")


class ManualOutcome(Body):
    outcome: text(1000) = Field(description="what was done, e.g. 'the carrier confirmed by phone'")
    reason: Reason


class LinkQuery(BaseModel):
    token: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{20,100}$")]


class IdPath(BaseModel):
    id: uuid.UUID


class TaskPath(BaseModel):
    id: uuid.UUID
    participant: Annotated[str, Field(pattern=r"^(partner:)?[a-z0-9][a-z0-9-]{1,62}$")]


class QueueQuery(BaseModel):
    state: Literal["open", "completed", "attention"] = omittable()
    due_within_days: int = omittable(ge=0, le=365)
    limit: int = Field(default=50, ge=1, le=200)


class TaskView(BaseModel):
    participant: str
    state: str
    attempts: int
    sent_at: dt.datetime | None = Field(description="when a processor was sent the request")
    outcome: dict | None
    remaining: list[str] | None
    last_error: str | None
    updated_at: dt.datetime


class RequestView(BaseModel):
    id: uuid.UUID
    kind: str
    state: Literal["open", "completed", "attention"]
    source: str
    details: dict
    received_at: dt.datetime
    due_at: dt.datetime
    extended_by_months: int
    extension_reason: str | None
    completed_at: dt.datetime | None
    tasks: list[TaskView]
    joined: bool = Field(default=False, description="an open request of the same kind was found and joined")


class StaffRequestView(RequestView):
    subject: DataSubject
    contact_email: str | None
    identification: str | None


class RequestList(BaseModel):
    items: list[RequestView]


class StaffRequestList(BaseModel):
    items: list[StaffRequestView]


# --- the retention report ----------------------------------------------------------------------

class RetentionRow(BaseModel):
    """One category of one participant: the oldest record held against its declared retention."""
    participant: str
    category: str
    table: str
    period_days: int
    after: str = Field(description="what starts the period")
    oldest: dt.datetime | None = Field(description="when the period of the oldest record held started")
    due: dt.datetime | None = Field(description="when the sweep was to remove that record")
    records: int = Field(description="records held whose period has started")
    past_due: int = Field(description="of those, records past their period")
    overdue: bool = Field(description="the oldest is more than a day past its period: the sweep has not removed it")
    error: str | None = Field(description="why the figures could not be read")


class ParticipantRetention(BaseModel):
    participant: str
    state: Literal["answered", "unreachable", "failed"]
    error: str | None = Field(description="why it did not answer, or what it answered instead")
    at: dt.datetime | None = Field(description="when it read its figures")


class RetentionSummary(BaseModel):
    ok: bool = Field(description="every participant answered, every row was read, and none is overdue")
    participants: int
    unreachable: list[str] = Field(description="participants that did not answer in time")
    failed: list[str] = Field(description="participants that answered with an error")
    rows: int
    overdue: int = Field(description="rows whose oldest record is overdue")
    unreadable: int = Field(description="rows whose figures could not be read")


class RetentionReportView(BaseModel):
    at: dt.datetime
    summary: RetentionSummary
    participants: list[ParticipantRetention]
    rows: list[RetentionRow]


# --- events on privacy.events -------------------------------------------------------------------

class RequestChanged(BaseModel):
    """A request was received, extended, completed, or needs staff (for the audit log)."""
    request_id: uuid.UUID
    kind: str
    state: str
    what: Literal["received", "extended", "completed", "attention", "task_manual"]
    at: dt.datetime


GuestRequestCreated.model_rebuild()


# --- the audit log ---------------------------------------------------------------------------------

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")

class AuditQuery(BaseModel):
    subject: uuid.UUID = omittable(description="entries about this customer")
    staff: uuid.UUID = omittable(description="entries of this staff member")
    since: dt.datetime = omittable(description="at or after (RFC 3339, with its offset)")
    until: dt.datetime = omittable(description="before")
    before: int = omittable(ge=1, le=2**62, description="entries older than this seq (the next page)")
    limit: int = Field(default=100, ge=1, le=500)

    @field_validator("since", "until", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> object:
        """An RFC 3339 date-time, as the schema says (not a number of seconds)."""
        if isinstance(value, str) and not RFC3339.match(value):
            raise ValueError("expected an RFC 3339 date-time such as 2026-12-01T09:30:00Z")
        return value

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        """In UTC; one at the calendar's very edge is taken as that edge."""
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        try:
            return value.astimezone(dt.timezone.utc)
        except OverflowError:
            edge = dt.datetime.min if value.year == 1 else dt.datetime.max
            return edge.replace(tzinfo=dt.timezone.utc)


class AuditEntry(BaseModel):
    seq: int
    at: dt.datetime
    kind: Literal["staff_access", "request_step", "audit"]
    service: str
    actor: str = Field(description="'staff:<id>', 'customer:<id>', 'guest' or 'system'")
    subject_id: uuid.UUID | None
    request_id: uuid.UUID | None
    categories: list[str]
    action: str
    reason: str | None
    detail: dict
    hash: str


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_before: int | None = Field(description="pass as 'before' for older entries")


class VerificationQuery(BaseModel):
    anchor: str = omittable(pattern=r"^[1-9][0-9]{0,17}:[0-9a-f]{64}$",
                            description="a checkpoint kept elsewhere, 'seq:hash'")


class AuditFinding(BaseModel):
    seq: int
    problem: Literal["changed", "removed", "moved", "truncated", "anchor"]
    detail: str


class AuditVerification(BaseModel):
    intact: bool
    entries: int
    first_seq: int | None
    last_seq: int | None
    last_hash: str | None
    finding: AuditFinding | None


class NoticeQuery(BaseModel):
    lang: Language = omittable(description="lv (the original) or en; by default the browser's preference")


class NoticeTable(BaseModel):
    header: list[str]
    rows: list[list[str]]


class NoticeSection(BaseModel):
    key: str | None = Field(description="what the section is about, the same in both languages (e.g. 'what', 'rights')")
    clauses: list[str] = Field(description="the policy's clauses it covers")
    title: str
    paragraphs: list[str]
    items: list[str]
    table: NoticeTable | None


class NoticeData(BaseModel):
    """The privacy notice as data, for the shop's pages to lay out."""
    language: Language
    title: str
    sections: list[NoticeSection]
    glossary: dict[str, str] = Field(description="in Latvian, the Latvian of each string the services declare in "
                                                 "English (categories, purposes, periods), to say what a request's "
                                                 "outcome names in the notice's words; empty in English")
