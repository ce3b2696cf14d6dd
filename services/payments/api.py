"""The payments service's HTTP routes: paying an order (account holders and guests), saved
cards, the membership, staff refunds, the PSP's webhooks and what a browser needs to
tokenise a card at the PSP.

Card details never come here: a browser sends them to the PSP (``GET /v1/psp/config`` says
where, with which key) and sends us the token it gets back. The shared view has checked the
caller and validated the path, query and body before a handler here runs; a body holding a
card-like number anywhere has been refused by then (``shared.inputs``), without echoing it.
"""
from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import asyncpg
import stripe
from aiohttp import web
from pydantic import ValidationError

from services.payments import domain, psp, schemas, store
from services.payments.billing import AlreadyMember
from services.payments.charges import acts_on
from shared import inputs
from shared.auth import Principal
from shared.contracts.audit import StaffAccessed
from shared.http import CUSTOMER, Endpoint, FieldError, HTTPProblem, read_body, staff
from shared.inbox import first_delivery
from shared.logging import get_logger
from shared.messaging import BrokerUnavailable, RpcTimeout

if TYPE_CHECKING:
    from services.payments.service import PaymentsService

log = get_logger(__name__)

# What a staff refund acts on (recorded in the audit log, P16).
REFUND_RECORD = ("payments", "refunds")

MAX_WEBHOOK_BYTES = 256 * 1024
NO_PAYMENT = HTTPProblem(404, "No such payment", "There is no such payment in your account.")
PSP_DOWN = HTTPProblem(503, "The payment provider cannot be reached now", "Nothing was charged. Try again in a moment.",
                       headers={"Retry-After": "10"})


def customer_of(caller: Principal) -> uuid.UUID:
    return uuid.UUID(caller.subject)


def missing(field: str, what: str) -> HTTPProblem:
    return HTTPProblem(404, f"No such {what}", f"{field} names no {what}.",
                       [FieldError(field=field, message=f"no such {what}", type="not_found")])


def card_label(brand: str | None, last4: str | None) -> str | None:
    return f"{brand} •••• {last4}" if brand and last4 else None


def payment_view(row: asyncpg.Record) -> schemas.Payment:
    failure = None
    if row["status"] in ("failed", "canceled") and (row["failure_code"] or row["failure_message"]):
        failure = schemas.Failure(code=row["failure_code"], message=row["failure_message"])
    return schemas.Payment(
        id=row["id"], order_id=row["order_id"], membership_id=row["membership_id"], status=row["status"],
        amount_cents=row["amount_cents"], refunded_cents=row["refunded_cents"], currency=row["currency"],
        card=card_label(row["card_brand"], row["card_last4"]), action_url=row["action_url"], failure=failure,
        created_at=row["created_at"], succeeded_at=row["succeeded_at"])


def card_view(row: asyncpg.Record) -> schemas.CardOut:
    return schemas.CardOut(**{k: row[k] for k in ("id", "brand", "last4", "exp_month", "exp_year", "created_at")})


def answered(payment: asyncpg.Record, status: int = 201) -> web.Response:
    """The payment as it stands; a declined one is a 402 whose detail says why (nothing was
    charged; pay again with another card)."""
    if payment["status"] == "failed":
        raise HTTPProblem(402, "Payment declined", f"{payment['failure_message'] or 'The card was declined.'} "
                          "Nothing was charged; pay again with another card.",
                          [FieldError(field="body.payment_method", message=payment["failure_code"] or "declined",
                                      type="card_declined")])
    return web.Response(status=status, text=payment_view(payment).model_dump_json(), content_type="application/json")


class PaymentsApi:
    def __init__(self, service: PaymentsService) -> None:
        self.pool = service.pool
        self.rpc = service.rpc
        self.settings = service.settings
        self.psp: psp.Psp = service.psp
        self.charges = service.charges
        self.billing = service.billing
        self.outbox = service.outbox

    # --- cards ---------------------------------------------------------------------------------

    async def token(self, token: str, customer_id: uuid.UUID | None, field: str = "body.payment_method") -> psp.Card:
        """The card behind a PSP token, if it is the caller's to use: a new token, or one
        attached to the caller's own PSP customer (anyone else's reads as missing)."""
        try:
            card = await self.psp.card(token)
        except psp.Rejected:
            raise missing(field, "card token at the payment provider")
        except psp.Unavailable:
            raise PSP_DOWN
        if card.customer is not None:
            async with self.pool.acquire() as conn:
                own = customer_id and await store.psp_customer(conn, customer_id)
            if card.customer != own:
                raise missing(field, "card token at the payment provider")
        return card

    async def psp_customer(self, customer_id: uuid.UUID) -> str:
        """The customer's id at the PSP, made the first time it is needed."""
        async with self.pool.acquire() as conn:
            found = await store.psp_customer(conn, customer_id)
        if found:
            return found
        try:
            made = await self.psp.create_customer(domain.customer_key(customer_id), str(customer_id))
        except (psp.Unavailable, psp.Rejected):
            raise PSP_DOWN
        async with self.pool.acquire() as conn:
            return await store.add_psp_customer(conn, customer_id, made)

    async def save(self, customer_id: uuid.UUID, card: psp.Card) -> asyncpg.Record:
        psp_customer = await self.psp_customer(customer_id)
        if card.customer is None:
            try:
                await self.psp.attach(card.payment_method_id, psp_customer)
            except psp.Declined as exc:
                raise HTTPProblem(402, "Card refused", f"{exc.message} Use another card.")
            except psp.Rejected:
                raise missing("body.payment_method", "card token at the payment provider")
            except psp.Unavailable:
                raise PSP_DOWN
        async with self.pool.acquire() as conn:
            saved = await store.add_card(conn, customer_id, card)
        if saved is None:
            raise missing("body.payment_method", "card token at the payment provider")
        return saved

    async def list_cards(self, request: web.Request, caller: Principal) -> schemas.CardList:
        async with self.pool.acquire() as conn:
            rows = await store.cards(conn, customer_of(caller))
        return schemas.CardList(items=[card_view(r) for r in rows])

    async def add_card(self, request: web.Request, caller: Principal, body: schemas.CardIn) -> schemas.CardOut:
        customer_id = customer_of(caller)
        return card_view(await self.save(customer_id, await self.token(body.payment_method, customer_id)))

    async def remove_card(self, request: web.Request, caller: Principal, params: schemas.IdPath) -> web.Response:
        customer_id = customer_of(caller)
        async with self.pool.acquire() as conn:
            card = await store.card(conn, params.id, customer_id)
            membership = await store.membership_of(conn, customer_id)
        if card is None:
            raise HTTPProblem(404, "No such card", "There is no such card in your account.")
        if membership and membership["status"] in ("incomplete", "active", "past_due") and membership["card_id"] == card["id"]:
            raise HTTPProblem(409, "The card pays your membership",
                              "Cancel the membership first, or let it end, then remove the card.")
        try:
            await self.psp.detach(card["psp_payment_method_id"])
        except (psp.Unavailable, psp.Declined, psp.Rejected):
            raise PSP_DOWN
        async with self.pool.acquire() as conn:
            await store.remove_card(conn, card["id"])
        return web.Response(status=204)

    # --- paying an order -----------------------------------------------------------------------

    async def order(self, order_id: uuid.UUID, customer_id: uuid.UUID | None, amount: int, currency: str) -> dict:
        """The order to pay, if it is the caller's (a guest's order for a guest), open, and for
        this amount."""
        try:
            order = await self.rpc.call("orders", "order_for_payment", str(order_id), timeout=10)
        except (BrokerUnavailable, RpcTimeout):
            raise HTTPProblem(503, "Orders cannot be read now", "Nothing was charged. Try again in a moment.",
                              headers={"Retry-After": "5"})
        if order is None or order["customer_id"] != (customer_id and str(customer_id)):
            raise missing("body.order_id", "order of yours")
        if order["status"] != "created":
            raise HTTPProblem(409, "Order not open for payment", f"The order is {order['status']}.")
        if (amount, currency) != (order["gross_cents"], order["currency"]):
            raise HTTPProblem(422, "Amount does not match the order",
                              f"The order's total is {order['gross_cents']} cents {order['currency']}.",
                              [FieldError(field="body.amount_cents", message="does not match the order's total",
                                          type="value_error")])
        return order

    async def pay_order(self, order: dict, customer_id: uuid.UUID | None, card: psp.Card,
                        psp_customer: str | None) -> web.Response:
        order_id = uuid.UUID(order["order_id"])
        async with self.pool.acquire() as conn, conn.transaction():
            attempt = await store.next_attempt_of_order(conn, order_id)
            try:
                payment = await self.charges.record(
                    conn, key=domain.order_key(order_id, attempt), amount=order["gross_cents"],
                    currency=order["currency"], card=card, customer_id=customer_id, psp_customer=psp_customer,
                    off_session=False, order_id=order_id, attempt=attempt)
            except asyncpg.UniqueViolationError:
                raise HTTPProblem(409, "Already being paid", "This order has a payment in progress or done.")
        return answered(await self.charges.send(payment))

    async def pay(self, request: web.Request, caller: Principal, body: schemas.PayOrder) -> web.Response:
        customer_id = customer_of(caller)
        order = await self.order(body.order_id, customer_id, body.amount_cents, body.currency)
        psp_customer = None
        if body.card_id is not None:
            async with self.pool.acquire() as conn:
                saved = await store.card(conn, body.card_id, customer_id)
                psp_customer = await store.psp_customer(conn, customer_id)
            if saved is None:
                raise missing("body.card_id", "saved card of yours")
            card = psp.Card(payment_method_id=saved["psp_payment_method_id"], customer=psp_customer,
                            brand=saved["brand"], last4=saved["last4"], exp_month=saved["exp_month"],
                            exp_year=saved["exp_year"])
        else:
            card = await self.token(body.payment_method, customer_id)
            if body.save_card or card.customer is not None:
                psp_customer = await self.psp_customer(customer_id)
                if body.save_card:
                    await self.save(customer_id, card)
        return await self.pay_order(order, customer_id, card, psp_customer)

    async def guest_pay(self, request: web.Request, body: schemas.GuestPay) -> web.Response:
        order = await self.order(body.order_id, None, body.amount_cents, body.currency)
        return await self.pay_order(order, None, await self.token(body.payment_method, None), None)

    async def guest_payment(self, request: web.Request, params: schemas.IdPath) -> schemas.Payment:
        async with self.pool.acquire() as conn:
            row = await store.payment(conn, params.id)
        if row is None or row["customer_id"] is not None or row["order_id"] is None:
            raise HTTPProblem(404, "No such payment", "No guest payment has this id.")
        return payment_view(row)

    # --- the customer's payments ---------------------------------------------------------------

    async def history(self, request: web.Request, caller: Principal, query: schemas.PageQuery) -> schemas.PaymentPage:
        customer_id = customer_of(caller)
        async with self.pool.acquire() as conn:
            after = None
            if query.after is not None:
                last = await store.payment(conn, query.after, customer_id=customer_id)
                if last is None:
                    raise missing("query.after", "payment of yours")
                after = (last["created_at"], last["id"])
            rows = await store.history(conn, customer_id, after, query.limit + 1)
        page = rows[:query.limit]
        return schemas.PaymentPage(items=[payment_view(r) for r in page],
                                   next_cursor=page[-1]["id"] if len(rows) > query.limit else None)

    async def read_payment(self, request: web.Request, caller: Principal, params: schemas.IdPath) -> schemas.Payment:
        async with self.pool.acquire() as conn:
            row = await store.payment(conn, params.id, customer_id=customer_of(caller))
        if row is None:
            raise NO_PAYMENT
        return payment_view(row)

    # --- the membership ------------------------------------------------------------------------

    async def membership_view(self, conn: asyncpg.Connection, row: asyncpg.Record) -> schemas.Membership:
        payment = None
        if row["status"] == "incomplete":
            first = await store.period_payment(conn, row["id"], 1, 0)
            payment = first and payment_view(first)
        return schemas.Membership(payment=payment, **{k: row[k] for k in schemas.Membership.model_fields
                                                      if k != "payment"})

    async def read_membership(self, request: web.Request, caller: Principal) -> schemas.Membership:
        async with self.pool.acquire() as conn:
            row = await store.membership_of(conn, customer_of(caller))
            if row is None:
                raise HTTPProblem(404, "No membership", "You have not been a member.")
            return await self.membership_view(conn, row)

    async def subscribe(self, request: web.Request, caller: Principal, body: schemas.Subscribe) -> web.Response:
        customer_id = customer_of(caller)
        async with self.pool.acquire() as conn:
            live = await store.membership_of(conn, customer_id)
        if live is not None and live["status"] in ("incomplete", "active", "past_due"):
            raise HTTPProblem(409, "Already a member", "You have a membership already.")
        if body.card_id is not None:
            async with self.pool.acquire() as conn:
                card = await store.card(conn, body.card_id, customer_id)
            if card is None:
                raise missing("body.card_id", "saved card of yours")
        else:
            card = await self.save(customer_id, await self.token(body.payment_method, customer_id))
        try:
            membership = await self.billing.subscribe(customer_id, card, await self.psp_customer(customer_id))
        except AlreadyMember:
            raise HTTPProblem(409, "Already a member", "You have a membership already.")
        async with self.pool.acquire() as conn:
            if membership["status"] == "cancelled":
                first = await store.period_payment(conn, membership["id"], 1, 0)
                answered(first)  # the first month's charge was declined: a 402 saying why
            view = await self.membership_view(conn, membership)
        return web.Response(status=201, text=view.model_dump_json(), content_type="application/json")

    async def cancel_membership(self, request: web.Request, caller: Principal) -> schemas.Membership:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.membership_of(conn, customer_of(caller), lock=True)
            if row is None or row["status"] not in ("incomplete", "active", "past_due"):
                raise HTTPProblem(409, "No membership to cancel", "You have no membership running.")
            if row["cancel_at_period_end"]:
                raise HTTPProblem(409, "Already cancelled", "Your membership ends at the end of the period.")
            return await self.membership_view(conn, await self.billing.cancel(conn, row))

    # --- staff ---------------------------------------------------------------------------------

    async def refund(self, request: web.Request, caller: Principal, body: schemas.RefundIn) -> schemas.Refund:
        """A refund to the original card (accounting, admin): recorded with who and why."""
        async with self.pool.acquire() as conn, conn.transaction():
            if body.payment_id is not None:
                payment = await store.payment(conn, body.payment_id, lock=True)
            else:
                payment = await store.paid_payment_of_order(conn, body.order_id, lock=True)
            if payment is None or payment["status"] != "succeeded":
                raise HTTPProblem(404, "No paid payment", "No captured payment matches.")
            try:
                refund = await self.charges.reserve_refund(conn, payment, body.amount_cents, body.reason,
                                                           f"staff {caller.subject}")
            except domain.RefundTooLarge as exc:
                raise HTTPProblem(409, "More than is left to refund",
                                  f"{exc.left} cents of this payment are left to refund.")
            # No subject: the audit record outlives the customer's erasure (P16).
            await self.outbox.add(conn, "staff_accessed", StaffAccessed(
                access_id=refund["id"], staff_id=uuid.UUID(caller.subject), customer_id=payment["customer_id"],
                reason=body.reason, categories=list(REFUND_RECORD), at=refund["created_at"],
                about=f"payment {payment['id']}").model_dump(mode="json"))
        refund = await self.charges.send_refund(refund)
        if refund["status"] == "failed":
            raise HTTPProblem(409, "Refund refused by the payment provider", refund["failure_message"])
        return schemas.Refund.model_validate(dict(refund))

    # --- the PSP -------------------------------------------------------------------------------

    async def config(self, request: web.Request) -> schemas.PspConfig:
        return schemas.PspConfig(publishable_key=self.settings.psp_publishable_key,
                                 api_base=self.settings.psp_api_base)

    async def webhook(self, request: web.Request) -> schemas.EventReceived:
        """A PSP event: its Stripe-Signature checked (constant time, 300 s window), applied once."""
        raw = await read_body(request, MAX_WEBHOOK_BYTES)
        signature = request.headers.get("Stripe-Signature")
        if not signature:
            raise HTTPProblem(401, "Signature required", "Sign the event with the Stripe-Signature header.")
        try:
            self.psp.verify(raw, signature)
        except stripe.SignatureVerificationError:
            raise HTTPProblem(401, "Signature not accepted", "The signature does not match or is outside the time window.")
        except ValueError:
            raise HTTPProblem(400, "Malformed event", "The event is not JSON.")
        # Signed by the PSP: read as sent (the card-number refusal of our inputs is for what
        # people send us; a PSP event may carry long network ids).
        try:
            event = schemas.StripeEvent.model_validate(inputs.loads(raw))
        except (inputs.InputError, ValidationError):
            raise HTTPProblem(400, "Malformed event", "The event is not one the PSP sends.")
        obj = event.data.get("object")
        if not acts_on(event.type) or not isinstance(obj, dict):
            return schemas.EventReceived(id=event.id, applied=False)  # acknowledged; nothing to apply
        async with self.pool.acquire() as conn, conn.transaction():
            if not await first_delivery(conn, "payments.psp_webhook", event.id):
                return schemas.EventReceived(id=event.id, applied=False)
            applied = await self.charges.on_psp_event(conn, event.type, obj)
        return schemas.EventReceived(id=event.id, applied=applied)

    def endpoints(self) -> list[Endpoint]:
        E, me, path = Endpoint, ["me"], schemas.IdPath
        return [
            E("GET", "/v1/psp/config", self.config, "Where and with which key a browser tokenises a card",
              response=schemas.PspConfig, tags=["checkout"]),
            E("POST", "/v1/payments", self.pay, "Pay one of your orders (a PSP card token or a saved card)",
              body=schemas.PayOrder, response=schemas.Payment, status=201, auth=CUSTOMER,
              problems=(402, 404, 409, 503), tags=["checkout"]),
            E("POST", "/v1/guest-payments", self.guest_pay, "Pay a guest order with a PSP card token",
              body=schemas.GuestPay, response=schemas.Payment, status=201, problems=(402, 404, 409, 503),
              tags=["checkout"]),
            E("GET", "/v1/guest-payments/{id}", self.guest_payment, "A guest payment, as it stands", params=path,
              response=schemas.Payment, problems=(404,), tags=["checkout"]),
            E("GET", "/v1/me/payments", self.history, "Your payments, newest first", query=schemas.PageQuery,
              response=schemas.PaymentPage, auth=CUSTOMER, problems=(404,), tags=me),
            E("GET", "/v1/me/payments/{id}", self.read_payment, "One of your payments", params=path,
              response=schemas.Payment, auth=CUSTOMER, problems=(404,), tags=me),
            E("GET", "/v1/me/cards", self.list_cards, "Your saved cards (brand, last four digits, expiry)",
              response=schemas.CardList, auth=CUSTOMER, tags=me),
            E("POST", "/v1/me/cards", self.add_card, "Save a card (a PSP card token)", body=schemas.CardIn,
              response=schemas.CardOut, status=201, auth=CUSTOMER, problems=(402, 404, 503), tags=me),
            E("DELETE", "/v1/me/cards/{id}", self.remove_card, "Remove a saved card (also at the PSP)",
              params=path, status=204, auth=CUSTOMER, problems=(404, 409, 503), tags=me),
            E("GET", "/v1/me/membership", self.read_membership, "Your membership", response=schemas.Membership,
              auth=CUSTOMER, problems=(404,), tags=me),
            E("POST", "/v1/me/membership", self.subscribe, "Become a member (charged monthly to a saved card)",
              body=schemas.Subscribe, response=schemas.Membership, status=201, auth=CUSTOMER,
              problems=(402, 404, 409, 503), tags=me),
            E("POST", "/v1/me/membership/cancel", self.cancel_membership,
              "Cancel your membership (a paid month runs to its end)", response=schemas.Membership,
              auth=CUSTOMER, problems=(409,), tags=me),
            E("POST", "/v1/staff/refunds", self.refund, "Refund a payment to its card (accounting, admin)",
              body=schemas.RefundIn, response=schemas.Refund, status=201, auth=staff("accounting", "admin"),
              problems=(404, 409), tags=["staff"], audited=REFUND_RECORD),
            E("POST", "/v1/psp/webhooks", self.webhook, "An event from the PSP (Stripe-Signature signed)",
              body=schemas.StripeEvent, response=schemas.EventReceived, raw_body=True, problems=(401,),
              tags=["psp"]),
        ]
