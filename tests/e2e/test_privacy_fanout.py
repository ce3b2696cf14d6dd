"""An erasure fanned out across the suite as processes while a participant is killed (SIGKILL)
and RabbitMQ restarts: the request still completes, each participant erases once, and a scan of
every service's database afterwards finds the subject's identifiers only where a retention is
declared."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from deploy.mailsink import MailSink, code_in
from deploy.sandbox.partner import SandboxPartner
from shared.webhooks.signing import new_secret
from tests.conftest import eventually, own_vhost, rabbitmqctl
from tests.e2e.processes import ROOT, SERVICES, running_suite
from tests.e2e.test_suite import a_guest_buys_and_pays

pytestmark = pytest.mark.broker_restart

PASSWORD = "a long enough password"
EMAIL, PHONE, NAME = "erase.me@example.lv", "+37129555111", "Ērika Dzēšamā"
ADDRESS = {"line1": "Skolas iela 77", "city": "Cēsis", "postal_code": "LV-4101", "country": "LV"}
# Where the subject's identifiers may stay after an erasure, each with a declared retention.
MAY_REMAIN = {
    ("accounts", "accounts.id"): "the bare account id: kept records refer to it (accounts' 'account id')",
    ("orders", "invoices.buyer_name"): "the paid order's invoice names the buyer (P25, seven years)",
}
# The privacy service's own record of the request (P26: three years), and what it sent and
# published about it (pruned with the webhook deliveries and the outbox).
PRIVACY_RECORD = "privacy"


@pytest.fixture(scope="module")
def amqp_url():
    with own_vhost() as url:
        yield url


async def call(http: aiohttp.ClientSession, method: str, url: str, token: str | None = None, body=None,
               expect: int | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, json=body, headers=headers) as response:
        data = await response.json(content_type=None)
        if expect is not None:
            assert response.status == expect, (response.status, data)
        return data


async def scan(dsn: str, needles: list[str]) -> set[tuple[str, str]]:
    """(table, column) of every value in the database that contains one of ``needles``."""
    conn = await asyncpg.connect(dsn)
    try:
        columns = await conn.fetch(
            """SELECT table_name, column_name, data_type FROM information_schema.columns
               WHERE table_schema = 'public' AND data_type IN ('text', 'jsonb', 'json', 'uuid', 'bytea',
                                                              'character varying', 'ARRAY')""")
        found = set()
        for c in columns:
            column = f'"{c["column_name"]}"'
            contains = (f"position(convert_to(n, 'UTF8') IN {column}) > 0" if c["data_type"] == "bytea"
                        else f"position(lower(n) IN lower({column}::text)) > 0")
            hit = await conn.fetchval(
                f"""SELECT EXISTS (SELECT 1 FROM "{c['table_name']}"
                    WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) n WHERE {contains}))""", needles)
            if hit:
                found.add((c["table_name"], c["column_name"]))
        return found
    finally:
        await conn.close()


async def test_an_erasure_survives_a_killed_participant_and_a_broker_restart(amqp_url, tmp_path, monkeypatch):
    sink = MailSink()
    await sink.start()
    # One carrier, a sandbox on loopback: it receives the shipment, then the erasure request.
    monkeypatch.setenv("VEIKALS_PARTNER_E2E_CARRIER_SECRET", secret := new_secret())
    carrier = SandboxPartner("e2e-carrier", "carrier", secret, None, None)
    runner = web.AppRunner(carrier.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    carrier_host = f"127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    partners = tmp_path / "partners.json"
    partners.write_text(json.dumps({"partners": [{
        "name": "e2e-carrier", "kind": "carrier", "endpoint": f"http://{carrier_host}/webhooks",
        "secret_env": ["VEIKALS_PARTNER_E2E_CARRIER_SECRET"], "description": "e2e carrier"}]}))
    # The order may still be on its way when the erasure reaches orders: its part is then held,
    # and orders' sweep completes it once the carrier has delivered (every 2 s here).
    env = {"VEIKALS_PARTNERS_FILE": str(partners), "VEIKALS_PRIVACY_TASKS_POLL_S": "0.3",
           "VEIKALS_PRIVACY_RPC_TIMEOUT_S": "3", "VEIKALS_ORDERS_RETENTION_SWEEP_S": "2",
           **{f"VEIKALS_{s.upper()}_WEBHOOK_ALLOWED_HOSTS": json.dumps([carrier_host]) for s in SERVICES},
           **{f"VEIKALS_{s.upper()}_WEBHOOK_RETRY_SCHEDULE_S": "[0.5, 1, 2, 4]" for s in SERVICES}}
    try:
        (tmp_path / "logs").mkdir()
        async with running_suite(amqp_url, tmp_path / "logs", sink.port, env) as procs, \
                aiohttp.ClientSession() as http:
            accounts, orders, privacy = procs["accounts"].url, procs["orders"].url, procs["privacy"].url
            carrier.callback_url = f"{orders}/v1/partners/e2e-carrier/callbacks"
            carrier.privacy_callback_url = f"{privacy}/v1/partners/e2e-carrier/callbacks"
            await call(http, "POST", f"{accounts}/v1/accounts", body={
                "name": NAME, "email": EMAIL, "phone": PHONE, "password": PASSWORD, "terms_version": "2026-01"},
                expect=202)
            [message] = await sink.wait_for(EMAIL, timeout=30)
            await call(http, "POST", f"{accounts}/v1/accounts/verify-email",
                       body={"token": code_in(message), "password": PASSWORD}, expect=200)
            customer = await call(http, "POST", f"{accounts}/v1/auth/login",
                                  body={"email": EMAIL, "password": PASSWORD}, expect=200)
            token = customer["access_token"]
            me = await call(http, "GET", f"{accounts}/v1/me", token, expect=200)
            admin = await an_admin(http, accounts, procs["accounts"].dsn)
            # Before the account: a paid guest order with the same address, shipped by the carrier.
            await a_guest_buys_and_pays(http, orders, procs["payments"].url, admin, carrier="e2e-carrier",
                                        contact={"name": NAME, "email": EMAIL, "phone": PHONE}, address=ADDRESS)

            async def shipped():
                return [r for r in carrier.received if r["message"]["type"] == "shipment.created"]
            await eventually(shipped, timeout=30)

            # The participant is down when the request comes, and RabbitMQ restarts meanwhile.
            procs["orders"].proc.send_signal(signal.SIGKILL)
            procs["orders"].proc.wait(timeout=10)
            asked = await call(http, "POST", f"{privacy}/v1/me/privacy-requests", token,
                               {"request": {"kind": "erasure"}}, expect=202)

            async def orders_waits():
                seen = await call(http, "GET", f"{privacy}/v1/me/privacy-requests/{asked['id']}", token)
                by = {t["participant"]: t for t in seen.get("tasks", [])}
                return by and by["orders"]["last_error"] and all(
                    t["state"] == "done" for p, t in by.items() if p not in ("orders", "partner:e2e-carrier"))
            await eventually(orders_waits, timeout=60)
            await asyncio.to_thread(rabbitmqctl, "stop_app")
            await asyncio.to_thread(rabbitmqctl, "start_app")
            procs["orders"].start()

            last: dict = {}

            # Followed as staff: the customer's own tokens stop once their erased account is known
            # to be revoked (every service learns it at its latest when it reconnects to the broker).
            async def completed():
                last.update(await call(http, "GET", f"{privacy}/v1/staff/privacy-requests/{asked['id']}", admin))
                return dict(last) if last.get("state") == "completed" else None
            try:
                done = await eventually(completed, timeout=120, interval=0.5)
            except AssertionError:
                raise AssertionError(f"not completed: {json.dumps(last.get('tasks'), indent=1)}") from None
            by = {t["participant"]: t for t in done["tasks"]}
            assert all(t["state"] == "done" for t in done["tasks"]), by
            assert by["partner:e2e-carrier"]["outcome"]["records_erased"] >= 1
            assert [c["type"] for c in carrier.callbacks_sent].count("erasure.completed") == 1

            # Each participant erased once: one erase call recorded per service, whatever was retried.
            for name in ("accounts", "orders", "payments", "marketing"):
                conn = await asyncpg.connect(procs[name].dsn)
                try:
                    erases = await conn.fetchval(
                        "SELECT count(*) FROM rpc_calls WHERE method = $1 AND key = $2",
                        f"{name}.privacy_erase", f"{asked['id']}:{name}:erase")
                finally:
                    await conn.close()
                assert erases == 1, name

            # What is left anywhere of the subject: only where a retention is declared.
            needles = [EMAIL, PHONE, NAME, me["id"], ADDRESS["line1"]]
            found = {(name, f"{table}.{column}") for name in procs
                     for table, column in await scan(procs[name].dsn, needles)}
            assert {(n, t) for n, t in found if n != PRIVACY_RECORD and (n, t) not in MAY_REMAIN} == set()
            assert set(MAY_REMAIN) <= found  # the scan does see what is there
    finally:
        await sink.stop()
        await runner.cleanup()


async def an_admin(http: aiohttp.ClientSession, accounts: str, dsn: str) -> str:
    done = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "services.accounts.admin", "create-staff", "--email", "admin.erase@shop.example",
        "--name", "Admin", "--role", "admin"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "VEIKALS_STAFF_PASSWORD": PASSWORD, "VEIKALS_ACCOUNTS_DATABASE_URL": dsn})
    assert done.returncode == 0, done.stderr
    return (await call(http, "POST", f"{accounts}/v1/staff/auth/login",
                       body={"email": "admin.erase@shop.example", "password": PASSWORD}, expect=200))["access_token"]
