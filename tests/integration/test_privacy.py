"""The privacy service with every other service (accounts, orders, payments, marketing), real
PostgreSQL and RabbitMQ, the SMTP sink, and the sandbox carriers, accountant, SMS gateway and
PSP on loopback: requests fanned out to all of them."""
from __future__ import annotations

import io
import json
import uuid
import zipfile
from urllib.parse import parse_qs, urlsplit

import pytest

from deploy.mailsink import code_in
from services.privacy import records
from services.privacy.privacy import INVENTORY, NOT_PERSONAL
from services.privacy.service import PrivacyService
from services.privacy.settings import PrivacySettings
from shared.config import load_settings
from shared.service import ServiceRuntime
from tests.conftest import eventually, own_database
from tests.integration.inventory import undeclared_columns
from tests.integration.test_accounts import mailsink  # noqa: F401 (a fixture)
from tests.integration.test_marketing import EMAIL_OFFERS, PROFILING, market  # noqa: F401 (a fixture)
from tests.integration.test_orders import free_tcp_port, shop  # noqa: F401 (a fixture)
from tests.integration.test_payments import payments  # noqa: F401 (a fixture)


class Privacy:
    def __init__(self, shop, market, payments, runtime: ServiceRuntime) -> None:
        self.shop, self.market, self.payments, self.runtime = shop, market, payments, runtime
        self.base = f"http://127.0.0.1:{runtime.http_port}"
        self.pool = runtime.service.pool
        self.sink = shop.client.sink

    async def call(self, method: str, path: str, token: str | None = None, body=None, *, expect: int | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.shop.http.request(method, path if path.startswith("http") else self.base + path,
                                          json=body, headers=headers) as response:
            raw = await response.read()
            data = json.loads(raw) if raw and response.content_type.endswith("json") else raw
            if expect is not None:
                assert response.status == expect, (response.status, data)
            if response.status >= 400:
                assert response.content_type == "application/problem+json"
            return response.status, data

    async def completes(self, token: str, request_id: str, timeout: float = 60) -> dict:
        async def done():
            _, seen = await self.call("GET", f"/v1/me/privacy-requests/{request_id}", token, expect=200)
            return seen if seen["state"] == "completed" else None
        return await eventually(done, timeout=timeout)

    async def staff_completes(self, token: str, request_id: str, timeout: float = 60) -> dict:
        async def done():
            _, seen = await self.call("GET", f"/v1/staff/privacy-requests/{request_id}", token, expect=200)
            return seen if seen["state"] == "completed" else None
        return await eventually(done, timeout=timeout)

    async def mail(self, recipient: str, subject: str):
        async def arrived():
            return [m for m in self.sink.to(recipient) if subject in m["Subject"]] or None
        return await eventually(arrived)


@pytest.fixture
async def privacy(shop, market, payments, amqp_url):  # noqa: F811
    port = free_tcp_port()
    sandboxes = {**shop.sandboxes, "the-sms-gateway": market.gateway}
    for name, sandbox in sandboxes.items():
        sandbox.privacy_callback_url = f"http://127.0.0.1:{port}/v1/partners/{name}/callbacks"
    hosts = [host for partner in shop.orders.service.partners for host in [str(partner.endpoint).split("/")[2]]]
    async with own_database() as database:
        runtime = ServiceRuntime(PrivacyService, load_settings("privacy", PrivacySettings, **{
            "amqp_url": amqp_url, "database_url": database, "http_port": port,
            "jwks_url": f"http://127.0.0.1:{shop.accounts.http_port}/.well-known/jwks.json", "outbox_poll_s": 0.1,
            "shutdown_grace_s": 5, "retry_delay_ms": 100, "smtp_port": shop.client.sink.port,
            "public_url": f"http://127.0.0.1:{port}", "tasks_poll_s": 0.2, "rpc_timeout_s": 10,
            "subject_key": "privacy-subject-key", "webhook_allowed_hosts": [
                *hosts, str(market.runtime.service.partners.get("the-sms-gateway").endpoint).split("/")[2]],
            "webhook_retry_schedule_s": [0.3, 0.3, 0.3]}))
        await runtime.start()
        try:
            yield Privacy(shop, market, payments, runtime)
        finally:
            await runtime.stop()


def download_path(message, page: str) -> str:
    """What the mailed link's page (``/<lang>/privacy-request?id=&token=`` for a customer,
    ``guest-privacy`` for a guest) downloads: the request it names, with the link's token."""
    link = next(w for w in message.get_content().split() if f"/{page}?id=" in w)
    query = parse_qs(urlsplit(link).query)
    door = "me/privacy-requests" if page == "privacy-request" else "guest-privacy-requests"
    return f"/v1/{door}/{query['id'][0]}/export?token={query['token'][0]}"


async def a_customer_with_history(privacy: Privacy, email: str) -> dict:
    """An account with a paid order (a card saved at the PSP), a membership, and marketing
    consents with a profile."""
    customer = await privacy.market.consenting_customer(email, EMAIL_OFFERS, PROFILING)
    payments = privacy.payments
    order = await payments.order(customer)
    _, paid = await payments.call("POST", "/v1/payments", customer["access_token"], payments.paying(
        order, payment_method=await payments.tokenise(), save_card=True), expect=201)
    card_id = await payments.pool.fetchval("SELECT id FROM cards WHERE customer_id = $1", uuid.UUID(customer["id"]))
    await payments.call("POST", "/v1/me/membership", customer["access_token"], {"card_id": str(card_id)},
                        expect=201)
    await privacy.shop.reaches(order["id"], "delivered")  # the sandbox carrier delivers it
    return {**customer, "order": order, "payment": paid}


async def test_an_export_holds_every_participants_data_and_only_the_requesters(privacy):
    anna = await a_customer_with_history(privacy, "anna.export@example.lv")
    other = await a_customer_with_history(privacy, "other.export@example.lv")
    token = anna["access_token"]
    _, asked = await privacy.call("POST", "/v1/me/privacy-requests", token,
                                  {"request": {"kind": "export"}, "language": "en"}, expect=202)
    _, again = await privacy.call("POST", "/v1/me/privacy-requests", token, {"request": {"kind": "export"}},
                                  expect=202)
    assert again["id"] == asked["id"] and again["joined"] is True  # an open one is joined
    done = await privacy.completes(token, asked["id"])
    assert {t["participant"] for t in done["tasks"]} >= {"accounts", "orders", "payments", "marketing", "privacy",
                                                         "partner:door-carrier", "partner:the-accountant"}
    assert all(t["state"] == "done" for t in done["tasks"])

    [message] = await privacy.mail("anna.export@example.lv", "Your request is complete")
    assert f"{privacy.base}/en/privacy-request?id={asked['id']}&token=" in message.get_content()  # the shop's page
    link = download_path(message, "privacy-request")
    await privacy.call("GET", link, expect=401)  # the link alone opens nothing
    await privacy.call("GET", link, other["access_token"], expect=404)  # nor another customer's sign-in
    _, archive = await privacy.call("GET", link, token, expect=200)
    files = zipfile.ZipFile(io.BytesIO(archive))
    names = files.namelist()
    assert {"summary.en.txt", "summary.lv.txt"} <= set(names)
    summary = files.read("summary.en.txt").decode()
    for words in ("Purpose:", "Legal basis:", "Recipients:", "Kept:", "Source:", "consent ledger", "invoices"):
        assert words in summary
    everything = b"".join(files.read(n) for n in names if not n.startswith("summary")).decode()
    assert "anna.export@example.lv" in everything and anna["order"]["id"] in everything
    assert any(n.startswith("payments/") and "membership" in n for n in names)
    assert "other.export@example.lv" not in everything and other["order"]["id"] not in everything
    assert any(n.startswith("orders/") and n.endswith(".csv") for n in names)
    assert any(n.startswith("partner-door-carrier/") for n in names)  # what the carrier holds
    assert any(n.startswith("privacy/audit") for n in names)  # every step of her own request, at least
    for _ in range(2):
        await privacy.call("GET", link, token, expect=200)
    await privacy.call("GET", link, token, expect=404)  # used up


async def test_an_erasure_reaches_every_participant_and_is_verified(privacy):
    anna = await a_customer_with_history(privacy, "anna.erase@example.lv")
    token = anna["access_token"]
    _, asked = await privacy.call("POST", "/v1/me/privacy-requests", token, {"request": {"kind": "erasure"},
                                                                            "language": "en"}, expect=202)
    done = await privacy.completes(token, asked["id"])
    by = {t["participant"]: t for t in done["tasks"]}
    assert by["orders"]["remaining"] == [] and by["payments"]["remaining"] == []
    assert any(r["category"] == "fiscal records of paid orders" for r in by["orders"]["outcome"]["retained"])
    assert by["partner:door-carrier"]["outcome"]["records_erased"] >= 1  # the carrier had the shipment
    # The audit log keeps its entries about her (by id), and says so.
    assert {r["category"] for r in by["privacy"]["outcome"]["retained"]} == {
        "records of data-subject requests", "audit log"}
    assert privacy.shop.sandboxes["door-carrier"].callbacks_sent[-1]["type"] == "erasure.completed"
    assert await privacy.market.pool.fetchval("SELECT count(*) FROM people WHERE email = $1",
                                              "anna.erase@example.lv") == 0
    [message] = await privacy.mail("anna.erase@example.lv", "Your request is complete")
    assert "orders: done" in message.get_content()


async def test_support_enters_a_guests_request_extends_it_and_a_closed_account_starts_an_erasure(privacy):
    support = await privacy.shop.staff_token("support")
    await privacy.shop.guest_order()
    _, asked = await privacy.call("POST", "/v1/staff/privacy-requests", support, {
        "request": {"kind": "erasure"}, "subject": {"emails": ["guna@example.lv"]},
        "contact_email": "guna@example.lv", "identification": "replied from the order's address with the order id",
        "language": "en"}, expect=202)
    _, extended = await privacy.call("POST", f"/v1/staff/privacy-requests/{asked['id']}/extend", support,
                                     {"months": 2, "reason": "the carrier needs to confirm by post"}, expect=200)
    assert extended["extended_by_months"] == 2 and extended["due_at"] > asked["due_at"]
    await privacy.call("POST", f"/v1/staff/privacy-requests/{asked['id']}/extend", support,
                       {"months": 1, "reason": "one more month, please"}, expect=409)  # three months at most
    await privacy.mail("guna@example.lv", "We need more time")
    await privacy.staff_completes(support, asked["id"])
    _, queue = await privacy.call("GET", "/v1/staff/privacy-requests?state=completed", support, expect=200)
    assert asked["id"] in [r["id"] for r in queue["items"]]

    # Closing an account starts its erasure (P22).
    closing = await privacy.shop.client.customer("closing@example.lv")
    await privacy.shop.client.call("POST", "/v1/me/close", closing["access_token"],
                                   {"password": "correct horse battery"}, expect=202)

    async def started():
        return await privacy.pool.fetchval("SELECT id FROM requests WHERE source = 'account_closed'")
    request_id = await eventually(started)
    await privacy.staff_completes(support, str(request_id))
    status = await privacy.runtime.service.rpc.call("privacy", "request_status", str(request_id))
    assert status["state"] == "completed" and status["tasks"]["accounts"] == "done"


async def test_a_customer_cannot_see_anothers_requests_and_bad_input_is_refused(privacy):
    first = await privacy.shop.client.customer("first.dsr@example.lv")
    second = await privacy.shop.client.customer("second.dsr@example.lv")
    _, asked = await privacy.call("POST", "/v1/me/privacy-requests", first["access_token"],
                                  {"request": {"kind": "objection", "purpose": "profiling"}}, expect=202)
    await privacy.call("GET", f"/v1/me/privacy-requests/{asked['id']}", second["access_token"], expect=404)
    _, theirs = await privacy.call("GET", "/v1/me/privacy-requests", second["access_token"], expect=200)
    assert theirs["items"] == []
    await privacy.call("GET", "/v1/staff/privacy-requests", first["access_token"], expect=403)
    for body in ({"request": {"kind": "rewrite history"}}, {"request": {"kind": "objection", "purpose": "spam"}},
                 {"request": {"kind": "export", "extra": 1}}):
        await privacy.call("POST", "/v1/me/privacy-requests", second["access_token"], body, expect=422)
    support = await privacy.shop.staff_token("support")
    await privacy.call("POST", "/v1/staff/privacy-requests", support, {
        "request": {"kind": "export"}, "subject": {}, "contact_email": "x@example.lv",
        "identification": "nobody at all was identified"}, expect=422)
    assert await privacy.pool.fetchval("SELECT count(*) FROM requests") == 1
    done = await privacy.completes(first["access_token"], asked["id"])
    # Marketing applies the objection; the SMS gateway, which received the number, is told (Art. 19).
    assert {t["participant"] for t in done["tasks"]} == {"marketing", "partner:the-sms-gateway"}
    [told] = [r for r in privacy.market.gateway.received if r["message"]["type"] == "privacy.objection_received"]
    assert (told["message"]["data"]["reason"], told["message"]["data"]["purpose"]) == ("objection", "profiling")


async def test_every_personal_column_is_declared(privacy):
    undeclared, tables = await undeclared_columns(privacy.pool, INVENTORY, NOT_PERSONAL)
    assert undeclared == set(), f"declare these in services/privacy/privacy.py: {sorted(undeclared)}"
    assert {"requests", "tasks", "export_records"} <= tables


async def test_the_notice_and_the_record_are_what_every_service_declares(privacy):
    for accept, language in (("", "lv"), ("en-GB,en;q=0.9", "en")):
        async with privacy.shop.http.get(f"{privacy.base}/v1/privacy-notice",
                                         headers={"Accept-Language": accept} if accept else {}) as response:
            assert response.status == 200 and response.content_type == "text/html"
            page = await response.text()
        assert f'<html lang="{language}">' in page and "info@veikals.lv" in page
    _, page = await privacy.call("GET", "/v1/privacy-notice?lang=en", expect=200)
    assert b"Privacy notice" in page
    await privacy.call("GET", "/v1/staff/records-of-processing", expect=401)
    support = await privacy.shop.staff_token("support")
    _, record = await privacy.call("GET", "/v1/staff/records-of-processing", support, expect=200)
    # What the services answered over RPC is what their code declares (the committed copies'
    # source); only periods set by settings (the tests shorten some) may differ.
    built = records.build(records.code_inventories(), privacy.runtime.service.partners).model_dump(mode="json")
    def declared(activities):
        return [(a["participant"], a["category"], a["table"], a["fields"], a["purpose"], a["recipients"])
                for a in activities]
    assert declared(record["activities"]) == declared(built["activities"])
    assert {k: v for k, v in record.items() if k != "activities"} == {k: v for k, v in built.items() if k != "activities"}
    _, page = await privacy.call("GET", "/v1/staff/records-of-processing/page", support, expect=200)
    assert b"Record of processing activities" in page


async def test_an_unknown_request_status_is_none(privacy):
    assert await privacy.runtime.service.rpc.call("privacy", "request_status", str(uuid.uuid4())) is None


async def test_a_guest_is_verified_by_a_code_and_downloads_with_a_fresh_one(privacy):
    guest = {"name": "Ilze Guest", "email": "ilze.guest@example.lv", "phone": "+37129000077"}
    first, second = [await privacy.shop.guest_order(guest=guest) for _ in range(2)]
    ask = {"request": {"kind": "export"}, "language": "en"}
    _, answer = await privacy.call("POST", "/v1/guest-privacy-requests", body={**ask, "email": guest["email"]},
                                   expect=202)
    _, stranger = await privacy.call("POST", "/v1/guest-privacy-requests", body={**ask, "email": "nobody@example.lv"},
                                     expect=202)
    assert answer == stranger  # nothing tells whether an address has orders
    [message] = await privacy.mail(guest["email"], "Your Veikals code")
    code = code_in(message)
    wrong = "AAAAAAAA" if code != "AAAAAAAA" else "BBBBBBBB"
    await privacy.call("POST", "/v1/guest-privacy-confirmations", body={"email": guest["email"], "code": wrong},
                       expect=404)
    assert await privacy.pool.fetchval("SELECT count(*) FROM requests") == 0  # a wrong code does nothing
    _, created = await privacy.call("POST", "/v1/guest-privacy-confirmations",
                                    body={"email": guest["email"], "code": code}, expect=202)
    await privacy.call("POST", "/v1/guest-privacy-confirmations", body={"email": guest["email"], "code": code},
                       expect=404)  # once
    request_id, status_token = created["request"]["id"], created["status_token"]

    async def done():
        _, seen = await privacy.call("GET", f"/v1/guest-privacy-requests/{request_id}?token={status_token}",
                                     expect=200)
        return seen["state"] == "completed"
    await eventually(done, timeout=60)
    await privacy.call("GET", f"/v1/guest-privacy-requests/{request_id}?token={'x' * 32}", expect=404)

    [complete] = await privacy.mail(guest["email"], "Your request is complete")
    link = download_path(complete, "guest-privacy")
    token = link.split("token=")[1]
    await privacy.call("GET", f"{link}&code={wrong}", expect=404)  # the link alone opens nothing
    await privacy.call("POST", f"/v1/guest-privacy-requests/{request_id}/download-code?token={token}", expect=202)

    async def download_code():
        codes = [m for m in privacy.sink.to(guest["email"]) if m["Subject"] == "Your Veikals code"]
        return codes[1] if len(codes) > 1 else None
    fresh = code_in(await eventually(download_code))
    _, archive = await privacy.call("GET", f"{link}&code={fresh}", expect=200)
    everything = b"".join(zipfile.ZipFile(io.BytesIO(archive)).read(n) for n in
                          zipfile.ZipFile(io.BytesIO(archive)).namelist()).decode()
    assert first["id"] in everything and second["id"] in everything
    await privacy.call("GET", f"{link}&code={fresh}", expect=404)  # a code opens it once


async def test_a_complaint_holds_the_order_data_until_it_is_resolved_and_its_period_over(privacy):
    anna = await a_customer_with_history(privacy, "anna.held@example.lv")
    token, shop = anna["access_token"], privacy.shop
    _, complaint, _ = await shop.call("POST", f"/v1/me/orders/{anna['order']['id']}/complaints", token,
                                      {"description": "The mug arrived broken."}, expect=201)
    _, asked = await privacy.call("POST", "/v1/me/privacy-requests", token, {"request": {"kind": "erasure"}},
                                  expect=202)

    async def held():
        _, seen = await privacy.call("GET", f"/v1/me/privacy-requests/{asked['id']}", token, expect=200)
        by = {t["participant"]: t for t in seen["tasks"]}
        others_done = all(t["state"] == "done" for p, t in by.items() if p != "orders")
        return by["orders"] if by["orders"]["state"] == "held" and others_done else None
    orders_task = await eventually(held, timeout=60)
    assert orders_task["outcome"]["held"][0]["hold"] == f"complaint {complaint['id']}"

    # Resolved, and the limitation period over (the clock moved on): the sweep completes it.
    support = await shop.staff_token("support")
    await shop.call("POST", f"/v1/staff/complaints/{complaint['id']}/resolve", support,
                    {"resolution": "A new mug was sent.", "reason": "the customer's complaint by e-mail"}, expect=200)
    await shop.pool.execute("UPDATE complaints SET resolved_at = now() - interval '3 years' WHERE id = $1",
                            uuid.UUID(complaint["id"]))
    swept = await privacy.runtime.service.rpc.call("orders", "run_retention_sweep")
    assert swept["held erasures"] == 1
    done = await privacy.completes(token, asked["id"])
    assert {t["participant"]: t["state"] for t in done["tasks"]}["orders"] == "done"


async def test_a_rectification_corrects_the_account_and_reaches_the_processors_that_received_it(privacy):
    anna = await a_customer_with_history(privacy, "anna.fix@example.lv")
    token = anna["access_token"]
    await privacy.call("POST", "/v1/me/privacy-requests", token, {"request": {"kind": "rectification"}}, expect=422)
    _, asked = await privacy.call("POST", "/v1/me/privacy-requests", token, {"request": {
        "kind": "rectification", "name": "Anna Labotā", "phone": "+37120000999"}}, expect=202)
    done = await privacy.completes(token, asked["id"])
    by = {t["participant"]: t for t in done["tasks"]}
    assert set(by) == {"accounts", *(p for p in by if p.startswith("partner:"))}
    assert by["accounts"]["outcome"] == {"corrected": ["name", "phone"]}
    assert by["partner:door-carrier"]["outcome"]["records_rectified"] >= 1
    _, me, _ = await privacy.shop.client.call("GET", "/v1/me", token, expect=200)
    assert (me["name"], me["phone"]) == ("Anna Labotā", "+37120000999")
    shipment = next(r for r in privacy.shop.sandboxes["door-carrier"].received
                    if r["message"]["type"] == "shipment.created"
                    and r["message"]["data"]["recipient"]["email"] == "anna.fix@example.lv")
    assert shipment["message"]["data"]["recipient"]["name"] == "Anna Labotā"

    async def marketing_knows():  # accounts' profile_changed reached marketing
        return await privacy.market.pool.fetchval(
            "SELECT name FROM people WHERE customer_id = $1", uuid.UUID(anna["id"])) == "Anna Labotā"
    await eventually(marketing_knows)


async def test_a_shared_or_borrowed_phone_number_opens_no_one_elses_orders(privacy):
    victim = {"name": "Vija Guest", "email": "vija.guest@example.lv", "phone": "+37129000123"}
    theirs = await privacy.shop.guest_order(guest=victim)
    taker = await privacy.shop.client.customer("taker@example.lv", phone=victim["phone"])  # the same number
    token = taker["access_token"]
    _, objected = await privacy.call("POST", "/v1/me/privacy-requests", token,
                                     {"request": {"kind": "objection", "purpose": "profiling"}}, expect=202)
    _, again = await privacy.call("POST", "/v1/me/privacy-requests", token,
                                  {"request": {"kind": "objection", "purpose": "direct_marketing"}}, expect=202)
    assert again["id"] != objected["id"] and again["joined"] is False  # another objection, not the same one
    _, asked = await privacy.call("POST", "/v1/me/privacy-requests", token, {"request": {"kind": "erasure"}},
                                  expect=202)
    await privacy.completes(token, asked["id"])
    assert await privacy.shop.status(theirs["id"]) == "created"  # the guest's order is untouched
    assert await privacy.shop.pool.fetchval("SELECT contact_email FROM orders WHERE id = $1",
                                            uuid.UUID(theirs["id"])) == victim["email"]
