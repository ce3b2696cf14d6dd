"""The payments service's boundary: the events it publishes on ``payments.events``.

Orders consumes them (an order is paid, refunded); they are declared here, by their owner.
"""
from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict, Field


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
    """Money went back to the card; ``refunded_total_cents`` is all refunded for the order."""

    refund_id: str = Field(min_length=1, max_length=100)
    payment_id: str = Field(min_length=1, max_length=100)
    order_id: uuid.UUID
    amount_cents: int = Field(gt=0)
    refunded_total_cents: int = Field(gt=0)
    captured_cents: int = Field(gt=0)
    refunded_at: dt.datetime
