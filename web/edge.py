"""The edge: one origin for the pages and every service's API, as the Kubernetes Ingress
(deploy/k8s/base/ingress.yaml, host ``shop``) routes them, so pages call the APIs without CORS.

- ``/v1/<service>/<path>`` goes to that service's ``/v1/<path>``, and
  ``/v1/<service>/openapi.json`` to its ``/openapi.json``: method, body, query and the headers
  an API reads pass through; hop-by-hop headers do not;
- ``/lv/<page>`` and ``/en/<page>`` are the pages (``web/pages/``), each wrapped in the layout
  with its texts in that language (``web/i18n.py``); ``/`` sends the browser to the language
  it prefers (Latvian unless it asks for English), and so does a page's address without one
  (``/verify-email?token=...``);
- ``/assets/...`` the scripts, the style sheet and the texts the scripts show;
- ``/lv/cookies`` and ``/en/cookies`` the cookie notice, written from ``web/storage.py``;
- ``/payments/<id>/return``, where the PSP sends a customer back after the card's
  authentication, the page that shows how that payment stands.

It sets no cookie and keeps nothing. ``python -m web.edge --port 8100 --service
accounts=http://127.0.0.1:8101 ...`` (the local runner starts it so); behind the ingress
controller, ``--trust-forwarded-for`` (deploy/k8s/base/edge.yaml).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Mapping
from pathlib import Path

import aiohttp
from aiohttp import web

from web import i18n, storage

HERE = Path(__file__).resolve().parent
PAGES = HERE / "pages"
ASSETS = HERE / "assets"
LANGUAGES = ("lv", "en")
MAX_BODY = 1024 ** 2  # as the services' own limit
# What an API reads of a request, and what a browser needs of the answer.
REQUEST_HEADERS = ("Authorization", "Content-Type", "Accept", "Accept-Language", "Idempotency-Key", "User-Agent")
RESPONSE_HEADERS = ("Content-Type", "Content-Encoding", "Content-Disposition", "Content-Language", "Retry-After", "Location",
                    "Cache-Control", "Idempotent-Replayed")
PAGE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
# A part two pages share (``{{include:name}}`` -> ``pages/_name.html``).
INCLUDE = re.compile(r"\{\{include:([a-z][a-z0-9-]{0,40})\}\}")
SECURITY_HEADERS = {
    # Scripts and styles from this origin only; no framing; no referrer (links carry tokens).
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
SERVICES_KEY = web.AppKey("services", dict)
CLIENT_KEY = web.AppKey("client", aiohttp.ClientSession)
TRUST_FORWARDED_FOR_KEY = web.AppKey("trust_forwarded_for", bool)


def preferred_language(accept: str) -> str:
    """The first of our languages the browser lists (q-values honoured), Latvian otherwise."""
    ranked = []
    for position, part in enumerate(accept.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, position, tag.strip().lower().split("-")[0]))
    return next((tag for q, _, tag in sorted(ranked) if tag in LANGUAGES and q < 0), "lv")  # q=0: not wanted


def page(language: str, name: str) -> str | None:
    """The page ``name`` in ``language``, laid out; None when there is no such page."""
    source = PAGES / f"{name}.html"
    if not PAGE_NAME.match(name) or not source.is_file():
        return None
    body = INCLUDE.sub(lambda m: (PAGES / f"_{m.group(1)}.html").read_text().rstrip("\n"), source.read_text())
    title_key = re.search(r"<!--\s*title:\s*([\w.-]+)\s*-->", body)
    title = i18n.text(language, title_key.group(1)) if title_key else i18n.text(language, "shop")
    layout = (PAGES / "_layout.html").read_text()
    other = "en" if language == "lv" else "lv"
    filled = (layout.replace("{{main}}", body).replace("{{title}}", title).replace("{{page}}", name)
              .replace("{{lang}}", language).replace("{{other_lang}}", other))
    return i18n.fill(language, filled)


async def serve_page(request: web.Request) -> web.Response:
    language, name = request.match_info["lang"], request.match_info.get("page") or "index"
    if language not in LANGUAGES:
        raise web.HTTPNotFound()
    if name == "cookies":
        html = storage.notice_page(language)
    else:
        html = page(language, name)
    if html is None:
        html = page(language, "not-found")
        return web.Response(status=404, text=html, content_type="text/html", headers=SECURITY_HEADERS)
    return web.Response(text=html, content_type="text/html",
                        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache", "Content-Language": language})


async def root(request: web.Request) -> web.Response:
    raise web.HTTPFound(f"/{preferred_language(request.headers.get('Accept-Language', ''))}/")


async def localise(request: web.Request) -> web.Response:
    """A page's address without a language (``/verify-email?token=...`` in mail written before
    links named one): the same page, query and all, in the language the browser prefers."""
    name = request.match_info["page"]
    if name in LANGUAGES:
        raise web.HTTPFound(f"/{name}/")
    if not PAGE_NAME.match(name) or not (PAGES / f"{name}.html").is_file():
        raise web.HTTPNotFound()
    query = f"?{request.query_string}" if request.query_string else ""
    raise web.HTTPFound(f"/{preferred_language(request.headers.get('Accept-Language', ''))}/{name}{query}")


async def payment_return(request: web.Request) -> web.Response:
    """Where the PSP sends a customer back after their card's authentication (payments'
    ``SHOP_URL``/payments/<id>/return): the page that shows how the payment stands."""
    language = preferred_language(request.headers.get("Accept-Language", ""))
    raise web.HTTPFound(f"/{language}/payment-return?id={request.match_info['id']}")


async def texts(request: web.Request) -> web.Response:
    language = request.match_info["lang"]
    if language not in LANGUAGES:
        raise web.HTTPNotFound()
    return web.json_response(i18n.TEXTS[language], headers={"Cache-Control": "no-cache"})


def upstream_headers(incoming: Mapping[str, str], remote: str | None, trust_forwarded_for: bool) -> dict[str, str]:
    """The headers a service gets: those an API reads, and X-Forwarded-For with the address the
    request came from appended; or, when the one proxy in front appends the client's address
    (the ingress controller), as it came, so that the client's address stays last (accounts
    counts sign-in failures by it)."""
    headers = {h: incoming[h] for h in REQUEST_HEADERS if h in incoming}
    forwarded = incoming.get("X-Forwarded-For")
    if forwarded and trust_forwarded_for:
        headers["X-Forwarded-For"] = forwarded
    else:
        headers["X-Forwarded-For"] = f"{forwarded}, {remote}" if forwarded else str(remote)
    return headers


async def proxy(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES_KEY]
    base = services.get(request.match_info["service"])
    if base is None:
        return problem(404, "No such service", f"Services: {', '.join(sorted(services))}.")
    tail = request.match_info["tail"]
    target = f"{base}/openapi.json" if tail == "openapi.json" else f"{base}/v1/{tail}"
    headers = upstream_headers(request.headers, request.remote, request.app[TRUST_FORWARDED_FOR_KEY])
    body = await request.read() if request.can_read_body else None
    try:
        upstream = await request.app[CLIENT_KEY].request(
            request.method, target, params=request.rel_url.query, data=body, headers=headers,
            allow_redirects=False)
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return problem(502, "Service unreachable", "The service did not answer; try again in a moment.")
    async with upstream:
        response = web.StreamResponse(status=upstream.status, headers={
            **{h: upstream.headers[h] for h in RESPONSE_HEADERS if h in upstream.headers}, **SECURITY_HEADERS})
        await response.prepare(request)
        async for chunk in upstream.content.iter_chunked(64 * 1024):
            await response.write(chunk)
        await response.write_eof()
        return response


def problem(status: int, title: str, detail: str) -> web.Response:
    return web.Response(status=status, content_type="application/problem+json",
                        text=json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(services: dict[str, str], *, trust_forwarded_for: bool = False) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[SERVICES_KEY] = {name: url.rstrip("/") for name, url in services.items()}
    app[TRUST_FORWARDED_FOR_KEY] = trust_forwarded_for

    async def client(app: web.Application):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60, connect=5),
                                         auto_decompress=False) as session:
            app[CLIENT_KEY] = session
            yield

    app.cleanup_ctx.append(client)
    app.router.add_get("/", root)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    app.router.add_get("/assets/i18n/{lang}.json", texts)
    app.router.add_static("/assets", ASSETS, append_version=False)
    app.router.add_route("*", "/v1/{service}/{tail:.+}", proxy)
    app.router.add_get("/payments/{id:[0-9a-fA-F-]{36}}/return", payment_return)
    app.router.add_get("/{page}", localise)
    app.router.add_get("/{lang}/", serve_page)
    app.router.add_get("/{lang}/{page}", serve_page)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--service", action="append", default=[], metavar="NAME=URL",
                        help="a service and where it listens (repeat for each)")
    parser.add_argument("--trust-forwarded-for", action="store_true",
                        help="behind exactly one proxy that appends the client's address to X-Forwarded-For "
                             "(the ingress controller): pass the header on as it came instead of appending "
                             "that proxy's address")
    args = parser.parse_args(argv)
    services = dict(item.split("=", 1) for item in args.service)
    web.run_app(make_app(services, trust_forwarded_for=args.trust_forwarded_for), host=args.host, port=args.port,
                print=None)


if __name__ == "__main__":
    main()
