"""What we send partners by webhook, and what they send back: one model per type, versioned.

Every body is the Standard Webhooks envelope ``{"type", "timestamp", "data"}`` with ``data``
one of the models below. ``python -m shared.contracts.webhooks`` writes the JSON Schema of
each (``docs/events/<type>.v<version>.schema.json``); a test keeps the files equal to the code.
A change that would break a partner gets a new type name (``shipment.created.v2``), so both
can be sent while partners move over.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import sys
import uuid
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.privacy import DataSubject

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events"


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebhookEvent(_Data):
    """A message we send; ``event_type`` and ``version`` name its schema."""

    event_type: ClassVar[str]
    version: ClassVar[int] = 1


class PartnerReply(_Data):
    """A partner's callback; ``in_reply_to`` is the webhook-id of the message it answers."""

    event_type: ClassVar[str]
    version: ClassVar[int] = 1
    in_reply_to: str = Field(pattern=r"^msg_[0-9a-f]{32}$")


class Contact(_Data):
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=254)
    phone: str = Field(max_length=32)


class Address(_Data):
    line1: str = Field(min_length=1, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    postcode: str = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")


class Parcel(_Data):
    weight_grams: int = Field(gt=0)
    contents: str = Field(max_length=200)


class ShipmentCreated(WebhookEvent):
    """To the carrier the customer chose: who receives what, where (policy P13)."""

    event_type: ClassVar[str] = "shipment.created"
    shipment_id: uuid.UUID
    order_id: uuid.UUID
    recipient: Contact
    address: Address
    parcels: list[Parcel] = Field(min_length=1)
    language: Literal["lv", "en"] = Field(default="lv", description="what to write to the recipient in")


class InvoiceLine(_Data):
    description: str = Field(max_length=200)
    quantity: int = Field(gt=0)
    unit_price: decimal.Decimal
    vat_rate: decimal.Decimal = Field(ge=0, le=1)
    vat: decimal.Decimal = Field(description="the VAT in total")
    total: decimal.Decimal


class Seller(_Data):
    name: str = Field(max_length=200)
    registration_number: str = Field(max_length=40)
    vat_number: str = Field(max_length=40)
    address: str = Field(max_length=400)


class InvoiceIssued(WebhookEvent):
    """To the accountant: only what bookkeeping needs (policy P14, P25). Amounts in euros,
    VAT included in ``unit_price`` and ``total``; ``vat_rate`` is a fraction (0.21)."""

    event_type: ClassVar[str] = "invoice.issued"
    invoice_id: uuid.UUID
    number: str = Field(max_length=40, description="runs per year without gaps")
    order_id: uuid.UUID
    issued_on: dt.date
    seller: Seller
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    customer_name: str = Field(max_length=200)
    billing_address: Address | None = None
    lines: list[InvoiceLine] = Field(min_length=1)
    net: decimal.Decimal
    vat: decimal.Decimal
    gross: decimal.Decimal


class _SubjectRequest(WebhookEvent):
    request_id: uuid.UUID
    subject: DataSubject
    due_on: dt.date


class ErasureRequested(_SubjectRequest):
    """To every processor that holds the subject's data (policy P18, P22)."""

    event_type: ClassVar[str] = "privacy.erasure_requested"


class ExportRequested(_SubjectRequest):
    """To every processor that holds the subject's data (policy P18, P27)."""

    event_type: ClassVar[str] = "privacy.export_requested"


class Corrections(_Data):
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=32)


class RectificationRequested(_SubjectRequest):
    """To every processor that received the subject's data: correct it (Art. 16, 19; P20)."""

    event_type: ClassVar[str] = "privacy.rectification_requested"
    corrections: Corrections


class ObjectionReceived(_SubjectRequest):
    """To the e-mail and SMS senders: the subject objected to, or withdrew consent for,
    direct marketing or profiling; send them nothing more for it (Art. 7(3), 19, 21; P28, P29)."""

    event_type: ClassVar[str] = "privacy.objection_received"
    reason: Literal["objection", "withdrawal"]
    purpose: Literal["direct_marketing", "profiling"] | None = None
    channel: Literal["email", "sms"] | None = None


class SmsRequested(WebhookEvent):
    """A text message for the SMS gateway to send (a marketing campaign's, to a number whose
    holder consented). ``message_id`` is ours: the gateway sends each one once."""

    event_type: ClassVar[str] = "sms.requested"
    message_id: uuid.UUID
    to: str = Field(pattern=r"^\+?[0-9]{6,15}$")
    text: str = Field(min_length=1, max_length=2400)


class PartnerPing(WebhookEvent):
    """A test message an operator sends to check that a partner receives and verifies ours."""

    event_type: ClassVar[str] = "partner.ping"
    note: str = Field(max_length=200)


class ShipmentAccepted(PartnerReply):
    event_type: ClassVar[str] = "shipment.accepted"
    shipment_id: uuid.UUID
    tracking_number: str = Field(max_length=64)


class ShipmentDelivered(PartnerReply):
    event_type: ClassVar[str] = "shipment.delivered"
    shipment_id: uuid.UUID


class InvoiceBooked(PartnerReply):
    event_type: ClassVar[str] = "invoice.booked"
    invoice_id: uuid.UUID
    booked_on: dt.date


class ErasureCompleted(PartnerReply):
    event_type: ClassVar[str] = "erasure.completed"
    request_id: uuid.UUID
    records_erased: int = Field(ge=0)


class SmsDelivered(PartnerReply):
    event_type: ClassVar[str] = "sms.delivered"
    message_id: uuid.UUID


class RectificationCompleted(PartnerReply):
    event_type: ClassVar[str] = "rectification.completed"
    request_id: uuid.UUID
    records_rectified: int = Field(ge=0)


class ObjectionApplied(PartnerReply):
    event_type: ClassVar[str] = "objection.applied"
    request_id: uuid.UUID


class ExportCompleted(PartnerReply):
    event_type: ClassVar[str] = "export.completed"
    request_id: uuid.UUID
    records: list[dict[str, Any]]


EVENTS: dict[str, type[WebhookEvent]] = {
    m.event_type: m for m in (ShipmentCreated, InvoiceIssued, SmsRequested, ErasureRequested, ExportRequested,
                              RectificationRequested, ObjectionReceived, PartnerPing)}
REPLIES: dict[str, type[PartnerReply]] = {
    m.event_type: m for m in (ShipmentAccepted, ShipmentDelivered, InvoiceBooked, SmsDelivered, ErasureCompleted,
                              ExportCompleted, RectificationCompleted, ObjectionApplied)}


def envelope_schema(model: type[WebhookEvent] | type[PartnerReply], direction: str) -> dict[str, Any]:
    # What we send is described as we write it; what we receive, as we accept it.
    mode = "serialization" if issubclass(model, WebhookEvent) else "validation"
    data = model.model_json_schema(ref_template="#/$defs/{model}", mode=mode)
    defs = data.pop("$defs", {})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://veikals.example/schemas/{model.event_type}.v{model.version}.json",
        "title": f"{model.event_type} (version {model.version})",
        "description": f"{direction}. {(model.__doc__ or '').strip()}".strip(),
        "type": "object",
        "required": ["type", "timestamp", "data"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": model.event_type},
            "timestamp": {"type": "string", "format": "date-time"},
            "data": data,
        },
        **({"$defs": defs} if defs else {}),
    }


def schema_files() -> dict[str, str]:
    """File name -> content, for every type in both directions."""
    files = {}
    for models, direction in ((EVENTS, "Sent by Veikals to the partner"),
                              (REPLIES, "Sent by the partner to Veikals as a callback")):
        for model in models.values():
            name = f"{model.event_type}.v{model.version}.schema.json"
            files[name] = json.dumps(envelope_schema(model, direction), indent=2, sort_keys=True) + "\n"
    return files


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS
    target.mkdir(parents=True, exist_ok=True)
    for name, content in schema_files().items():
        (target / name).write_text(content)
        print(target / name)
