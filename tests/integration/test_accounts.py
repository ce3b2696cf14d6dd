"""The accounts service against real PostgreSQL, RabbitMQ and SMTP (the in-loop sink)."""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import uuid

import aiohttp
import pytest

from deploy.mailsink import MailSink, code_in
from services.accounts import mail, schemas, store
from shared import mail as shared_mail
from services.accounts.privacy import INVENTORY, NOT_PERSONAL
from services.accounts.api import AccountsApi
from services.accounts.service import AccountsService, create_staff_account
from services.accounts.settings import AccountsSettings
from services.accounts.tokens import new_signing_key
from shared.auth import TokenVerifier, check_token
from shared.config import load_settings
from shared.contracts.privacy import DataSubject
from shared.http import CUSTOMER, HTTPProblem
from shared.service import ServiceRuntime
from tests.conftest import eventually

PASSWORD = "correct horse battery"


@pytest.fixture
async def mailsink():
    sink = MailSink()
    await sink.start()
    yield sink
    await sink.stop()


def accounts_settings(amqp_url: str, database: str, smtp_port: int, **overrides) -> AccountsSettings:
    return load_settings("accounts", AccountsSettings, **{
        "amqp_url": amqp_url, "database_url": database, "http_port": 0,
        "jwt_signing_key": new_signing_key(), "smtp_port": smtp_port,
        # A cheap argon2id cost: the tests exercise the rules, bench/accounts.py the cost.
        "argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1,
        "outbox_poll_s": 0.2, "shutdown_grace_s": 5,
        "session_log_days": 14,  # not the default: the declaration must follow the setting
        **overrides})


@pytest.fixture
async def accounts(amqp_url, database, mailsink):
    runtime = ServiceRuntime(AccountsService, accounts_settings(amqp_url, database, mailsink.port))
    await runtime.start()
    yield runtime
    await runtime.stop()


class Client:
    """The shop's frontend, or a staff console, speaking to the accounts API."""

    def __init__(self, session: aiohttp.ClientSession, base: str, sink: MailSink) -> None:
        self.session, self.base, self.sink = session, base, sink

    async def call(self, method: str, path: str, token: str | None = None, json_body=None,
                   expect: int | None = None, **kwargs):
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.base + path, json=json_body, headers=headers,
                                        **kwargs) as response:
            text = await response.text()
            body = json.loads(text) if text else None
            if expect is not None:
                assert response.status == expect, (response.status, body)
            if response.status >= 400:
                assert response.content_type == "application/problem+json", response.content_type
            return response.status, body, response.headers

    async def customer(self, email: str, name: str = "Anna Bērziņa", phone: str = "+37120000001",
                       user_agent: str = "test-browser", language: str | None = None) -> dict:
        """Register (in ``language``, or the default), verify and sign in; the tokens and the account's id."""
        earlier = len(self.sink.to(email))
        await self.call("POST", "/v1/accounts", json_body={
            "name": name, "email": email, "phone": phone, "password": PASSWORD, "terms_version": "2026-01",
            **({} if language is None else {"language": language})}, expect=202)
        message = (await self.sink.wait_for(email, count=earlier + 1))[-1]
        await self.confirm(message, expect=200)
        return await self.login(email, user_agent=user_agent)

    async def confirm(self, message, password: str = PASSWORD, expect: int | None = None):
        """Open the verification message's link: its code and the account's password."""
        return await self.call("POST", "/v1/accounts/verify-email",
                               json_body={"token": code_in(message), "password": password}, expect=expect)

    async def login(self, email: str, password: str = PASSWORD, user_agent: str = "test-browser",
                    path: str = "/v1/auth/login") -> dict:
        _, tokens, _ = await self.call("POST", path, json_body={"email": email, "password": password},
                                       headers={"User-Agent": user_agent}, expect=200)
        _, me, _ = await self.call("GET", "/v1/me", tokens["access_token"]) if "staff" not in path else (0, {}, 0)
        return {**tokens, "id": me.get("id")}


@pytest.fixture
async def client(accounts, mailsink):
    async with aiohttp.ClientSession() as session:
        yield Client(session, f"http://127.0.0.1:{accounts.http_port}", mailsink)


async def events(runtime, event_type: str) -> list[dict]:
    rows = await runtime.service.pool.fetch(
        "SELECT body FROM outbox WHERE routing_key = $1 ORDER BY seq", event_type)
    return [json.loads(r["body"]) for r in rows]


async def staff(runtime, client: Client, *roles: str, email: str | None = None) -> dict:
    email = email or f"{'-'.join(roles)}-{uuid.uuid4().hex[:6]}@staff.example"
    await create_staff_account(runtime.service.pool, runtime.service.passwords, schemas.StaffAccountIn(
        name="Staff Member", email=email, password=PASSWORD, roles=list(roles)))
    return await client.login(email, path="/v1/staff/auth/login")


LATVIA = {"label": "home", "recipient": "Anna Bērziņa", "phone": "+37120000001", "line1": "Brīvības iela 1",
          "city": "Rīga", "postal_code": "LV-1010", "country": "lv"}


async def test_the_whole_life_of_a_customer(accounts, client, mailsink):
    email = "anna@example.lv"
    await client.call("POST", "/v1/accounts", json_body={
        "name": "Anna Bērziņa", "email": "Anna@Example.LV", "phone": "+371 2000 0001",
        "password": PASSWORD, "terms_version": "2026-01"}, expect=202)
    [message] = await mailsink.wait_for(email)
    # No account before the address is confirmed, with the code and the password registered.
    status, problem, _ = await client.call("POST", "/v1/auth/login",
                                           json_body={"email": email, "password": PASSWORD})
    assert status == 401
    await client.confirm(message, password="not the password", expect=403)
    await client.confirm(message, expect=200)
    await client.confirm(message, expect=404)  # a code works once

    first = await client.login(email, user_agent="phone")
    token = first["access_token"]
    _, me, _ = await client.call("GET", "/v1/me", token, expect=200)
    assert (me["email"], me["phone"], me["email_verified"], me["terms_version"]) == (
        email, "+37120000001", True, "2026-01")

    # Correct the profile: an event for the other services.
    _, me, _ = await client.call("PATCH", "/v1/me", token, {"name": "Anna Ozola"}, expect=200)
    assert me["name"] == "Anna Ozola" and me["phone"] == "+37120000001"
    [changed] = await events(accounts, "profile_changed")
    assert changed["customer_id"] == first["id"] and changed["name"] == "Anna Ozola"

    # The address book.
    _, address, _ = await client.call("POST", "/v1/me/addresses", token, LATVIA, expect=201)
    assert address["country"] == "LV"
    _, second, _ = await client.call("POST", "/v1/me/addresses", token, {**LATVIA, "label": "work"}, expect=201)
    _, corrected, _ = await client.call("PUT", f"/v1/me/addresses/{address['id']}", token,
                                        {**LATVIA, "line1": "Brīvības iela 2"}, expect=200)
    assert corrected["line1"] == "Brīvības iela 2"
    await client.call("DELETE", f"/v1/me/addresses/{second['id']}", token, expect=204)
    _, book, _ = await client.call("GET", "/v1/me/addresses", token, expect=200)
    assert [a["line1"] for a in book["items"]] == ["Brīvības iela 2"]

    # A new e-mail takes effect only once verified, and then marketing hears of it.
    await client.call("POST", "/v1/me/email", token, {"email": "anna@new.example", "password": "wrong one!"},
                      expect=403)
    await client.call("POST", "/v1/me/email", token, {"email": "anna@new.example", "password": PASSWORD},
                      expect=202)
    _, me, _ = await client.call("GET", "/v1/me", token, expect=200)
    assert (me["email"], me["pending_email"]) == (email, "anna@new.example")
    assert await events(accounts, "email_changed") == []
    [message] = await mailsink.wait_for("anna@new.example")
    await client.confirm(message, password="somebody else's", expect=403)
    await client.confirm(message, expect=200)
    _, me, _ = await client.call("GET", "/v1/me", token, expect=200)
    assert (me["email"], me["pending_email"]) == ("anna@new.example", None)
    [changed] = await events(accounts, "email_changed")
    assert changed["email"] == "anna@new.example"
    email = "anna@new.example"

    # Sessions: two devices; the customer ends the other one, which then stops working.
    other = await client.login(email, user_agent="laptop")
    _, sessions, _ = await client.call("GET", "/v1/me/sessions", token, expect=200)
    assert {s["user_agent"]: s["current"] for s in sessions["items"]} == {"phone": True, "laptop": False}
    assert all(s["ip"] == "127.0.0.1" for s in sessions["items"])
    laptop = next(s for s in sessions["items"] if s["user_agent"] == "laptop")
    await client.call("DELETE", f"/v1/me/sessions/{laptop['id']}", token, expect=204)
    await client.call("GET", "/v1/me", other["access_token"], expect=401)
    await client.call("POST", "/v1/auth/refresh", json_body={"refresh_token": other["refresh_token"]}, expect=401)

    # Refresh rotates; a used refresh token presented again ends the session (a stolen copy).
    _, renewed, _ = await client.call("POST", "/v1/auth/refresh",
                                      json_body={"refresh_token": first["refresh_token"]}, expect=200)
    # The refresh token's life is the session's: it does not start again.
    assert 0 < renewed["refresh_expires_in"] <= first["refresh_expires_in"]
    await client.call("GET", "/v1/me", renewed["access_token"], expect=200)
    await client.call("POST", "/v1/auth/refresh", json_body={"refresh_token": first["refresh_token"]}, expect=401)
    await client.call("GET", "/v1/me", renewed["access_token"], expect=401)
    await client.call("POST", "/v1/auth/refresh", json_body={"refresh_token": renewed["refresh_token"]}, expect=401)

    # Sign out ends this session only.
    third = await client.login(email, user_agent="tablet")
    await client.call("POST", "/v1/auth/logout", third["access_token"], expect=204)
    await client.call("GET", "/v1/me", third["access_token"], expect=401)

    # Close: re-authenticated; sign-in stops at once; account_closed goes to the privacy service.
    fourth = await client.login(email)
    await client.call("POST", "/v1/me/close", fourth["access_token"], {"password": "not my password"}, expect=403)
    await client.call("GET", "/v1/me", fourth["access_token"], expect=200)
    await client.call("POST", "/v1/me/close", fourth["access_token"], {"password": PASSWORD}, expect=202)
    await client.call("GET", "/v1/me", fourth["access_token"], expect=401)
    status, _, _ = await client.call("POST", "/v1/auth/login", json_body={"email": email, "password": PASSWORD})
    assert status == 401
    [closed] = await events(accounts, "account_closed")
    assert (closed["customer_id"], closed["email"], closed["phone"]) == (first["id"], email, "+37120000001")
    # The events reach the broker (the relay publishes and marks them).
    await eventually(lambda: accounts.service.pool.fetchval(
        "SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL"))


async def test_a_customer_can_never_reach_another_customers_data(accounts, client):
    anna = await client.customer("anna@example.lv")
    bob = await client.customer("bob@example.lv", name="Bob Kalniņš", phone="+37120000002")
    _, address, _ = await client.call("POST", "/v1/me/addresses", anna["access_token"], LATVIA, expect=201)
    _, sessions, _ = await client.call("GET", "/v1/me/sessions", anna["access_token"], expect=200)
    anna_session = sessions["items"][0]["id"]

    for method, path, body in [
        ("GET", f"/v1/me/addresses/{address['id']}", None),
        ("PUT", f"/v1/me/addresses/{address['id']}", {**LATVIA, "line1": "Bob was here"}),
        ("DELETE", f"/v1/me/addresses/{address['id']}", None),
        ("DELETE", f"/v1/me/sessions/{anna_session}", None),
    ]:
        status, _, _ = await client.call(method, path, bob["access_token"], body)
        assert status == 404, (method, path, status)
    # Bob's own views show only Bob's data.
    _, me, _ = await client.call("GET", "/v1/me", bob["access_token"], expect=200)
    assert me["id"] == bob["id"]
    _, book, _ = await client.call("GET", "/v1/me/addresses", bob["access_token"], expect=200)
    assert book["items"] == []
    _, bobs, _ = await client.call("GET", "/v1/me/sessions", bob["access_token"], expect=200)
    assert anna_session not in {s["id"] for s in bobs["items"]}
    # Anna's data is untouched and her session still works.
    _, still, _ = await client.call("GET", f"/v1/me/addresses/{address['id']}", anna["access_token"], expect=200)
    assert still["line1"] == LATVIA["line1"]
    await client.call("GET", "/v1/me", anna["access_token"], expect=200)

    # No token, a forged token, a staff token, a refresh token as access token: all refused.
    for path in ["/v1/me", "/v1/me/addresses", "/v1/me/sessions"]:
        assert (await client.call("GET", path))[0] == 401
        assert (await client.call("GET", path, anna["access_token"][:-4] + "AAAA"))[0] == 401
        assert (await client.call("GET", path, anna["refresh_token"]))[0] == 401
    support = await staff(accounts, client, "support")
    assert (await client.call("GET", "/v1/me", support["access_token"]))[0] == 403
    # And a customer token cannot use the staff routes.
    for method, path, body in [
        ("POST", "/v1/staff/customer-lookups", {"customer_id": anna["id"], "reason": "curious about Anna"}),
        ("GET", "/v1/staff/usage-stats", None),
        ("POST", "/v1/staff/accounts", {"name": "Me", "email": "me@x.lv", "password": PASSWORD, "roles": ["admin"]}),
    ]:
        assert (await client.call(method, path, bob["access_token"], body))[0] == 403


async def test_bad_input_gets_a_clear_error_and_changes_nothing(accounts, client):
    pool = accounts.service.pool
    good = {"name": "Anna", "email": "anna@example.lv", "phone": "+37120000001", "password": PASSWORD,
            "terms_version": "2026-01"}
    for change, field in [({"email": "not-an-address"}, "body.email"), ({"password": "short"}, "body.password"),
                          ({"phone": "12"}, "body.phone"), ({"name": " "}, "body.name"),
                          ({"admin": True}, "body.admin")]:
        status, problem, _ = await client.call("POST", "/v1/accounts", json_body={**good, **change})
        assert status == 422 and field in [e["field"] for e in problem["errors"]], (change, problem)
    status, _, _ = await client.call("POST", "/v1/accounts", data=b"{not json",
                                     headers={"Content-Type": "application/json"})
    assert status == 400
    status, _, _ = await client.call("POST", "/v1/accounts", data=b"name=x")
    assert status == 415
    assert await pool.fetchval("SELECT count(*) FROM accounts") == 0
    assert await pool.fetchval("SELECT count(*) FROM outgoing_mail") == 0

    anna = await client.customer("anna@example.lv")
    token = anna["access_token"]
    before = dict(await pool.fetchrow("SELECT name, phone, email FROM accounts"))
    assert (await client.call("PATCH", "/v1/me", token, {}))[0] == 422
    assert (await client.call("PATCH", "/v1/me", token, {"phone": "call me"}))[0] == 422
    assert (await client.call("POST", "/v1/me/email", token, {"email": "x", "password": PASSWORD}))[0] == 422
    assert (await client.call("POST", "/v1/me/addresses", token, {**LATVIA, "country": "Latvia"}))[0] == 422
    assert (await client.call("POST", "/v1/me/addresses", token, {**LATVIA, "line1": ""}))[0] == 422
    assert (await client.call("GET", "/v1/me/addresses/not-a-uuid", token))[0] == 422
    assert (await client.call("POST", "/v1/accounts/verify-email",
                              json_body={"token": "x" * 40, "password": PASSWORD}))[0] == 404
    assert (await client.call("POST", "/v1/accounts/verify-email", json_body={"token": "x" * 40}))[0] == 422
    assert dict(await pool.fetchrow("SELECT name, phone, email FROM accounts")) == before
    assert await pool.fetchval("SELECT count(*) FROM addresses") == 0
    assert await events(accounts, "profile_changed") == []


async def test_text_postgresql_cannot_store_is_refused_on_every_kind_of_input(accounts, client):
    """Each of these was a 500 once: PostgreSQL (or the UTF-8 encoder) met the value first."""
    pool = accounts.service.pool
    anna = await client.customer("anna@example.lv")
    token = anna["access_token"]
    registration = {"name": "Anna", "email": "nul@example.lv", "phone": "+37120000001",
                    "password": PASSWORD, "terms_version": "2026-01"}
    cases = [
        ("POST", "/v1/accounts", None, json.dumps({**registration, "name": "An\u0000na"}), "body.name"),
        ("POST", "/v1/accounts", None, json.dumps({**registration, "terms_version": "\u0000"}), "body.terms_version"),
        ("POST", "/v1/auth/login", None, r'{"email": "\ud800@example.lv", "password": "x"}', "body.email"),
        ("POST", "/v1/auth/login", None, r'{"email": "anna@example.lv", "password": "\u0000"}', "body.password"),
        ("PATCH", "/v1/me", token, r'{"name": "\udfff"}', "body.name"),
        ("POST", "/v1/me/addresses", token, json.dumps({**LATVIA, "city": "R\u0000ga"}), "body.city"),
        ("GET", "/v1/me/addresses/%00", token, None, "path.id"),
        ("DELETE", "/v1/me/sessions/%00", token, None, "path.id"),
    ]
    for method, path, bearer, data, field in cases:
        headers = {"Content-Type": "application/json"} if data is not None else {}
        status, problem, _ = await client.call(method, path, bearer, data=data, headers=headers)
        assert status == 422 and [e["field"] for e in problem["errors"]] == [field], (path, problem)
    deep = '{"email": "anna@example.lv", "password": ' + "[" * 5000 + "]" * 5000 + "}"
    assert (await client.call("POST", "/v1/auth/login", data=deep,
                              headers={"Content-Type": "application/json"}))[0] == 400
    assert await pool.fetchval("SELECT count(*) FROM email_verifications WHERE email = 'nul@example.lv'") == 0
    assert await pool.fetchval("SELECT count(*) FROM addresses") == 0


async def test_an_address_saved_under_older_rules_is_still_shown(accounts, client):
    """What is read back is not held to today's request rules (an empty label, a postal code
    starting with a dash were accepted once)."""
    anna = await client.customer("anna@example.lv")
    await accounts.service.pool.execute(
        """INSERT INTO addresses (id, account_id, label, recipient, line1, city, postal_code, country)
           VALUES (gen_random_uuid(), $1, '', 'Anna', 'Iela 1', 'Rīga', '-1010', 'LV')""", uuid.UUID(anna["id"]))
    _, listed, _ = await client.call("GET", "/v1/me/addresses", anna["access_token"], expect=200)
    assert [(a["label"], a["postal_code"]) for a in listed["items"]] == [("", "-1010")]


async def test_anonymous_requests_are_401_before_their_bodies_are_read(accounts, client):
    for method, path in [("PATCH", "/v1/me"), ("POST", "/v1/me/email"), ("POST", "/v1/me/addresses"),
                         ("PUT", f"/v1/me/addresses/{uuid.uuid4()}"), ("POST", "/v1/me/close"),
                         ("POST", "/v1/staff/accounts"), ("POST", "/v1/staff/customer-lookups"),
                         ("PUT", "/v1/me/addresses/not-a-uuid")]:
        for data in (b"{not json", b'{"unexpected": true}', b"[" * 5000):
            status, problem, _ = await client.call(method, path, data=data,
                                                   headers={"Content-Type": "application/json"})
            assert status == 401, (method, path, status, problem)
        assert (await client.call(method, path, data=b"x", headers={"Content-Type": "text/plain"}))[0] == 401


async def test_no_account_enumeration_and_lockout(accounts, client, mailsink):
    await client.customer("anna@example.lv")
    # Registering a taken address answers exactly as a new one; the owner hears of it by mail.
    taken = await client.call("POST", "/v1/accounts", json_body={
        "name": "Eve", "email": "anna@example.lv", "phone": "+37120000009", "password": PASSWORD,
        "terms_version": "2026-01"})
    fresh = await client.call("POST", "/v1/accounts", json_body={
        "name": "Eve", "email": "eve@example.lv", "phone": "+37120000009", "password": PASSWORD,
        "terms_version": "2026-01"})
    assert taken[:2] == fresh[:2] == (202, schemas.Accepted.model_validate(
        {"status": "verification sent", "detail": taken[1]["detail"]}).model_dump())
    [_, notice] = await mailsink.wait_for("anna@example.lv", count=2)
    assert notice["Subject"] == "Jūsu e-pasta adrese jau ir reģistrēta"  # in the owner's language
    # Nor does signing in with the password just registered: no account exists for it either way.
    answers = [await client.call("POST", "/v1/auth/login", json_body={"email": address, "password": PASSWORD})
               for address in ("eve@example.lv", "nobody-at-all@example.lv")]
    taken_login = await client.call("POST", "/v1/auth/login", json_body={"email": "anna@example.lv",
                                                                         "password": "Eve's own password"})
    assert answers[0][:2] == answers[1][:2] == taken_login[:2] and taken_login[0] == 401

    # A wrong password and an unknown address: the same answer, after the same argon2 work.
    verified = []
    original = accounts.service.passwords._verify
    accounts.service.passwords._verify = lambda stored, password: verified.append(stored) or original(stored, password)
    wrong = await client.call("POST", "/v1/auth/login", json_body={"email": "anna@example.lv", "password": "wrong password"})
    unknown = await client.call("POST", "/v1/auth/login", json_body={"email": "nobody@example.lv", "password": "wrong password"})
    accounts.service.passwords._verify = original
    assert wrong[:2] == unknown[:2] and wrong[0] == 401
    assert len(verified) == 2 and all(v.startswith("$argon2id$") for v in verified)

    # Lockout after the limit, for known and unknown addresses alike, with Retry-After.
    limit = accounts.settings.login_max_failures
    for _ in range(limit - 2):  # two failed above
        await client.call("POST", "/v1/auth/login", json_body={"email": "anna@example.lv", "password": "wrong password"}, expect=401)
    for _ in range(limit - 1):
        await client.call("POST", "/v1/auth/login", json_body={"email": "nobody@example.lv", "password": "wrong password"}, expect=401)
    for address in ("anna@example.lv", "nobody@example.lv"):
        status, problem, headers = await client.call("POST", "/v1/auth/login",
                                                     json_body={"email": address, "password": PASSWORD})
        assert status == 429 and 0 < int(headers["Retry-After"]) <= accounts.settings.login_window_s
    # Staff sign-ins count apart: the customer's lockout does not lock a staff address, nor back.
    assert (await client.call("POST", "/v1/staff/auth/login",
                              json_body={"email": "anna@example.lv", "password": "wrong password"}))[0] == 401
    # The throttle keeps no address in the clear.
    keys = await accounts.service.pool.fetch("SELECT key FROM throttle")
    assert keys and all(b"example" not in bytes(k["key"]) for k in keys)


async def test_registration_is_rate_limited_per_network(amqp_url, database, mailsink):
    runtime = ServiceRuntime(AccountsService, accounts_settings(amqp_url, database, mailsink.port,
                                                                register_max_per_network=2))
    await runtime.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(session, f"http://127.0.0.1:{runtime.http_port}", mailsink)
            for n in range(2):
                await client.call("POST", "/v1/accounts", json_body={
                    "name": "N", "email": f"n{n}@example.lv", "phone": "+37120000001", "password": PASSWORD,
                    "terms_version": "1"}, expect=202)
            status, _, headers = await client.call("POST", "/v1/accounts", json_body={
                "name": "N", "email": "n9@example.lv", "phone": "+37120000001", "password": PASSWORD,
                "terms_version": "1"})
            assert status == 429 and "Retry-After" in headers
            assert await runtime.service.pool.fetchval("SELECT count(*) FROM email_verifications") == 2
    finally:
        await runtime.stop()


async def test_staff_lookup_is_recorded_with_its_reason(accounts, client):
    anna = await client.customer("anna@example.lv")
    await client.call("POST", "/v1/me/addresses", anna["access_token"], LATVIA, expect=201)
    support = await staff(accounts, client, "support")
    accounting = await staff(accounts, client, "accounting")
    pool = accounts.service.pool

    status, problem, _ = await client.call("POST", "/v1/staff/customer-lookups", support["access_token"],
                                           {"customer_id": anna["id"]})
    assert status == 422 and "body.reason" in [e["field"] for e in problem["errors"]]
    assert (await client.call("POST", "/v1/staff/customer-lookups", accounting["access_token"],
                              {"customer_id": anna["id"], "reason": "checking an invoice address"}))[0] == 403
    assert (await client.call("POST", "/v1/staff/customer-lookups", support["access_token"],
                              {"customer_id": str(uuid.uuid4()), "reason": "ticket 4711 about delivery"}))[0] == 404
    assert await pool.fetchval("SELECT count(*) FROM staff_access") == 0

    _, record, _ = await client.call("POST", "/v1/staff/customer-lookups", support["access_token"],
                                     {"email": "ANNA@example.lv", "reason": "ticket 4711 about delivery"}, expect=200)
    assert record["profile"]["id"] == anna["id"] and record["addresses"][0]["city"] == "Rīga"
    row = await pool.fetchrow("SELECT * FROM staff_access")
    support_id = await pool.fetchval("SELECT id FROM accounts WHERE kind = 'staff' AND 'support' = ANY(roles)")
    assert (row["id"], row["staff_id"], str(row["customer_id"]), row["reason"]) == (
        uuid.UUID(record["access_id"]), support_id, anna["id"], "ticket 4711 about delivery")
    [event] = await events(accounts, "staff_accessed")
    assert event["access_id"] == record["access_id"] and event["reason"] == "ticket 4711 about delivery"

    # An admin creates staff through the API; the new member signs in with the role given.
    admin = await staff(accounts, client, "admin")
    await client.call("POST", "/v1/staff/accounts", support["access_token"], {
        "name": "New", "email": "new@staff.example", "password": PASSWORD, "roles": ["support"]}, expect=403)
    await client.call("POST", "/v1/staff/accounts", admin["access_token"], {
        "name": "New", "email": "new@staff.example", "password": PASSWORD, "roles": ["support"]}, expect=201)
    await client.call("POST", "/v1/staff/accounts", admin["access_token"], {
        "name": "New", "email": "new@staff.example", "password": PASSWORD, "roles": ["support"]}, expect=409)
    await client.login("new@staff.example", path="/v1/staff/auth/login")
    # Staff and customers are apart: a staff address does not sign in as a customer.
    assert (await client.call("POST", "/v1/auth/login",
                              json_body={"email": "new@staff.example", "password": PASSWORD}))[0] == 401

    # Usage statistics hold truncated networks only.
    _, stats, _ = await client.call("GET", "/v1/staff/usage-stats?days=7", admin["access_token"], expect=200)
    assert stats["items"] and {r["network"] for r in stats["items"]} == {"127.0.0.0/24"}
    assert (await client.call("GET", "/v1/staff/usage-stats?days=0", admin["access_token"]))[0] == 422
    assert (await client.call("GET", "/v1/staff/usage-stats", support["access_token"]))[0] == 403


async def test_signing_out_ends_staff_tokens_on_every_staff_route(accounts, client):
    """The shared partner and webhook routes check the session as accounts' own routes do."""
    admin = await staff(accounts, client, "admin")
    token = admin["access_token"]
    routes = [("GET", "/v1/staff/partners"), ("GET", "/v1/staff/webhooks/deliveries"),
              ("GET", "/v1/staff/partners/sandbox-carrier/callbacks"),
              ("GET", "/v1/staff/usage-stats")]
    for method, path in routes:
        assert (await client.call(method, path, token))[0] == 200, path
    await client.call("POST", "/v1/auth/logout", token, expect=204)
    for method, path in [*routes, ("GET", f"/v1/staff/webhooks/deliveries/msg_{uuid.uuid4().hex}"),
                         ("POST", "/v1/staff/partners/sandbox-carrier/enable")]:
        status, problem, _ = await client.call(method, path, token)
        assert (status, problem["title"]) == (401, "Session ended"), path


async def test_erasure_leaves_nothing_beyond_what_is_declared(accounts, client, rpc_client, mailsink):
    anna = await client.customer("anna@example.lv", name="Anna Unikāla", phone="+37129999999")
    bob = await client.customer("bob@example.lv", name="Bob Kalniņš", phone="+37120000002")
    token = anna["access_token"]
    await client.call("POST", "/v1/me/addresses", token, {**LATVIA, "recipient": "Anna Unikāla"}, expect=201)
    await client.call("PATCH", "/v1/me", token, {"name": "Anna Unikāla"}, expect=200)
    await client.call("POST", "/v1/me/email", token, {"email": "bob@example.lv", "password": PASSWORD}, expect=202)
    await client.call("POST", "/v1/me/email", token, {"email": "anna@pending.example", "password": PASSWORD}, expect=202)
    await mailsink.wait_for("anna@pending.example")
    await client.call("POST", "/v1/auth/login", json_body={"email": "bob@example.lv", "password": "Bob mistyped"},
                      expect=401)
    support = await staff(accounts, client, "support")
    await client.call("POST", "/v1/staff/customer-lookups", support["access_token"],
                      {"customer_id": anna["id"], "reason": "ticket 12 about a parcel"}, expect=200)
    await eventually(lambda: accounts.service.pool.fetchval(
        "SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL"))
    await eventually(lambda: accounts.service.pool.fetchval(
        "SELECT count(*) = 0 FROM outgoing_mail WHERE sent_at IS NULL"))

    await client.call("POST", "/v1/auth/login", json_body={"email": "anna@example.lv", "password": "mistyped it"},
                      expect=401)
    subject = DataSubject(customer_id=anna["id"], emails=["anna@example.lv"], phones=["+37129999999"])
    request = {"request_id": str(uuid.uuid4()), "subject": subject.model_dump(mode="json")}
    bob_mail = await accounts.service.pool.fetchval(
        "SELECT count(*) FROM outgoing_mail WHERE recipient = 'bob@example.lv'")
    assert bob_mail == 2  # his registration and the notice of Anna's attempt
    before = await rpc_client.accounts.privacy_erase({**request, "verify_only": True})
    assert set(before["remaining"]) >= {"contact details", "delivery addresses", "sessions", "events"}

    outcome = await rpc_client.accounts.privacy_erase(request)
    assert outcome["remaining"] == []
    assert {e["category"] for e in outcome["erased"]} >= {
        "contact details", "delivery addresses", "sessions", "e-mail verifications", "e-mail to the customer",
        "published events", "sign-in throttling"}
    assert {r["category"] for r in outcome["retained"]} == {"account id", "staff access records"}
    again = await rpc_client.accounts.privacy_erase({**request, "verify_only": True})
    assert again["remaining"] == []

    # Her tokens stop at once; her address is free again.
    await client.call("GET", "/v1/me", token, expect=401)
    # Read every column of every table: nothing of hers is left but what was declared retained.
    pool = accounts.service.pool
    needles = ["anna@example.lv", "anna@pending.example", "Unikāla", "29999999"]
    found = []
    for table in await pool.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"):
        for row in await pool.fetch(f'SELECT * FROM "{table["table_name"]}"'):
            text = json.dumps({k: (bytes(v).decode(errors="replace") if isinstance(v, (bytes, memoryview))
                                   else str(v)) for k, v in dict(row).items()}, ensure_ascii=False)
            found += [(table["table_name"], n) for n in needles if n in text]
            if anna["id"] in text:
                found.append((table["table_name"], "id"))
    assert sorted(set(found)) == [("accounts", "id"), ("staff_access", "id")], found
    # Bob is untouched, even the mail and sign-in failures of his address Anna once asked for.
    await client.call("GET", "/v1/me", bob["access_token"], expect=200)
    assert await pool.fetchval("SELECT count(*) FROM outgoing_mail WHERE recipient = 'bob@example.lv'") == bob_mail
    bobs_key = AccountsApi(accounts.service).throttled("login", "customer:bob@example.lv")
    assert await pool.fetchval("SELECT count(*) FROM throttle WHERE key = $1", bobs_key) == 1
    # A new registration with the freed address is a new account.
    await client.customer("anna@example.lv")


async def test_export_pages_through_everything(accounts, client, rpc_client):
    anna = await client.customer("anna@example.lv")
    for n in range(3):
        await client.call("POST", "/v1/me/addresses", anna["access_token"], {**LATVIA, "label": f"a{n}"}, expect=201)
    await client.login("anna@example.lv", user_agent="second device")
    request = {"request_id": str(uuid.uuid4()), "subject": {"emails": ["anna@example.lv"]}, "max_records": 2}
    records, cursor, chunks = [], None, 0
    while True:
        chunk = await rpc_client.accounts.privacy_export({**request, "cursor": cursor})
        assert len(chunk["records"]) <= 2
        records += chunk["records"]
        chunks += 1
        cursor = chunk["next_cursor"]
        if cursor is None:
            break
    categories = [r["category"] for r in records]
    assert categories.count("profile") == 1 and categories.count("delivery addresses") == 3
    assert categories.count("sessions") == 2 and chunks >= 3
    profile = next(r["data"] for r in records if r["category"] == "profile")
    assert (profile["email"], profile["terms_version"]) == ("anna@example.lv", "2026-01")
    assert {r["data"]["user_agent"] for r in records if r["category"] == "sessions"} == {"test-browser", "second device"}
    [registration] = [r["data"] for r in records if r["category"] == "e-mail verifications"]
    assert (registration["purpose"], registration["name"]) == ("register", "Anna Bērziņa")
    assert "password_hash" not in registration
    [sent] = [r["data"] for r in records if r["category"] == "e-mail to the customer"]
    assert sent["recipient"] == "anna@example.lv" and "body" not in sent


async def test_a_message_that_cannot_be_composed_is_given_up_and_the_rest_go(accounts, mailsink):
    pool = accounts.service.pool
    async with pool.acquire() as conn, conn.transaction():
        await mail.queue_mail(conn, None, "line\nbreak@example.lv", "Hello", "body")
        await mail.queue_mail(conn, None, "fine@example.lv", "Hello", "body")
    await mailsink.wait_for("fine@example.lv")
    error = await eventually(lambda: pool.fetchval(
        """SELECT last_error FROM outgoing_mail WHERE recipient LIKE 'line%'
           AND attempts = $1 AND sent_at IS NULL""", shared_mail.MAX_ATTEMPTS))
    assert "cannot be composed" in error


async def test_retention_sweep_keeps_the_declared_periods(accounts, client, rpc_client):
    await client.customer("anna@example.lv")
    pool = accounts.service.pool
    await client.login("anna@example.lv", user_agent="old device")
    await pool.execute(
        """UPDATE sessions SET ended_at = now() - $1::interval, created_at = now() - $1::interval
           WHERE user_agent = 'old device'""", dt.timedelta(days=accounts.settings.session_log_days + 1))
    # A registration never confirmed goes a day after its code expires; a younger one stays.
    for email in ("never@example.lv", "recent@example.lv"):
        await client.call("POST", "/v1/accounts", json_body={
            "name": "N", "email": email, "phone": "+37120000005", "password": PASSWORD, "terms_version": "1"},
            expect=202)
    await pool.execute("UPDATE email_verifications SET expires_at = now() - interval '25 hours' WHERE email = $1",
                       "never@example.lv")
    # An erased account's id goes after 7 years, unless staff access records still point at it.
    erased = await pool.fetchval("""INSERT INTO accounts (id, kind, created_at, erased_at, closed_at)
        VALUES (gen_random_uuid(), 'customer', now() - interval '9 years', now() - interval '8 years',
                now() - interval '8 years') RETURNING id""")
    swept = await rpc_client.accounts.run_retention_sweep()
    assert (swept["sessions"], swept["e-mail verifications"], swept["account ids"]) == (1, 1, 1)
    assert [r["user_agent"] for r in await pool.fetch("SELECT user_agent FROM sessions")] == ["test-browser"]
    assert {r["email"] for r in await pool.fetch("SELECT email FROM email_verifications WHERE used_at IS NULL")} == {
        "recent@example.lv"}
    assert await pool.fetchval("SELECT count(*) FROM accounts WHERE id = $1", erased) == 0
    # The session period the service declares is the one it keeps.
    declared = await accounts.service.privacy_inventory()
    [sessions] = [e for e in declared.entries if e.table == "sessions"]
    assert sessions.retention.period_days == accounts.settings.session_log_days


async def test_every_personal_column_is_declared(accounts):
    columns = {(r["table_name"], r["column_name"]) for r in await accounts.service.pool.fetch(
        """SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'
           AND table_name IN ('accounts', 'addresses', 'sessions', 'refresh_tokens', 'email_verifications',
                              'password_resets', 'throttle', 'login_stats', 'staff_access', 'outgoing_mail')""")}
    undeclared = columns - INVENTORY.declared_columns() - NOT_PERSONAL
    assert undeclared == set(), f"declare these in services/accounts/privacy.py: {sorted(undeclared)}"


async def test_another_service_verifies_tokens_with_the_jwks(accounts, client):
    anna = await client.customer("anna@example.lv")
    support = await staff(accounts, client, "support")
    verifier = TokenVerifier(f"http://127.0.0.1:{accounts.http_port}/.well-known/jwks.json")
    principal = await verifier.verify(anna["access_token"])
    assert (principal.subject, principal.kind) == (anna["id"], "customer")
    staff_principal = await verifier.verify(support["access_token"])
    assert staff_principal.kind == "staff" and staff_principal.roles == {"support"}

    class Request:  # what check_token reads of an aiohttp request
        headers = {"Authorization": f"Bearer {support['access_token']}"}
    with pytest.raises(HTTPProblem) as refused:
        await check_token(Request, verifier, CUSTOMER)  # type: ignore[arg-type]
    assert refused.value.problem.status == 403
    with pytest.raises(HTTPProblem):
        await verifier.verify(anna["refresh_token"])


async def test_each_registration_code_confirms_its_own_registration(accounts, client, mailsink):
    registration = {"name": "Ieva", "email": "ieva@example.lv", "phone": "+37120000004", "password": PASSWORD,
                    "terms_version": "2026-01"}
    await client.call("POST", "/v1/accounts", json_body=registration, expect=202)
    await client.call("POST", "/v1/accounts", json_body={**registration, "name": "Ieva Two"}, expect=202)
    first, second = await mailsink.wait_for("ieva@example.lv", count=2)
    await client.confirm(second, expect=200)
    await client.confirm(first, expect=404)  # the address has its account: the other code is spent
    token = (await client.login("ieva@example.lv"))["access_token"]
    assert (await client.call("GET", "/v1/me", token))[1]["name"] == "Ieva Two"

    # Two address changes in a row: only the later one can take effect.
    for address in ("ieva@one.example", "ieva@two.example"):
        await client.call("POST", "/v1/me/email", token, {"email": address, "password": PASSWORD}, expect=202)
    [one] = await mailsink.wait_for("ieva@one.example")
    [two] = await mailsink.wait_for("ieva@two.example")
    await client.confirm(one, expect=404)
    await client.confirm(two, expect=200)
    _, me, _ = await client.call("GET", "/v1/me", token, expect=200)
    assert me["email"] == "ieva@two.example"


async def test_a_squatter_cannot_keep_an_address_nor_take_its_account(accounts, client, mailsink):
    owner = {"name": "Owner", "email": "owner@example.lv", "phone": "+37120000007", "password": PASSWORD,
             "terms_version": "1"}
    squat = {**owner, "name": "Mallory", "phone": "+37120000006", "password": "mallory's password"}
    # Mallory before the owner, and after: every code reaches the owner's mailbox, and none
    # confirms without the password it was registered with.
    for body in (squat, owner, squat):
        await client.call("POST", "/v1/accounts", json_body=body, expect=202)
    # Which code is whose by the greeting: under load the mails may arrive in any order.
    mail = await mailsink.wait_for("owner@example.lv", count=3)
    mallorys, mallorys_again = [m for m in mail if "Labdien, Mallory!" in m.get_content()]
    (owners,) = [m for m in mail if "Labdien, Owner!" in m.get_content()]
    await client.confirm(mallorys, expect=403)
    await client.confirm(mallorys_again, expect=403)
    await client.confirm(owners, expect=200)
    token = (await client.login("owner@example.lv"))["access_token"]
    _, me, _ = await client.call("GET", "/v1/me", token, expect=200)
    assert (me["name"], me["phone"]) == ("Owner", "+37120000007")
    assert (await client.call("POST", "/v1/auth/login", json_body={
        "email": "owner@example.lv", "password": "mallory's password"}))[0] == 401
    # Mallory's codes are spent with the account made: even her password confirms nothing now.
    await client.confirm(mallorys, password="mallory's password", expect=404)


async def test_parallel_guesses_stop_at_the_limit(accounts, client):
    await client.customer("anna@example.lv")
    limit = accounts.settings.login_max_failures
    answers = await asyncio.gather(*(client.call("POST", "/v1/auth/login", json_body={
        "email": "anna@example.lv", "password": f"guess number {n}"}) for n in range(limit * 4)))
    statuses = [a[0] for a in answers]
    assert statuses.count(401) == limit and statuses.count(429) == limit * 3, statuses


async def test_pending_address_tells_nothing_and_reauthentication_is_limited(accounts, client, mailsink):
    anna = await client.customer("anna@example.lv")
    await client.customer("bob@example.lv")
    token = anna["access_token"]
    pending = {}
    for address in ("bob@example.lv", "free@example.lv"):
        await client.call("POST", "/v1/me/email", token, {"email": address, "password": PASSWORD}, expect=202)
        pending[address] = (await client.call("GET", "/v1/me", token, expect=200))[1]["pending_email"]
    assert pending == {"bob@example.lv": "bob@example.lv", "free@example.lv": "free@example.lv"}
    [notice] = [m for m in await mailsink.wait_for("bob@example.lv", count=2) if "jau ir" in m["Subject"]]
    assert "kods" not in notice.get_content() and "code" not in notice.get_content()

    # A stolen token does not give unlimited password guesses.
    limit = accounts.settings.login_max_failures
    for _ in range(limit):
        await client.call("POST", "/v1/me/close", token, {"password": "a wrong guess"}, expect=403)
    status, _, headers = await client.call("POST", "/v1/me/close", token, {"password": PASSWORD})
    assert status == 429 and "Retry-After" in headers
    await client.call("GET", "/v1/me", token, expect=200)


async def test_closing_twice_closes_once(accounts, client):
    anna = await client.customer("anna@example.lv")
    answers = await asyncio.gather(*(client.call("POST", "/v1/me/close", anna["access_token"],
                                                 {"password": PASSWORD}) for _ in range(3)))
    assert 202 in [a[0] for a in answers]
    assert len(await events(accounts, "account_closed")) == 1
    # However the requests interleave, a second close finds nothing left to close.
    async with accounts.service.pool.acquire() as conn, conn.transaction():
        assert await store.close_account(conn, uuid.UUID(anna["id"])) is None


async def test_the_client_address_behind_a_proxy(accounts):
    api = AccountsApi(accounts.service)

    class Request:
        remote = "10.1.2.3"
        headers = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}
    assert api.client_ip(Request) == "10.1.2.3"  # no proxy trusted: the peer
    api.settings = accounts.settings.model_copy(update={"trust_forwarded_for": True})
    assert api.client_ip(Request) == "198.51.100.7"  # the entry the proxy appended
    Request.headers = {"X-Forwarded-For": "203.0.113.9, not-an-address"}
    assert api.client_ip(Request) == "10.1.2.3"


# --- a forgotten password ---------------------------------------------------------------------

NEW_PASSWORD = "a brand new passphrase"


def reset_link(message) -> str:
    return next(w for w in message.get_content().split() if "/reset-password?token=" in w)


async def reset_mail(client: Client, email: str, count: int):
    """Ask for a reset of ``email``'s password; the ``count``th message to the address."""
    await client.call("POST", "/v1/auth/password-reset", json_body={"email": email}, expect=202)
    return (await client.sink.wait_for(email, count=count))[-1]


async def test_a_forgotten_password_is_reset_by_the_mailed_link(accounts, client, mailsink):
    pool = accounts.service.pool
    anna = await client.customer("anna@example.lv", language="en")
    laptop = await client.login("anna@example.lv", user_agent="laptop")
    await staff(accounts, client, "admin", email="admin@staff.example")

    # Every address gets the same answer; only the customer's gets a message.
    answers = [await client.call("POST", "/v1/auth/password-reset", json_body={"email": address})
               for address in ("Anna@Example.LV", "nobody@example.lv", "admin@staff.example")]
    assert [a[:2] for a in answers] == [(202, answers[0][1])] * 3
    [_, message] = await mailsink.wait_for("anna@example.lv", count=2)
    assert message["Subject"] == "Choose a new password"  # her account's language
    link = reset_link(message)
    assert link == f"{accounts.settings.shop_url}/en/reset-password?token={code_in(message)}"
    await asyncio.sleep(0.5)  # what would have been sent meanwhile
    assert mailsink.to("nobody@example.lv") == [] and mailsink.to("admin@staff.example") == []
    # Only the code's hash is kept.
    assert [bytes(r["token_hash"]) for r in await pool.fetch("SELECT token_hash FROM password_resets")] == [
        hashlib.sha256(code_in(message).encode()).digest()]

    # A wrong code, or a new password the rules refuse, changes nothing.
    for body, status in [({"token": "x" * 43, "password": NEW_PASSWORD}, 404),
                         ({"token": code_in(message), "password": "short"}, 422)]:
        await client.call("POST", "/v1/auth/password-reset/confirm", json_body=body, expect=status)
    await client.call("GET", "/v1/me", anna["access_token"], expect=200)

    _, done, _ = await client.call("POST", "/v1/auth/password-reset/confirm",
                                   json_body={"token": code_in(message), "password": NEW_PASSWORD}, expect=200)
    assert done["status"] == "password changed"
    await client.call("POST", "/v1/auth/password-reset/confirm",
                      json_body={"token": code_in(message), "password": "yet another passphrase"}, expect=404)

    # Every session has ended: its tokens, access and refresh, are refused; the old password too.
    for session in (anna, laptop):
        await client.call("GET", "/v1/me", session["access_token"], expect=401)
        await client.call("POST", "/v1/auth/refresh", json_body={"refresh_token": session["refresh_token"]},
                          expect=401)
    assert (await client.call("POST", "/v1/auth/login",
                              json_body={"email": "anna@example.lv", "password": PASSWORD}))[0] == 401
    again = await client.login("anna@example.lv", password=NEW_PASSWORD)
    await client.call("GET", "/v1/me", again["access_token"], expect=200)
    # Every other service is told to refuse the ended sessions' tokens, each session apart.
    revoked = await events(accounts, "access_revoked")
    ended = {r["id"] for r in await pool.fetch("SELECT id FROM sessions WHERE end_reason = 'password reset'")}
    assert {r["session_id"] for r in revoked} == {str(s) for s in ended} and len(ended) == 2
    assert {(r["account_id"], r["reason"]) for r in revoked} == {(anna["id"], "password reset")}


async def test_a_reset_code_works_once_newest_only_and_not_after_it_expires(accounts, client, mailsink):
    pool = accounts.service.pool
    await client.customer("anna@example.lv")
    confirm = {"password": NEW_PASSWORD}
    first = await reset_mail(client, "anna@example.lv", 2)
    assert first["Subject"] == "Paroles atjaunošana" and "Labdien, Anna Bērziņa!" in first.get_content()
    assert "/lv/reset-password?token=" in reset_link(first)
    second = await reset_mail(client, "anna@example.lv", 3)
    # Only the newest code works.
    await client.call("POST", "/v1/auth/password-reset/confirm", json_body={**confirm, "token": code_in(first)},
                      expect=404)
    # Nor after its time.
    await pool.execute("UPDATE password_resets SET expires_at = now() - interval '1 second'")
    _, problem, _ = await client.call("POST", "/v1/auth/password-reset/confirm",
                                      json_body={**confirm, "token": code_in(second)}, expect=404)
    assert problem["title"] == "Unknown or expired code"
    await client.login("anna@example.lv")  # the password is as it was
    assert await events(accounts, "access_revoked") == []


async def test_password_resets_are_limited_per_address_and_network(amqp_url, database, mailsink):
    runtime = ServiceRuntime(AccountsService, accounts_settings(
        amqp_url, database, mailsink.port, reset_max_per_address=2, reset_max_per_network=4,
        network_max_failures=3))
    await runtime.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(session, f"http://127.0.0.1:{runtime.http_port}", mailsink)
            await client.customer("anna@example.lv")

            async def ask(email: str):
                return await client.call("POST", "/v1/auth/password-reset", json_body={"email": email})
            assert [(await ask("anna@example.lv"))[0] for _ in range(2)] == [202, 202]
            status, _, headers = await ask("anna@example.lv")  # a third for the address
            assert status == 429 and 0 < int(headers["Retry-After"]) <= 3600
            assert (await ask("nobody@example.lv"))[0] == 202  # the network's fourth
            assert (await ask("other@example.lv"))[0] == 429
            await asyncio.sleep(0.5)
            assert len(mailsink.to("anna@example.lv")) == 3  # the registration and two resets

            # Wrong codes count against the network, like failed sign-ins.
            for _ in range(3):
                await client.call("POST", "/v1/auth/password-reset/confirm",
                                  json_body={"token": "y" * 43, "password": NEW_PASSWORD}, expect=404)
            status, _, headers = await client.call("POST", "/v1/auth/password-reset/confirm", json_body={
                "token": code_in(mailsink.to("anna@example.lv")[-1]), "password": NEW_PASSWORD})
            assert status == 429 and "Retry-After" in headers
            await client.login("anna@example.lv")  # nothing changed
    finally:
        await runtime.stop()


# --- the customer's language -------------------------------------------------------------------

async def test_every_mail_is_written_in_the_customers_language(accounts, client, mailsink):
    # Registered in English: the verification mail and its page are English.
    await client.call("POST", "/v1/accounts", json_body={
        "name": "Emma", "email": "emma@example.lv", "phone": "+37120000011", "password": PASSWORD,
        "terms_version": "2026-01", "language": "en"}, expect=202)
    [verification] = await mailsink.wait_for("emma@example.lv")
    assert verification["Subject"] == "Confirm your e-mail address" and "Hello Emma," in verification.get_content()
    assert f"{accounts.settings.shop_url}/en/verify-email?token={code_in(verification)}" in verification.get_content()
    await client.confirm(verification, expect=200)
    emma = await client.login("emma@example.lv")
    _, me, _ = await client.call("GET", "/v1/me", emma["access_token"], expect=200)
    assert me["language"] == "en"
    # By default, Latvian.
    await client.call("POST", "/v1/accounts", json_body={
        "name": "Līga", "email": "liga@example.lv", "phone": "+37120000012", "password": PASSWORD,
        "terms_version": "2026-01"}, expect=202)
    [verification] = await mailsink.wait_for("liga@example.lv")
    assert verification["Subject"] == "Apstipriniet savu e-pasta adresi"
    assert f"/lv/verify-email?token={code_in(verification)}" in verification.get_content()

    # Someone registers Emma's address: she hears of it in English.
    await client.call("POST", "/v1/accounts", json_body={
        "name": "Eve", "email": "emma@example.lv", "phone": "+37120000013", "password": PASSWORD,
        "terms_version": "2026-01"}, expect=202)
    notice = (await mailsink.wait_for("emma@example.lv", count=2))[-1]
    assert notice["Subject"] == "Your address is already registered"
    assert f"{accounts.settings.shop_url}/en/login" in notice.get_content()

    # She chooses Latvian: later mail is Latvian, and the other services hear of it.
    await client.call("PATCH", "/v1/me", emma["access_token"], {"language": "fr"}, expect=422)
    _, me, _ = await client.call("PATCH", "/v1/me", emma["access_token"], {"language": "lv"}, expect=200)
    assert (me["language"], me["name"]) == ("lv", "Emma")
    [changed] = await events(accounts, "profile_changed")
    assert (changed["customer_id"], changed["language"], changed["name"]) == (emma["id"], "lv", "Emma")
    await client.call("POST", "/v1/me/email", emma["access_token"], {"email": "emma@new.example", "password": PASSWORD},
                      expect=202)
    [code] = await mailsink.wait_for("emma@new.example")
    assert code["Subject"] == "Apstipriniet savu e-pasta adresi" and "/lv/verify-email?token=" in code.get_content()

    # What payments tells her of her membership, in her language too.
    notice = {"membership_id": str(uuid.uuid4()), "customer_id": emma["id"],
              "kind": "charge_failed", "amount_cents": 1299, "currency": "EUR",
              "next_attempt_at": "2026-12-03T10:00:00+00:00", "at": "2026-12-01T10:00:00+00:00"}
    async with accounts.service.pool.acquire() as conn, conn.transaction():
        await accounts.service.on_membership_notice(conn, notice)
    await client.call("PATCH", "/v1/me", emma["access_token"], {"language": "en"}, expect=200)
    async with accounts.service.pool.acquire() as conn, conn.transaction():
        await accounts.service.on_membership_notice(conn, {**notice, "membership_id": str(uuid.uuid4())})
    mail = await mailsink.wait_for("emma@example.lv", count=4)
    [latvian] = [m for m in mail if m["Subject"] == "Neizdevās iekasēt dalības maksu no jūsu kartes"]
    [english] = [m for m in mail if m["Subject"] == "We could not charge your card for the membership"]
    assert "12,99 EUR" in latvian.get_content() and "03.12.2026" in latvian.get_content()
    assert "12.99 EUR" in english.get_content() and f"{accounts.settings.shop_url}/en/account" in english.get_content().split()
    assert [e["language"] for e in await events(accounts, "profile_changed")] == ["lv", "en"]
