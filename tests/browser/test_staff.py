"""The staff console in a browser: each page shows only what the member's roles allow, every look
at a customer's data needs a reason and reaches the audit log, and the request queue shows due
dates that staff can extend."""
from __future__ import annotations

import contextlib
import os
import signal
import uuid
from dataclasses import dataclass

import aiohttp
import asyncpg
from playwright.async_api import Page, expect

from deploy.mailsink import code_in
from services.accounts import schemas
from services.accounts.api import create_staff_account
from services.accounts.domain import Passwords
from tests.browser.conftest import snap
from tests.conftest import eventually

PASSWORD = "a long staff password"
REASON = "Klients zvanīja un jautāja par savu piegādes adresi"


@dataclass
class Member:
    id: str
    email: str
    roles: tuple[str, ...]


async def staff_member(shop, *roles: str) -> Member:
    """A staff account with ``roles``, made as an operator makes one (accounts' own function)."""
    email = f"{'-'.join(roles)}-{uuid.uuid4().hex[:6]}@staff.example"
    pool = await asyncpg.create_pool(shop.procs["accounts"].dsn, min_size=1, max_size=1)
    try:
        staff_id = await create_staff_account(pool, Passwords(1, 8192, 1, 1), schemas.StaffAccountIn(
            name="Staff Member", email=email, password=PASSWORD, roles=list(roles)))
    finally:
        await pool.close()
    return Member(str(staff_id), email, roles)


async def new_customer(shop, name: str) -> tuple[str, str]:
    """A customer registered and confirmed through the accounts API: (id, e-mail address)."""
    email = f"klients-{uuid.uuid4().hex[:6]}@example.lv"
    accounts = shop.procs["accounts"].url
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{accounts}/v1/accounts", json={
                "name": name, "email": email, "phone": "+37120000001", "password": PASSWORD,
                "terms_version": "2026-01"}) as response:
            assert response.status == 202, await response.text()
        [message] = await shop.sink.wait_for(email)
        async with http.post(f"{accounts}/v1/accounts/verify-email",
                             json={"token": code_in(message), "password": PASSWORD}) as response:
            assert response.status == 200, await response.text()
        async with http.post(f"{accounts}/v1/auth/login", json={"email": email, "password": PASSWORD}) as response:
            token = (await response.json())["access_token"]
        async with http.get(f"{accounts}/v1/me", headers={"Authorization": f"Bearer {token}"}) as response:
            return (await response.json())["id"], email


async def sign_in(page: Page, shop, member: Member, language: str = "lv") -> None:
    labels = {"lv": ("E-pasta adrese", "Parole", "Pieteikties"), "en": ("E-mail address", "Password", "Sign in")}[language]
    await page.goto(f"{shop.url}/{language}/staff-login")
    await page.get_by_label(labels[0]).fill(member.email)
    await page.get_by_label(labels[1]).fill(PASSWORD)
    await page.get_by_role("button", name=labels[2]).click()
    await page.wait_for_url(f"{shop.url}/{language}/staff")


async def sign_out(page: Page, shop) -> None:
    await page.get_by_role("button", name="Iziet").click()
    await page.wait_for_url(f"{shop.url}/lv/staff-login")


async def access_token(page: Page) -> str:
    return await page.evaluate("JSON.parse(sessionStorage.getItem('veikals.session')).access")


def nav(page: Page):
    return page.get_by_role("navigation")


async def test_support_finds_a_customer_with_a_reason_and_an_admin_sees_the_look_in_the_audit_log(shop, page):
    customer_id, email = await new_customer(shop, "Anna Bērziņa")
    support, admin = await staff_member(shop, "support"), await staff_member(shop, "admin")

    await sign_in(page, shop, support)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Darbinieku konsole")
    await expect(page.get_by_text("Jūsu lomas: klientu atbalsts.")).to_be_visible()
    await snap(page, "staff-support")
    await nav(page).get_by_role("link", name="Klienti").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Klienti")

    # No reason, no look: the form says so and asks nothing of the API.
    await page.get_by_label("Klienta identifikators vai e-pasta adrese").fill(email)
    await page.get_by_role("button", name="Atrast klientu").click()
    await expect(page.get_by_role("status")).to_contain_text("Norādiet, kāpēc skatāties")
    await expect(page.get_by_label("Iemesls (vismaz 10 rakstzīmes; tiek ierakstīts audita žurnālā)")).to_be_focused()
    await page.get_by_label("Iemesls (vismaz 10 rakstzīmes; tiek ierakstīts audita žurnālā)").fill(REASON)
    await page.get_by_role("button", name="Atrast klientu").click()
    await expect(page.get_by_role("status")).to_contain_text("Atrasts: Anna Bērziņa")
    await expect(page.get_by_text(customer_id)).to_be_visible()
    await expect(page.get_by_text("Klientam nav pasūtījumu.")).to_be_visible()
    await expect(page.get_by_role("heading", name="Piekrišanas")).to_be_visible()
    await snap(page, "staff-support")

    # The look, with the reason, is in the audit log within about a second (the chainer polls).
    await sign_out(page, shop)
    await sign_in(page, shop, admin)
    token = await access_token(page)

    async def looked():
        response = await page.request.get(f"{shop.url}/v1/privacy/staff/audit-log?subject={customer_id}",
                                          headers={"Authorization": f"Bearer {token}"})
        return [e for e in (await response.json())["entries"] if e["service"] == "accounts"]
    [entry] = await eventually(looked, timeout=10, interval=0.3)
    assert (entry["actor"], entry["reason"]) == (f"staff:{support.id}", REASON)
    await snap(page, "staff-admin")
    await nav(page).get_by_role("link", name="Audita žurnāls").click()
    await page.get_by_label("Klienta identifikators").fill(customer_id)
    await page.get_by_role("button", name="Rādīt").click()
    row = page.get_by_role("row").filter(has_text="konti").filter(has_text=REASON)
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text(f"darbinieks {support.id}")
    await expect(row).to_contain_text("contact details, delivery addresses")
    # The consent look of the same visit is there too, from marketing.
    await expect(page.get_by_role("row").filter(has_text="mārketings").filter(has_text=REASON)).to_have_count(1)
    await page.get_by_role("button", name="Pārbaudīt ķēdi").click()
    await expect(page.get_by_text("Neskarts:")).to_be_visible()
    await snap(page, "staff-admin")


async def test_support_cannot_open_the_admin_or_accounting_pages(shop, page):
    support = await staff_member(shop, "support")
    await sign_in(page, shop, support)
    await expect(nav(page).get_by_role("link", name="Datu subjektu pieprasījumi")).to_be_visible()
    await expect(nav(page).get_by_role("link", name="Audita žurnāls")).to_have_count(0)
    await expect(nav(page).get_by_role("link", name="Atmaksas")).to_have_count(0)

    for page_name in ("staff-audit", "staff-refunds"):
        await page.goto(f"{shop.url}/lv/{page_name}")
        await page.wait_for_url(f"{shop.url}/lv/staff?denied=1")
        await expect(page.get_by_role("status")).to_have_text(
            "Šai lapai vajadzīga loma, kuras jums nav. Te redzams, ko jūs varat darīt.")
    await expect(page.get_by_role("link", name="Audita žurnāls")).to_have_count(0)
    await snap(page, "staff-denied")

    # The page only says what the API enforces.
    token = await access_token(page)
    for path in ("/v1/privacy/staff/audit-log", "/v1/privacy/staff/audit-log/verification"):
        response = await page.request.get(shop.url + path, headers={"Authorization": f"Bearer {token}"})
        assert response.status == 403, path
    response = await page.request.post(shop.url + "/v1/payments/staff/refunds", headers={
        "Authorization": f"Bearer {token}"}, data={"order_id": str(uuid.uuid4()), "reason": "not support's to do"})
    assert response.status == 403


@contextlib.contextmanager
def paused(service):
    """The service stops answering (as one that hangs), and goes on afterwards."""
    os.kill(service.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(service.proc.pid, signal.SIGCONT)


async def shown_as(page: Page, instant: str) -> str:
    """``instant`` as the pages show a time (app.js when())."""
    return await page.evaluate(
        "(v) => new Date(v).toLocaleString('lv-LV', {dateStyle: 'medium', timeStyle: 'short'})", instant)


async def test_a_request_entered_by_support_is_queued_with_its_due_date_and_extended_with_a_reason(shop, page):
    support = await staff_member(shop, "support")
    guest = f"viesis-{uuid.uuid4().hex[:6]}@example.lv"
    await sign_in(page, shop, support)
    await nav(page).get_by_role("link", name="Datu subjektu pieprasījumi").click()
    await expect(page.get_by_role("heading", name="Rinda")).to_be_visible()

    # Marketing hangs, so the erasure stays open while support works on it.
    with paused(shop.procs["marketing"]):
        form = page.locator("#enter")
        await form.get_by_label("Pieprasījums").select_option("erasure")
        await form.get_by_label("E-pasta adreses (katra savā rindā)").fill(guest)
        await form.get_by_label("Kur sūtīt atbildi (e-pasta adrese)").fill(guest)
        await form.get_by_label("Kā pārliecinājāties, kas prasa (vismaz 10 rakstzīmes)").fill(
            "Vēstule atnāca no pasūtījumā norādītās adreses")
        await form.get_by_role("button", name="Ievadīt pieprasījumu").click()
        await expect(page.get_by_role("status")).to_contain_text("Pieprasījums ievadīts.")

        token = await access_token(page)
        response = await page.request.get(f"{shop.url}/v1/privacy/staff/privacy-requests?state=open",
                                          headers={"Authorization": f"Bearer {token}"})
        [request] = [r for r in (await response.json())["items"] if guest in r["subject"]["emails"]]
        row = page.get_by_role("row").filter(has_text=guest)
        await expect(row).to_contain_text(await shown_as(page, request["due_at"]))
        await expect(row).to_contain_text("Dzēšana")
        await expect(row).to_contain_text("Laikā")
        await snap(page, "staff-requests")

        await row.get_by_role("link", name="Dzēšana").click()
        await page.wait_for_url(f"{shop.url}/lv/staff-request?id={request['id']}")
        await expect(page.get_by_role("row").filter(has_text="mārketings")).to_be_visible()
        await expect(page.get_by_role("row").filter(has_text="mārketings")).not_to_contain_text("izpildīts")
        await page.get_by_label("Par", exact=True).select_option("1")
        reason = "Pasūtījumu vēsture ir jāpārbauda arī arhīvā"
        await page.get_by_label("Iemesls, kā to lasīs pieprasītājs (vismaz 10 rakstzīmes)").fill(reason)
        await page.get_by_role("button", name="Pagarināt").click()
        await expect(page.get_by_role("status")).to_have_text("Termiņš pagarināts, un pieprasītājam paziņots iemesls.")

        response = await page.request.get(f"{shop.url}/v1/privacy/staff/privacy-requests/{request['id']}",
                                          headers={"Authorization": f"Bearer {token}"})
        extended = await response.json()
        assert extended["due_at"] > request["due_at"] and extended["extension_reason"] == reason
        await expect(page.get_by_text(f"par 1 mēn.: {reason}")).to_be_visible()
        await expect(page.get_by_text(await shown_as(page, extended["due_at"]))).to_be_visible()
        await snap(page, "staff-request")


async def test_accounting_sees_refunds_and_reports_but_not_the_request_queue(shop, page):
    accounting = await staff_member(shop, "accounting")
    await sign_in(page, shop, accounting)
    await expect(nav(page).get_by_role("link", name="Atmaksas")).to_be_visible()
    await expect(nav(page).get_by_role("link", name="Datu subjektu pieprasījumi")).to_have_count(0)
    await expect(nav(page).get_by_role("link", name="Klienti")).to_have_count(0)
    await snap(page, "staff-accounting")

    await page.goto(f"{shop.url}/lv/staff-requests")
    await page.wait_for_url(f"{shop.url}/lv/staff?denied=1")

    await nav(page).get_by_role("link", name="Atmaksas").click()
    await page.get_by_label("Pasūtījuma vai maksājuma identifikators").fill(str(uuid.uuid4()))
    await page.get_by_label("Summa eiro (tukšs: viss atlikušais)").fill("12,50")
    await page.get_by_label("Iemesls (vismaz 10 rakstzīmes; tiek ierakstīts audita žurnālā)").fill(
        "Klients atteicās no pirkuma 14 dienu laikā")
    await page.get_by_role("button", name="Atmaksāt").click()
    await expect(page.get_by_role("status")).to_contain_text("Nav atrasts.")  # no such order's payment
    await snap(page, "staff-refunds")

    # The record of processing is every role's; the retention report support's and admin's.
    await nav(page).get_by_role("link", name="Pārskati").click()
    await expect(page.get_by_role("heading", name="Apstrādes darbības")).to_be_visible()
    await expect(page.get_by_role("heading", name="Glabāšanas termiņu pārskats")).to_be_hidden()
    await snap(page, "staff-reports-accounting")


async def test_an_admin_walks_the_rest_of_the_console(shop, page):
    admin = await staff_member(shop, "admin")
    await sign_in(page, shop, admin, language="en")
    for name in ("Customers", "Data-subject requests", "Complaints", "Refunds", "Partner deliveries", "Reports",
                 "Audit log"):
        await expect(nav(page).get_by_role("link", name=name)).to_be_visible()
    await snap(page, "staff-admin-en")

    await nav(page).get_by_role("link", name="Reports").click()
    await expect(page.get_by_role("heading", name="Retention report")).to_be_visible()
    await expect(page.get_by_role("table", name="Services", exact=True)).to_contain_text("accounts")
    await expect(page.get_by_role("heading", name="Processing activities", exact=True)).to_be_visible()
    await snap(page, "staff-reports")

    await nav(page).get_by_role("link", name="Partner deliveries").click()
    await expect(page.get_by_text("No partner is registered for this service.")).to_be_visible()
    await page.get_by_label("Service").select_option("payments")
    await expect(page.get_by_text("Nothing was sent.")).to_be_visible()
    await snap(page, "staff-webhooks")

    await nav(page).get_by_role("link", name="Complaints").click()
    find = page.locator("#find")
    await find.get_by_label("Order id").fill(str(uuid.uuid4()))
    await find.get_by_label("Reason (at least 10 characters; recorded in the audit log)").fill(
        "The customer wrote about a damaged parcel")
    await find.get_by_role("button", name="Show the order and its complaints").click()
    await expect(page.get_by_role("status")).to_contain_text("Not found.")
    await snap(page, "staff-complaints")
