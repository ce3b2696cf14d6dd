"""Closing an account, signing out or ending a session stops the account's access tokens in every
service within a second, not only in accounts (``shared/revocations.py``): accounts, orders and
payments in process against real PostgreSQL and RabbitMQ, a customer's browser over HTTP."""
from __future__ import annotations

import asyncio
import json
from urllib.parse import unquote

import aiohttp
import jwt
import pytest
from prometheus_client import REGISTRY

from deploy.mailsink import code_in
from services.accounts.service import AccountsService
from services.orders.service import OrdersService
from services.orders.settings import OrdersSettings
from services.payments.service import PaymentsService
from services.topology import subscriptions
from shared.config import load_settings
from shared.service import ServiceRuntime
from tests.conftest import eventually, own_database, rabbitmqctl
from tests.integration.test_accounts import PASSWORD, Client, accounts_settings, mailsink, staff  # noqa: F401
from tests.integration.test_payments import payments_settings
from tests.tcp_proxy import TcpProxy

REFUSED_WITHIN_S = 1.0  # what the issue asks of every service
ORDERS_ROUTE, PAYMENTS_ROUTE = "/v1/me/orders", "/v1/me/payments"  # a customer's own, read-only


def orders_settings(amqp_url: str, database: str, jwks_port: int, **overrides) -> OrdersSettings:
    return load_settings("orders", OrdersSettings, **{
        "amqp_url": amqp_url, "database_url": database, "http_port": 0,
        "jwks_url": f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json",
        "outbox_poll_s": 0.1, "shutdown_grace_s": 5, **overrides})


class Suite:
    def __init__(self, accounts: ServiceRuntime, orders: ServiceRuntime, payments: ServiceRuntime,
                 http: aiohttp.ClientSession, client: Client, amqp_url: str) -> None:
        self.accounts, self.orders, self.payments = accounts, orders, payments
        self.http, self.client, self.amqp_url = http, client, amqp_url

    async def get(self, runtime: ServiceRuntime, path: str, token: str) -> tuple[int, dict]:
        async with self.http.get(f"http://127.0.0.1:{runtime.http_port}{path}",
                                 headers={"Authorization": f"Bearer {token}"}) as response:
            return response.status, await response.json(content_type=None)

    async def works(self, token: str, *runtimes: ServiceRuntime) -> None:
        for runtime, path in self.routes(runtimes):
            status, body = await self.get(runtime, path, token)
            assert status == 200, (runtime.service_cls.name, status, body)

    async def refused(self, token: str, *runtimes: ServiceRuntime) -> None:
        """Refused at once, as an ended session (no waiting)."""
        for runtime, path in self.routes(runtimes):
            status, problem = await self.get(runtime, path, token)
            assert (status, problem["title"]) == (401, "Session ended"), (runtime.service_cls.name, status, problem)

    async def refused_within(self, token: str, started: float, *runtimes: ServiceRuntime) -> float:
        """Poll until every runtime refuses ``token``; the seconds from ``started`` to the last
        refusal, which must be under REFUSED_WITHIN_S."""
        loop = asyncio.get_running_loop()
        waiting = dict(self.routes(runtimes or (self.orders, self.payments)))
        while waiting:
            for runtime, path in list(waiting.items()):
                status, problem = await self.get(runtime, path, token)
                if status == 401:
                    assert problem["title"] == "Session ended", problem
                    del waiting[runtime]
                else:
                    assert status == 200, (status, problem)
            elapsed = loop.time() - started
            assert elapsed < REFUSED_WITHIN_S or not waiting, (
                f"still accepted {elapsed:.2f}s after: {[r.service_cls.name for r in waiting]}")
            await asyncio.sleep(0.01)
        return loop.time() - started

    def routes(self, runtimes) -> list[tuple[ServiceRuntime, str]]:
        return [(r, ORDERS_ROUTE if r.service_cls is OrdersService else PAYMENTS_ROUTE)
                for r in (runtimes or (self.orders, self.payments))]


def session_of(token: str) -> str:
    return jwt.decode(token, options={"verify_signature": False})["sid"]


@pytest.fixture
async def suite(amqp_url, database, other_database, mailsink):  # noqa: F811
    accounts = ServiceRuntime(AccountsService, accounts_settings(amqp_url, database, mailsink.port))
    await accounts.start()
    orders = ServiceRuntime(OrdersService, orders_settings(amqp_url, other_database, accounts.http_port))
    await orders.start()
    async with own_database() as payments_database:
        payments = ServiceRuntime(PaymentsService, payments_settings(
            amqp_url, payments_database, 0, accounts.http_port, "http://127.0.0.1:9"))
        await payments.start()
        try:
            async with aiohttp.ClientSession() as http:
                yield Suite(accounts, orders, payments, http,
                            Client(http, f"http://127.0.0.1:{accounts.http_port}", mailsink), amqp_url)
        finally:
            await payments.stop()
            await orders.stop()
            await accounts.stop()


async def test_a_closed_accounts_token_is_refused_by_orders_and_payments_within_a_second(suite):
    anna = await suite.client.customer("anna@example.lv")
    berta = await suite.client.customer("berta@example.lv", name="Berta", phone="+37120000002")
    await suite.works(anna["access_token"])
    await suite.works(berta["access_token"])

    started = asyncio.get_running_loop().time()
    await suite.client.call("POST", "/v1/me/close", anna["access_token"], {"password": PASSWORD}, expect=202)
    elapsed = await suite.refused_within(anna["access_token"], started)
    assert elapsed < REFUSED_WITHIN_S
    await suite.works(berta["access_token"])  # nobody else's
    [event] = await suite.accounts.service.pool.fetch("SELECT body FROM outbox WHERE routing_key = 'access_revoked'")
    event = json.loads(event["body"])
    assert (event["account_id"], event["session_id"], event["reason"]) == (anna["id"], None, "account closed")


async def test_signing_out_and_ending_a_session_stop_that_session_everywhere_and_no_other(suite):
    phone = await suite.client.customer("anna@example.lv")
    laptop = await suite.client.login("anna@example.lv", user_agent="laptop")
    tablet = await suite.client.login("anna@example.lv", user_agent="tablet")
    for tokens in (phone, laptop, tablet):
        await suite.works(tokens["access_token"])

    started = asyncio.get_running_loop().time()
    await suite.client.call("POST", "/v1/auth/logout", phone["access_token"], expect=204)
    await suite.refused_within(phone["access_token"], started)
    await suite.works(laptop["access_token"])

    started = asyncio.get_running_loop().time()
    await suite.client.call("DELETE", f"/v1/me/sessions/{session_of(laptop['access_token'])}",
                            tablet["access_token"], expect=204)
    await suite.refused_within(laptop["access_token"], started)
    await suite.works(tablet["access_token"])

    # A staff member's sign-out stops their token on the other services' staff routes too.
    admin = (await staff(suite.accounts, suite.client, "admin"))["access_token"]
    staff_route = f"http://127.0.0.1:{suite.orders.http_port}/v1/staff/partners"
    async with suite.http.get(staff_route, headers={"Authorization": f"Bearer {admin}"}) as response:
        assert response.status == 200
    await suite.client.call("POST", "/v1/auth/logout", admin, expect=204)

    async def staff_refused():
        async with suite.http.get(staff_route, headers={"Authorization": f"Bearer {admin}"}) as response:
            return response.status == 401
    await eventually(staff_refused, timeout=REFUSED_WITHIN_S, interval=0.01)


async def test_a_password_reset_stops_every_session_everywhere_and_a_new_sign_in_works_at_once(suite):
    phone = await suite.client.customer("anna@example.lv")
    laptop = await suite.client.login("anna@example.lv", user_agent="laptop")
    for tokens in (phone, laptop):
        await suite.works(tokens["access_token"])
    await suite.client.call("POST", "/v1/auth/password-reset", json_body={"email": "anna@example.lv"}, expect=202)
    message = (await suite.client.sink.wait_for("anna@example.lv", count=2))[-1]

    started = asyncio.get_running_loop().time()
    await suite.client.call("POST", "/v1/auth/password-reset/confirm",
                            json_body={"token": code_in(message), "password": "the new passphrase"}, expect=200)
    # Signed in again with the new password in the same second: that session is not refused.
    again = await suite.client.login("anna@example.lv", password="the new passphrase")
    for tokens in (phone, laptop):
        await suite.refused_within(tokens["access_token"], started)
    await suite.works(again["access_token"])


async def test_a_reused_refresh_token_stops_the_session_everywhere(suite):
    anna = await suite.client.customer("anna@example.lv")
    _, renewed, _ = await suite.client.call("POST", "/v1/auth/refresh",
                                            json_body={"refresh_token": anna["refresh_token"]}, expect=200)
    await suite.works(renewed["access_token"])
    started = asyncio.get_running_loop().time()
    await suite.client.call("POST", "/v1/auth/refresh", json_body={"refresh_token": anna["refresh_token"]},
                            expect=401)  # the spent one again: someone holds a copy
    await suite.refused_within(renewed["access_token"], started)


async def test_a_new_instance_refuses_a_token_revoked_before_it_started(suite):
    anna = await suite.client.customer("anna@example.lv")
    laptop = await suite.client.login("anna@example.lv", user_agent="laptop")
    berta = await suite.client.customer("berta@example.lv", name="Berta", phone="+37120000002")
    await suite.client.call("POST", "/v1/auth/logout", anna["access_token"], expect=204)
    await suite.client.call("POST", "/v1/me/close", berta["access_token"], {"password": PASSWORD}, expect=202)
    # Both revocations went out (the running instances have them) before the new ones bind a queue.
    await suite.refused_within(anna["access_token"], asyncio.get_running_loop().time())
    await suite.refused_within(berta["access_token"], asyncio.get_running_loop().time())

    loads = {"service": "orders", "outcome": "ok"}
    before = REGISTRY.get_sample_value("veikals_revocation_loads_total", loads) or 0
    orders = ServiceRuntime(OrdersService, suite.orders.settings)
    payments = ServiceRuntime(PaymentsService, suite.payments.settings)
    await orders.start()
    await payments.start()
    try:
        assert REGISTRY.get_sample_value("veikals_revocation_loads_total", loads) == before + 1
        # Their very first requests: nothing to wait for, the list was loaded before they listened.
        await suite.refused(anna["access_token"], orders, payments)
        await suite.refused(berta["access_token"], orders, payments)
        await suite.works(laptop["access_token"], orders, payments)  # her other session goes on
    finally:
        await payments.stop()
        await orders.stop()


async def test_an_instance_that_lost_the_broker_catches_up_when_it_is_back(suite):
    anna = await suite.client.customer("anna@example.lv")
    proxy = TcpProxy("127.0.0.1", 5672)
    await proxy.start()
    cut_off = ServiceRuntime(OrdersService, suite.orders.settings.model_copy(update={
        "amqp_url": suite.amqp_url.replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")}))
    await cut_off.start()
    vhost = unquote(suite.amqp_url.rsplit("/", 1)[1])

    async def orders_queues() -> int:
        listing = await asyncio.to_thread(rabbitmqctl, "list_queues", "-p", vhost, "--no-table-headers", "name")
        return sum(1 for name in listing.split() if name.startswith("evt-accounts-access_revoked--orders."))
    try:
        await suite.works(anna["access_token"], cut_off)
        assert await orders_queues() == 2
        await proxy.cut()
        await eventually(lambda: _equal(orders_queues(), 1))  # its queue went with its connection

        started = asyncio.get_running_loop().time()
        await suite.client.call("POST", "/v1/auth/logout", anna["access_token"], expect=204)
        await suite.refused_within(anna["access_token"], started)  # the connected instances
        await eventually(lambda: suite.accounts.service.pool.fetchval(
            "SELECT published_at IS NOT NULL FROM outbox WHERE routing_key = 'access_revoked'"))
        await suite.works(anna["access_token"], cut_off)  # the premise: it missed the event

        await proxy.start()
        await eventually(lambda: _refuses(suite, anna["access_token"], cut_off), timeout=30)
        assert await orders_queues() == 2  # a new queue of its own, for what comes next
        tablet = await suite.client.login("anna@example.lv", user_agent="tablet")
        await suite.works(tablet["access_token"], cut_off)
        started = asyncio.get_running_loop().time()
        await suite.client.call("POST", "/v1/auth/logout", tablet["access_token"], expect=204)
        await suite.refused_within(tablet["access_token"], started, cut_off)
    finally:
        await cut_off.stop()
        await proxy.close()


async def test_an_instance_started_before_accounts_serves_and_loads_once_accounts_answers(
        amqp_url, database, other_database, mailsink, free_port):  # noqa: F811
    def gauge(name: str, **labels) -> float | None:
        return REGISTRY.get_sample_value(name, {"service": "orders", **labels})

    failed = gauge("veikals_revocation_loads_total", outcome="failed") or 0
    orders = ServiceRuntime(OrdersService, orders_settings(amqp_url, other_database, free_port))
    await orders.start()  # accounts is not there at all: it does not wait for it
    try:
        assert gauge("veikals_revocations_behind") == 1
        assert gauge("veikals_revocation_loads_total", outcome="failed") == failed + 1
        accounts = ServiceRuntime(AccountsService, accounts_settings(
            amqp_url, database, mailsink.port, http_port=free_port))
        await accounts.start()
        try:
            async def caught_up():
                return gauge("veikals_revocations_behind") == 0
            await eventually(caught_up, timeout=30)  # tried again in the background
            async with aiohttp.ClientSession() as http:
                client = Client(http, f"http://127.0.0.1:{accounts.http_port}", mailsink)
                suite = Suite(accounts, orders, orders, http, client, amqp_url)
                anna = await client.customer("anna@example.lv")
                await suite.works(anna["access_token"], orders)
                started = asyncio.get_running_loop().time()
                await client.call("POST", "/v1/auth/logout", anna["access_token"], expect=204)
                await suite.refused_within(anna["access_token"], started, orders)
        finally:
            await accounts.stop()
    finally:
        await orders.stop()


async def test_with_nobody_listening_the_revocation_is_published_not_held(amqp_url, database, mailsink):  # noqa: F811
    """No instance of another service runs: the relay, with the whole manifest, does not keep
    ``access_revoked`` pending as unroutable (a later instance loads it over RPC)."""
    accounts = ServiceRuntime(AccountsService, accounts_settings(amqp_url, database, mailsink.port),
                              subscriptions())
    await accounts.start()
    try:
        async with aiohttp.ClientSession() as http:
            client = Client(http, f"http://127.0.0.1:{accounts.http_port}", mailsink)
            anna = await client.customer("anna@example.lv")
            await client.call("POST", "/v1/auth/logout", anna["access_token"], expect=204)
        await eventually(lambda: accounts.service.pool.fetchval(
            """SELECT published_at IS NOT NULL AND last_error IS NULL FROM outbox
               WHERE routing_key = 'access_revoked'"""))
    finally:
        await accounts.stop()


async def _equal(value, expected) -> bool:
    return await value == expected


async def _refuses(suite: Suite, token: str, runtime: ServiceRuntime) -> bool:
    return (await suite.get(runtime, ORDERS_ROUTE, token))[0] == 401
