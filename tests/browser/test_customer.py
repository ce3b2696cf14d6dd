"""The customer's pages in a browser, as a customer and a guest would use them: signing up and
confirming the address by the mailed link, the account, addresses and sessions, consents with
their confirmation mail, the privacy centre (what the shop holds, a copy downloaded as a ZIP,
an erasure with each participant's outcome), a guest's request by code, a forgotten password,
and a request id that is someone else's. Texts are read from web/texts, so each check also
says the page shows them."""
from __future__ import annotations

import re
import zipfile
from urllib.parse import parse_qs, urlsplit

import aiohttp
from playwright.async_api import Page, expect

from deploy.mailsink import code_in
from tests.browser.conftest import snap
from tests.conftest import eventually
from web.i18n import TEXTS

LV, EN = TEXTS["lv"], TEXTS["en"]
PASSWORD = "a long enough password"
VERIFY = ("Apstipriniet savu e-pasta adresi", "Confirm your e-mail address")
COMPLETE = ("Jūsu pieprasījums ir izpildīts", "Your request is complete")
CODE = ("Jūsu Veikala kods", "Your Veikals code")
RESET = ("Paroles atjaunošana", "Choose a new password")


async def mail(shop, recipient: str, subjects: tuple[str, ...], count: int = 1, timeout: float = 30):
    """The ``count``-th message to ``recipient`` with one of ``subjects``, once it has arrived."""
    async def arrived():
        found = [m for m in shop.sink.to(recipient) if any(s.lower() in m["Subject"].lower() for s in subjects)]
        return found if len(found) >= count else None
    return (await eventually(arrived, timeout=timeout))[count - 1]


def status(page: Page):
    return page.locator("#status")


async def register(shop, email: str, name: str) -> None:
    """A confirmed customer, made through the APIs behind the edge (the pages are tested once)."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{shop.url}/v1/accounts/accounts", json={
                "name": name, "email": email, "phone": "+37120000002", "password": PASSWORD,
                "terms_version": "2026-01"}) as response:
            assert response.status == 202, await response.text()
        token = parse_qs(urlsplit(shop.link_in(await mail(shop, email, VERIFY), "verify-email")).query)["token"][0]
        async with http.post(f"{shop.url}/v1/accounts/accounts/verify-email",
                             json={"token": token, "password": PASSWORD}) as response:
            assert response.status == 200, await response.text()


async def sign_in(page: Page, shop, email: str, password: str = PASSWORD, next_page: str = "account") -> None:
    await page.goto(f"{shop.url}/lv/login")
    await page.get_by_label(LV["email"], exact=True).fill(email)
    await page.get_by_label(LV["password"], exact=True).fill(password)
    await page.get_by_role("button", name=LV["login_button"]).click()
    await expect(page).to_have_url(re.compile(rf"/lv/{next_page}$"))


async def ask(page: Page, kind_label: str, test: str) -> str:
    """Ask for a request on the requests page; the page it leads to; its id."""
    await page.get_by_role("link", name=LV["requests_title"], exact=True).first.click()
    await page.get_by_label(kind_label).check()
    await snap(page, test)
    await page.get_by_role("button", name=LV["request_submit"]).click()
    await expect(page).to_have_url(re.compile(r"/lv/privacy-request\?id="))
    return parse_qs(urlsplit(page.url).query)["id"][0]


async def completed(page: Page) -> None:
    """The request page follows the request until it is completed (it reads it again by itself)."""
    await expect(page.locator("#view [data-state]")).to_have_text(LV["request_state_completed"], timeout=60_000)


async def test_a_customer_signs_up_by_the_pages_confirms_by_the_mailed_link_and_corrects_the_profile(shop, page):
    email, test = "anna.pages@example.lv", "customer-signup"
    await page.goto(f"{shop.url}/lv/signup")
    await page.get_by_label(LV["name"], exact=True).fill("Anna Bērziņa")
    await page.get_by_label(LV["email"], exact=True).fill(email)
    await page.get_by_label(LV["phone"], exact=True).fill("+371 2000 0001")
    await page.get_by_label(LV["choose_password"]).fill(PASSWORD)
    await page.get_by_role("button", name=LV["signup_button"]).click()
    await expect(status(page)).to_have_text(LV["terms_required"])  # the terms are not ticked
    await page.get_by_label(LV["terms_accept"]).check()
    await snap(page, test)
    await page.get_by_role("button", name=LV["signup_button"]).click()
    await expect(status(page)).to_contain_text(email)
    await expect(page.get_by_role("heading", name=LV["signup_sent_heading"])).to_be_visible()
    await snap(page, test)

    link = shop.link_in(await mail(shop, email, VERIFY), "verify-email")
    await page.goto(link)  # /lv/verify-email?token=..., or an older mail's /verify-email?token=... (the edge adds the language)
    await expect(page).to_have_url(re.compile(r"/lv/verify-email\?token="))
    await expect(page.get_by_label(LV["code"], exact=True)).to_be_hidden()  # the link carries it
    await page.get_by_label(LV["password"], exact=True).fill(PASSWORD)
    await page.get_by_role("button", name=LV["verify_email_button"]).click()
    await expect(status(page)).to_have_text(LV["verify_email_done"])
    assert "token" not in page.url  # spent, and dropped from the address
    await snap(page, test)
    await page.get_by_role("link", name=LV["login_title"], exact=True).last.click()
    await page.get_by_label(LV["email"], exact=True).fill(email)
    await page.get_by_label(LV["password"], exact=True).fill(PASSWORD)
    await page.get_by_role("button", name=LV["login_button"]).click()
    await expect(page).to_have_url(re.compile(r"/lv/account$"))

    # The profile: the name corrected, the mail's language chosen.
    await expect(page.get_by_label(LV["name"], exact=True)).to_have_value("Anna Bērziņa")
    await expect(page.get_by_label(LV["phone"], exact=True)).to_have_value("+37120000001")
    await snap(page, test)
    await page.get_by_label(LV["name"], exact=True).fill("Anna Ozola")
    await page.get_by_label(LV["mail_language"]).select_option("en")
    await page.get_by_role("button", name=LV["save"]).click()
    await expect(status(page)).to_have_text(LV["profile_saved"])
    await page.reload()
    await expect(page.get_by_label(LV["name"], exact=True)).to_have_value("Anna Ozola")
    await expect(page.get_by_label(LV["mail_language"])).to_have_value("en")

    # A new e-mail address takes effect by the link mailed to it, with the password.
    new_email = "anna.ozola@example.lv"
    await page.get_by_label(LV["new_email"]).fill(new_email)
    await page.locator("#email-password").fill(PASSWORD)
    await page.get_by_role("button", name=LV["email_change_button"]).click()
    await expect(status(page)).to_contain_text(new_email)
    await expect(page.locator("#pending-email")).to_contain_text(new_email)
    link = shop.link_in(await mail(shop, new_email, VERIFY), "verify-email")
    assert "/en/verify-email?token=" in link  # in the language the account now has
    await page.goto(link)
    await page.get_by_label(EN["password"], exact=True).fill(PASSWORD)
    await page.get_by_role("button", name=EN["verify_email_button"]).click()
    await expect(status(page)).to_have_text(EN["verify_email_changed"])
    await page.get_by_role("link", name=EN["account_title"]).last.click()
    await expect(page.locator("#current-email")).to_have_text(new_email)
    await page.get_by_role("link", name=EN["other_language"]).click()  # back to Latvian
    await expect(page).to_have_url(re.compile(r"/lv/account$"))


async def test_the_account_keeps_addresses_and_sessions_and_is_closed_with_the_password(shop, page):
    email, test = "edgars.pages@example.lv", "customer-account"
    await register(shop, email, "Edgars Kļaviņš")
    await sign_in(page, shop, email)
    await expect(page.get_by_label(LV["name"], exact=True)).to_have_value("Edgars Kļaviņš")
    await snap(page, test)
    await page.get_by_role("button", name=LV["save"]).click()
    await expect(status(page)).to_have_text(LV["nothing_changed"])
    await page.get_by_label(LV["phone"], exact=True).fill("")
    await page.get_by_role("button", name=LV["save"]).click()
    await expect(status(page)).to_have_text(LV["phone_not_removable"])

    # The address book: add, correct, remove.
    await page.get_by_role("link", name=LV["addresses_title"]).click()
    await expect(page.locator("#none")).to_be_visible()
    await page.get_by_label(LV["address_label"]).fill("mājas")
    await page.get_by_label(LV["address_recipient"]).fill("Edgars Kļaviņš")
    await page.get_by_label(LV["address_line1"]).fill("Brīvības iela 1")
    await page.get_by_label(LV["address_city"]).fill("Rīga")
    await page.get_by_label(LV["address_postal_code"]).fill("LV-1010")
    await expect(page.get_by_label(LV["address_country"])).to_have_value("LV")
    await page.get_by_role("button", name=LV["save"]).click()
    await expect(status(page)).to_have_text(LV["address_added"])
    card = page.locator("#addresses li")
    await expect(card).to_contain_text("Brīvības iela 1")
    await expect(card).to_contain_text("Latvija")
    await snap(page, test)
    await page.get_by_role("button", name=LV["address_edit_named"].format(name="mājas")).click()
    await page.get_by_label(LV["address_line1"]).fill("Brīvības iela 2")
    await page.get_by_role("button", name=LV["save"]).click()
    await expect(status(page)).to_have_text(LV["address_saved"])
    await expect(card).to_contain_text("Brīvības iela 2")
    await page.get_by_role("button", name=LV["address_remove_named"].format(name="mājas")).click()
    await expect(status(page)).to_have_text(LV["address_removed"])
    await expect(card).to_have_count(0)

    # Sessions: this one, and another ended from here.
    other = await page.context.browser.new_context()
    other_page = await other.new_page()
    await sign_in(other_page, shop, email)
    await other.close()
    await page.goto(f"{shop.url}/lv/sessions")
    rows = page.locator("#sessions tbody tr")
    await expect(rows).to_have_count(2)
    await expect(page.get_by_text(LV["session_current"])).to_be_visible()
    await snap(page, test)
    await page.get_by_role("button", name=LV["session_end"]).click()
    await expect(status(page)).to_have_text(LV["session_ended_done"])
    await expect(page.get_by_role("button", name=LV["session_end"])).to_have_count(0)

    # Closing needs the box ticked and the password; then every session ends.
    await page.goto(f"{shop.url}/lv/account")
    await page.locator("#close-password").fill(PASSWORD)
    await page.get_by_role("button", name=LV["close_button"]).click()
    await expect(status(page)).to_have_text(LV["close_confirm_required"])
    await page.get_by_label(LV["close_confirm"]).check()
    await page.get_by_role("button", name=LV["close_button"]).click()
    await expect(status(page)).to_have_text(LV["close_done"])
    await snap(page, test)
    assert await page.evaluate("sessionStorage.length") == 0


async def test_consents_are_given_confirmed_by_mail_and_withdrawn_with_the_wording_shown(shop, page):
    email, test = "consent.pages@example.lv", "customer-consents"
    await register(shop, email, "Kārlis Liepa")
    await sign_in(page, shop, email)
    await page.get_by_role("link", name=LV["consents_title"]).first.click()
    offers = page.locator("[data-consent=email]")
    await expect(offers.locator(".consent-state")).to_have_text(LV["consent_not_given"])
    await expect(offers.locator("blockquote")).to_contain_text("Vēlos saņemt Veikala piedāvājumus")
    await expect(offers).to_contain_text("email-2026-11")  # the wording's version is shown
    await snap(page, test)
    await offers.get_by_role("button", name=LV["consent_give_button"]).click()
    await expect(status(page)).to_have_text(LV["consent_status_confirmation_sent"])
    await expect(offers.locator(".consent-state")).to_have_text(LV["consent_awaiting"])

    # The mailed link opens marketing's confirmation page, with a button (a scanner confirms nothing).
    confirm = await mail(shop, email, ("Apstipriniet Veikala jaunumu", "Confirm Veikals offers"))
    await page.goto(re.search(r"https?://\S+/v1/consents/confirm\?token=\S+", confirm.get_content()).group(0))
    await page.get_by_role("button").click()
    await expect(page.locator("body")).to_contain_text(re.compile("apstiprināt|confirmed", re.IGNORECASE))
    await page.goto(f"{shop.url}/lv/consents")
    await expect(offers.locator(".consent-state")).to_contain_text("email-2026-11")
    await expect(offers.get_by_role("button", name=LV["consent_withdraw_button"])).to_be_visible()
    await snap(page, test)

    await offers.get_by_role("button", name=LV["consent_withdraw_button"]).click()
    await expect(status(page)).to_have_text(LV["consent_status_withdrawn"])
    await expect(offers.locator(".consent-state")).to_contain_text(LV["consent_withdrawn_since"].split(" ")[0])
    history = page.locator("#history tbody tr")
    await expect(history).to_have_count(2)  # confirmed, then withdrawn
    await expect(history.first).to_contain_text(LV["consent_withdrawn"])
    await expect(history.last).to_contain_text(LV["source_double_opt_in"])

    await page.get_by_role("button", name=LV["object_profiling"]).click()
    await expect(status(page)).to_have_text(LV["objection_done"])
    await expect(page.locator("#objections")).to_contain_text(LV["objected_profiling"])
    await expect(page.get_by_role("button", name=LV["object_profiling"])).to_be_disabled()
    await snap(page, test)


async def test_the_privacy_centre_shows_the_data_downloads_a_copy_and_erases_with_each_outcome(shop, page):
    email, test = "privacy.pages@example.lv", "customer-privacy"
    await register(shop, email, "Līga Kalniņa")
    await sign_in(page, shop, email)

    # What the shop holds, by kind, and why (the notice, as data, laid out on the page).
    await page.get_by_role("link", name=LV["privacy_title"]).first.click()
    await expect(page.locator("#profile")).to_contain_text("Līga Kalniņa")
    await expect(page.locator("#profile")).to_contain_text(email)
    await expect(page.locator("#orders")).to_have_text(LV["data_orders_none"])
    await expect(page.locator("#cards")).to_have_text(LV["data_cards_none"])
    await expect(page.locator("#membership")).to_have_text(LV["data_membership_none"])
    await expect(page.locator("#notice details[open][data-key=rights]")).to_contain_text("kopiju")
    await snap(page, test)
    kept = page.locator("#notice details[data-key=what]")
    await kept.locator("summary").click()  # what is kept, why and how long: one click away
    await expect(kept.locator("table th[scope=row]").filter(has_text="piegādes adreses")).to_be_visible()

    # A copy: the page follows it, the completion mail's link opens the download.
    export_id = await ask(page, LV["kind_export_long"], test)
    await completed(page)
    rows = page.locator("#participants tbody tr")
    await expect(rows.filter(has_text=LV["participant_accounts"])).to_contain_text(LV["task_done"])
    await expect(page.locator("#download-by-mail")).to_be_visible()  # no link's token: the mail has it
    await snap(page, test)
    link = shop.link_in(await mail(shop, email, COMPLETE), "/privacy-request?id=")
    assert f"/lv/privacy-request?id={export_id}&token=" in link
    await page.goto(link)
    async with page.expect_download() as downloaded:
        await page.get_by_role("button", name=LV["download_button"]).click()
    archive = zipfile.ZipFile(await (await downloaded.value).path())
    assert {"summary.lv.txt", "summary.en.txt"} <= set(archive.namelist())
    assert "Purpose:" in archive.read("summary.en.txt").decode()
    assert email in b"".join(archive.read(n) for n in archive.namelist()).decode()
    await expect(status(page)).to_have_text(LV["download_done"])
    await snap(page, test)

    # An erasure: every participant reaches done, and the page says what each erased and kept.
    await page.goto(f"{shop.url}/lv/privacy")
    await page.get_by_role("link", name=LV["ask_erasure"]).click()
    await expect(page.get_by_text(LV["erasure_warning"])).to_be_visible()
    await page.get_by_role("button", name=LV["request_submit"]).click()
    await expect(page).to_have_url(re.compile(r"/lv/privacy-request\?id="))
    await completed(page)
    for participant in ("accounts", "orders", "payments", "marketing", "privacy"):
        row = page.locator(f"#participants tr[data-participant={participant}]")
        await expect(row).to_contain_text(LV["task_done"])
    accounts = page.locator("#participants tr[data-participant=accounts]")
    await expect(accounts).to_contain_text("Dzēsts: kontaktinformācija")  # declared in English, shown in Latvian
    await expect(accounts).to_contain_text("Saglabāts:")  # the account id, with its basis and date
    await expect(accounts).to_contain_text(LV["basis_legal_obligation"])
    await snap(page, test)
    await page.get_by_role("link", name=LV["back_to_requests"]).click()
    await expect(page.locator("#requests tbody tr")).to_have_count(2)
    await snap(page, test)


async def test_a_customer_is_refused_another_customers_request(shop, page):
    owner, stranger, test = "owner.pages@example.lv", "stranger.pages@example.lv", "customer-refused"
    await register(shop, owner, "Ieva Owner")
    await register(shop, stranger, "Jānis Stranger")
    await sign_in(page, shop, owner)
    request_id = await ask(page, LV["kind_objection_long"], test)
    await expect(page.locator("#view")).to_contain_text(LV["objection_direct_marketing"])
    await page.get_by_role("button", name=LV["logout"]).click()
    await expect(page).to_have_url(f"{shop.url}/lv/")
    await sign_in(page, shop, stranger)
    await page.goto(f"{shop.url}/lv/privacy-request?id={request_id}")
    await expect(status(page)).to_have_text(LV["request_not_found"])
    await expect(page.locator("#request")).to_be_hidden()
    await snap(page, test)


async def test_a_guest_asks_by_code_follows_the_request_and_downloads_with_a_fresh_code(shop, page):
    email, test = "guest.pages@example.lv", "guest-privacy"
    await page.goto(f"{shop.url}/en/guest-privacy")
    await page.get_by_label(EN["guest_email"]).fill(email)
    await page.get_by_label(EN["kind_export_long"]).check()
    await snap(page, test)
    await page.get_by_role("button", name=EN["guest_send_code"]).click()
    await expect(status(page)).to_contain_text(email)
    code_field = page.locator("#confirm").get_by_label(EN["guest_code"])
    await code_field.fill("WRONG234")  # an O: never in a code
    await page.get_by_role("button", name=EN["guest_confirm_button"]).click()
    await expect(status(page)).to_have_class("error")  # a wrong code starts nothing
    code = code_in(await mail(shop, email, CODE))
    await code_field.fill(code.lower())  # typed as it comes
    await page.get_by_role("button", name=EN["guest_confirm_button"]).click()
    await expect(status(page)).to_have_text(EN["guest_request_started"])
    await expect(page.locator("#view [data-state]")).to_have_text(EN["request_state_completed"], timeout=60_000)
    await expect(page.locator("#participants tr[data-participant=orders]")).to_contain_text(EN["task_done"])
    await snap(page, test)

    link = shop.link_in(await mail(shop, email, COMPLETE), "/guest-privacy?id=")
    assert "/en/guest-privacy?id=" in link
    await page.goto(link)
    await page.get_by_role("button", name=EN["guest_download_code_button"]).click()
    await expect(status(page)).to_have_text(EN["guest_download_code_sent"])
    fresh = code_in(await mail(shop, email, CODE, count=2))
    await page.locator("#download-form").get_by_label(EN["guest_code"]).fill(fresh)
    async with page.expect_download() as downloaded:
        await page.get_by_role("button", name=EN["download_button"]).click()
    archive = zipfile.ZipFile(await (await downloaded.value).path())
    assert "summary.en.txt" in archive.namelist()
    await expect(status(page)).to_have_text(EN["download_done"])
    await snap(page, test)


async def test_a_forgotten_password_is_reset_by_the_mailed_link(shop, page):
    email, test = "forgot.pages@example.lv", "customer-reset"
    await register(shop, email, "Pēteris Aizmāršīgs")
    await page.goto(f"{shop.url}/lv/login")
    await page.get_by_role("link", name=LV["forgot_password_title"]).click()
    await page.get_by_label(LV["email"], exact=True).fill(email)
    await snap(page, test)
    await page.get_by_role("button", name=LV["forgot_button"]).click()
    await expect(status(page)).to_contain_text(email)
    link = shop.link_in(await mail(shop, email, RESET), "reset-password")
    await page.goto(link)
    await expect(page).to_have_url(re.compile(r"/lv/reset-password\?token="))
    await page.get_by_label(LV["new_password"]).fill("a brand new password")
    await snap(page, test)
    await page.get_by_role("button", name=LV["reset_button"]).click()
    await expect(status(page)).to_have_text(LV["reset_done"])
    await page.get_by_role("link", name=LV["login_title"], exact=True).last.click()
    await page.get_by_label(LV["email"], exact=True).fill(email)
    await page.get_by_label(LV["password"], exact=True).fill(PASSWORD)  # the old one no longer opens it
    await page.get_by_role("button", name=LV["login_button"]).click()
    await expect(status(page)).to_have_class("error")
    await page.get_by_label(LV["password"], exact=True).fill("a brand new password")
    await page.get_by_role("button", name=LV["login_button"]).click()
    await expect(page).to_have_url(re.compile(r"/lv/account$"))


async def test_a_page_address_without_a_language_opens_in_the_browsers(shop, page):
    await page.goto(f"{shop.url}/verify-email?token=abc")
    await expect(page).to_have_url(f"{shop.url}/lv/verify-email?token=abc")
    response = await page.request.get(f"{shop.url}/no-such-page", max_redirects=0)
    assert response.status == 404
