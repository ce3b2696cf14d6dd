"""The marketing service with accounts and orders, real PostgreSQL, RabbitMQ and the SMTP sink,
and the sandbox SMS gateway on loopback."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiohttp import web

from deploy.sandbox.partner import SandboxPartner
from services.accounts.schemas import EmailChanged
from services.marketing import domain
from services.marketing.privacy import INVENTORY, NOT_PERSONAL
from services.marketing.service import MarketingService
from services.marketing.settings import MarketingSettings
from shared.config import load_settings
from shared.contracts.privacy import DataSubject, ErasureRequest, ExportRequest
from shared.messaging import wire
from shared.service import ServiceRuntime
from shared.webhooks.signing import new_secret
from tests.conftest import eventually, own_database
from tests.integration.inventory import undeclared_columns
from tests.integration.test_accounts import mailsink  # noqa: F401 (a fixture)
from tests.integration.test_orders import free_tcp_port, shop  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[2]
LINK_KEY, SUPPRESSION_KEY = "link-key-for-tests", "suppression-key-for-tests"
EMAIL_WORDING, SMS_WORDING, PROFILING_WORDING = "email-2026-11", "sms-2026-11", "profiling-2026-11"
EMAIL_OFFERS = {"purpose": "direct_marketing", "channel": "email"}
SMS_OFFERS = {"purpose": "direct_marketing", "channel": "sms"}
PROFILING = {"purpose": "profiling"}


def marketing_env(amqp_url: str, database: str, port: int, jwks_port: int, smtp_port: int, **overrides) -> dict:
    return {"amqp_url": amqp_url, "database_url": database, "http_port": port,
            "jwks_url": f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json", "outbox_poll_s": 0.1,
            "shutdown_grace_s": 5, "retry_delay_ms": 100, "smtp_port": smtp_port,
            "public_url": f"http://127.0.0.1:{port}", "link_key": LINK_KEY, "suppression_key": SUPPRESSION_KEY,
            "campaign_poll_s": 0.2, "campaign_rate_per_s": 0, "webhook_retry_schedule_s": [0.3, 0.3, 0.3],
            **overrides}


class Market:
    """Marketing running beside the shop, the SMS gateway sandbox, and the parties' moves."""

    def __init__(self, shop, runtime: ServiceRuntime, gateway: SandboxPartner) -> None:
        self.shop, self.runtime, self.gateway = shop, runtime, gateway
        self.base = f"http://127.0.0.1:{runtime.http_port}"
        self.pool = runtime.service.pool
        self.sink = shop.client.sink

    async def call(self, method: str, path: str, token: str | None = None, body=None, *, expect: int | None = None,
                   **kwargs):
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = path if path.startswith("http") else self.base + path
        async with self.shop.http.request(method, url, json=body, headers=headers, **kwargs) as response:
            text = await response.text()
            data = json.loads(text) if text and response.content_type.endswith("json") else text
            if expect is not None:
                assert response.status == expect, (response.status, data)
            if response.status >= 400:
                assert response.content_type == "application/problem+json"
            return response.status, data

    async def mail(self, recipient: str, subject: str, count: int = 1, timeout: float = 15):
        """The messages to ``recipient`` whose subject has ``subject``, once ``count`` have come."""
        async def arrived():
            found = [m for m in self.sink.to(recipient) if subject in m["Subject"]]
            return found if len(found) >= count else None
        return await eventually(arrived, timeout=timeout)

    def received(self, recipient: str, subject: str) -> list:
        return [m for m in self.sink.to(recipient) if subject in m["Subject"]]

    async def confirm_from_mail(self, recipient: str, nth: int = 1) -> str:
        [*_, message] = await self.mail(recipient, "Apstipriniet Veikala jaunumu", nth)
        link = next(w for w in message.get_content().split() if "/v1/consents/confirm?token=" in w)
        await self.call("POST", link, expect=200)
        return link

    async def customer(self, email: str, phone: str = "+37120000001") -> dict:
        return await self.shop.client.customer(email, phone=phone)

    async def consenting_customer(self, email: str, *scopes: dict) -> dict:
        customer = await self.customer(email)
        for scope in scopes or (EMAIL_OFFERS,):
            version = {"email": EMAIL_WORDING, "sms": SMS_WORDING}.get(scope.get("channel"), PROFILING_WORDING)
            await self.call("POST", "/v1/me/consents", customer["access_token"],
                            {"consent": scope, "wording_version": version}, expect=200)
            if scope == EMAIL_OFFERS:
                await self.confirm_from_mail(email)
        return customer

    async def campaign(self, token: str, name: str, channel: str = "email", audience: dict | None = None) -> dict:
        _, campaign = await self.call("POST", "/v1/staff/campaigns", token, {
            "name": name, "channel": channel, "subject": {"lv": f"{name} LV", "en": f"{name} EN"},
            "body": {"lv": f"Atlaides: {name}", "en": f"Sale: {name}"}, "audience": audience or {}}, expect=201)
        return campaign

    async def send(self, token: str, campaign: dict) -> dict:
        _, started = await self.call("POST", f"/v1/staff/campaigns/{campaign['id']}/send", token, expect=200)
        return started

    async def finished(self, token: str, campaign_id: str, timeout: float = 20) -> dict:
        async def done():
            _, seen = await self.call("GET", f"/v1/staff/campaigns/{campaign_id}", token, expect=200)
            return seen if seen["status"] == "sent" else None
        return await eventually(done, timeout=timeout)

    async def handled(self, consumer: str, count: int) -> None:
        async def applied():
            return await self.pool.fetchval("SELECT count(*) FROM inbox WHERE consumer = $1", consumer) >= count
        await eventually(applied)

    async def profile(self, token: str) -> dict | None:
        _, answer = await self.call("GET", "/v1/me/profile", token, expect=200)
        return answer["profile"]


@pytest.fixture
async def market(shop, amqp_url, tmp_path, monkeypatch):  # noqa: F811
    port = free_tcp_port()
    secret_env = "VEIKALS_PARTNER_THE_SMS_GATEWAY_SECRET"
    monkeypatch.setenv(secret_env, secret := new_secret())
    gateway = SandboxPartner("the-sms-gateway", "sms", secret,
                             f"http://127.0.0.1:{port}/v1/partners/the-sms-gateway/callbacks", None)
    runner = web.AppRunner(gateway.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    partners = json.loads(Path(os.environ["VEIKALS_PARTNERS_FILE"]).read_text())
    partners["partners"].append({"name": "the-sms-gateway", "kind": "sms", "secret_env": [secret_env],
                                 "endpoint": f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/webhooks",
                                 "description": "test sms"})
    partners_file = tmp_path / "partners-with-sms.json"
    partners_file.write_text(json.dumps(partners))
    monkeypatch.setenv("VEIKALS_PARTNERS_FILE", str(partners_file))
    async with own_database() as database:
        gateway_host = f"127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        runtime = ServiceRuntime(MarketingService, load_settings("marketing", MarketingSettings, **marketing_env(
            amqp_url, database, port, shop.accounts.http_port, shop.client.sink.port,
            webhook_allowed_hosts=[gateway_host])))
        await runtime.start()
        try:
            yield Market(shop, runtime, gateway)
        finally:
            await runtime.stop()
            await runner.cleanup()


# --- consent, campaign, one-click unsubscribe ----------------------------------------------------

async def test_a_confirmed_consent_receives_a_campaign_and_one_click_unsubscribes(market):
    email = "marta@example.lv"
    customer = await market.customer(email)
    token = customer["access_token"]
    marketer = await market.shop.staff_token("marketing")
    _, wordings = await market.call("GET", "/v1/consent-wordings", expect=200)
    assert {w["version"] for w in wordings["items"]} >= {EMAIL_WORDING, SMS_WORDING, PROFILING_WORDING}

    _, asked = await market.call("POST", "/v1/me/consents", token,
                                 {"consent": EMAIL_OFFERS, "wording_version": EMAIL_WORDING}, expect=200)
    assert asked["status"] == "confirmation_sent"
    [confirmation] = await market.mail(email, "Apstipriniet Veikala jaunumu")
    link = next(w for w in confirmation.get_content().split() if "/v1/consents/confirm?token=" in w)
    _, state = await market.call("GET", "/v1/me/consents", token, expect=200)
    assert state["consents"] == [] and state["awaiting_confirmation"] == 1

    # Not yet confirmed: a campaign started now does not reach the address.
    early = await market.send(marketer, await market.campaign(marketer, "Early"))
    assert early["recipients"] == 0

    # A mail scanner following the link confirms nothing; the button does.
    _, page = await market.call("GET", link, expect=200)
    assert "<form method=\"post\"" in page
    _, state = await market.call("GET", "/v1/me/consents", token, expect=200)
    assert state["consents"] == []
    await market.call("POST", link, expect=200)
    await market.call("POST", link, expect=404)  # a link confirms once
    _, state = await market.call("GET", "/v1/me/consents", token, expect=200)
    [granted] = state["consents"]
    assert (granted["purpose"], granted["channel"], granted["granted"], granted["source"],
            granted["wording_version"]) == ("direct_marketing", "email", True, "double_opt_in", EMAIL_WORDING)

    campaign = await market.send(marketer, await market.campaign(marketer, "Winter"))
    assert campaign["recipients"] == 1
    [message] = await market.mail(email, "Winter")
    assert message["Subject"] == "Winter LV" and "Atlaides: Winter" in message.get_content()
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = [part.strip().strip("<>") for part in message["List-Unsubscribe"].split(",")]
    assert https.startswith(market.base + "/v1/unsubscribe?token=") and mailto.startswith("mailto:")
    assert email not in https and https in message.get_content()  # the footer carries the same link
    assert (await market.finished(marketer, campaign["id"]))["sent"] == 1

    # The footer link's page unsubscribes no one; the one-click POST does, at once, without login.
    _, page = await market.call("GET", https, expect=200, headers={"Accept": "text/html"})
    assert "Atteikties" in page
    _, state = await market.call("GET", "/v1/me/consents", token, expect=200)
    assert state["consents"][0]["granted"] is True
    await market.call("POST", https, data="List-Unsubscribe=One-Click", expect=200,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    _, state = await market.call("GET", "/v1/me/consents", token, expect=200)
    assert (state["consents"][0]["granted"], state["consents"][0]["source"]) == (False, "unsubscribe_link")
    await market.call("POST", https, expect=200)  # again: the same answer, no new entry
    _, history = await market.call("GET", "/v1/me/consents/history", token, expect=200)
    assert [e["source"] for e in history["items"]] == ["unsubscribe_link", "double_opt_in"]

    later = await market.send(marketer, await market.campaign(marketer, "Spring"))
    assert later["recipients"] == 0
    await market.finished(marketer, later["id"])
    assert market.received(email, "Spring") == []


async def test_a_guest_consents_at_checkout_and_an_sms_campaign_goes_through_the_gateway(market):
    guest = "guest.offers@example.lv"
    await market.call("POST", "/v1/guest-consents", body={"email": guest, "wording_version": EMAIL_WORDING,
                                                          "language": "en"}, expect=202)
    [confirmation] = await market.mail(guest, "Confirm Veikals offers")
    link = next(w for w in confirmation.get_content().split() if "/v1/consents/confirm?token=" in w)
    _, page = await market.call("GET", link, expect=200)
    assert "Confirm" in page
    await market.call("POST", link, expect=200)

    texter = await market.customer("texter@example.lv", phone="+37129111222")
    await market.call("POST", "/v1/me/consents", texter["access_token"],
                      {"consent": SMS_OFFERS, "wording_version": SMS_WORDING, "language": "en"}, expect=200)
    marketer = await market.shop.staff_token("marketing")
    by_mail = await market.send(marketer, await market.campaign(marketer, "Guests"))
    assert by_mail["recipients"] == 1
    [message] = await market.mail(guest, "Guests EN")
    assert "Sale: Guests" in message.get_content() and "Unsubscribe:" in message.get_content()

    by_text = await market.send(marketer, await market.campaign(marketer, "Texts", channel="sms"))
    assert by_text["recipients"] == 1

    async def texted():
        return [r for r in market.gateway.received if r["message"]["type"] == "sms.requested"]
    [sms] = await eventually(texted)
    assert sms["message"]["data"]["to"] == "+37129111222"
    assert "Sale: Texts" in sms["message"]["data"]["text"] and "/v1/unsubscribe?token=" in sms["message"]["data"]["text"]

    async def delivered():  # the gateway's signed callback
        return await market.pool.fetchval(
            "SELECT delivered_at IS NOT NULL FROM campaign_deliveries WHERE id = $1",
            uuid.UUID(sms["message"]["data"]["message_id"]))
    await eventually(delivered)


async def test_a_customers_mail_is_in_the_language_of_their_account(market):
    email = "emma.offers@example.lv"
    customer = await market.shop.client.customer(email, language="en")
    token = customer["access_token"]
    # The consent names no language: our mail is in the account's.
    await market.call("POST", "/v1/me/consents", token, {"consent": EMAIL_OFFERS, "wording_version": EMAIL_WORDING},
                      expect=200)
    [confirmation] = await market.mail(email, "Confirm Veikals offers")
    link = next(w for w in confirmation.get_content().split() if "/v1/consents/confirm?token=" in w)
    await market.call("POST", link, expect=200)
    # She switches her account to Latvian (accounts' profile_changed): the campaign follows.
    await market.shop.client.call("PATCH", "/v1/me", token, {"language": "lv"}, expect=200)
    await market.handled("marketing.on_profile_changed", 1)
    marketer = await market.shop.staff_token("marketing")
    await market.send(marketer, await market.campaign(marketer, "Bilingual"))
    [message] = await market.mail(email, "Bilingual")
    assert message["Subject"] == "Bilingual LV" and "Atlaides: Bilingual" in message.get_content()


async def test_a_withdrawal_during_a_send_stops_the_messages_not_yet_sent(market):
    marketer = await market.shop.staff_token("marketing")
    guests = [f"slow{n}@example.lv" for n in range(8)]
    for guest in guests:
        await market.call("POST", "/v1/guest-consents", body={"email": guest, "wording_version": EMAIL_WORDING},
                          expect=202)
        await market.confirm_from_mail(guest)
    sender = next(b for b in market.runtime._background if b.name == "marketing-campaigns")
    sender.rate = type(sender.rate)(2)  # two a second: the send takes about four seconds
    campaign = await market.send(marketer, await market.campaign(marketer, "Slow"))
    assert campaign["recipients"] == len(guests)
    order = [r["email"] for r in await market.pool.fetch(
        """SELECT p.email FROM campaign_deliveries d JOIN people p ON p.id = d.person_id
           WHERE d.campaign_id = $1 ORDER BY d.person_id""", uuid.UUID(campaign["id"]))]
    first, last = order[0], order[-1]
    await market.mail(first, "Slow")
    # The last in line withdraws while the campaign is being sent (support, on their request).
    support = await market.shop.staff_token("support")
    await market.call("POST", "/v1/staff/consents/withdraw", support, {
        "email": last, "consent": EMAIL_OFFERS, "reason": "asked by e-mail to stop all offers"}, expect=200)
    done = await market.finished(marketer, campaign["id"])
    assert (done["sent"], done["skipped"]) == (len(guests) - 1, 1)
    assert market.received(last, "Slow") == []
    assert all(len(market.received(g, "Slow")) == 1 for g in guests if g != last)


# --- profiles and objection ----------------------------------------------------------------------

async def test_an_objection_deletes_the_profile_and_later_orders_do_not_rebuild_it(market):
    customer = await market.consenting_customer("profiled@example.lv", PROFILING)
    token = customer["access_token"]
    shop = market.shop

    async def paid_order(*lines) -> None:
        _, order, _ = await shop.call("POST", "/v1/orders", token, {
            "carrier": "door-carrier", "address": {"line1": "Brīvības iela 1", "city": "Rīga",
                                                   "postal_code": "LV-1010", "country": "LV"},
            "lines": list(lines)}, expect=201)
        await shop.pay(order)
        await shop.reaches(order["id"], "paid")

    await paid_order(shop.line("TEA-001", 2), shop.line("BOOK-001"))
    await market.handled("marketing.on_order_paid", 1)
    profile = await market.profile(token)
    assert profile["orders"] == 1 and profile["spend_cents"] == 2 * 690 + 1299
    assert {c["category"]: c["items"] for c in profile["categories"]} == {"food": 2, "books": 1}

    # A profile-based audience finds the customer (once they consent to e-mail too).
    await market.call("POST", "/v1/me/consents", token, {"consent": EMAIL_OFFERS, "wording_version": EMAIL_WORDING},
                      expect=200)
    await market.confirm_from_mail("profiled@example.lv")
    marketer = await market.shop.staff_token("marketing")
    readers = await market.send(marketer, await market.campaign(marketer, "Readers", audience={"category": "books"}))
    gardeners = await market.send(marketer, await market.campaign(marketer, "Gardeners", audience={"category": "garden"}))
    assert (readers["recipients"], gardeners["recipients"]) == (1, 0)

    await market.call("POST", "/v1/me/objections", token, {"purpose": "profiling"}, expect=200)
    assert await market.profile(token) is None
    _, state = await market.call("GET", "/v1/me/consents", token, expect=200)
    assert state["objections"] == ["profiling"]
    assert any(c["purpose"] == "profiling" and not c["granted"] for c in state["consents"])

    await paid_order(shop.line("BREAD-001"))
    await market.handled("marketing.on_order_paid", 2)
    assert await market.profile(token) is None
    assert await market.pool.fetchval("SELECT count(*) FROM profile_categories") == 0


# --- a crash in the middle of a campaign ---------------------------------------------------------

async def test_a_campaign_killed_mid_send_resumes_without_doubles_or_gaps(market, amqp_url, tmp_path):
    """The service as a process of its own, killed (SIGKILL) while it sends, then started again."""
    guests = [f"crash{n:02d}@example.lv" for n in range(40)]
    pool = market.pool
    # The audience, as confirmed guests (written as the ledger would hold them).
    async with pool.acquire() as conn, conn.transaction():
        for guest in guests:
            person_id = await conn.fetchval("INSERT INTO people (id, email) VALUES ($1, $2) RETURNING id",
                                            uuid.uuid4(), guest)
            await conn.execute("""INSERT INTO consent_entries (person_id, channel, purpose, granted, source,
                                  wording_version) VALUES ($1, 'email', 'direct_marketing', true, 'double_opt_in', $2)""",
                               person_id, EMAIL_WORDING)
    marketer = await market.shop.staff_token("marketing")
    campaign = await market.campaign(marketer, "Crash")
    in_process = next(b for b in market.runtime._background if b.name == "marketing-campaigns")
    await in_process.stop()  # the process below sends it alone

    port = free_tcp_port()
    settings = marketing_env(amqp_url, market.runtime.settings.dsn, port, market.shop.accounts.http_port,
                             market.sink.port, campaign_rate_per_s=20, campaign_lease_s=1, campaign_concurrency=2)
    env = {**os.environ, **{f"VEIKALS_MARKETING_{k.upper()}": json.dumps(v) if isinstance(v, list) else str(v)
                            for k, v in settings.items()}}

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "services.marketing"], cwd=ROOT, env=env,
                                stdout=(tmp_path / "marketing.log").open("a"), stderr=subprocess.STDOUT)

    async def ready():
        try:
            async with market.shop.http.get(f"http://127.0.0.1:{port}/readyz") as response:
                return response.status == 200
        except OSError:
            return False

    process = start()
    try:
        await eventually(ready, timeout=30)
        async with market.shop.http.post(f"http://127.0.0.1:{port}/v1/staff/campaigns/{campaign['id']}/send",
                                         headers={"Authorization": f"Bearer {marketer}"}) as response:
            assert response.status == 200, await response.text()

        async def some_sent():
            return len([m for m in market.sink.messages if m["Subject"] == "Crash LV"]) >= 10
        await eventually(some_sent)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        sent_before = len([m for m in market.sink.messages if m["Subject"] == "Crash LV"])
        assert sent_before < len(guests), "the campaign ended before the kill: nothing was tested"

        process = start()
        await eventually(ready, timeout=30)

        async def finished():
            return await pool.fetchval("SELECT status FROM campaigns WHERE id = $1", uuid.UUID(campaign["id"])) == "sent"
        await eventually(finished, timeout=60)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    crash = [m for m in market.sink.messages if m["Subject"] == "Crash LV"]
    by_recipient: dict[str, set[str]] = {}
    for message in crash:
        by_recipient.setdefault(message["To"], set()).add(message["Message-ID"])
    assert sorted(by_recipient) == sorted(guests)  # no gaps
    assert all(len(ids) == 1 for ids in by_recipient.values())  # one message each
    # A copy again (same Message-ID) only for what was in flight at the kill: one per sender.
    assert len(crash) - len(guests) <= 2
    assert await pool.fetchval("SELECT count(*) FROM campaign_deliveries WHERE status = 'sent'") == len(guests)


# --- erasure and suppression ---------------------------------------------------------------------

async def test_an_erased_address_is_suppressed_until_it_consents_afresh(market):
    marketer = await market.shop.staff_token("marketing")
    erased = "erased.guest@example.lv"
    await market.call("POST", "/v1/guest-consents", body={"email": erased, "wording_version": EMAIL_WORDING},
                      expect=202)
    await market.confirm_from_mail(erased)
    request = ErasureRequest(request_id=uuid.uuid4(), subject=DataSubject(emails=[erased]))
    outcome = await market.runtime.service.rpc.call("marketing", "privacy_erase", request.model_dump(mode="json"))
    assert {e["category"] for e in outcome["erased"]} >= {"consent ledger", "contact details for marketing"}
    assert [r["category"] for r in outcome["retained"]] == ["suppressed addresses"]
    recheck = await market.runtime.service.rpc.call("marketing", "privacy_erase", ErasureRequest(
        request_id=uuid.uuid4(), subject=DataSubject(emails=[erased]), verify_only=True).model_dump(mode="json"))
    assert recheck["remaining"] == []
    assert await market.pool.fetchval("SELECT count(*) FROM people WHERE email = $1", erased) == 0

    # A customer who consented on another address moves to the erased one: the consent moves,
    # but the suppressed address gets nothing until it is confirmed afresh.
    mover = await market.consenting_customer("mover@example.lv")
    await market.shop.broker.publish("accounts.events", "email_changed", wire.dumps(EmailChanged(
        customer_id=mover["id"], email=erased, changed_at=dt.datetime.now(dt.timezone.utc)).model_dump(mode="json")),
        message_id=str(uuid.uuid4()))
    await market.handled("marketing.on_email_changed", 1)
    first = await market.send(marketer, await market.campaign(marketer, "Suppressed"))
    assert first["recipients"] == 0
    _, asked = await market.call("POST", "/v1/me/consents", mover["access_token"],
                                 {"consent": EMAIL_OFFERS, "wording_version": EMAIL_WORDING}, expect=200)
    assert asked["status"] == "confirmation_sent"
    await market.confirm_from_mail(erased, nth=2)
    second = await market.send(marketer, await market.campaign(marketer, "Afresh"))
    assert second["recipients"] == 1
    await market.mail(erased, "Afresh")
    assert market.received(erased, "Suppressed") == []


async def test_export_and_erasure_of_a_customer(market):
    customer = await market.consenting_customer("exported@example.lv", EMAIL_OFFERS, PROFILING)
    support = await market.shop.staff_token("support")
    _, seen = await market.call("POST", "/v1/staff/consent-lookups", support, {
        "customer_id": customer["id"], "reason": "the customer asked what we hold"}, expect=200)
    assert len(seen["ledger"]) == 2
    subject = DataSubject(customer_id=customer["id"])
    chunk = await market.runtime.service.rpc.call("marketing", "privacy_export", ExportRequest(
        request_id=uuid.uuid4(), subject=subject).model_dump(mode="json"))
    categories = {r["category"] for r in chunk["records"]}
    assert {"contact details for marketing", "consent ledger", "staff access records"} <= categories
    assert chunk["next_cursor"] is None

    outcome = await market.runtime.service.rpc.call("marketing", "privacy_erase", ErasureRequest(
        request_id=uuid.uuid4(), subject=subject).model_dump(mode="json"))
    assert {r["category"] for r in outcome["retained"]} == {"suppressed addresses", "staff access records"}
    recheck = await market.runtime.service.rpc.call("marketing", "privacy_erase", ErasureRequest(
        request_id=uuid.uuid4(), subject=subject, verify_only=True).model_dump(mode="json"))
    assert recheck["remaining"] == []
    _, state = await market.call("GET", "/v1/me/consents", customer["access_token"], expect=200)
    assert state["consents"] == []


# --- what is refused ----------------------------------------------------------------------------

async def test_bad_input_and_bad_links_are_refused_and_change_nothing(market):
    customer = await market.consenting_customer("careful@example.lv")
    token = customer["access_token"]
    marketer = await market.shop.staff_token("marketing")
    for body in ({"consent": {"purpose": "direct_marketing", "channel": "pigeon"}, "wording_version": EMAIL_WORDING},
                 {"consent": {"purpose": "telepathy"}, "wording_version": EMAIL_WORDING},
                 {"consent": {"purpose": "profiling", "channel": "email"}, "wording_version": PROFILING_WORDING}):
        await market.call("POST", "/v1/me/consents", token, body, expect=422)
    await market.call("POST", "/v1/me/consents", token, {"consent": PROFILING, "wording_version": EMAIL_WORDING},
                      expect=404)  # a wording for another consent
    await market.call("POST", "/v1/staff/campaigns", marketer, {"name": "No channel", "body": {"lv": "x", "en": "y"}},
                      expect=422)
    _, listed = await market.call("GET", "/v1/staff/campaigns", marketer, expect=200)
    assert listed["items"] == []

    person_id = await market.pool.fetchval("SELECT id FROM people WHERE customer_id = $1", uuid.UUID(customer["id"]))
    key = LINK_KEY.encode()
    good = domain.unsubscribe_token(key, person_id, "email", dt.date.today())
    forged = domain.unsubscribe_token(b"not our key", person_id, "email", dt.date.today())
    expired = domain.unsubscribe_token(key, person_id, "email", dt.date.today() - dt.timedelta(days=401))
    for token_ in (forged, expired, good[:-2] + ("AA" if not good.endswith("AA") else "BB")):
        await market.call("POST", f"/v1/unsubscribe?token={token_}", expect=404)
        await market.call("GET", f"/v1/unsubscribe?token={token_}", expect=404)
    await market.call("POST", "/v1/unsubscribe?token=not%20a%20token", expect=422)
    await market.call("POST", f"/v1/consents/confirm?token={'x' * 32}", expect=404)
    _, state = await market.call("GET", "/v1/me/consents", token, expect=200)
    assert state["consents"][0]["granted"] is True
    assert await market.pool.fetchval("SELECT count(*) FROM consent_entries") == 1
    await market.call("POST", f"/v1/unsubscribe?token={good}", expect=200)
    with pytest.raises(Exception):  # the ledger is append-only
        await market.pool.execute("UPDATE consent_entries SET granted = true")


async def test_a_customer_cannot_reach_another_customers_consents(market):
    first = await market.consenting_customer("first@example.lv", PROFILING)
    second = await market.customer("second@example.lv")
    _, theirs = await market.call("GET", "/v1/me/consents", second["access_token"], expect=200)
    assert theirs["consents"] == []
    await market.call("POST", "/v1/me/consents/withdraw", second["access_token"], {"consent": PROFILING}, expect=200)
    _, history = await market.call("GET", "/v1/me/consents/history", second["access_token"], expect=200)
    assert history["items"] == []
    _, mine = await market.call("GET", "/v1/me/consents", first["access_token"], expect=200)
    assert mine["consents"][0]["granted"] is True
    # Customers' tokens open no staff route; staff tokens open no customer route.
    for method, path in (("POST", "/v1/staff/consent-lookups"), ("GET", "/v1/staff/campaigns")):
        status, _ = await market.call(method, path, second["access_token"],
                                      {"customer_id": first["id"], "reason": "curious about my neighbour"}
                                      if method == "POST" else None)
        assert status == 403
    marketer = await market.shop.staff_token("marketing")
    await market.call("GET", "/v1/me/consents", marketer, expect=403)
    await market.call("POST", "/v1/staff/consent-lookups", marketer,
                      {"customer_id": first["id"], "reason": "marketing is not support"}, expect=403)


async def test_every_personal_column_is_declared(market):
    undeclared, tables = await undeclared_columns(market.pool, INVENTORY, NOT_PERSONAL)
    assert undeclared == set(), f"declare these in services/marketing/privacy.py: {sorted(undeclared)}"
    assert {"people", "consent_entries", "profiles", "campaign_deliveries", "suppressions"} <= tables
    listed = {t for t, _ in INVENTORY.declared_columns() | NOT_PERSONAL}
    assert listed <= tables, f"declared tables that do not exist: {sorted(listed - tables)}"


async def test_the_privacy_service_applies_an_objection_and_a_withdrawal(market):
    customer = await market.consenting_customer("objector@example.lv", EMAIL_OFFERS, PROFILING)
    rpc = market.runtime.service.rpc
    subject = DataSubject(customer_id=customer["id"]).model_dump(mode="json")
    assert await rpc.call("marketing", "withdraw_consent", subject, "direct_marketing") == 1
    assert await rpc.call("marketing", "withdraw_consent", subject, "direct_marketing") == 0
    assert await rpc.call("marketing", "apply_objection", subject, "profiling") == 1
    _, state = await market.call("GET", "/v1/me/consents", customer["access_token"], expect=200)
    assert state["objections"] == ["profiling"]
    assert {(c["purpose"], c["granted"], c["source"]) for c in state["consents"]} == {
        ("direct_marketing", False, "privacy_request"), ("profiling", False, "objection")}
    # A customer marketing has never seen: the objection waits for them.
    stranger = DataSubject(customer_id=uuid.uuid4()).model_dump(mode="json")
    assert await rpc.call("marketing", "apply_objection", stranger, "direct_marketing") == 1
    assert await market.pool.fetchval(
        "SELECT purpose FROM objections o JOIN people p ON p.id = o.person_id WHERE p.customer_id = $1",
        uuid.UUID(stranger["customer_id"])) == "direct_marketing"
