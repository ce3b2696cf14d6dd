"""The pages without a browser: every text a page or script names exists in both languages,
the scripts keep nothing in the browser that web/storage.py does not declare, every page
renders, and the committed cookie notice is the generated one."""
from __future__ import annotations

import re

import pytest
from multidict import CIMultiDict

from web import edge, i18n, storage

PAGES = sorted(p.stem for p in edge.PAGES.glob("*.html") if not p.stem.startswith("_"))
SCRIPTS = sorted(edge.ASSETS.rglob("*.js"))


def test_both_languages_have_the_same_texts():
    assert set(i18n.TEXTS["lv"]) == set(i18n.TEXTS["en"])
    for language, texts in i18n.TEXTS.items():
        assert all(value.strip() for value in texts.values()), language


def test_every_text_a_page_or_script_names_exists():
    named = set()
    for source in [*edge.PAGES.glob("*.html")]:
        named |= set(i18n.PLACEHOLDER.findall(source.read_text()))
    for script in SCRIPTS:
        named |= set(re.findall(r"""\bt\(\s*["']([\w.-]+)["']""", script.read_text()))
    assert named - set(i18n.TEXTS["en"]) == set()


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_in_both_languages_with_its_script(name):
    assert (edge.ASSETS / "pages" / f"{name}.js").is_file(), f"web/assets/pages/{name}.js"
    for language in edge.LANGUAGES:
        html = edge.page(language, name)
        assert html is not None and f'<html lang="{language}">' in html
        assert "{{" not in html, "an unfilled placeholder"


def test_the_scripts_keep_only_what_is_declared():
    declared = {kept.name for kept in storage.STORAGE}
    for script in SCRIPTS:
        code = script.read_text()
        assert "document.cookie" not in code and "localStorage" not in code, script.name
        assert "indexedDB" not in code, script.name
    app = (edge.ASSETS / "app.js").read_text()
    assert set(re.findall(r'SESSION_KEY = "([^"]+)"', app)) == declared
    for script in SCRIPTS:  # storage is reached through app.js's SESSION_KEY only
        assert re.findall(r"sessionStorage\.\w+\(\s*[\"']", script.read_text()) == [], script.name


def test_the_committed_cookie_notice_is_the_generated_one():
    for name, content in storage.documents().items():
        assert (storage.DOCS / name).read_text() == content, "run: python -m web.storage"


@pytest.mark.parametrize("header, language", [
    ("", "lv"), ("en-GB,en;q=0.9", "en"), ("de-DE,de;q=0.9,en;q=0.8,lv;q=0.7", "en"),
    ("lv,en;q=0.5", "lv"), ("en;q=0.2,lv;q=0.9", "lv"), ("fr", "lv"), ("en;q=nonsense", "lv"),
])
def test_the_browsers_language_is_followed(header, language):
    assert edge.preferred_language(header) == language


def test_a_page_name_is_never_a_path():
    assert edge.page("en", "../pyproject") is None and edge.page("en", "_layout") is None


def test_the_edge_passes_what_an_api_reads_and_appends_the_client():
    incoming = CIMultiDict({"authorization": "Bearer t", "Idempotency-Key": "k", "Cookie": "c=1",
                            "Connection": "keep-alive", "X-Forwarded-For": "198.51.100.7"})
    assert edge.upstream_headers(incoming, "203.0.113.5", trust_forwarded_for=False) == {
        "Authorization": "Bearer t", "Idempotency-Key": "k", "X-Forwarded-For": "198.51.100.7, 203.0.113.5"}
    assert edge.upstream_headers(CIMultiDict(), "203.0.113.5", trust_forwarded_for=False) == {
        "X-Forwarded-For": "203.0.113.5"}


def test_behind_the_ingress_the_edge_keeps_the_clients_address_last():
    """The ingress controller appends the client's address; the edge must not append the
    controller's after it, or every customer would share its sign-in limits."""
    from_ingress = CIMultiDict({"X-Forwarded-For": "198.51.100.7"})
    headers = edge.upstream_headers(from_ingress, "10.1.2.3", trust_forwarded_for=True)
    assert headers["X-Forwarded-For"].split(",")[-1].strip() == "198.51.100.7"
    assert edge.upstream_headers(CIMultiDict(), "10.1.2.3", trust_forwarded_for=True) == {"X-Forwarded-For": "10.1.2.3"}


async def test_the_psps_return_address_opens_the_payment_page():
    from aiohttp.test_utils import TestClient, TestServer
    async with TestClient(TestServer(edge.make_app({}))) as client:
        payment = "0b7a3c1e-5d2f-4a6b-9c8d-7e6f5a4b3c2d"
        response = await client.get(f"/payments/{payment}/return", allow_redirects=False,
                                    headers={"Accept-Language": "en"})
        assert response.status == 302 and response.headers["Location"] == f"/en/payment-return?id={payment}"
        response = await client.get("/payments/not-a-payment/return", allow_redirects=False)
        assert response.status == 404
