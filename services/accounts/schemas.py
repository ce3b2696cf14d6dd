"""The accounts service's boundary: HTTP bodies and the events it publishes."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from services.accounts import domain
from shared.fields import CountryCode, Email, Phone, PostalCode, either, omittable, text

Name = text(200)
Line = text(200)
NewPassword = Annotated[str, StringConstraints(min_length=domain.MIN_PASSWORD, max_length=domain.MAX_PASSWORD)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=domain.MAX_PASSWORD)]
Code = Annotated[str, StringConstraints(min_length=16, max_length=128)]
Role = Literal["support", "accounting", "marketing", "admin"]
Language = Literal["lv", "en"]  # of the pages and of every mail to the customer


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests -------------------------------------------------------------------------------

class Registration(Body):
    name: Name
    email: Email
    phone: Phone
    password: NewPassword
    terms_version: Annotated[str, StringConstraints(min_length=1, max_length=40)] = Field(
        description="the version of the shop's terms the customer accepted")
    language: Language = Field(default="lv", description="the language of the shop's mail to the customer")


class EmailConfirmation(Body):
    token: Code = Field(description="the code from the verification message")
    password: Password = Field(description="the account's password (for a new account, the one "
                                           "it was registered with)")


class Login(Body):
    email: Email
    password: Password


class Refresh(Body):
    refresh_token: Code


class ProfileChange(Body):
    """The name, the phone, the language or several (a field left out stays as it is)."""
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    name: Name = omittable()
    phone: Phone = omittable()
    language: Language = omittable(description="the language of the shop's mail to the customer")

    @model_validator(mode="after")
    def _something(self) -> "ProfileChange":
        if self.name is None and self.phone is None and self.language is None:
            raise ValueError("give the name, the phone or the language")
        return self


class EmailChange(Body):
    email: Email
    password: Password = Field(description="the current password, to confirm it is the customer")


class Reauthentication(Body):
    password: Password


class PasswordResetRequest(Body):
    email: Email


class PasswordReset(Body):
    token: Code = Field(description="the code from the password reset message (its link carries it)")
    password: NewPassword = Field(description="the new password")


class AddressIn(Body):
    label: text(60) | None = None
    recipient: Name
    phone: Phone | None = None
    line1: Line
    line2: Line | None = None
    city: Line
    postal_code: PostalCode
    country: CountryCode = Field(description="ISO 3166-1 alpha-2 code, e.g. LV")


class StaffAccountIn(Body):
    name: Name
    email: Email
    password: NewPassword
    roles: list[Role] = Field(min_length=1)


class CustomerLookup(Body):
    """Either ``customer_id`` or ``email``, with the reason for looking."""
    model_config = ConfigDict(json_schema_extra={
        "oneOf": [{"required": ["customer_id"]}, {"required": ["email"]}]})

    customer_id: uuid.UUID = omittable()
    email: Email = omittable()
    reason: text(500, min_length=10, trim=False) = Field(
        description="why the customer's data is needed (recorded in the audit log)")

    @model_validator(mode="after")
    def _one_key(self) -> "CustomerLookup":
        return either(self, "customer_id", "email", "give either customer_id or email")


class IdPath(BaseModel):
    id: uuid.UUID


class UsageQuery(BaseModel):
    days: int = Field(default=30, ge=1, le=366)


# --- answers --------------------------------------------------------------------------------

class Accepted(BaseModel):
    status: str
    detail: str


class TokenPair(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class Profile(BaseModel):
    id: uuid.UUID
    name: str
    email: str
    phone: str | None
    email_verified: bool
    pending_email: str | None = Field(description="a new address waiting for its verification")
    language: Language = Field(description="the language of the shop's mail to the customer")
    terms_version: str | None
    terms_accepted_at: dt.datetime | None
    created_at: dt.datetime


class Address(BaseModel):
    """An address as stored (the request rules above are not applied again to what is read:
    an address saved under older rules must still be shown)."""
    model_config = ConfigDict(extra="ignore")
    id: uuid.UUID
    label: str | None
    recipient: str
    phone: str | None
    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str
    created_at: dt.datetime
    updated_at: dt.datetime


class AddressList(BaseModel):
    items: list[Address]


class Session(BaseModel):
    id: uuid.UUID
    ip: str | None
    user_agent: str | None
    created_at: dt.datetime
    last_used_at: dt.datetime
    expires_at: dt.datetime
    ended_at: dt.datetime | None
    current: bool


class SessionList(BaseModel):
    items: list[Session]


class StaffAccount(BaseModel):
    id: uuid.UUID
    name: str
    email: str
    roles: list[str]


class CustomerRecord(BaseModel):
    access_id: uuid.UUID = Field(description="the audit record of this look")
    profile: Profile
    closed_at: dt.datetime | None
    addresses: list[Address]


class UsageRow(BaseModel):
    day: dt.date
    network: str
    logins: int


class UsageStats(BaseModel):
    items: list[UsageRow]


class Jwks(BaseModel):
    keys: list[dict[str, Any]]


# --- events (``accounts.events``) -----------------------------------------------------------

class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str


class EmailChanged(Event):
    """A customer's new address took effect (marketing re-keys its consents)."""
    type: Literal["email_changed"] = "email_changed"
    customer_id: uuid.UUID
    email: str
    changed_at: dt.datetime


class ProfileChanged(Event):
    """The name, phone or language changed (the customer, or a rectification request)."""
    type: Literal["profile_changed"] = "profile_changed"
    customer_id: uuid.UUID
    name: str
    phone: str | None
    # None in an event published before accounts kept a language: then it says nothing of it.
    language: Language | None = None
    changed_at: dt.datetime


class AccountClosed(Event):
    """The customer closed the account; the privacy service starts its erasure (P22)."""
    type: Literal["account_closed"] = "account_closed"
    customer_id: uuid.UUID
    email: str
    phone: str | None
    closed_at: dt.datetime
