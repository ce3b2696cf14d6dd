"""The orders service's boundary: HTTP bodies, queries, answers and the events it publishes."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.contracts import webhooks as contracts
from shared.fields import CountryCode, Email, Flag, Int, IsoDate, Phone, PostalCode, either, omittable, text

Name = text(200)
Line = text(200)
Reason = text(500, min_length=10, trim=False)
Sku = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{1,39}$")]
Status = Literal["created", "paid", "shipped", "delivered", "cancelled", "refunded"]
MAX_LINES = 50
MAX_QUANTITY = 100
MAX_PRICE_CENTS = 10_000_000  # 100,000 EUR a piece
MAX_STOCK = 1_000_000


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- the catalogue ----------------------------------------------------------------------------

class ProductIn(Body):
    sku: Sku = Field(description="the shop's stock-keeping unit, e.g. TEA-001")
    name: Name
    category: text(60)
    price_cents: Int = Field(gt=0, le=MAX_PRICE_CENTS, description="consumer price in cents, VAT included")
    vat_rate: Literal[21, 12, 5] = Field(description="Latvian VAT rate in percent")
    stock: Int = Field(ge=0, le=MAX_STOCK)
    weight_grams: Int = Field(default=500, gt=0, le=100_000)


class ProductChange(Body):
    """Any of the fields; those left out stay as they are."""
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    name: Name = omittable()
    category: text(60) = omittable()
    price_cents: Int = omittable(gt=0, le=MAX_PRICE_CENTS)
    vat_rate: Literal[21, 12, 5] = omittable()
    stock: Int = omittable(ge=0, le=MAX_STOCK)
    active: Flag = omittable()

    @model_validator(mode="after")
    def _something(self) -> "ProductChange":
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        return self


class Product(BaseModel):
    id: uuid.UUID
    sku: str
    name: str
    category: str
    price_cents: int
    vat_rate: int
    stock: int
    weight_grams: int
    active: bool


class ProductList(BaseModel):
    items: list[Product]
    next_cursor: str | None


class ProductQuery(BaseModel):
    category: text(60) = omittable()
    after: Sku = omittable()  # the sku of the last product of the previous page
    limit: int = Field(default=50, ge=1, le=200)


class Carrier(BaseModel):
    name: str
    description: str


class CarrierList(BaseModel):
    items: list[Carrier]


# --- checkout ---------------------------------------------------------------------------------

class LineIn(Body):
    """A product and how many; the lines of one product are added up into one."""
    product_id: uuid.UUID
    quantity: Int = Field(ge=1, le=MAX_QUANTITY)


class AddressIn(Body):
    line1: Line
    line2: Line | None = None
    city: Line
    postal_code: PostalCode
    country: CountryCode = Field(description="ISO 3166-1 alpha-2 code, e.g. LV")


class Contact(Body):
    name: Name
    email: Email
    phone: Phone


class Checkout(Body):
    """An account holder's order: the carrier, the lines, and either an address from the
    address book (``address_id``) or a new ``address``. Prices come from the catalogue."""
    model_config = ConfigDict(json_schema_extra={
        "oneOf": [{"required": ["address_id"]}, {"required": ["address"]}]})

    carrier: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
    lines: list[LineIn] = Field(min_length=1, max_length=MAX_LINES)
    address_id: uuid.UUID = omittable()
    address: AddressIn = omittable()

    @model_validator(mode="after")
    def _one_address(self) -> "Checkout":
        return either(self, "address_id", "address", "give either address_id (from your address book) or address")


class GuestCheckout(Body):
    """A guest's order: who they are, where it goes, with which carrier, and what."""

    carrier: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
    lines: list[LineIn] = Field(min_length=1, max_length=MAX_LINES)
    contact: Contact
    address: AddressIn
    language: Literal["lv", "en"] = Field(default="lv", description="what the shop and the carrier write to the "
                                                                      "guest in")


class OrderLine(BaseModel):
    product_id: uuid.UUID
    sku: str
    name: str
    category: str
    quantity: int
    unit_price_cents: int
    vat_rate: int
    net_cents: int
    vat_cents: int
    gross_cents: int


class ContactOut(BaseModel):
    name: str | None
    email: str | None
    phone: str | None


class AddressOut(BaseModel):
    line1: str | None
    line2: str | None
    city: str | None
    postal_code: str | None
    country: str | None


class Order(BaseModel):
    id: uuid.UUID
    status: Status
    guest: bool
    carrier: str
    contact: ContactOut
    address: AddressOut
    lines: list[OrderLine]
    net_cents: int
    vat_cents: int
    gross_cents: int
    refunded_cents: int
    currency: str
    created_at: dt.datetime
    paid_at: dt.datetime | None
    shipped_at: dt.datetime | None
    delivered_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    tracking_number: str | None
    invoice_number: str | None
    language: Literal["lv", "en"]


class OrderSummary(BaseModel):
    id: uuid.UUID
    status: Status
    gross_cents: int
    currency: str
    items: int
    created_at: dt.datetime


class OrderPage(BaseModel):
    items: list[OrderSummary]
    next_cursor: uuid.UUID | None = Field(description="pass as `after` for the next page; null on the last")


class HistoryQuery(BaseModel):
    after: uuid.UUID = omittable()  # next_cursor of the previous page: its last order
    limit: int = Field(default=20, ge=1, le=100)


class SummaryQuery(BaseModel):
    """Purchases paid from ``since`` (inclusive) to ``until`` (exclusive), by month and
    category; either may be left out (an empty period has no rows)."""

    since: IsoDate = omittable()
    until: IsoDate = omittable()


class SummaryRow(BaseModel):
    month: str = Field(description="YYYY-MM")
    category: str
    orders: int
    items: int
    gross_cents: int


class PurchaseSummary(BaseModel):
    currency: str
    rows: list[SummaryRow]
    total_gross_cents: int
    total_items: int


class VatRow(BaseModel):
    vat_rate: int
    net_cents: int
    vat_cents: int
    gross_cents: int


class Invoice(BaseModel):
    """A paid order's invoice with what Latvian accounting asks of one."""

    number: str
    issued_on: dt.date
    seller: contracts.Seller
    buyer_name: str | None
    order_id: uuid.UUID
    lines: list[OrderLine]
    vat_by_rate: list[VatRow]
    net_cents: int
    vat_cents: int
    gross_cents: int
    currency: str


# --- complaints and staff -----------------------------------------------------------------------

class IdPath(BaseModel):
    id: uuid.UUID


class ComplaintIn(Body):
    description: text(2000, min_length=10, trim=False)


class StaffComplaintIn(Body):
    order_id: uuid.UUID
    description: text(2000, min_length=10, trim=False)
    reason: Reason = Field(description="why support opens it (recorded as a staff access)")


class Resolution(Body):
    resolution: text(2000, min_length=10, trim=False)
    reason: Reason = Field(description="recorded with the staff access")


class Complaint(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    opened_by: str
    description: str
    status: Literal["open", "resolved"]
    resolution: str | None
    opened_at: dt.datetime
    resolved_at: dt.datetime | None


class ComplaintList(BaseModel):
    items: list[Complaint]


class OrderLookup(Body):
    """A customer (``customer_id``) or one order (``order_id``), with the reason for looking."""
    model_config = ConfigDict(json_schema_extra={
        "oneOf": [{"required": ["customer_id"]}, {"required": ["order_id"]}]})

    customer_id: uuid.UUID = omittable()
    order_id: uuid.UUID = omittable()
    reason: Reason = Field(description="why the orders are needed (recorded in the audit log)")

    @model_validator(mode="after")
    def _one_key(self) -> "OrderLookup":
        return either(self, "customer_id", "order_id", "give either customer_id or order_id")


class OrderRecord(BaseModel):
    access_id: uuid.UUID
    orders: list[Order]
    complaints: list[Complaint]
    truncated: bool = Field(description="more orders exist than the 100 newest shown")


class StatusChange(Body):
    reason: Reason


# --- events on orders.events -----------------------------------------------------------------

class OrderEvent(BaseModel):
    order_id: uuid.UUID
    customer_id: uuid.UUID | None
    status: Status
    gross_cents: int
    currency: str
    at: dt.datetime


class OrderCreated(OrderEvent):
    lines: list[OrderLine]


class OrderPaid(OrderEvent):
    """The order is paid; its lines say what was bought (marketing's preference profiles)."""
    lines: list[OrderLine]


class OrderCancelled(OrderEvent):
    refund_cents: int = Field(description="what payments is to refund (0 when nothing was paid)")


class PaymentRejected(BaseModel):
    """A captured payment this order cannot take (it was cancelled meanwhile, or is unknown, or
    the amount differs): payments refunds it in full."""

    payment_id: str
    order_id: uuid.UUID
    reason: str
    at: dt.datetime


class ComplaintChanged(BaseModel):
    complaint_id: uuid.UUID
    order_id: uuid.UUID
    customer_id: uuid.UUID | None
    status: Literal["open", "resolved"]
    at: dt.datetime


class Accepted(BaseModel):
    status: str
    detail: str

