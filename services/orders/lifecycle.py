"""An order's life after checkout: paid (an invoice to the accountant, the shipment to the
chosen carrier), shipped, delivered, cancelled, refunded.

Each step runs in the caller's transaction (an event handler's, a partner callback's, an HTTP
request's), checks that the order may take it (``domain.TRANSITIONS``) and writes its event to
the outbox, so a step and what it tells others commit together or not at all.
"""
from __future__ import annotations

import datetime as dt
import decimal
import uuid

import asyncpg

from services.orders import domain, schemas, store
from services.orders.settings import OrdersSettings
from services.payments.schemas import PaymentSucceeded, RefundSucceeded
from shared.contracts import webhooks as contracts
from shared.contracts.audit import StaffAccessed
from shared.logging import get_logger
from shared.outbox import Outbox
from shared.subjects import Subject, writing_about
from shared.webhooks.outbound import enqueue
from shared.webhooks.registry import Partner, PartnerKind, PartnerRegistry

log = get_logger(__name__)

CENT = decimal.Decimal("0.01")


def euros(cents: int) -> decimal.Decimal:
    return (decimal.Decimal(cents) / 100).quantize(CENT)


def subject_of(order: asyncpg.Record) -> Subject | None:
    """Whom an event about the order is about: the customer, or a guest by e-mail."""
    if order["customer_id"] is not None:
        return Subject.customer(order["customer_id"])
    if order["contact_email"] is not None:
        return Subject.email(order["contact_email"])
    return None


def order_view(order: asyncpg.Record, lines: list[asyncpg.Record]) -> schemas.Order:
    return schemas.Order(
        id=order["id"], status=order["status"], guest=order["guest"], carrier=order["carrier"],
        contact=schemas.ContactOut(name=order["contact_name"], email=order["contact_email"],
                                   phone=order["contact_phone"]),
        address=schemas.AddressOut(line1=order["address_line1"], line2=order["address_line2"],
                                   city=order["address_city"], postal_code=order["address_postal_code"],
                                   country=order["address_country"]),
        lines=[schemas.OrderLine.model_validate(dict(l)) for l in lines],
        **{k: order[k] for k in ("net_cents", "vat_cents", "gross_cents", "refunded_cents", "currency",
                                 "created_at", "paid_at", "shipped_at", "delivered_at", "cancelled_at",
                                 "tracking_number", "invoice_number", "language")})


async def views(conn: asyncpg.Connection, orders: list[asyncpg.Record]) -> list[schemas.Order]:
    lines: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for line in await store.lines_of(conn, [o["id"] for o in orders]):
        lines.setdefault(line["order_id"], []).append(line)
    return [order_view(o, lines.get(o["id"], [])) for o in orders]


def carriers(partners: PartnerRegistry) -> dict[str, Partner]:
    return {p.name: p for p in partners if p.kind == PartnerKind.CARRIER}


def accountant(partners: PartnerRegistry, name: str) -> Partner | None:
    """The accounting partner invoices go to: ``name``, or the only one registered."""
    if name:
        return partners.get(name)
    found = [p for p in partners if p.kind == PartnerKind.ACCOUNTING]
    return found[0] if len(found) == 1 else None


class Lifecycle:
    def __init__(self, outbox: Outbox, partners: PartnerRegistry, settings: OrdersSettings) -> None:
        self.outbox = outbox
        self.partners = partners
        self.settings = settings

    async def locked(self, conn: asyncpg.Connection, order_id: uuid.UUID, *,
                     customer_id: uuid.UUID | None = None) -> asyncpg.Record | None:
        """The order, locked to change it, with its buyer held first, as an erasure takes them
        (the subject, then the orders): locked first, a change would wait for the buyer while
        an erasure holding the buyer waited for the order."""
        order = await store.order(conn, order_id, customer_id=customer_id)
        if order is None:
            return None
        if (subject := subject_of(order)) is not None:
            await writing_about(conn, self.outbox.keys(subject))
        return await store.order(conn, order_id, customer_id=customer_id, lock=True)

    async def move(self, conn: asyncpg.Connection, order: asyncpg.Record, status: str, *,
                   columns: dict | None = None, event: type[schemas.OrderEvent] = schemas.OrderEvent,
                   **extra) -> None:
        """Take the (locked) order to ``status`` and tell others, or raise IllegalTransition."""
        domain.check_transition(order["status"], status)
        await store.set_status(conn, order["id"], status, **(columns or {}))
        await self.outbox.add(conn, f"order_{status}", event(
            order_id=order["id"], customer_id=order["customer_id"], status=status,
            gross_cents=order["gross_cents"], currency=order["currency"],
            at=dt.datetime.now(dt.timezone.utc), **extra).model_dump(mode="json"), subject=subject_of(order))

    async def pay(self, conn: asyncpg.Connection, payment: PaymentSucceeded) -> str:
        """The order is paid: at most once, whatever is redelivered. Its invoice is issued and
        sent to the accountant, and only the chosen carrier receives the shipment."""
        order = await self.locked(conn, payment.order_id)
        if order is None:
            return await self.reject(conn, payment, None, "unknown order")
        if order["status"] != "created":
            if order["payment_id"] == payment.payment_id:
                return "already " + order["status"]  # this payment, applied before
            return await self.reject(conn, payment, order, f"the order is {order['status']}")
        if (payment.amount_cents, payment.currency) != (order["gross_cents"], order["currency"]):
            return await self.reject(conn, payment, order, "the amount does not match the order")
        lines = await store.lines_of(conn, [order["id"]])
        await self.move(conn, order, "paid", columns={"payment_id": payment.payment_id}, event=schemas.OrderPaid,
                        lines=[schemas.OrderLine.model_validate(dict(line)) for line in lines])
        await self.issue_invoice(conn, order, lines)
        await self.ship(conn, order, lines)
        return "paid"

    async def reject(self, conn: asyncpg.Connection, payment: PaymentSucceeded, order: asyncpg.Record | None,
                     reason: str) -> str:
        """A captured payment the order cannot take (cancelled while the customer authenticated
        it, say): payments is told, and refunds it."""
        log.warning("payment rejected; payments refunds it", order=str(payment.order_id),
                    payment=payment.payment_id, reason=reason)
        await self.outbox.add(conn, "payment_rejected", schemas.PaymentRejected(
            payment_id=payment.payment_id, order_id=payment.order_id, reason=reason,
            at=dt.datetime.now(dt.timezone.utc)).model_dump(mode="json"),
            subject=subject_of(order) if order is not None else None)
        return "rejected: " + reason

    async def issue_invoice(self, conn: asyncpg.Connection, order: asyncpg.Record,
                            lines: list[asyncpg.Record]) -> None:
        today = dt.datetime.now(dt.timezone.utc).date()
        seq = await store.next_invoice_seq(conn, today.year)
        invoice = {"id": uuid.uuid4(), "order_id": order["id"], "year": today.year, "seq": seq,
                   "number": domain.invoice_number(today.year, seq), "issued_on": today,
                   "buyer_name": order["contact_name"], "net_cents": order["net_cents"],
                   "vat_cents": order["vat_cents"], "gross_cents": order["gross_cents"],
                   "currency": order["currency"], "webhook_id": None}
        partner = accountant(self.partners, self.settings.accountant)
        if partner is None:
            log.warning("no accounting partner registered; the invoice is kept, not sent",
                        invoice=invoice["number"])
        else:
            invoice["webhook_id"] = await enqueue(conn, partner, contracts.InvoiceIssued(
                invoice_id=invoice["id"], number=invoice["number"], order_id=order["id"], issued_on=today,
                seller=self.seller(),
                currency=order["currency"], customer_name=order["contact_name"], billing_address=None,
                lines=[contracts.InvoiceLine(
                    description=l["name"], quantity=l["quantity"], unit_price=euros(l["unit_price_cents"]),
                    vat_rate=decimal.Decimal(l["vat_rate"]) / 100, vat=euros(l["vat_cents"]),
                    total=euros(l["gross_cents"])) for l in lines],
                net=euros(order["net_cents"]), vat=euros(order["vat_cents"]), gross=euros(order["gross_cents"])))
        await store.add_invoice(conn, invoice)

    async def ship(self, conn: asyncpg.Connection, order: asyncpg.Record, lines: list[asyncpg.Record]) -> None:
        """Name, phone, e-mail, address and contents go to the carrier the customer chose, and
        to no other (P13)."""
        carrier = carriers(self.partners).get(order["carrier"])
        if carrier is None:  # unregistered since checkout: an operator must act; retried, then dead-lettered
            raise LookupError(f"carrier {order['carrier']!r} of order {order['id']} is not registered")
        shipment_id = uuid.uuid4()
        contents = ", ".join(f"{l['quantity']} x {l['name']}" for l in lines)
        weight = await store.parcel_weight(conn, order["id"])
        webhook_id = await enqueue(conn, carrier, contracts.ShipmentCreated(
            shipment_id=shipment_id, order_id=order["id"],
            recipient=contracts.Contact(name=order["contact_name"], email=order["contact_email"],
                                        phone=order["contact_phone"]),
            address=contracts.Address(line1=order["address_line1"], line2=order["address_line2"],
                                      city=order["address_city"], postcode=order["address_postal_code"],
                                      country=order["address_country"]),
            parcels=[contracts.Parcel(weight_grams=int(weight), contents=contents[:200])],
            language=order["language"]))
        await store.add_shipment(conn, shipment_id, order["id"], carrier.name, webhook_id)

    async def cancel(self, conn: asyncpg.Connection, order: asyncpg.Record) -> int:
        """Cancel the (locked) order: its stock goes back, and what was paid is to be refunded
        (payments does it on ``order_cancelled``). Returns the amount to refund."""
        refund = order["gross_cents"] - order["refunded_cents"] if order["status"] == "paid" else 0
        domain.check_transition(order["status"], "cancelled")
        # The stock before the buyer's event counter, the order a checkout takes them in.
        await store.return_stock(conn, order["id"])
        await self.move(conn, order, "cancelled", event=schemas.OrderCancelled, refund_cents=refund)
        return refund

    async def refunded(self, conn: asyncpg.Connection, refund: RefundSucceeded) -> str:
        order = await self.locked(conn, refund.order_id)
        if order is None:
            return "unknown order"
        if order["payment_id"] is not None and order["payment_id"] != refund.payment_id:
            return "a refund of another payment (one this order did not take)"
        await store.add_refund(conn, order["id"], refund.refunded_total_cents)
        if refund.refunded_total_cents >= order["gross_cents"] and order["status"] in ("paid", "shipped", "delivered"):
            await self.move(conn, order, "refunded")
            return "refunded"
        return "partly refunded"

    async def carrier_reply(self, conn: asyncpg.Connection, partner: Partner,
                            reply: contracts.ShipmentAccepted | contracts.ShipmentDelivered) -> None:
        shipment = await store.shipment(conn, reply.shipment_id, partner.name)
        if shipment is None or shipment["webhook_id"] != reply.in_reply_to:
            raise LookupError("no such shipment of this carrier")
        order = await self.locked(conn, shipment["order_id"])
        if isinstance(reply, contracts.ShipmentAccepted):
            await store.shipment_accepted(conn, shipment["id"], reply.tracking_number)
            wanted = "shipped"
        else:
            await store.shipment_delivered(conn, shipment["id"])
            wanted = "delivered"
        if wanted in domain.TRANSITIONS[order["status"]]:
            await self.move(conn, order, wanted)
        else:  # late, repeated, or about a cancelled order: recorded, the order stays as it is
            log.info("carrier report does not move the order", order=str(order["id"]),
                     status=order["status"], report=reply.event_type)

    # --- invoices, complaints, staff access ------------------------------------------------------

    def seller(self) -> contracts.Seller:
        s = self.settings
        return contracts.Seller(name=s.seller_name, registration_number=s.seller_registration_number,
                                vat_number=s.seller_vat_number, address=s.seller_address)

    def invoice_view(self, invoice: asyncpg.Record, lines: list[asyncpg.Record]) -> schemas.Invoice:
        by_rate: dict[int, list[asyncpg.Record]] = {}
        for line in lines:
            by_rate.setdefault(line["vat_rate"], []).append(line)
        return schemas.Invoice(
            number=invoice["number"], issued_on=invoice["issued_on"], buyer_name=invoice["buyer_name"],
            seller=self.seller(),
            order_id=invoice["order_id"], lines=[schemas.OrderLine.model_validate(dict(l)) for l in lines],
            vat_by_rate=[schemas.VatRow(vat_rate=rate, **{k: sum(l[k] for l in group) for k in
                                                          ("net_cents", "vat_cents", "gross_cents")})
                         for rate, group in sorted(by_rate.items(), reverse=True)],
            **{k: invoice[k] for k in ("net_cents", "vat_cents", "gross_cents", "currency")})

    async def open_complaint(self, conn: asyncpg.Connection, order: asyncpg.Record, opened_by: str,
                             description: str) -> schemas.Complaint:
        """A complaint holds the customer's order data from now until the limitation period
        after it is resolved (P24)."""
        row = await store.add_complaint(conn, order["id"], order["customer_id"], opened_by, description)
        await self.complaint_changed(conn, order, row)
        return schemas.Complaint.model_validate(dict(row))

    async def resolve_complaint(self, conn: asyncpg.Connection, complaint: asyncpg.Record, resolution: str,
                                staff_id: uuid.UUID) -> schemas.Complaint:
        row = await store.resolve_complaint(conn, complaint["id"], resolution, staff_id)
        await self.complaint_changed(conn, await store.order(conn, complaint["order_id"]), row)
        return schemas.Complaint.model_validate(dict(row))

    async def complaint_changed(self, conn: asyncpg.Connection, order: asyncpg.Record, complaint: asyncpg.Record) -> None:
        await self.outbox.add(conn, f"complaint_{'opened' if complaint['status'] == 'open' else 'resolved'}",
                              schemas.ComplaintChanged(
                                  complaint_id=complaint["id"], order_id=order["id"], customer_id=order["customer_id"],
                                  status=complaint["status"], at=complaint["resolved_at"] or complaint["opened_at"],
                              ).model_dump(mode="json"), subject=subject_of(order))

    async def staff_accessed(self, conn: asyncpg.Connection, staff_id: uuid.UUID, customer_id: uuid.UUID | None,
                             order_id: uuid.UUID | None, reason: str, categories: list[str]) -> uuid.UUID:
        """Record a staff look at a customer's orders, and tell the audit log (P16). The event
        names no subject: the record outlives the customer's erasure."""
        access = await store.record_staff_access(conn, staff_id, customer_id, order_id, reason, categories)
        await self.outbox.add(conn, "staff_accessed", StaffAccessed(
            access_id=access["id"], staff_id=staff_id, customer_id=customer_id, reason=reason,
            categories=categories, at=access["at"], about=order_id and f"order {order_id}").model_dump(mode="json"))
        log.info("staff looked at orders", staff=str(staff_id), access=str(access["id"]))
        return access["id"]
