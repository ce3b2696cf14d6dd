"""The payments service with accounts and orders, real PostgreSQL and RabbitMQ, the sandbox PSP
(spoken to by the official stripe client) and the sandbox carrier and accountant on loopback.

The test plays the customer's browser too: it sends the test card numbers to the sandbox PSP
only (as Stripe.js would, with the publishable key) and gives our API the token it gets back.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import time
import uuid

import pytest
from aiohttp import web

from deploy.sandbox.psp import SandboxPSP
from services.payments.privacy import INVENTORY, NOT_PERSONAL
from services.payments.service import PaymentsService
from services.payments.settings import PaymentsSettings
from shared.config import load_settings
from shared.contracts.privacy import DataSubject, ErasureRequest, ExportRequest
from shared.service import ServiceRuntime
from tests.conftest import eventually
from tests.integration.test_accounts import mailsink  # noqa: F401 (a fixture)
from tests.integration.test_orders import ADDRESS, free_tcp_port, shop  # noqa: F401 (a fixture)

SECRET_KEY, PUBLISHABLE_KEY, WEBHOOK_SECRET = "sk_test_veikals", "pk_test_veikals", "whsec_test_veikals"
CARDS = {"visa": "4242424242424242", "insufficient": "4000000000009995", "expired": "4000000000000069",
         "authenticate": "4000002760003184", "declines_later": "4000000000000341"}
DUNNING_S = [0.4, 0.8, 1.2]


class Payments:
    """The payments service running beside the shop, the sandbox PSP, and the parties' moves."""

    def __init__(self, shop, runtime: ServiceRuntime, psp: SandboxPSP, psp_url: str) -> None:
        self.shop, self.runtime, self.psp, self.psp_url = shop, runtime, psp, psp_url
        self.base = f"http://127.0.0.1:{runtime.http_port}"
        self.pool = runtime.service.pool

    async def call(self, method: str, path: str, token: str | None = None, body=None, *, expect: int | None = None,
                   base: str | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.shop.http.request(method, (base or self.base) + path, json=body, headers=headers) as response:
            text = await response.text()
            data = json.loads(text) if text else None
            if expect is not None:
                assert response.status == expect, (response.status, data)
            if response.status >= 400 and base is None:
                assert response.content_type == "application/problem+json"
            return response.status, data

    async def tokenise(self, card: str = "visa", exp_year: int | None = None) -> str:
        """What the customer's browser does: the card to the PSP, with the publishable key."""
        year = exp_year or dt.date.today().year + 3
        async with self.shop.http.post(f"{self.psp_url}/v1/payment_methods", data={
                "type": "card", "card[number]": CARDS[card], "card[exp_month]": "12", "card[exp_year]": str(year),
                "card[cvc]": "123"}, headers={"Authorization": f"Bearer {PUBLISHABLE_KEY}"}) as response:
            body = await response.json()
            assert response.status == 200, body
            return body["id"]

    async def control(self, path: str, body: dict | None = None):
        method = "POST" if body is not None else "GET"
        async with self.shop.http.request(method, f"{self.psp_url}/_control/{path}", json=body) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def authenticate(self, payment: dict, result: str = "succeed") -> None:
        """The customer at their bank's page (the payment's action_url)."""
        async with self.shop.http.post(payment["action_url"], json={"result": result}) as response:
            assert response.status < 300, await response.text()

    async def order(self, customer: dict | None = None) -> dict:
        if customer is None:
            return await self.shop.guest_order()
        _, order, _ = await self.shop.call("POST", "/v1/orders", customer["access_token"], {
            "carrier": "door-carrier", "address": ADDRESS, "lines": [self.shop.line("TEA-001")]}, expect=201)
        return order

    def paying(self, order: dict, **extra) -> dict:
        return {"order_id": order["id"], "amount_cents": order["gross_cents"], "currency": "EUR", **extra}

    async def payment(self, payment_id: str) -> dict:
        return dict(await self.pool.fetchrow("SELECT * FROM payments WHERE id = $1", uuid.UUID(payment_id)))

    async def settles(self, payment_id: str, status: str, timeout: float = 15) -> None:
        async def check():
            return (await self.payment(payment_id))["status"] == status
        await eventually(check, timeout=timeout)

    async def events(self, event_type: str) -> list[dict]:
        rows = await self.pool.fetch("SELECT body FROM outbox WHERE routing_key = $1 ORDER BY seq", event_type)
        return [json.loads(r["body"]) for r in rows]

    async def charges_at_psp(self) -> int:
        return sum(1 for r in await self.control("requests")
                   if r["method"] == "POST" and r["path"] == "/v1/payment_intents" and r["status"] < 300
                   and not r.get("replayed"))

    async def member(self, email: str) -> dict:
        return await self.shop.client.customer(email)


def payments_settings(amqp_url: str, database: str, port: int, jwks_port: int, psp_url: str, **overrides):
    return load_settings("payments", PaymentsSettings, **{
        "amqp_url": amqp_url, "database_url": database, "http_port": port,
        "jwks_url": f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json", "outbox_poll_s": 0.1,
        "shutdown_grace_s": 5, "retry_delay_ms": 100, "psp_api_base": psp_url, "psp_secret_key": SECRET_KEY,
        "psp_publishable_key": PUBLISHABLE_KEY, "psp_webhook_secret": WEBHOOK_SECRET, "psp_timeout_s": 5,
        "payment_check_after_s": 0.5, "payments_poll_s": 0.2, "billing_poll_s": 0.2, "dunning_schedule_s": DUNNING_S,
        **overrides})


@pytest.fixture
async def payments(shop, amqp_url, tmp_path):  # noqa: F811
    from tests.conftest import own_database
    port = free_tcp_port()
    psp = SandboxPSP(SECRET_KEY, PUBLISHABLE_KEY, WEBHOOK_SECRET, f"http://127.0.0.1:{port}/v1/psp/webhooks",
                     webhook_retry_s=(0.2, 0.5, 1))
    psp_runner = web.AppRunner(psp.app())
    await psp_runner.setup()
    site = web.TCPSite(psp_runner, "127.0.0.1", 0)
    await site.start()
    psp_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    async with own_database() as database:
        runtime = ServiceRuntime(PaymentsService, payments_settings(
            amqp_url, database, port, shop.accounts.http_port, psp_url))
        await runtime.start()
        try:
            yield Payments(shop, runtime, psp, psp_url)
        finally:
            await runtime.stop()
            await psp_runner.cleanup()


async def customer_paying(payments: Payments, email: str, card: str = "visa", **extra) -> tuple[dict, dict, dict]:
    customer = await payments.shop.client.customer(email)
    order = await payments.order(customer)
    status, paid = await payments.call("POST", "/v1/payments", customer["access_token"], payments.paying(
        order, payment_method=await payments.tokenise(card), **extra))
    return customer, order, paid


# --- one-time payments -----------------------------------------------------------------------

async def test_a_customer_pays_an_order_and_the_order_is_paid_once(payments):
    customer, order, paid = await customer_paying(payments, "paula@example.lv", save_card=True)
    assert paid["status"] == "succeeded" and paid["card"] == "visa •••• 4242"
    assert paid["amount_cents"] == order["gross_cents"]
    await payments.shop.reaches(order["id"], "paid")
    (event,) = await payments.events("payment_succeeded")
    assert event["order_id"] == order["id"] and event["payment_id"] == paid["id"]
    _, cards = await payments.call("GET", "/v1/me/cards", customer["access_token"], expect=200)
    assert [(c["brand"], c["last4"]) for c in cards["items"]] == [("visa", "4242")]
    _, page = await payments.call("GET", "/v1/me/payments", customer["access_token"], expect=200)
    assert [p["id"] for p in page["items"]] == [paid["id"]]

    # Paying it again, or racing to, charges nothing more.
    status, problem = await payments.call("POST", "/v1/payments", customer["access_token"], payments.paying(
        order, card_id=cards["items"][0]["id"]))
    assert status == 409
    assert await payments.charges_at_psp() == 1


async def test_two_pay_commands_at_once_charge_once(payments):
    customer = await payments.shop.client.customer("racer@example.lv")
    order = await payments.order(customer)
    tokens = [await payments.tokenise(), await payments.tokenise()]
    answers = await asyncio.gather(*(payments.call("POST", "/v1/payments", customer["access_token"],
                                                   payments.paying(order, payment_method=t)) for t in tokens))
    assert sorted(status for status, _ in answers) == [201, 409]
    assert await payments.charges_at_psp() == 1
    await payments.shop.reaches(order["id"], "paid")
    assert len(await payments.events("payment_succeeded")) == 1


async def test_a_guest_pays_a_guest_order(payments):
    order = await payments.order()
    _, paid = await payments.call("POST", "/v1/guest-payments", None, payments.paying(
        order, payment_method=await payments.tokenise()), expect=201)
    await payments.shop.reaches(order["id"], "paid")
    _, seen = await payments.call("GET", f"/v1/guest-payments/{paid['id']}", expect=200)
    assert seen["status"] == "succeeded" and seen["order_id"] == order["id"]


@pytest.mark.parametrize("card, code", [("insufficient", "insufficient_funds"), ("expired", "expired_card")])
async def test_a_declined_card_changes_nothing_and_another_card_pays(payments, card, code):
    customer, order, problem = await customer_paying(payments, f"{card}@example.lv", card)
    assert problem["status"] == 402 and problem["errors"][0]["message"] == code
    assert await payments.shop.status(order["id"]) == "created"
    assert await payments.events("payment_succeeded") == []
    _, paid = await payments.call("POST", "/v1/payments", customer["access_token"], payments.paying(
        order, payment_method=await payments.tokenise()), expect=201)
    assert paid["status"] == "succeeded"
    await payments.shop.reaches(order["id"], "paid")


async def test_authentication_required_then_completed_or_failed(payments):
    customer, order, paid = await customer_paying(payments, "bank@example.lv", "authenticate")
    assert paid["status"] == "requires_action" and paid["action_url"].startswith(payments.psp_url)
    await payments.authenticate(paid)
    await payments.settles(paid["id"], "succeeded")  # the PSP's webhook told us
    await payments.shop.reaches(order["id"], "paid")

    other = await payments.order(customer)
    _, pending = await payments.call("POST", "/v1/payments", customer["access_token"], payments.paying(
        other, payment_method=await payments.tokenise("authenticate")), expect=201)
    await payments.authenticate(pending, "fail")
    await payments.settles(pending["id"], "failed")
    assert await payments.shop.status(other["id"]) == "created"


async def test_a_lost_webhook_is_recovered_by_polling_the_psp(payments):
    customer, order, paid = await customer_paying(payments, "lost@example.lv", "authenticate")
    await payments.control("behaviour", {"drop_webhooks": 10})
    await payments.authenticate(paid)
    await payments.settles(paid["id"], "succeeded")  # no webhook came: the reconciler asked the PSP
    await payments.shop.reaches(order["id"], "paid")
    assert all(e["dropped"] for e in await payments.control("events") if e["type"] == "payment_intent.succeeded")


async def test_a_psp_that_does_not_answer_is_asked_again_with_the_same_key(payments):
    customer = await payments.shop.client.customer("flaky@example.lv")
    order = await payments.order(customer)
    _, card = await payments.call("POST", "/v1/me/cards", customer["access_token"], {
        "payment_method": await payments.tokenise()}, expect=201)
    await payments.control("behaviour", {"fail_next": 1, "fail_status": 500})  # the charge is what fails
    _, paid = await payments.call("POST", "/v1/payments", customer["access_token"], payments.paying(
        order, card_id=card["id"]), expect=201)
    assert paid["status"] == "creating"
    await payments.settles(paid["id"], "succeeded")
    await payments.shop.reaches(order["id"], "paid")
    keys = [r["idempotency_key"] for r in await payments.control("requests") if r["path"] == "/v1/payment_intents"]
    assert len(keys) == 2 and len(set(keys)) == 1


async def test_bad_payment_requests_change_nothing(payments):
    anna = await payments.shop.client.customer("anna.pay@example.lv")
    berta = await payments.shop.client.customer("berta.pay@example.lv")
    order = await payments.order(anna)
    token = await payments.tokenise()
    cases = [
        (berta, payments.paying(order, payment_method=token), 404),  # someone else's order
        (anna, {**payments.paying(order, payment_method=token), "amount_cents": 1}, 422),
        (anna, {**payments.paying(order, payment_method=token), "order_id": str(uuid.uuid4())}, 404),
        (anna, payments.paying(order, payment_method="pm_doesnotexist"), 404),
        (anna, payments.paying(order, card_id=str(uuid.uuid4())), 404),
        (anna, payments.paying(order), 422),  # no card at all
    ]
    for who, body, expected in cases:
        status, problem = await payments.call("POST", "/v1/payments", who["access_token"], body)
        assert status == expected, (body, problem)
    # A card number in a body is refused without being echoed, and never reaches the PSP.
    status, problem = await payments.call("POST", "/v1/payments", anna["access_token"], payments.paying(
        order, payment_method=token, note=CARDS["visa"]))
    assert status == 422 and CARDS["visa"] not in json.dumps(problem)
    assert problem["errors"][0]["type"] == "card_number"
    # Berta's saved card is not Anna's to use, by token either.
    berta_card = await payments.tokenise()
    await payments.call("POST", "/v1/me/cards", berta["access_token"], {"payment_method": berta_card}, expect=201)
    status, _ = await payments.call("POST", "/v1/payments", anna["access_token"], payments.paying(
        order, payment_method=berta_card))
    assert status == 404
    assert await payments.pool.fetchval("SELECT count(*) FROM payments") == 0
    assert await payments.charges_at_psp() == 0


async def test_a_customer_cannot_reach_another_customers_payments_cards_or_membership(payments):
    anna, order, paid = await customer_paying(payments, "anna.own@example.lv", save_card=True)
    await payments.call("POST", "/v1/me/membership", anna["access_token"], {
        "card_id": str(await payments.pool.fetchval("SELECT id FROM cards"))}, expect=201)
    berta = await payments.shop.client.customer("berta.own@example.lv")
    token = berta["access_token"]
    card_id = str(await payments.pool.fetchval("SELECT id FROM cards"))
    await payments.call("GET", f"/v1/me/payments/{paid['id']}", token, expect=404)
    await payments.call("DELETE", f"/v1/me/cards/{card_id}", token, expect=404)
    await payments.call("GET", f"/v1/guest-payments/{paid['id']}", expect=404)  # not a guest's
    _, mine = await payments.call("GET", "/v1/me/payments", token, expect=200)
    _, cards = await payments.call("GET", "/v1/me/cards", token, expect=200)
    assert mine["items"] == [] and cards["items"] == []
    await payments.call("GET", f"/v1/me/payments?after={paid['id']}", token, expect=404)
    await payments.call("GET", "/v1/me/membership", token, expect=404)
    await payments.call("POST", "/v1/me/membership/cancel", token, expect=409)
    _, kept = await payments.call("GET", "/v1/me/membership", anna["access_token"], expect=200)
    assert kept["status"] == "active" and not kept["cancel_at_period_end"]
    assert await payments.pool.fetchval("SELECT count(*) FROM cards") == 1


# --- webhooks ------------------------------------------------------------------------------

def signed(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


async def test_duplicate_forged_and_stale_webhooks(payments):
    customer, order, paid = await customer_paying(payments, "hooks@example.lv")
    await payments.shop.reaches(order["id"], "paid")
    event = next(e for e in await payments.control("events") if e["type"] == "payment_intent.succeeded")
    await payments.control(f"events/{event['id']}/resend", {})
    await payments.control(f"events/{event['id']}/resend", {})

    async def duplicates_seen():
        return await payments.pool.fetchval(
            "SELECT count(*) FROM inbox WHERE consumer = 'payments.psp_webhook' AND message_id = $1", event["id"])
    await eventually(duplicates_seen)
    assert len(await payments.events("payment_succeeded")) == 1

    forged = json.dumps({"id": "evt_forged", "object": "event", "type": "charge.dispute.created",
                         "data": {"object": {"id": "dp_x", "payment_intent": paid["id"]}}}).encode()
    url = f"{payments.base}/v1/psp/webhooks"
    for signature in (signed(forged, "whsec_wrong"), signed(forged, at=int(time.time()) - 400), "t=1,v1=00", None):
        headers = {"Content-Type": "application/json", **({"Stripe-Signature": signature} if signature else {})}
        async with payments.shop.http.post(url, data=forged, headers=headers) as response:
            assert response.status == 401, await response.text()
    async with payments.shop.http.post(url, data=forged, headers={"Content-Type": "application/json",
                                                                  "Stripe-Signature": signed(forged)}) as response:
        assert response.status == 200  # correctly signed, but about no payment of ours: ignored
        assert (await response.json())["applied"] is False
    assert await payments.pool.fetchval("SELECT count(*) FROM disputes") == 0


# --- refunds -------------------------------------------------------------------------------

async def test_refunds_full_partial_too_much_and_two_at_once(payments):
    customer, order, paid = await customer_paying(payments, "refund@example.lv")
    await payments.shop.reaches(order["id"], "paid")
    accounting = await payments.shop.staff_token("accounting")
    support = await payments.shop.staff_token("support")
    reason = "customer returned the goods"
    await payments.call("POST", "/v1/staff/refunds", support, {"order_id": order["id"], "reason": reason}, expect=403)
    total = paid["amount_cents"]
    _, first = await payments.call("POST", "/v1/staff/refunds", accounting, {
        "payment_id": paid["id"], "amount_cents": 100, "reason": reason}, expect=201)
    assert first["status"] == "succeeded" and first["amount_cents"] == 100
    status, problem = await payments.call("POST", "/v1/staff/refunds", accounting, {
        "payment_id": paid["id"], "amount_cents": total, "reason": reason})
    assert status == 409 and str(total - 100) in problem["detail"]
    # Two at once, each for more than half of what is left: one goes through.
    half = (total - 100) // 2 + 1
    answers = await asyncio.gather(*(payments.call("POST", "/v1/staff/refunds", accounting, {
        "payment_id": paid["id"], "amount_cents": half, "reason": reason}) for _ in range(2)))
    assert sorted(status for status, _ in answers) == [201, 409]
    _, rest = await payments.call("POST", "/v1/staff/refunds", accounting, {"order_id": order["id"], "reason": reason},
                                  expect=201)
    assert rest["amount_cents"] == total - 100 - half
    assert (await payments.payment(paid["id"]))["refunded_cents"] == total
    await payments.shop.reaches(order["id"], "refunded")
    refunded_at_psp = [r for r in await payments.control("requests") if r["path"] == "/v1/refunds" and r["status"] < 300]
    assert len(refunded_at_psp) == 3


async def test_a_paid_order_cancelled_by_staff_is_refunded(payments):
    customer, order, paid = await customer_paying(payments, "cancel@example.lv")
    await payments.shop.reaches(order["id"], "paid")
    support = await payments.shop.staff_token("support")
    await payments.shop.call("POST", f"/v1/staff/orders/{order['id']}/cancel", support,
                             {"reason": "the customer called to cancel"}, expect=200)

    async def refunded():
        return (await payments.payment(paid["id"]))["refunded_cents"] == paid["amount_cents"]
    await eventually(refunded)
    (event,) = await payments.events("refund_succeeded")
    assert event["order_id"] == order["id"]


async def test_a_payment_completed_after_its_order_was_cancelled_goes_back(payments):
    customer, order, paid = await customer_paying(payments, "late@example.lv", "authenticate")
    assert paid["status"] == "requires_action"
    await payments.shop.call("POST", f"/v1/me/orders/{order['id']}/cancel", customer["access_token"], expect=200)
    await payments.authenticate(paid)  # the customer finishes at the bank's page all the same
    await payments.settles(paid["id"], "succeeded")

    async def refunded():
        return (await payments.payment(paid["id"]))["refunded_cents"] == paid["amount_cents"]
    await eventually(refunded)
    assert await payments.shop.status(order["id"]) == "cancelled"
    (event,) = await payments.events("refund_succeeded")
    assert event["payment_id"] == paid["id"]


# --- memberships ---------------------------------------------------------------------------

async def due_now(payments: Payments, membership_id: str) -> None:
    """The month is over (the clock moved on): the period ends now."""
    await payments.pool.execute("UPDATE memberships SET period_end = now(), next_charge_at = now() WHERE id = $1",
                                uuid.UUID(membership_id))
    await payments.pool.execute("SELECT pg_notify('veikals_payments_billing', '')")


async def membership(payments: Payments, membership_id: str) -> dict:
    return dict(await payments.pool.fetchrow("SELECT * FROM memberships WHERE id = $1", uuid.UUID(membership_id)))


async def reaches(payments: Payments, membership_id: str, **wanted) -> dict:
    async def check():
        row = await membership(payments, membership_id)
        return row if all(row[k] == v for k, v in wanted.items()) else None
    return await eventually(check, timeout=20)


async def test_membership_renews_monthly_and_can_be_cancelled(payments):
    email = "member@example.lv"
    customer = await payments.shop.client.customer(email, language="en")  # the subjects below are English
    _, started = await payments.call("POST", "/v1/me/membership", customer["access_token"], {
        "payment_method": await payments.tokenise()}, expect=201)
    assert started["status"] == "active" and started["period"] == 1 and started["card"] == "visa •••• 4242"
    await payments.shop.client.sink.wait_for(email, count=2)  # the sign-up mail, then "started"

    await due_now(payments, started["id"])
    await reaches(payments, started["id"], period=2, status="active")
    assert "renewed" in (await payments.shop.client.sink.wait_for(email, count=3))[-1]["Subject"]

    _, cancelled = await payments.call("POST", "/v1/me/membership/cancel", customer["access_token"], expect=200)
    assert cancelled["cancel_at_period_end"] and cancelled["status"] == "active"
    await due_now(payments, started["id"])
    await reaches(payments, started["id"], status="cancelled")
    assert await payments.pool.fetchval("SELECT count(*) FROM payments WHERE status = 'succeeded'") == 2


async def test_a_failing_card_is_retried_on_schedule_then_the_membership_lapses(payments):
    email = "dunning@example.lv"
    customer = await payments.shop.client.customer(email, language="en")  # the subjects below are English
    _, started = await payments.call("POST", "/v1/me/membership", customer["access_token"], {
        "payment_method": await payments.tokenise()}, expect=201)
    await payments.control("behaviour", {"decline_next": 10})
    await due_now(payments, started["id"])
    await reaches(payments, started["id"], status="past_due", failed_attempts=1)
    lapsed = await reaches(payments, started["id"], status="lapsed")
    assert lapsed["failed_attempts"] == len(DUNNING_S) + 1
    attempts = await payments.pool.fetch(
        "SELECT attempt, created_at FROM payments WHERE membership_id = $1 AND period = 2 ORDER BY attempt",
        uuid.UUID(started["id"]))
    assert [a["attempt"] for a in attempts] == [0, 1, 2, 3]
    first = attempts[0]["created_at"]
    for attempt, delay in zip(attempts[1:], DUNNING_S):  # not before its time on the schedule
        assert (attempt["created_at"] - first).total_seconds() >= delay
    mails = await payments.shop.client.sink.wait_for(email, count=6)  # sign-up, started, 3 failures, lapsed
    assert [m["Subject"] for m in mails[2:]].count("We could not charge your card for the membership") == 3
    assert "ended" in mails[-1]["Subject"]


async def test_two_instances_never_charge_one_period_twice(payments):
    members = []
    for n in range(4):
        customer = await payments.shop.client.customer(f"twin{n}@example.lv")
        _, started = await payments.call("POST", "/v1/me/membership", customer["access_token"], {
            "payment_method": await payments.tokenise()}, expect=201)
        members.append(started["id"])
    second = ServiceRuntime(PaymentsService, payments.runtime.settings.model_copy(update={"http_port": 0}))
    await second.start()
    try:
        await payments.control("behaviour", {"delay_s": 0.2})  # a slow PSP widens every window
        for membership_id in members:
            await due_now(payments, membership_id)
        for membership_id in members:
            await reaches(payments, membership_id, period=2)
    finally:
        await second.stop()
    periods = await payments.pool.fetch(
        "SELECT membership_id, period, count(*) AS n FROM payments GROUP BY 1, 2 ORDER BY 1, 2")
    assert [r["n"] for r in periods] == [1] * 8
    assert await payments.charges_at_psp() == 8


# --- disputes and privacy ------------------------------------------------------------------

async def test_a_dispute_holds_the_erasure_until_it_is_closed(payments):
    customer, order, paid = await customer_paying(payments, "dispute@example.lv", save_card=True)
    await payments.shop.reaches(order["id"], "paid")
    intent = (await payments.payment(paid["id"]))["psp_intent_id"]
    dispute = await payments.control("disputes", {"payment_intent": intent, "reason": "fraudulent"})

    async def held_by_orders():
        return await payments.shop.pool.fetchval("SELECT dispute_id FROM orders WHERE id = $1", uuid.UUID(order["id"]))
    assert await eventually(held_by_orders) == dispute["id"]

    rpc = payments.runtime.service.rpc
    subject = DataSubject(customer_id=customer["id"])
    request = ErasureRequest(request_id=uuid.uuid4(), subject=subject).model_dump(mode="json")
    outcome = await rpc.call("payments", "privacy_erase", request)
    assert [h["hold"] for h in outcome["held"]] == [f"chargeback {dispute['id']}"]
    assert await payments.pool.fetchval("SELECT count(*) FROM cards") == 1  # nothing erased yet

    await payments.control(f"disputes/{dispute['id']}/close", {"status": "won"})

    async def closed():
        return await payments.pool.fetchval("SELECT closed_at FROM disputes WHERE id = $1", dispute["id"])
    await eventually(closed)
    await rpc.call("payments", "run_retention_sweep")
    assert await payments.pool.fetchval("SELECT count(*) FROM held_erasures") == 0
    assert await payments.pool.fetchval("SELECT count(*) FROM cards") == 0
    (completed,) = await payments.events("held_erasure_completed")
    assert completed["participant"] == "payments"


async def test_export_and_erasure_of_a_customer(payments):
    customer, order, paid = await customer_paying(payments, "erase@example.lv", save_card=True)
    await payments.shop.reaches(order["id"], "paid")
    await payments.call("POST", "/v1/me/membership", customer["access_token"], {
        "card_id": (await payments.pool.fetchval("SELECT id FROM cards")).hex}, expect=201)
    rpc = payments.runtime.service.rpc
    subject = DataSubject(customer_id=customer["id"])
    chunk = await rpc.call("payments", "privacy_export", ExportRequest(
        request_id=uuid.uuid4(), subject=subject).model_dump(mode="json"))
    categories = {r["category"] for r in chunk["records"]}
    assert {"payments", "memberships", "saved cards", "customer at the payment provider"} <= categories
    card = next(r["data"] for r in chunk["records"] if r["category"] == "saved cards")
    assert card["number"] == "•••• 4242" and CARDS["visa"] not in json.dumps(chunk)

    psp_customer = await payments.pool.fetchval("SELECT psp_customer_id FROM psp_customers")
    request = ErasureRequest(request_id=uuid.uuid4(), subject=subject)
    outcome = await rpc.call("payments", "privacy_erase", request.model_dump(mode="json"))
    assert outcome["held"] == [] and outcome["remaining"] == []
    (kept,) = outcome["retained"]
    assert kept["category"] == "payment records" and kept["legal_basis"] == "legal_obligation"
    assert dt.date.fromisoformat(kept["until"]).year >= dt.date.today().year + 7
    row = await payments.payment(paid["id"])
    assert row["customer_id"] is None and row["card_last4"] is None and row["amount_cents"] == paid["amount_cents"]
    async with payments.shop.http.get(f"{payments.psp_url}/v1/customers/{psp_customer}",
                                      headers={"Authorization": f"Bearer {SECRET_KEY}"}) as response:
        assert (await response.json()).get("deleted") is True
    again = await rpc.call("payments", "privacy_erase", request.model_copy(update={"verify_only": True}).model_dump(mode="json"))
    assert again["remaining"] == []


async def test_every_column_is_declared_personal_or_not(payments):
    rows = await payments.pool.fetch(
        """SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'
           AND table_name IN ('psp_customers', 'cards', 'memberships', 'payments', 'refunds', 'disputes',
                              'held_erasures')""")
    undeclared = {(r["table_name"], r["column_name"]) for r in rows} - INVENTORY.declared_columns() - NOT_PERSONAL
    assert undeclared == set()
