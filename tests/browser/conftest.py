"""The pages in a real browser: Debian's Chromium driven by Playwright, against the whole suite
as processes behind the edge (web/edge.py), as a person would use them. Screenshots of every
page a test visits are written to var/screenshots/ for a person to look at."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Page, async_playwright

from deploy.mailsink import MailSink
from tests.conftest import own_vhost
from tests.e2e.processes import ROOT, free_port, running_suite
from web.edge import make_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "var" / "screenshots"


@pytest.fixture(scope="package")
def amqp_url():
    with own_vhost() as url:
        yield url


@pytest.fixture(scope="package")
async def mailsink():
    sink = MailSink()
    await sink.start()
    yield sink
    await sink.stop()


class Shop:
    """The suite's processes and the edge in front of them."""

    def __init__(self, procs: dict, url: str, sink: MailSink) -> None:
        self.procs, self.url, self.sink = procs, url, sink

    def mail(self, recipient: str, subject_part: str) -> list:
        return [m for m in self.sink.to(recipient) if subject_part.lower() in m["Subject"].lower()]

    def link_in(self, message, path: str) -> str:
        """The link to ``path`` (e.g. '/verify-email') in a mail, made relative to this origin."""
        found = re.search(rf"https?://[^\s]+{re.escape(path)}[^\s]*", message.get_content())
        assert found, message.get_content()
        return found.group(0)


@pytest.fixture(scope="package")
async def shop(amqp_url, tmp_path_factory, mailsink):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    partners = tmp_path_factory.mktemp("partners") / "partners.json"
    partners.write_text(json.dumps({"partners": []}))  # no processors: the pages are what is tested here
    env = {"VEIKALS_PARTNERS_FILE": str(partners), "VEIKALS_ACCOUNTS_SHOP_URL": url,
           "VEIKALS_PRIVACY_PUBLIC_URL": url, "VEIKALS_PRIVACY_TASKS_POLL_S": "0.3",
           "VEIKALS_PRIVACY_AUDIT_CHAIN_S": "0.2"}
    async with running_suite(amqp_url, tmp_path_factory.mktemp("suite-logs"), mailsink.port, env) as procs:
        runner = web.AppRunner(make_app({name: p.url for name, p in procs.items()}))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield Shop(procs, url, mailsink)
        finally:
            await runner.cleanup()


@pytest.fixture(scope="package")
async def browser():
    assert Path(CHROMIUM).exists(), "Chromium is missing: ./dev test installs it (apt-get install chromium)"
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)  # this run's pages only
    SCREENSHOTS.mkdir(parents=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser) -> Page:
    """A fresh browser context (no storage, no cookies) and a page in it."""
    context = await browser.new_context(locale="lv-LV")
    page = await context.new_page()
    page.screenshot_count = 0  # type: ignore[attr-defined]
    yield page
    await context.close()


async def snap(page: Page, test_name: str) -> None:
    """Screenshot the page as it is now (full length): var/screenshots/<test_name>-<n>-<page>.png."""
    page.screenshot_count += 1  # type: ignore[attr-defined]
    slug = re.sub(r"[^\w-]+", "_", page.url.split("/", 3)[-1].split("?")[0]) or "root"
    await page.screenshot(path=str(SCREENSHOTS / f"{test_name}-{page.screenshot_count:02d}-{slug}.png"),  # type: ignore[attr-defined]
                          full_page=True)
