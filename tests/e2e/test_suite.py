"""The whole suite as processes, driven as an operator would: HTTP probes and ``nameko``."""
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from deploy.mailsink import MailSink, code_in
from services.accounts.tokens import new_signing_key
from shared import db
from tests.conftest import PG_BASE, eventually, own_vhost

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("accounts", "orders", "payments", "marketing", "privacy")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    logs = tmp_path_factory.mktemp("suite-logs")
    run = uuid.uuid4().hex[:8]
    procs = {}
    dsns = {name: f"{PG_BASE}/veikals_e2e_{run}_{name}" for name in SERVICES}
    ports = {name: _free_port() for name in SERVICES}
    common = {
        # As in var/secrets.env: the PEM on one line.
        "VEIKALS_ACCOUNTS_JWT_SIGNING_KEY": new_signing_key().replace("\n", "\\n"),
        "VEIKALS_ACCOUNTS_SMTP_PORT": str(mailsink.port),
        "VEIKALS_ACCOUNTS_ARGON2_MEMORY_KIB": "8192",
    }
    for name in SERVICES:
        prefix = f"VEIKALS_{name.upper()}_"
        env = {**os.environ, **common, prefix + "AMQP_URL": amqp_url, prefix + "DATABASE_URL": dsns[name],
               prefix + "HTTP_PORT": str(ports[name]), prefix + "SHUTDOWN_GRACE_S": "10",
               prefix + "JWKS_URL": f"http://127.0.0.1:{ports['accounts']}/.well-known/jwks.json"}
        log = open(logs / f"{name}.log", "w")
        procs[name] = (subprocess.Popen([sys.executable, "-m", f"services.{name}"], cwd=ROOT,
                                        env=env, stdout=log, stderr=subprocess.STDOUT),
                       int(env[prefix + "HTTP_PORT"]), logs / f"{name}.log", dsns[name])
    async with aiohttp.ClientSession() as http:
        async def all_ready():
            for name, (proc, port, log, _) in procs.items():
                assert proc.poll() is None, f"{name} exited:\n{log.read_text()[-3000:]}"
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        if response.status != 200:
                            return False
                except aiohttp.ClientError:
                    return False
            return True
        await eventually(all_ready, timeout=60, interval=0.3)
    yield procs
    for proc, *_ in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for dsn in dsns.values():
        await db.drop_database(dsn)


async def test_every_service_is_ready_and_documented(suite):
    async with aiohttp.ClientSession() as http:
        for name, (_, port, *_) in suite.items():
            base = f"http://127.0.0.1:{port}"
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
    accounts = f"http://127.0.0.1:{suite['accounts'][1]}"
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
               "VEIKALS_ACCOUNTS_DATABASE_URL": suite["accounts"][3]}
        done = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "services.accounts.admin", "create-staff", "--email", "admin@shop.example",
            "--name", "Admin", "--role", "admin"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        async with http.post(f"{accounts}/v1/staff/auth/login",
                             json={"email": "admin@shop.example", "password": password}) as response:
            assert response.status == 200
            admin = await response.json()
        orders = f"http://127.0.0.1:{suite['orders'][1]}"
        for token, status in [(admin["access_token"], 200), (customer["access_token"], 403), ("nonsense", 401)]:
            async with http.get(f"{orders}/v1/staff/partners",
                                headers={"Authorization": f"Bearer {token}"}) as response:
                assert response.status == status


async def test_sigterm_stops_every_service_cleanly(suite):
    for proc, *_ in suite.values():
        proc.send_signal(signal.SIGTERM)
    for name, (proc, _, log, _) in suite.items():
        assert await asyncio.to_thread(proc.wait, 30) == 0, log.read_text()[-3000:]
        assert '"event": "service stopped"' in log.read_text()
