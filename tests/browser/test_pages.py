"""The edge and the page frame: one origin, both languages, nothing kept that is not declared."""
from __future__ import annotations

from playwright.async_api import expect

from tests.browser.conftest import snap
from web.storage import STORAGE


async def test_the_pages_follow_the_browsers_language_and_switch(shop, page):
    await page.goto(shop.url + "/")
    assert page.url.endswith("/lv/")  # Latvian unless the browser asks for English
    await expect(page.locator("html")).to_have_attribute("lang", "lv")
    await snap(page, "frame")
    await page.get_by_role("link", name="English").click()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your account and your data")
    await snap(page, "frame")


async def test_the_apis_are_reached_through_the_same_origin(shop, page):
    response = await page.request.get(shop.url + "/v1/orders/products")
    assert response.status == 200 and "items" in await response.json()
    response = await page.request.get(shop.url + "/v1/nosuch/things")
    assert response.status == 404


async def test_nothing_is_kept_before_sign_in_and_only_what_is_declared_after(shop, page):
    await page.goto(shop.url + "/en/login")
    await snap(page, "storage")
    assert await page.context.cookies() == []
    assert await page.evaluate("Object.keys(sessionStorage).length + Object.keys(localStorage).length") == 0
    await page.goto(shop.url + "/en/cookies")
    for kept in STORAGE:
        await expect(page.get_by_text(kept.name)).to_be_visible()
    await snap(page, "storage")
