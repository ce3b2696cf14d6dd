"""The marketing service's boundary: HTTP bodies, queries, answers and the events it publishes."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.fields import Email, Int, either, omittable, text

Reason = text(500, min_length=10, trim=False)
Version = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,64}$")]
Language = Literal["lv", "en"]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- consents -----------------------------------------------------------------------------------

class DirectMarketing(Body):
    """Offers and news on one channel (P28)."""
    purpose: Literal["direct_marketing"]
    channel: Literal["email", "sms"]


class Profiling(Body):
    """Analysis of purchases for offers that match them (P6, P29); it has no channel."""
    purpose: Literal["profiling"]


Scope = Annotated[Union[DirectMarketing, Profiling], Field(discriminator="purpose")]


def channel_of(scope: DirectMarketing | Profiling) -> str | None:
    return scope.channel if isinstance(scope, DirectMarketing) else None


class ConsentGrant(Body):
    consent: Scope
    wording_version: Version = Field(description="the version of the wording shown (GET /v1/consent-wordings)")
    language: Language = omittable(description="the language the wording was shown in, and of our mail "
                                               "(by default the account's)")


class ConsentWithdrawal(Body):
    consent: Scope


class GuestConsent(Body):
    """A guest who ticked e-mail offers at checkout: takes effect when confirmed by the link mailed."""
    email: Email
    wording_version: Version
    language: Language = "lv"


class ObjectionIn(Body):
    purpose: Literal["direct_marketing", "profiling"]


class Whom(Body):
    """A customer (``customer_id``) or a guest (``email``), with the reason staff act."""
    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["customer_id"]}, {"required": ["email"]}]})

    customer_id: uuid.UUID = omittable()
    email: Email = omittable()
    reason: Reason = Field(description="why, e.g. the customer's e-mailed request (recorded as a staff access)")

    @model_validator(mode="after")
    def _one_key(self) -> "Whom":
        return either(self, "customer_id", "email", "give either customer_id or email")


class StaffGrant(Whom):
    consent: Scope
    wording_version: Version
    language: Language = omittable(description="of the wording and of our mail (by default a customer's account's, "
                                               "for a guest lv)")


class StaffWithdrawal(Whom):
    consent: Scope


class TokenQuery(BaseModel):
    token: Token


class ConsentStatus(BaseModel):
    purpose: str
    channel: str | None
    granted: bool
    since: dt.datetime
    source: str
    wording_version: str | None


class Consents(BaseModel):
    consents: list[ConsentStatus]
    awaiting_confirmation: int = Field(description="e-mail consents asked for and not yet confirmed by the link")
    objections: list[str]


class LedgerEntry(BaseModel):
    id: int
    purpose: str
    channel: str | None
    granted: bool
    source: str
    wording_version: str | None
    address: str | None
    by_staff: bool
    at: dt.datetime


class Ledger(BaseModel):
    items: list[LedgerEntry]


class StaffConsentView(BaseModel):
    access_id: uuid.UUID
    consents: Consents
    ledger: list[LedgerEntry]


class Wording(BaseModel):
    version: str
    purpose: str
    channel: str | None
    text_lv: str
    text_en: str
    published_at: dt.datetime


class WordingList(BaseModel):
    items: list[Wording]


class Accepted(BaseModel):
    status: str
    detail: str


class CategoryProfile(BaseModel):
    category: str
    items: int
    spend_cents: int


class Profile(BaseModel):
    """What the shop infers from a customer's paid orders (P6), while they consent to it."""
    orders: int
    spend_cents: int
    currency: str
    orders_per_month: float
    first_order_at: dt.datetime
    last_order_at: dt.datetime
    categories: list[CategoryProfile]


class ProfileAnswer(BaseModel):
    profile: Profile | None = Field(description="null: no profile (no consent, an objection, or no orders yet)")


# --- campaigns ----------------------------------------------------------------------------------

class Texts(Body):
    lv: text(4000)
    en: text(4000)


# One line: it becomes a mail header (a line break there would fail every message).
OneLine = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$")]


class Subjects(Body):
    lv: OneLine
    en: OneLine


class Audience(Body):
    """Everyone who consents to the channel, or (any field set) only those whose preference
    profile matches every field set."""
    category: text(60) = omittable()
    min_orders: Int = omittable(ge=1, le=100_000)
    min_spend_cents: Int = omittable(ge=1, le=10**12)
    active_within_days: Int = omittable(ge=1, le=3650)


class CampaignIn(Body):
    name: OneLine
    channel: Literal["email", "sms"]
    subject: Subjects = omittable(description="the e-mail's subject; the campaign's name when omitted")
    body: Texts
    audience: Audience = Field(default_factory=Audience)


class Campaign(BaseModel):
    id: uuid.UUID
    name: str
    channel: str
    status: Literal["draft", "sending", "sent", "cancelled"]
    audience: dict
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    recipients: int
    pending: int
    sent: int
    skipped: int
    failed: int


class CampaignList(BaseModel):
    items: list[Campaign]
    next_cursor: uuid.UUID | None = Field(description="pass as `after` for the next page; null on the last")


class CampaignQuery(BaseModel):
    after: uuid.UUID = omittable()  # next_cursor of the previous page: its last campaign
    limit: int = Field(default=50, ge=1, le=200)


class IdPath(BaseModel):
    id: uuid.UUID


# --- events on marketing.events -----------------------------------------------------------------

class ConsentChanged(BaseModel):
    """A consent was granted or withdrawn, or an objection recorded (for the audit log)."""
    person_id: uuid.UUID
    customer_id: uuid.UUID | None
    purpose: str
    channel: str | None
    granted: bool
    source: str
    at: dt.datetime


