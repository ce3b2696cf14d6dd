"""The payments service's boundary: the events it publishes on ``payments.events`` (orders and
accounts consume them; they are declared here, by their owner), HTTP bodies and answers.

No model here has a field for a card number or a CVC: cards arrive as the PSP's
payment-method tokens (``pm_...``), and every input is refused if it carries a card-like
number anywhere (``shared.inputs``).
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.fields import Flag, Int, either, omittable, text


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PaymentSucceeded(Event):
    """An order's payment is captured (published once per payment)."""

    payment_id: str = Field(min_length=1, max_length=100)
    order_id: uuid.UUID
    amount_cents: int = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    paid_at: dt.datetime


class RefundSucceeded(Event):
    """Money went back to the card; ``refunded_total_cents`` is all refunded for the payment.
    ``order_id`` is None for a membership charge."""

    refund_id: str = Field(min_length=1, max_length=100)
    payment_id: str = Field(min_length=1, max_length=100)
    order_id: uuid.UUID | None = None
    amount_cents: int = Field(gt=0)
    refunded_total_cents: int = Field(gt=0)
    captured_cents: int = Field(gt=0)
    refunded_at: dt.datetime


class DisputeChanged(Event):
    """A chargeback was opened (``dispute_opened``) or closed (``dispute_closed``): while one is
    open, the customer's payment and order data are held (P24)."""

    dispute_id: str
    payment_id: str
    order_id: uuid.UUID | None
    customer_id: uuid.UUID | None
    amount_cents: int
    status: str
    at: dt.datetime


NoticeKind = Literal["started", "renewed", "charge_failed", "lapsed", "cancelled", "ended"]


class MembershipNotice(Event):
    """What the customer is told about their membership (accounts sends the e-mail)."""

    membership_id: uuid.UUID
    customer_id: uuid.UUID
    kind: NoticeKind
    amount_cents: int
    currency: str
    period_end: dt.datetime | None = None
    next_attempt_at: dt.datetime | None = None
    at: dt.datetime


# --- HTTP --------------------------------------------------------------------------------------

class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


PaymentMethodToken = Annotated[str, StringConstraints(pattern=r"^pm_[A-Za-z0-9_]{1,200}$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Reason = text(500, min_length=10, trim=False)
MAX_CENTS = 100_000_000


class PayOrder(Body):
    """Pay one of your orders: with a card token from the PSP, or a card you saved. The amount
    and currency are what you were shown; they must match the order."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["payment_method"]}, {"required": ["card_id"]}]})

    order_id: uuid.UUID
    amount_cents: Int = Field(gt=0, le=MAX_CENTS)
    currency: Currency
    payment_method: PaymentMethodToken = omittable(description="the PSP's token for the card (pm_...)")
    card_id: uuid.UUID = omittable(description="one of your saved cards")
    save_card: Flag = Field(default=False, description="keep the card for later payments")

    @model_validator(mode="after")
    def _one_card(self) -> "PayOrder":
        return either(self, "payment_method", "card_id", "give either payment_method (a PSP token) or card_id")


class GuestPay(Body):
    """Pay a guest order with a card token from the PSP."""

    order_id: uuid.UUID
    amount_cents: Int = Field(gt=0, le=MAX_CENTS)
    currency: Currency
    payment_method: PaymentMethodToken


class CardIn(Body):
    payment_method: PaymentMethodToken


class Subscribe(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["payment_method"]}, {"required": ["card_id"]}]})

    payment_method: PaymentMethodToken = omittable(description="the PSP's token for a new card")
    card_id: uuid.UUID = omittable(description="one of your saved cards")

    @model_validator(mode="after")
    def _one_card(self) -> "Subscribe":
        return either(self, "payment_method", "card_id", "give either payment_method (a PSP token) or card_id")


class RefundIn(Body):
    """A refund to the original card: all that is left of the payment, or ``amount_cents``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["payment_id"]}, {"required": ["order_id"]}]})

    payment_id: uuid.UUID = omittable()
    order_id: uuid.UUID = omittable(description="the order whose payment is refunded")
    amount_cents: Int = omittable(gt=0, le=MAX_CENTS)
    reason: Reason = Field(description="why (kept with the refund)")

    @model_validator(mode="after")
    def _one_payment(self) -> "RefundIn":
        return either(self, "payment_id", "order_id", "give either payment_id or order_id")


class IdPath(BaseModel):
    id: uuid.UUID


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after: uuid.UUID | None = Field(default=None, description="the last payment id of the previous page")
    limit: int = Field(default=20, ge=1, le=100)


class CardOut(BaseModel):
    id: uuid.UUID
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    created_at: dt.datetime


class CardList(BaseModel):
    items: list[CardOut]


class Failure(BaseModel):
    code: str | None
    message: str | None


class Payment(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID | None
    membership_id: uuid.UUID | None
    status: Literal["creating", "requires_action", "processing", "succeeded", "failed", "canceled"]
    amount_cents: int
    refunded_cents: int
    currency: str
    card: str | None = Field(description="brand and last four digits, e.g. 'visa •••• 4242'")
    action_url: str | None = Field(description="open this to authenticate the payment with your bank")
    failure: Failure | None
    created_at: dt.datetime
    succeeded_at: dt.datetime | None


class PaymentPage(BaseModel):
    items: list[Payment]
    next_cursor: uuid.UUID | None


class Refund(BaseModel):
    id: uuid.UUID
    payment_id: uuid.UUID
    order_id: uuid.UUID | None
    amount_cents: int
    status: Literal["pending", "succeeded", "failed"]
    reason: str
    failure_message: str | None
    created_at: dt.datetime
    succeeded_at: dt.datetime | None


class Membership(BaseModel):
    id: uuid.UUID
    status: Literal["incomplete", "active", "past_due", "lapsed", "cancelled"]
    price_cents: int
    currency: str
    card: str | None
    period: int
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    cancel_at_period_end: bool
    failed_attempts: int
    next_charge_at: dt.datetime | None
    created_at: dt.datetime
    ended_at: dt.datetime | None
    payment: Payment | None = Field(default=None, description="the payment that starts it, while it is incomplete")


class PspConfig(BaseModel):
    publishable_key: str = Field(description="the key a browser sends card details to the PSP with")
    api_base: str = Field(description="the PSP's API; POST /v1/payment_methods there tokenises a card")


class StripeEvent(BaseModel):
    """A PSP event as Stripe sends it (signed with the Stripe-Signature header)."""

    model_config = ConfigDict(extra="allow")
    id: str
    type: str
    data: dict[str, Any]


class EventReceived(BaseModel):
    id: str
    applied: bool
