"""The sandbox PSP, driven only through the official ``stripe`` client.

Plain aiohttp is used only for the sandbox's own ``/_control`` and ``/_test`` routes, and for a
shop-side receiver that verifies each webhook with ``stripe.Webhook.construct_event``.
"""
from __future__ import annotations

import datetime as dt
import json
import time

import aiohttp
import pytest
import stripe
from aiohttp import web

from deploy.sandbox.psp import SandboxPSP
from tests.conftest import eventually

SECRET = "sk_test_sandboxSecretKey0123456789wxyz"
PUBLISHABLE = "pk_test_sandboxPublishableKey012345abcd"
WEBHOOK_SECRET = "whsec_sandboxWebhookSecret0123456789"
CVC = "737"
EXP_YEAR = dt.date.today().year + 3


class Receiver:
    """The shop's webhook endpoint: verifies every delivery the way the stripe package does."""

    def __init__(self) -> None:
        self.events: list[stripe.Event] = []
        self.raw: list[tuple[bytes, str]] = []
        self.fail_next = 0

    async def handle(self, request: web.Request) -> web.Response:
        payload = await request.read()
        signature = request.headers.get("Stripe-Signature", "")
        try:
            event = stripe.Webhook.construct_event(payload, signature, WEBHOOK_SECRET, tolerance=300)
        except (stripe.SignatureVerificationError, ValueError):
            return web.Response(status=400)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503)
        self.events.append(event)
        self.raw.append((payload, signature))
        return web.Response(text="ok")

    def of(self, event_type: str, object_id: str) -> list[stripe.Event]:
        return [e for e in self.events if e.type == event_type and e.data.object.id == object_id]


class RecordingHTTPClient(stripe.AIOHTTPClient):
    """The official aiohttp transport, keeping every answer body for the card-number check."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []

    async def request_async(self, method, url, headers, post_data=None):
        content, status, rheaders = await super().request_async(method, url, headers, post_data)
        self.bodies.append(content)
        return content, status, rheaders


class Env:
    def __init__(self, base: str, psp: SandboxPSP, receiver: Receiver) -> None:
        self.base = base
        self.psp = psp
        self.receiver = receiver
        self.transport = RecordingHTTPClient()
        self.http = aiohttp.ClientSession()
        self.client = self.stripe_client(SECRET)
        self.public = self.stripe_client(PUBLISHABLE)

    def stripe_client(self, key: str) -> stripe.StripeClient:
        return stripe.StripeClient(key, http_client=self.transport, max_network_retries=0,
                                   base_addresses={"api": self.base})

    async def control(self, method: str, path: str, body: dict | None = None, **kwargs):
        async with self.http.request(method, self.base + path, json=body, **kwargs) as resp:
            return resp.status, await resp.json()

    async def card(self, number: str, **card) -> stripe.PaymentMethod:
        card = {"number": number, "exp_month": 12, "exp_year": EXP_YEAR, "cvc": CVC, **card}
        return await self.public.v1.payment_methods.create_async({"type": "card", "card": card})

    async def customer_with(self, number: str) -> tuple[stripe.Customer, stripe.PaymentMethod]:
        customer = await self.client.v1.customers.create_async({"metadata": {"shop_customer": "c-1"}})
        pm = await self.card(number)
        await self.client.v1.payment_methods.attach_async(pm.id, {"customer": customer.id})
        return customer, pm

    async def pay(self, number: str, amount: int = 1999, **extra) -> stripe.PaymentIntent:
        customer, pm = await self.customer_with(number)
        params = {"amount": amount, "currency": "EUR", "customer": customer.id,
                  "payment_method": pm.id, "confirm": True, "metadata": {"order_id": "o-42"}, **extra}
        return await self.client.v1.payment_intents.create_async(params)

    async def webhook(self, event_type: str, object_id: str, count: int = 1) -> list[stripe.Event]:
        async def arrived():
            found = self.receiver.of(event_type, object_id)
            return found if len(found) >= count else None
        return await eventually(arrived, timeout=10, interval=0.05)


@pytest.fixture
async def env(free_port):
    receiver = Receiver()
    receiver_app = web.Application()
    receiver_app.router.add_post("/webhooks", receiver.handle)
    receiver_runner = web.AppRunner(receiver_app)
    await receiver_runner.setup()
    await web.TCPSite(receiver_runner, "127.0.0.1", 0).start()
    receiver_port = receiver_runner.addresses[0][1]
    psp = SandboxPSP(SECRET, PUBLISHABLE, WEBHOOK_SECRET, f"http://127.0.0.1:{receiver_port}/webhooks",
                     webhook_retry_s=(0.05, 0.1, 0.2))
    runner = web.AppRunner(psp.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", free_port).start()
    environment = Env(f"http://127.0.0.1:{free_port}", psp, receiver)
    yield environment
    await environment.transport.close_async()
    await environment.http.close()
    await runner.cleanup()
    await receiver_runner.cleanup()


async def test_customers_and_cards_tokenised_with_the_publishable_key(env):
    customer = await env.client.v1.customers.create_async(
        {"email": "a@example.test", "metadata": {"shop_customer": "c-7"}})
    assert customer.id.startswith("cus_") and customer.metadata["shop_customer"] == "c-7"
    assert customer.last_response.headers["Request-Id"].startswith("req_")
    visa, mastercard = await env.card("4242424242424242"), await env.card("5555 5555 5555 4444")
    assert (visa.card.brand, visa.card.last4, visa.card.exp_year) == ("visa", "4242", EXP_YEAR)
    assert (mastercard.card.brand, mastercard.card.last4) == ("mastercard", "4444")
    assert visa.customer is None and visa.card.fingerprint != mastercard.card.fingerprint
    assert (await env.card("4242424242424242")).card.fingerprint == visa.card.fingerprint

    risky = await env.card("4000000000000341")
    attached = await env.client.v1.payment_methods.attach_async(risky.id, {"customer": customer.id})
    assert attached.customer == customer.id
    detached = await env.client.v1.payment_methods.detach_async(risky.id)
    assert detached.customer is None
    with pytest.raises(stripe.InvalidRequestError) as twice:
        await env.client.v1.payment_methods.detach_async(risky.id)
    assert twice.value.code == "payment_method_unexpected_state"
    await env.client.v1.payment_methods.attach_async(visa.id, {"customer": customer.id})

    with pytest.raises(stripe.AuthenticationError):  # the publishable key only tokenises
        await env.public.v1.customers.retrieve_async(customer.id)
    deleted = await env.client.v1.customers.delete_async(customer.id)
    assert deleted.deleted is True
    assert (await env.client.v1.customers.retrieve_async(customer.id)).deleted is True
    assert (await env.client.v1.payment_methods.retrieve_async(visa.id)).customer is None
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await env.client.v1.customers.delete_async(customer.id)
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"


@pytest.mark.parametrize("card, code, param", [
    ({"number": "4242424242424241"}, "incorrect_number", "card[number]"),
    ({"exp_year": 2020}, "invalid_expiry_year", "card[exp_year]"),
    ({"exp_month": 13}, "invalid_expiry_month", "card[exp_month]"),
])
async def test_bad_card_details_are_refused(env, card, code, param):
    with pytest.raises(stripe.CardError) as refused:
        await env.card(card.pop("number", "4242424242424242"), **card)
    assert (refused.value.http_status, refused.value.code, refused.value.param) == (402, code, param)


async def test_keys_and_parameters_are_checked(env):
    with pytest.raises(stripe.AuthenticationError) as wrong:
        await env.stripe_client("sk_test_notTheRightKey9876").v1.customers.create_async()
    assert wrong.value.http_status == 401 and "9876" in str(wrong.value)
    assert "notTheRightKey" not in str(wrong.value)
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        await env.client.v1.customers.create_async({"nickname": "x"})  # type: ignore[typeddict-unknown-key]
    assert (unknown.value.code, unknown.value.param) == ("parameter_unknown", "nickname")
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await env.client.v1.payment_intents.create_async({"currency": "eur"})  # type: ignore[typeddict-item]
    assert (missing.value.code, missing.value.param) == ("parameter_missing", "amount")
    with pytest.raises(stripe.InvalidRequestError) as nowhere:
        await env.client.v1.payment_intents.retrieve_async("pi_doesNotExist")
    assert nowhere.value.http_status == 404 and nowhere.value.code == "resource_missing"


@pytest.mark.parametrize("number, off_session", [
    ("4242424242424242", False), ("5555555555554444", False),
    ("4242424242424242", True), ("4000002500003155", True),
])
async def test_payment_succeeds(env, number, off_session):
    pi = await env.pay(number, off_session=off_session)
    assert (pi.status, pi.amount, pi.amount_received, pi.currency) == ("succeeded", 1999, 1999, "eur")
    assert pi.client_secret.startswith(f"{pi.id}_secret_")
    charge = await env.client.v1.charges.retrieve_async(pi.latest_charge)
    assert (charge.amount_captured, charge.captured, charge.paid, charge.payment_intent) == (1999, True, True, pi.id)
    assert charge.payment_method_details.card.last4 == number[-4:]
    [succeeded] = await env.webhook("payment_intent.succeeded", pi.id)
    assert succeeded.data.object.metadata["order_id"] == "o-42"
    assert succeeded.request.id == pi.last_response.headers["Request-Id"]
    await env.webhook("charge.succeeded", charge.id)


@pytest.mark.parametrize("number, code, decline_code", [
    ("4000000000009995", "card_declined", "insufficient_funds"),
    ("4000000000000069", "expired_card", "expired_card"),
    ("4000000000000002", "card_declined", "generic_decline"),
    ("4000000000000341", "card_declined", "generic_decline"),
    ("4000002760003184", "authentication_required", "authentication_required"),  # off session
])
async def test_declines(env, number, code, decline_code):
    with pytest.raises(stripe.CardError) as declined:
        await env.pay(number, off_session=True)
    error = declined.value
    assert (error.http_status, error.code, error.error.decline_code) == (402, code, decline_code)
    assert error.error.payment_intent.status == "requires_payment_method"
    pi = await env.client.v1.payment_intents.retrieve_async(error.error.payment_intent.id)
    assert pi.last_payment_error.code == code and pi.latest_charge is None
    await env.webhook("payment_intent.payment_failed", pi.id)


async def test_authentication_on_session_completed_or_failed(env):
    pi = await env.pay("4000002760003184", return_url="https://shop.test/paid")
    assert pi.status == "requires_action" and pi.next_action.type == "redirect_to_url"
    assert pi.next_action.redirect_to_url.url == f"{env.base}/_test/authenticate/{pi.id}"
    assert pi.next_action.redirect_to_url.return_url == "https://shop.test/paid"
    async with env.http.get(pi.next_action.redirect_to_url.url, params={"result": "succeed"},
                            allow_redirects=False) as bank:
        assert bank.status == 302 and bank.headers["Location"].startswith("https://shop.test/paid?")
    assert (await env.client.v1.payment_intents.retrieve_async(pi.id)).status == "succeeded"
    await env.webhook("payment_intent.succeeded", pi.id)

    failing = await env.pay("4000002500003155")
    assert failing.status == "requires_action"
    status, _ = await env.control("POST", f"/_test/authenticate/{failing.id}", {"result": "fail"})
    assert status == 200
    failed = await env.client.v1.payment_intents.retrieve_async(failing.id)
    assert failed.status == "requires_payment_method"
    assert failed.last_payment_error.code == "payment_intent_authentication_failure"
    await env.webhook("payment_intent.payment_failed", failing.id)


async def test_idempotent_replay_and_conflict(env):
    customer, pm = await env.customer_with("4242424242424242")
    params = {"amount": 500, "currency": "eur", "customer": customer.id, "payment_method": pm.id,
              "confirm": True}
    first = await env.client.v1.payment_intents.create_async(params, {"idempotency_key": "order-1"})
    again = await env.client.v1.payment_intents.create_async(params, {"idempotency_key": "order-1"})
    assert again.id == first.id and again.latest_charge == first.latest_charge
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers
    await env.webhook("charge.succeeded", first.latest_charge)
    _, events = await env.control("GET", "/_control/events")
    assert [e["type"] for e in events].count("charge.succeeded") == 1
    with pytest.raises(stripe.IdempotencyError):
        await env.client.v1.payment_intents.create_async({**params, "amount": 501},
                                                         {"idempotency_key": "order-1"})


async def test_refunds(env):
    pi = await env.pay("4242424242424242", amount=1000)
    partial = await env.client.v1.refunds.create_async(
        {"payment_intent": pi.id, "amount": 300, "reason": "requested_by_customer"})
    assert (partial.amount, partial.status, partial.charge) == (300, "succeeded", pi.latest_charge)
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        await env.client.v1.refunds.create_async({"payment_intent": pi.id, "amount": 701})
    assert too_much.value.code == "amount_too_large"
    rest = await env.client.v1.refunds.create_async({"charge": pi.latest_charge})
    assert rest.amount == 700
    assert (await env.client.v1.refunds.retrieve_async(rest.id)).amount == 700
    charge = await env.client.v1.charges.retrieve_async(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (1000, True)
    with pytest.raises(stripe.InvalidRequestError) as again:
        await env.client.v1.refunds.create_async({"payment_intent": pi.id})
    assert again.value.code == "charge_already_refunded"
    refunded = await env.webhook("charge.refunded", charge.id, count=2)
    assert sorted(e.data.object.amount_refunded for e in refunded) == [300, 1000]
    await env.webhook("refund.created", rest.id)

    unpaid = await env.client.v1.payment_intents.create_async({"amount": 100, "currency": "eur"})
    with pytest.raises(stripe.InvalidRequestError):
        await env.client.v1.refunds.create_async({"payment_intent": unpaid.id})


async def test_dispute_opened_and_closed_through_control(env):
    pi = await env.pay("4242424242424242")
    status, opened = await env.control("POST", "/_control/disputes",
                                       {"payment_intent": pi.id, "reason": "fraudulent"})
    assert status == 200 and opened["status"] == "needs_response"
    dispute = await env.client.v1.disputes.retrieve_async(opened["id"])
    assert (dispute.charge, dispute.amount, dispute.reason) == (pi.latest_charge, 1999, "fraudulent")
    assert (await env.client.v1.charges.retrieve_async(pi.latest_charge)).disputed is True
    await env.webhook("charge.dispute.created", dispute.id)
    status, closed = await env.control("POST", f"/_control/disputes/{dispute.id}/close", {"status": "won"})
    assert status == 200 and closed["status"] == "won"
    [event] = await env.webhook("charge.dispute.closed", dispute.id)
    assert event.data.object.status == "won"
    assert (await env.client.v1.events.retrieve_async(event.id)).type == "charge.dispute.closed"


async def test_webhooks_signed_dropped_resent_and_retried(env):
    pi = await env.pay("4242424242424242")
    [event] = await env.webhook("payment_intent.succeeded", pi.id)
    payload, signature = next(r for r in env.receiver.raw if json.loads(r[0])["id"] == event.id)
    tampered = payload.replace(b'"amount": 1999', b'"amount": 1')
    assert tampered != payload
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered, signature, WEBHOOK_SECRET, tolerance=300)

    await env.control("POST", "/_control/events/" + event.id + "/resend")
    assert len(await env.webhook("payment_intent.succeeded", pi.id, count=2)) == 2  # a duplicate
    assert {e.id for e in env.receiver.of("payment_intent.succeeded", pi.id)} == {event.id}

    await env.control("POST", "/_control/behaviour", {"drop_webhooks": 2})
    lost = await env.pay("4242424242424242")
    _, events = await env.control("GET", "/_control/events")
    dropped = [e for e in events if e["object_id"] in (lost.id, lost.latest_charge)]
    assert [(e["dropped"], e["attempts"]) for e in dropped] == [(True, []), (True, [])]
    async def settled():
        _, now = await env.control("GET", "/_control/events")
        return all(e["delivered"] or e["dropped"] for e in now)
    await eventually(settled, timeout=10, interval=0.05)
    env.receiver.fail_next = 2  # the shop is down for two attempts
    lost_event = next(e for e in dropped if e["type"] == "payment_intent.succeeded")
    await env.control("POST", f"/_control/events/{lost_event['id']}/resend")
    await env.webhook("payment_intent.succeeded", lost.id)

    async def delivered():
        _, now = await env.control("GET", "/_control/events")
        record = next(e for e in now if e["id"] == lost_event["id"])
        return record["attempts"] if record["delivered"] else None
    attempts = await eventually(delivered, timeout=10, interval=0.05)
    assert [a["status"] for a in attempts] == [503, 503, 200]


async def test_injected_failures_declines_and_delay(env):
    status, behaviour = await env.control("POST", "/_control/behaviour", {"fail_next": 1, "fail_status": 500})
    assert status == 200 and behaviour["fail_next"] == 1
    with pytest.raises(stripe.APIError) as outage:
        await env.client.v1.customers.create_async()
    assert outage.value.http_status == 500
    _, requests = await env.control("GET", "/_control/requests")
    assert requests[-1]["status"] == 500 and requests[-1]["path"] == "/v1/customers"
    assert (await env.client.v1.customers.create_async()).id.startswith("cus_")

    await env.control("POST", "/_control/behaviour", {"decline_next": 1})
    with pytest.raises(stripe.CardError) as dunned:
        await env.pay("4242424242424242")
    assert dunned.value.error.decline_code == "generic_decline"
    assert (await env.pay("4242424242424242")).status == "succeeded"

    await env.control("POST", "/_control/behaviour", {"delay_s": 0.2})
    started = time.monotonic()
    await env.client.v1.customers.create_async()
    assert time.monotonic() - started >= 0.19  # asyncio may wake a timer a hair early
    status, _ = await env.control("POST", "/_control/behaviour", {"slow": True})
    assert status == 400


async def test_no_card_number_or_cvc_anywhere(env):
    numbers = ["4242424242424242", "5555555555554444", "4000000000009995", "4000000000000069",
               "4000000000000002", "4000000000000341", "4000002760003184", "4000002500003155"]
    for number in numbers:
        try:
            pi = await env.pay(number)
            await env.client.v1.payment_intents.retrieve_async(pi.id, {"expand": ["payment_method"]})
        except stripe.CardError:
            pass
    _, requests = await env.control("GET", "/_control/requests")
    _, events = await env.control("GET", "/_control/events")
    assert len(requests) >= 3 * len(numbers) and events
    texts = [body.decode() for body in env.transport.bodies]
    texts += [json.dumps(requests), json.dumps(events), repr(vars(env.psp))]
    for text in texts:
        assert not any(number in text for number in numbers)
        assert '"cvc"' not in text and "'cvc'" not in text and f'"{CVC}"' not in text
