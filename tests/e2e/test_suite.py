"""The whole suite as processes, driven as an operator would: HTTP probes and ``nameko``."""
import asyncio
import json
import os
import signal
import subprocess
import sys

import aiohttp
import pytest

from deploy.mailsink import MailSink, code_in
from tests.conftest import eventually, own_vhost
from tests.e2e.processes import ROOT, SERVICES, running_suite


@pytest.fixture(scope="module")
def amqp_url():
    with own_vhost() as url:
        yield url


@pytest.fixture(scope="module")
async def mailsink():
    sink = MailSink()
    await sink.start()
    yield sink
    await sink.stop()


@pytest.fixture(scope="module")
async def suite(amqp_url, tmp_path_factory, mailsink):
    async with running_suite(amqp_url, tmp_path_factory.mktemp("suite-logs"), mailsink.port) as procs:
        yield procs


async def test_every_service_is_ready_and_documented(suite):
    async with aiohttp.ClientSession() as http:
        for name, service in suite.items():
            base = service.url
            async with http.get(f"{base}/readyz") as response:
                assert await response.json() == {
                    "status": "ready", "checks": {"broker": "ok", "database": "ok"}}
            async with http.get(f"{base}/openapi.json") as response:
                assert (await response.json())["info"]["title"] == f"Veikals {name} API"
            async with http.get(f"{base}/metrics") as response:
                assert "veikals_http_requests_total" in await response.text()


async def test_nameko_calls_health_on_every_service(suite, amqp_url):
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "tests.nameko_peer", "health", amqp_url, *SERVICES],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    health = json.loads(done.stdout.strip().splitlines()[-1])
    assert health == {name: {"result": {"service": name, "database": "ok", "broker": "ok"}}
                      for name in SERVICES}


async def test_a_customer_and_an_admin_as_the_frontend_and_an_operator_would(suite, mailsink, amqp_url):
    accounts = suite["accounts"].url
    password = "a long enough password"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{accounts}/v1/accounts", json={
                "name": "Līga", "email": "liga@example.lv", "phone": "+37120000003",
                "password": password, "terms_version": "2026-01"}) as response:
            assert response.status == 202
        [message] = await mailsink.wait_for("liga@example.lv", timeout=30)
        async with http.post(f"{accounts}/v1/accounts/verify-email", json={"token": code_in(message), "password": password}) as response:
            assert response.status == 200
        async with http.post(f"{accounts}/v1/auth/login",
                             json={"email": "liga@example.lv", "password": password}) as response:
            assert response.status == 200
            customer = await response.json()

        # The first admin, made by an operator's command; the token works in another service.
        env = {**os.environ, "VEIKALS_STAFF_PASSWORD": password,
               "VEIKALS_ACCOUNTS_DATABASE_URL": suite["accounts"].dsn}
        done = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "services.accounts.admin", "create-staff", "--email", "admin@shop.example",
            "--name", "Admin", "--role", "admin"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        async with http.post(f"{accounts}/v1/staff/auth/login",
                             json={"email": "admin@shop.example", "password": password}) as response:
            assert response.status == 200
            admin = await response.json()
        orders = suite["orders"].url
        for token, status in [(admin["access_token"], 200), (customer["access_token"], 403), ("nonsense", 401)]:
            async with http.get(f"{orders}/v1/staff/partners",
                                headers={"Authorization": f"Bearer {token}"}) as response:
                assert response.status == status
        await a_guest_buys_and_pays(http, orders, suite["payments"].url, admin["access_token"])
        await a_guest_consents_and_unsubscribes(http, suite["marketing"].url, admin["access_token"], mailsink)


GUNA = {"name": "Guna", "email": "guna@example.lv", "phone": "+37129000002"}
RIGA = {"line1": "Brīvības iela 1", "city": "Rīga", "postal_code": "LV-1010", "country": "LV"}


async def a_guest_buys_and_pays(http: aiohttp.ClientSession, orders: str, payments: str, admin: str, *,
                                carrier: str = "sandbox-carrier", contact: dict = GUNA, address: dict = RIGA) -> None:
    """Across the processes: a product, a guest order, the card to the sandbox PSP (where
    payments' config says), the token to payments, and the order paid by its event."""
    staff = {"Authorization": f"Bearer {admin}"}
    async with http.post(f"{orders}/v1/staff/products", headers=staff, json={
            "sku": "E2E-001", "name": "Tea", "category": "food", "price_cents": 690, "vat_rate": 21,
            "stock": 5}) as response:
        assert response.status == 201, await response.text()
        product = await response.json()
    async with http.post(f"{orders}/v1/guest-orders", json={
            "carrier": carrier, "lines": [{"product_id": product["id"], "quantity": 1}],
            "contact": contact, "address": address}) as response:
        assert response.status == 201, await response.text()
        order = await response.json()
    async with http.get(f"{payments}/v1/psp/config") as response:
        psp = await response.json()
    async with http.post(f"{psp['api_base']}/v1/payment_methods",
                         headers={"Authorization": f"Bearer {psp['publishable_key']}"},
                         data={"type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12",
                               "card[exp_year]": "2031", "card[cvc]": "123"}) as response:
        assert response.status == 200, await response.text()
        token = (await response.json())["id"]
    async with http.post(f"{payments}/v1/guest-payments", json={
            "order_id": order["id"], "amount_cents": order["gross_cents"], "currency": "EUR",
            "payment_method": token}) as response:
        assert response.status == 201, await response.text()
        assert (await response.json())["status"] == "succeeded"

    async def paid():
        async with http.post(f"{orders}/v1/staff/order-lookups", headers=staff, json={
                "order_id": order["id"], "reason": "end-to-end check of a payment"}) as response:
            return (await response.json())["orders"][0]["status"] == "paid"
    await eventually(paid, timeout=30)


async def a_guest_consents_and_unsubscribes(http: aiohttp.ClientSession, marketing: str, admin: str,
                                            mailsink: MailSink) -> None:
    """Across the processes: a guest's e-mail consent, confirmed by the mailed link; a campaign
    that reaches the address with its one-click link; the click; the next campaign misses it."""
    guest, staff = "offers@example.lv", {"Authorization": f"Bearer {admin}"}
    async with http.post(f"{marketing}/v1/guest-consents", json={
            "email": guest, "wording_version": "email-2026-11", "language": "en"}) as response:
        assert response.status == 202, await response.text()
    [confirmation] = await mailsink.wait_for(guest, timeout=30)
    link = next(w for w in confirmation.get_content().split() if "/v1/consents/confirm?token=" in w)
    async with http.post(link) as response:
        assert response.status == 200, await response.text()

    async def campaign(name: str) -> dict:
        async with http.post(f"{marketing}/v1/staff/campaigns", headers=staff, json={
                "name": name, "channel": "email", "body": {"lv": "Atlaides", "en": "Sale"}}) as response:
            assert response.status == 201, await response.text()
            made = await response.json()
        async with http.post(f"{marketing}/v1/staff/campaigns/{made['id']}/send", headers=staff) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    assert (await campaign("First"))["recipients"] == 1
    [_, offer] = await mailsink.wait_for(guest, count=2, timeout=30)
    assert offer["Subject"] == "First" and offer["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    one_click = offer["List-Unsubscribe"].split(",")[0].strip("<> ")
    async with http.post(one_click, data="List-Unsubscribe=One-Click",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}) as response:
        assert response.status == 200, await response.text()
    assert (await campaign("Second"))["recipients"] == 0


async def test_sigterm_stops_every_service_cleanly(suite):
    for service in suite.values():
        service.proc.send_signal(signal.SIGTERM)
    for service in suite.values():
        assert await asyncio.to_thread(service.proc.wait, 30) == 0, service.log.read_text()[-3000:]
        assert '"event": "service stopped"' in service.log.read_text()
