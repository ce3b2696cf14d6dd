"""The five services as processes of their own, on a vhost and databases made for the run."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from services.accounts.tokens import new_signing_key
from tests.conftest import PG_BASE, eventually, scanned_and_dropped

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("accounts", "orders", "payments", "marketing", "privacy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Running:
    proc: subprocess.Popen
    port: int
    log: Path
    dsn: str
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the service (again, after a kill), its output added to the same log."""
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", f"services.{self.log.stem}"], cwd=ROOT,
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT)


@contextlib.asynccontextmanager
async def running_suite(amqp_url: str, logs: Path, smtp_port: int, env: dict[str, str] | None = None):
    """Start every service with ``env`` (``VEIKALS_*`` settings, for all of them) added; yield
    {name: Running} once all are ready; kill them and drop their databases afterwards."""
    run = uuid.uuid4().hex[:8]
    procs: dict[str, Running] = {}
    ports = {name: free_port() for name in (*SERVICES, "sandbox-psp")}
    psp_keys = {"VEIKALS_PAYMENTS_PSP_SECRET_KEY": f"sk_test_{run}", "VEIKALS_PAYMENTS_PSP_PUBLISHABLE_KEY": f"pk_test_{run}",
                "VEIKALS_PAYMENTS_PSP_WEBHOOK_SECRET": f"whsec_{run}"}
    common = {
        # As in var/secrets.env: the PEM on one line.
        "VEIKALS_ACCOUNTS_JWT_SIGNING_KEY": new_signing_key().replace("\n", "\\n"),
        "VEIKALS_ACCOUNTS_SMTP_PORT": str(smtp_port), "VEIKALS_MARKETING_SMTP_PORT": str(smtp_port),
        "VEIKALS_PRIVACY_SMTP_PORT": str(smtp_port),
        "VEIKALS_ACCOUNTS_ARGON2_MEMORY_KIB": "8192",
        **{f"VEIKALS_{name.upper()}_SUBJECT_KEY": uuid.uuid4().hex for name in SERVICES},
        "VEIKALS_MARKETING_LINK_KEY": uuid.uuid4().hex, "VEIKALS_MARKETING_SUPPRESSION_KEY": uuid.uuid4().hex,
        "VEIKALS_MARKETING_PUBLIC_URL": f"http://127.0.0.1:{ports['marketing']}",
        **psp_keys, "VEIKALS_PAYMENTS_PSP_API_BASE": f"http://127.0.0.1:{ports['sandbox-psp']}",
        **(env or {}),
    }
    psp = None
    try:
        # The sandbox PSP the payments service pays through (the partners' sandboxes are not run here).
        with open(logs / "sandbox-psp.log", "w") as out:
            psp = subprocess.Popen(
                [sys.executable, "-m", "deploy.sandbox.psp", "--port", str(ports["sandbox-psp"]),
                 "--webhook-url", f"http://127.0.0.1:{ports['payments']}/v1/psp/webhooks"],
                cwd=ROOT, env={**os.environ, **common}, stdout=out, stderr=subprocess.STDOUT)
        for name in SERVICES:
            prefix = f"VEIKALS_{name.upper()}_"
            dsn = f"{PG_BASE}/veikals_e2e_{run}_{name}"
            proc_env = {**os.environ, **common, prefix + "AMQP_URL": amqp_url, prefix + "DATABASE_URL": dsn,
                        prefix + "HTTP_PORT": str(ports[name]), prefix + "SHUTDOWN_GRACE_S": "10",
                        prefix + "JWKS_URL": f"http://127.0.0.1:{ports['accounts']}/.well-known/jwks.json"}
            log = logs / f"{name}.log"
            log.write_text("")
            procs[name] = Running(None, ports[name], log, dsn, proc_env)  # type: ignore[arg-type]
            procs[name].start()
        async with aiohttp.ClientSession() as http:
            async def all_ready():
                for name, service in procs.items():
                    assert service.proc.poll() is None, f"{name} exited:\n{service.log.read_text()[-3000:]}"
                    try:
                        async with http.get(f"{service.url}/readyz") as response:
                            if response.status != 200:
                                return False
                    except aiohttp.ClientError:
                        return False
                return True
            await eventually(all_ready, timeout=60, interval=0.3)
        yield procs
    finally:
        for proc in [*(service.proc for service in procs.values()), *([psp] if psp else [])]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for service in procs.values():
            await scanned_and_dropped(service.dsn)
