"""The orders service's HTTP routes: the catalogue, checkout (account holders and guests), the
customer's orders, purchase summary, invoices and complaints, and the staff console's.

The shared view has checked the caller against each route's ``auth`` and validated the path,
query and body before a handler here runs. Prices, VAT and totals are computed here from the
catalogue: a body cannot carry a price (its models forbid unknown fields).
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import TYPE_CHECKING, Any, Iterable

import asyncpg
from aiohttp import web

from services.orders import domain, schemas, store
from services.orders.lifecycle import Lifecycle, carriers, order_view, subject_of, views
from shared.auth import Principal
from shared.batching import GroupCommit
from shared.http import CUSTOMER, Endpoint, FieldError, HTTPProblem, staff
from shared.logging import get_logger
from shared.messaging import BrokerUnavailable, RpcTimeout
from shared.subjects import writing_about

if TYPE_CHECKING:
    from services.orders.service import OrdersService

log = get_logger(__name__)

NOT_FOUND = HTTPProblem(404, "No such order", "There is no such order in your account.")
CATALOGUE_MEMORY = 10_000  # products remembered for pricing (the catalogue is small)
CHECKOUT_BATCH = 64  # checkouts stored by one statement at most
KEYS_MEMORY = 10_000  # Idempotency-Keys remembered as used
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# The header is described here rather than declared as a parameter: a generator of schema-valid
# requests would send one key with two bodies, which is rightly refused (422).
IDEMPOTENCY_TEXT = (
    "Send an `Idempotency-Key` header (1 to 255 visible ASCII characters, a UUID for instance) "
    "to make the request safe to repeat: the same key with the same body answers 201 with the "
    "order it made the first time (and `Idempotent-Replayed: true`) for 24 hours; the same key "
    "with another body is refused with 422. Keys are per customer (guests share one scope).")
LOOKUP_LIMIT = 100
# What a staff look-up of a customer's orders shows (recorded in the audit log, P16).
ORDER_RECORD = ("orders", "contact details", "delivery address", "complaints")


def customer_of(caller: Principal) -> uuid.UUID:
    return uuid.UUID(caller.subject)


def invalid(field: str, message: str, title: str = "Invalid request body") -> HTTPProblem:
    return HTTPProblem(422, title, "Correct the fields listed in errors and send the request again.",
                       [FieldError(field=field, message=message, type="value_error")])


def missing(field: str, what: str) -> HTTPProblem:
    """A well-formed reference to something that does not exist (a 404, as for a path)."""
    return HTTPProblem(404, f"No such {what}", f"{field} names no {what} we have.",
                       [FieldError(field=field, message=f"no such {what}", type="not_found")])


def created(view: schemas.Order, *, replayed: bool) -> web.Response:
    """201 with the order; ``Idempotent-Replayed`` when it was made by an earlier request."""
    return web.Response(status=201, text=view.model_dump_json(), content_type="application/json",
                        headers={"Idempotent-Replayed": "true"} if replayed else None)


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise invalid("header.Idempotency-Key", "1 to 255 visible ASCII characters", "Invalid header")
    return key


class OrdersApi:
    def __init__(self, service: OrdersService) -> None:
        self.pool = service.pool
        self.rpc = service.rpc
        self.partners = service.partners
        self.outbox = service.outbox
        self.lifecycle: Lifecycle = service.lifecycle
        # The catalogue as last seen, by product id: a checkout is priced from it and stored in
        # one statement that checks each product is still so (else it looks again, locked).
        self.catalogue: dict[uuid.UUID, asyncpg.Record] = {}
        # Idempotency-Keys used here lately: a retry with one would fail the batch it joined.
        self.keys_used: dict[tuple[str, str], None] = {}
        # Checkouts that arrive together are stored together: one statement, one commit.
        self.checkouts = GroupCommit(self.store_checkouts, limit=CHECKOUT_BATCH, key=lambda p: p.event.subject)

    def used(self, claims: Iterable[tuple[str, str, bytes] | None]) -> None:
        self.keys_used.update(((c[0], c[1]), None) for c in claims if c is not None)
        while len(self.keys_used) > KEYS_MEMORY:
            del self.keys_used[next(iter(self.keys_used))]

    def remember(self, products: Iterable[asyncpg.Record]) -> None:
        if len(self.catalogue) > CATALOGUE_MEMORY:
            self.catalogue.clear()
        self.catalogue.update((p["id"], p) for p in products)

    # --- the catalogue ------------------------------------------------------------------------

    async def list_products(self, request: web.Request, query: schemas.ProductQuery) -> schemas.ProductList:
        async with self.pool.acquire() as conn:
            rows = await store.active_products(conn, query.category, query.after, query.limit + 1)
        items = [schemas.Product.model_validate(dict(r)) for r in rows[:query.limit]]
        return schemas.ProductList(items=items, next_cursor=items[-1].sku if len(rows) > query.limit else None)

    async def read_product(self, request: web.Request, params: schemas.IdPath) -> schemas.Product:
        async with self.pool.acquire() as conn:
            row = await store.active_product(conn, params.id)
        if row is None:
            raise HTTPProblem(404, "No such product", "The catalogue has no such product.")
        return schemas.Product.model_validate(dict(row))

    async def list_carriers(self, request: web.Request) -> schemas.CarrierList:
        return schemas.CarrierList(items=[schemas.Carrier(name=p.name, description=p.description)
                                          for p in carriers(self.partners).values()])

    async def add_product(self, request: web.Request, caller: Principal, body: schemas.ProductIn) -> schemas.Product:
        async with self.pool.acquire() as conn:
            row = await store.add_product(conn, body.model_dump())
        if row is None:
            raise HTTPProblem(409, "SKU already in use", f"A product with sku {body.sku} exists.")
        return schemas.Product.model_validate(dict(row))

    async def change_product(self, request: web.Request, caller: Principal, params: schemas.IdPath,
                             body: schemas.ProductChange) -> schemas.Product:
        async with self.pool.acquire() as conn:
            row = await store.change_product(conn, params.id, body.model_dump(exclude_unset=True))
        if row is None:
            raise HTTPProblem(404, "No such product", "The catalogue has no such product.")
        return schemas.Product.model_validate(dict(row))

    # --- checkout -----------------------------------------------------------------------------

    def carrier(self, name: str) -> str:
        if name not in carriers(self.partners):
            raise missing("body.carrier", "carrier (GET /v1/carriers lists them)")
        return name

    async def checkout(self, request: web.Request, caller: Principal, body: schemas.Checkout) -> web.Response:
        customer_id = customer_of(caller)
        key = idempotency_key(request)
        carrier = self.carrier(body.carrier)
        try:
            details = await self.rpc.call("accounts", "checkout_details", str(customer_id),
                                          None if body.address_id is None else str(body.address_id), timeout=10)
        except (BrokerUnavailable, RpcTimeout):
            raise HTTPProblem(503, "Your account cannot be read now", "Try again in a moment.",
                              headers={"Retry-After": "5"})
        if details is None:
            raise HTTPProblem(401, "Account closed", "Sign in again.")
        if body.address_id is not None:
            book = details["address"]
            if book is None:
                raise missing("body.address_id", "address in your address book")
            name, phone = book["recipient"], book["phone"] or details["phone"]
            address = {k: book[k] for k in ("line1", "line2", "city", "postal_code", "country")}
        else:
            name, phone, address = details["name"], details["phone"], body.address.model_dump()
        if not phone:
            raise HTTPProblem(409, "No phone number", "The carrier needs one: add it to your profile or the address.")
        contact = {"contact_name": name, "contact_email": details["email"], "contact_phone": phone,
                   "language": details.get("language", "lv")}
        return await self.place(customer_id, key, body.model_dump(mode="json"), carrier, contact, address, body.lines)

    async def guest_checkout(self, request: web.Request, body: schemas.GuestCheckout) -> web.Response:
        key = idempotency_key(request)
        contact = {"contact_name": body.contact.name, "contact_email": body.contact.email,
                   "contact_phone": body.contact.phone, "language": body.language}
        return await self.place(None, key, body.model_dump(mode="json"), self.carrier(body.carrier),
                                contact, body.address.model_dump(), body.lines)

    async def place(self, customer_id: uuid.UUID | None, key: str | None, request_body: dict[str, Any],
                    carrier: str, contact: dict[str, str], address: dict[str, Any],
                    lines: list[schemas.LineIn]) -> web.Response:
        """Reserve the stock and store the order, its lines, its key and ``order_created`` at
        once: two customers racing for the last item get one order and one 409, and a failure
        leaves nothing behind.

        Priced from the catalogue as this instance last saw it, the order goes with the other
        checkouts of the moment into one statement (``store_checkouts``), which stores none of
        them unless every product is still so and in stock, and every key unused. Else (a
        product not seen yet, changed or short; a key used before) a transaction looks again:
        it answers the key's first order, or locks and reads the products, refuses what it must
        (404, 409) and stores the order."""
        wanted = domain.quantities((line.product_id, line.quantity) for line in lines)
        claim = None if key is None else (str(customer_id or "guest"), key, domain.request_hash(request_body))
        head = {"id": uuid.uuid4(), "customer_id": customer_id, "carrier": carrier, **contact,
                **{f"address_{k}": v for k, v in address.items()}, "currency": domain.CURRENCY,
                "created_at": dt.datetime.now(dt.timezone.utc)}  # stamped here, so the event can carry it
        known = [self.catalogue.get(product_id) for product_id in wanted]
        # A product last seen inactive or short, or a key used before, would fail the whole batch:
        # that checkout looks again alone.
        if all(p is not None and p["active"] and p["stock"] >= wanted[p["id"]] for p in known) \
                and (claim is None or claim[:2] not in self.keys_used):
            order, priced, view, event = self.priced(head, {p["id"]: p for p in known}, wanted)
            pending = self.outbox.event("order_created", event, subject_of(order))
            if await self.checkouts.submit(store.Priced(order, priced, claim, pending)):
                return created(view, replayed=False)
        async with self.pool.acquire() as conn, conn.transaction():
            return await self.place_looked_again(conn, head, claim, wanted, lines)

    async def store_checkouts(self, checkouts: list[store.Priced]) -> list[bool]:
        """Store checkouts priced from the catalogue as last seen, all in one statement; whether
        each was stored (all or none: those not stored look again, one by one)."""
        async with self.pool.acquire() as conn:
            try:
                stored = await self.store_priced(conn, checkouts)
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != store.CHECKOUT_KEY:
                    raise
                stored = False  # a key was used before: each checkout is answered as it should be, alone
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError, asyncpg.LockNotAvailableError):
                # several buyers at once can meet an erasure (or a sweep) holding several: each alone cannot
                stored = False
        if stored:
            self.used(c.claim for c in checkouts)
        return [stored] * len(checkouts)

    async def store_priced(self, conn: asyncpg.Connection, checkouts: list[store.Priced]) -> bool:
        """``store.add_orders_as_priced`` with their events; whether all were stored."""
        events = self.outbox.sql([c.event for c in checkouts], after="placed", offset=store.PLACE_PARAMS)
        stored = await store.add_orders_as_priced(conn, checkouts, events) == len(checkouts)
        if stored:
            self.outbox.written()
        return stored

    async def place_looked_again(self, conn: asyncpg.Connection, head: dict[str, Any],
                                 claim: tuple[str, str, bytes] | None, wanted: dict[uuid.UUID, int],
                                 lines: list[schemas.LineIn]) -> web.Response:
        """``place``, in the caller's transaction, with the products locked and read. Locks are
        taken in the one statement's order (the buyer, as an erasure takes it before the stock;
        the products; the key), so the two paths never wait for each other crosswise."""
        if (subject := subject_of(head)) is not None:
            await writing_about(conn, self.outbox.keys(subject))
        products = {p["id"]: p for p in await store.lock_products(conn, list(wanted))}
        self.remember(products.values())
        if claim is not None:  # a key's first order is answered whatever the products are now
            self.used([claim])
            earlier = await store.claim_checkout_key(conn, *claim, head["id"])
            if earlier is not None:
                if earlier["request_hash"] != claim[2]:
                    raise invalid("header.Idempotency-Key", "this key was used with another request body",
                                  "Idempotency-Key reused")
                return await self.answer(conn, earlier["order_id"], replayed=True)
        for n, line in enumerate(lines):
            product = products.get(line.product_id)
            if product is None or not product["active"]:
                raise missing(f"body.lines.{n}.product_id", "product in the catalogue")
        short = [products[i] for i, quantity in wanted.items() if products[i]["stock"] < quantity]
        if short:
            raise HTTPProblem(409, "Out of stock", "; ".join(
                f"{p['sku']}: {p['stock']} left" for p in short) + ". Lower the quantity and try again.")
        order, priced, view, event = self.priced(head, products, wanted)
        checkout = store.Priced(order, priced, None,  # its key is claimed above
                                self.outbox.event("order_created", event, subject_of(order)))
        if not await self.store_priced(conn, [checkout]):  # cannot be: the products are locked and checked
            raise RuntimeError("a checkout priced from the locked products was not stored")
        return created(view, replayed=False)

    @staticmethod
    def priced(head: dict[str, Any], products: dict[uuid.UUID, Any],
               wanted: dict[uuid.UUID, int]) -> tuple[dict[str, Any], list[dict[str, Any]], schemas.Order, dict[str, Any]]:
        """The order at the catalogue's prices: its row, its lines, its view and its ``order_created``."""
        lines, total = domain.price(products, wanted)
        order = {**head, "net_cents": total.net, "vat_cents": total.vat, "gross_cents": total.gross}
        row = {**order, "guest": order["customer_id"] is None, "status": "created", "refunded_cents": 0,
               **dict.fromkeys(("paid_at", "shipped_at", "delivered_at", "cancelled_at", "tracking_number",
                                "invoice_number"))}
        view = order_view(row, lines)
        event = schemas.OrderCreated(
            order_id=order["id"], customer_id=order["customer_id"], status="created", gross_cents=total.gross,
            currency=domain.CURRENCY, at=order["created_at"], lines=view.lines).model_dump(mode="json")
        return order, lines, view, event

    async def answer(self, conn: asyncpg.Connection, order_id: uuid.UUID, *, replayed: bool) -> web.Response:
        (view,) = await views(conn, [await store.order(conn, order_id)])
        return created(view, replayed=replayed)

    # --- the customer's orders ----------------------------------------------------------------

    async def history(self, request: web.Request, caller: Principal, query: schemas.HistoryQuery) -> schemas.OrderPage:
        customer_id = customer_of(caller)
        async with self.pool.acquire() as conn:
            after = None
            if query.after is not None:
                last = await store.order(conn, query.after, customer_id=customer_id)
                if last is None:
                    raise missing("query.after", "order in your history")
                after = (last["created_at"], last["id"])
            rows = await store.history(conn, customer_id, after, query.limit + 1)
        page = rows[:query.limit]
        return schemas.OrderPage(
            items=[schemas.OrderSummary(id=r["id"], status=r["status"], gross_cents=r["gross_cents"],
                                        currency=r["currency"], items=r["items"] or 0, created_at=r["created_at"])
                   for r in page],
            next_cursor=page[-1]["id"] if len(rows) > query.limit else None)

    async def read_order(self, request: web.Request, caller: Principal, params: schemas.IdPath) -> schemas.Order:
        async with self.pool.acquire() as conn:
            row = await store.order(conn, params.id, customer_id=customer_of(caller))
            if row is None:
                raise NOT_FOUND
            return (await views(conn, [row]))[0]

    async def read_invoice(self, request: web.Request, caller: Principal, params: schemas.IdPath) -> schemas.Invoice:
        async with self.pool.acquire() as conn:
            row = await store.order(conn, params.id, customer_id=customer_of(caller))
            invoice = row and await store.invoice_of(conn, row["id"])
            if not invoice:
                raise HTTPProblem(404, "No invoice", "An order has an invoice once it is paid.")
            lines = await store.lines_of(conn, [row["id"]])
        return self.lifecycle.invoice_view(invoice, lines)

    async def summary(self, request: web.Request, caller: Principal, query: schemas.SummaryQuery) -> schemas.PurchaseSummary:
        async with self.pool.acquire() as conn:
            rows = await store.summary(conn, customer_of(caller), query.since, query.until)
        items = [schemas.SummaryRow(**r) for r in rows]
        return schemas.PurchaseSummary(currency=domain.CURRENCY, rows=items,
                                       total_gross_cents=sum(r.gross_cents for r in items),
                                       total_items=sum(r.items for r in items))

    async def cancel(self, request: web.Request, caller: Principal, params: schemas.IdPath) -> schemas.Order:
        """The customer cancels an order that has not left the shop yet."""
        async with self.pool.acquire() as conn, conn.transaction():
            order = await self.lifecycle.locked(conn, params.id, customer_id=customer_of(caller))
            if order is None:
                raise NOT_FOUND
            await self.cancel_locked(conn, order)
            return (await views(conn, [await store.order(conn, order["id"])]))[0]

    async def cancel_locked(self, conn: asyncpg.Connection, order: asyncpg.Record) -> None:
        try:
            await self.lifecycle.cancel(conn, order)
        except domain.IllegalTransition as exc:
            raise HTTPProblem(409, "Cannot be cancelled", f"The order is {exc.status}: it cannot be cancelled now.")

    async def open_complaint(self, request: web.Request, caller: Principal, params: schemas.IdPath,
                             body: schemas.ComplaintIn) -> schemas.Complaint:
        async with self.pool.acquire() as conn, conn.transaction():
            order = await store.order(conn, params.id, customer_id=customer_of(caller))
            if order is None:
                raise NOT_FOUND
            return await self.lifecycle.open_complaint(conn, order, "customer", body.description)

    async def my_complaints(self, request: web.Request, caller: Principal) -> schemas.ComplaintList:
        async with self.pool.acquire() as conn:
            rows = await store.complaints_of(conn, customer_id=customer_of(caller))
        return schemas.ComplaintList(items=[schemas.Complaint.model_validate(dict(r)) for r in rows])

    # --- staff --------------------------------------------------------------------------------

    async def lookup(self, request: web.Request, caller: Principal, body: schemas.OrderLookup) -> schemas.OrderRecord:
        """A customer's orders (or one order) for support: recorded with its reason (P16)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if body.order_id is not None:
                one = await store.order(conn, body.order_id)
                rows = [one] if one else []
            else:
                rows = await store.customer_orders(conn, body.customer_id, LOOKUP_LIMIT + 1)
            if not rows:
                raise HTTPProblem(404, "No orders", "No order matches.")
            customer_id = rows[0]["customer_id"]
            access_id = await self.lifecycle.staff_accessed(
                conn, customer_of(caller), customer_id, body.order_id, body.reason,
                list(ORDER_RECORD))
            complaints = await store.complaints_of(conn, customer_id=customer_id,
                                                   order_ids=[r["id"] for r in rows])
            orders = await views(conn, rows[:LOOKUP_LIMIT])
        return schemas.OrderRecord(access_id=access_id, orders=orders, truncated=len(rows) > LOOKUP_LIMIT,
                                   complaints=[schemas.Complaint.model_validate(dict(c)) for c in complaints])

    async def staff_order(self, conn: asyncpg.Connection, caller: Principal, order_id: uuid.UUID, reason: str,
                          categories: list[str], *, lock: bool = False) -> asyncpg.Record:
        """The order a staff member acts on, their access recorded with its reason (P16); 404 if none."""
        order = await (self.lifecycle.locked(conn, order_id) if lock else store.order(conn, order_id))
        if order is None:
            raise HTTPProblem(404, "No such order", "No order has this id.")
        await self.lifecycle.staff_accessed(conn, customer_of(caller), order["customer_id"], order["id"],
                                            reason, categories)
        return order

    async def staff_complaint(self, request: web.Request, caller: Principal,
                              body: schemas.StaffComplaintIn) -> schemas.Complaint:
        async with self.pool.acquire() as conn, conn.transaction():
            order = await self.staff_order(conn, caller, body.order_id, body.reason, ["orders", "complaints"])
            return await self.lifecycle.open_complaint(conn, order, "support", body.description)

    async def resolve_complaint(self, request: web.Request, caller: Principal, params: schemas.IdPath,
                                body: schemas.Resolution) -> schemas.Complaint:
        async with self.pool.acquire() as conn, conn.transaction():
            complaint = await store.complaint(conn, params.id, lock=True)
            if complaint is None:
                raise HTTPProblem(404, "No such complaint", "No complaint has this id.")
            if complaint["status"] != "open":
                raise HTTPProblem(409, "Already resolved", "This complaint was resolved before.")
            await self.lifecycle.staff_accessed(conn, customer_of(caller), complaint["customer_id"],
                                                complaint["order_id"], body.reason, ["complaints"])
            return await self.lifecycle.resolve_complaint(conn, complaint, body.resolution, customer_of(caller))

    async def staff_cancel(self, request: web.Request, caller: Principal, params: schemas.IdPath,
                           body: schemas.StatusChange) -> schemas.Order:
        async with self.pool.acquire() as conn, conn.transaction():
            order = await self.staff_order(conn, caller, params.id, body.reason, ["orders"], lock=True)
            await self.cancel_locked(conn, order)
            return (await views(conn, [await store.order(conn, order["id"])]))[0]

    def endpoints(self) -> list[Endpoint]:
        E, me, shop, path = Endpoint, ["me"], ["catalogue"], schemas.IdPath
        admin, support = staff("admin"), staff("support", "admin")
        return [
            E("GET", "/v1/products", self.list_products, "The catalogue, by sku", query=schemas.ProductQuery,
              response=schemas.ProductList, tags=shop),
            E("GET", "/v1/products/{id}", self.read_product, "One product", params=path,
              response=schemas.Product, problems=(404,), tags=shop),
            E("GET", "/v1/carriers", self.list_carriers, "The carriers a customer can choose",
              response=schemas.CarrierList, tags=shop),
            E("POST", "/v1/orders", self.checkout,
              "Place an order (account holders; Idempotency-Key header recommended)",
              body=schemas.Checkout, response=schemas.Order, status=201, auth=CUSTOMER,
              problems=(404, 409, 503), tags=["checkout"], description=IDEMPOTENCY_TEXT),
            E("POST", "/v1/guest-orders", self.guest_checkout,
              "Place an order as a guest (Idempotency-Key header recommended)",
              body=schemas.GuestCheckout, response=schemas.Order, status=201, problems=(404, 409),
              tags=["checkout"], description=IDEMPOTENCY_TEXT),
            E("GET", "/v1/me/orders", self.history, "Your orders, newest first", query=schemas.HistoryQuery,
              response=schemas.OrderPage, auth=CUSTOMER, problems=(404,), tags=me),
            E("GET", "/v1/me/orders/{id}", self.read_order, "One of your orders", params=path,
              response=schemas.Order, auth=CUSTOMER, problems=(404,), tags=me),
            E("GET", "/v1/me/orders/{id}/invoice", self.read_invoice, "The invoice of a paid order", params=path,
              response=schemas.Invoice, auth=CUSTOMER, problems=(404,), tags=me),
            E("POST", "/v1/me/orders/{id}/cancel", self.cancel, "Cancel an order not yet shipped", params=path,
              response=schemas.Order, auth=CUSTOMER, problems=(404, 409), tags=me),
            E("POST", "/v1/me/orders/{id}/complaints", self.open_complaint, "Complain about an order",
              params=path, body=schemas.ComplaintIn, response=schemas.Complaint, status=201, auth=CUSTOMER,
              problems=(404,), tags=me),
            E("GET", "/v1/me/complaints", self.my_complaints, "Your complaints", response=schemas.ComplaintList,
              auth=CUSTOMER, tags=me),
            E("GET", "/v1/me/purchase-summary", self.summary,
              "What you bought, by month and category (paid orders)", query=schemas.SummaryQuery,
              response=schemas.PurchaseSummary, auth=CUSTOMER, tags=me),
            E("POST", "/v1/staff/products", self.add_product, "Add a product (admin)", body=schemas.ProductIn,
              response=schemas.Product, status=201, auth=admin, problems=(409,), tags=["staff"], audited=()),
            E("PATCH", "/v1/staff/products/{id}", self.change_product, "Change a product (admin)", params=path,
              body=schemas.ProductChange, response=schemas.Product, auth=admin, problems=(404,), tags=["staff"],
              audited=()),
            E("POST", "/v1/staff/order-lookups", self.lookup,
              "Look at a customer's orders (support; recorded with its reason)", body=schemas.OrderLookup,
              response=schemas.OrderRecord, auth=support, problems=(404,), tags=["staff"], audited=ORDER_RECORD),
            E("POST", "/v1/staff/complaints", self.staff_complaint,
              "Open a complaint for a customer (support; recorded)", body=schemas.StaffComplaintIn,
              response=schemas.Complaint, status=201, auth=support, problems=(404,), tags=["staff"],
              audited=("orders", "complaints")),
            E("POST", "/v1/staff/complaints/{id}/resolve", self.resolve_complaint,
              "Resolve a complaint (support; recorded)", params=path, body=schemas.Resolution,
              response=schemas.Complaint, auth=support, problems=(404, 409), tags=["staff"], audited=("complaints",)),
            E("POST", "/v1/staff/orders/{id}/cancel", self.staff_cancel,
              "Cancel an order for a customer (support; recorded; a paid one is refunded)", params=path,
              body=schemas.StatusChange, response=schemas.Order, auth=support, problems=(404, 409),
              tags=["staff"], audited=("orders",)),
        ]
