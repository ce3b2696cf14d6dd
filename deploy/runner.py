"""``veikals``: run the whole shop on one machine.

    veikals infra    make sure PostgreSQL and RabbitMQ are reachable (start or install them)
    veikals up       infra, the services' databases, then all five services in the background
    veikals down     stop the services (PostgreSQL and RabbitMQ keep running)
    veikals status   the services and their readiness, and whether the infrastructure answers

Services run as ``python -m services.<name>`` from the repository root, detached from the
terminal; their output goes to ``var/log/<name>.log`` and their pid to ``var/run/<name>.pid``.
Every address comes from ``shared.config`` (``VEIKALS_<SERVICE>_*`` variables), so the runner
and the services agree on ports and URLs.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from secrets import token_hex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiohttp
import asyncpg
from pydantic import ValidationError

from deploy import operations
from services.accounts.settings import AccountsSettings
from services.accounts.tokens import new_signing_key
from services.payments.settings import PaymentsSettings
from shared.config import DEFAULT_HTTP_PORTS, ServiceSettings, load_settings
from shared.db import ensure_database, maintenance_dsn
from shared.logging import configure_logging
from shared.messaging import Broker, topology
from shared.webhooks.registry import PartnerRegistry
from shared.webhooks.signing import new_secret

ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = ROOT / "var" / "log"
RUN_DIR = ROOT / "var" / "run"
SANDBOX_DIR = ROOT / "var" / "sandbox"
SECRETS_FILE = ROOT / "var" / "secrets.env"
MAIL_DIR = ROOT / "var" / "mail"
TOKEN_KEY_ENV = "VEIKALS_ACCOUNTS_JWT_SIGNING_KEY"
SERVICES = tuple(DEFAULT_HTTP_PORTS)

READY_TIMEOUT_S = 60.0
STOP_MARGIN_S = 5.0  # beyond each service's own SHUTDOWN_GRACE_S before SIGKILL
POSTGRES_START_TIMEOUT_S = 30.0
RABBITMQ_START_TIMEOUT_S = 60.0
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
APT_PACKAGES = {"PostgreSQL": "postgresql", "RabbitMQ": "rabbitmq-server"}


class Failed(Exception):
    """A step failed; the message says what to do about it."""


def say(message: str = "") -> None:
    print(message, flush=True)


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    for row in [headers, *rows]:
        say("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def tail(path: Path, lines: int = 20) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


# --- commands -------------------------------------------------------------------------------

def tool(name: str) -> str | None:
    """The path of a system command; /usr/sbin and /sbin count even when not on PATH."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def run(command: list[str], *, timeout: float = 120.0, quiet: bool = False) -> bool:
    """Run a system command, echoing it; on failure print its output. True when it succeeded.

    Output goes to a temporary file rather than a pipe: daemons started by the command may keep
    the descriptor open, and reading a pipe would wait for them.
    """
    executable = tool(command[0]) or command[0]
    say(f"  $ {' '.join(command)}")
    with tempfile.TemporaryFile() as output:
        try:
            result = subprocess.run([executable, *command[1:]], stdin=subprocess.DEVNULL,
                                    stdout=output, stderr=subprocess.STDOUT,
                                    start_new_session=True, timeout=timeout)
            ok, why = result.returncode == 0, f"exit status {result.returncode}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, why = False, describe(exc)
        if not ok and not quiet:
            output.seek(0)
            say(f"    failed ({why}):")
            for line in output.read().decode(errors="replace").splitlines()[-20:]:
                say(f"    | {line}")
    return ok


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


# --- PostgreSQL and RabbitMQ ----------------------------------------------------------------

@dataclass(frozen=True)
class Server:
    """PostgreSQL or RabbitMQ as the services are configured to reach it."""

    kind: str  # "PostgreSQL" or "RabbitMQ"
    url: str   # PostgreSQL: a DSN for the maintenance database "postgres"; RabbitMQ: the AMQP URL
    host: str
    port: int
    user: str = ""

    @property
    def local(self) -> bool:
        return self.host in LOCAL_HOSTS

    def __str__(self) -> str:
        return f"{self.kind} {self.user + '@' if self.user else ''}{self.host}:{self.port}"


def all_settings() -> dict[str, ServiceSettings]:
    settings = {}
    for name in SERVICES:
        try:
            settings[name] = load_settings(name)
        except ValidationError as exc:
            raise Failed(f"Invalid VEIKALS_{name.upper()}_* settings:\n{exc}")
    return settings


def servers() -> list[Server]:
    """Every distinct PostgreSQL and RabbitMQ the five services use (normally one of each)."""
    found: dict[str, Server] = {}
    for settings in all_settings().values():
        db = urlsplit(settings.dsn)
        maintenance, _ = maintenance_dsn(settings.dsn)
        found.setdefault(maintenance, Server("PostgreSQL", maintenance, db.hostname or "127.0.0.1",
                                             db.port or 5432, db.username or ""))
        mq = urlsplit(settings.amqp_url)
        found.setdefault(settings.amqp_url, Server("RabbitMQ", settings.amqp_url,
                                                   mq.hostname or "127.0.0.1", mq.port or 5672,
                                                   mq.username or ""))
    return sorted(found.values(), key=lambda s: (s.kind, s.host, s.port))


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


async def _log_in(server: Server) -> None:
    async with asyncio.timeout(10):
        if server.kind == "PostgreSQL":
            conn = await asyncpg.connect(server.url, timeout=5)
            await conn.close()
        else:
            connection = await aio_pika.connect(server.url, timeout=5)
            await connection.close()


def problem_with(server: Server) -> str | None:
    """None when ``server`` accepts a connection and a log-in, else what went wrong."""
    if not tcp_open(server.host, server.port):
        return "nothing accepts connections there"
    try:
        asyncio.run(_log_in(server))
    except Exception as exc:
        return describe(exc)
    return None


def wait_for(server: Server, timeout: float) -> str | None:
    """Poll until ``server`` answers; the last problem if it never did."""
    deadline = time.monotonic() + timeout
    while (problem := problem_with(server)) is not None and time.monotonic() < deadline:
        time.sleep(1)
    return problem


def installed(kind: str) -> bool:
    if kind == "PostgreSQL":
        return bool(tool("pg_ctlcluster")) and any(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return bool(tool("rabbitmq-server"))


def install(kinds: Iterable[str]) -> None:
    packages = sorted(APT_PACKAGES[kind] for kind in kinds)
    if not (is_root() and tool("apt-get")):
        raise Failed(f"{' and '.join(sorted(kinds))} not installed. Install "
                     f"{' and '.join(packages)} (Debian: sudo apt-get install -y {' '.join(packages)}), "
                     "then run this again.")
    say(f"Installing {' '.join(packages)} with apt-get ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", *packages]):
        say(f"  $ {' '.join(command)}")
        if subprocess.run(command, env=env, stdin=subprocess.DEVNULL).returncode != 0:
            raise Failed(f"'{' '.join(command)}' failed; see its output above.")


@dataclass
class Cluster:
    version: str
    name: str
    port: int
    status: str

    @property
    def online(self) -> bool:
        return self.status.startswith("online")

    @property
    def hba_file(self) -> Path:
        return Path("/etc/postgresql") / self.version / self.name / "pg_hba.conf"

    def ctl(self, action: str) -> bool:
        return run(["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action])


def clusters() -> list[Cluster]:
    result = subprocess.run([tool("pg_lsclusters") or "pg_lsclusters", "--no-header"],
                            capture_output=True, text=True)
    found = []
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2].isdigit():
            found.append(Cluster(fields[0], fields[1], int(fields[2]), fields[3]))
    return found


def trust_loopback(cluster: Cluster) -> None:
    """Let local TCP connections in without a password (127.0.0.1 and ::1 only)."""
    pattern = re.compile(r"^(host\s+\S+\s+\S+\s+(?:127\.0\.0\.1/32|::1/128)\s+)\S+(.*)$")
    lines = cluster.hba_file.read_text().splitlines()
    changed = [pattern.sub(r"\1trust\2", line) for line in lines]
    if changed != lines:
        cluster.hba_file.write_text("\n".join(changed) + "\n")
        say(f"  set 'trust' for 127.0.0.1/32 and ::1/128 in {cluster.hba_file}")


def start_postgres(server: Server, fresh: bool) -> None:
    found = clusters()
    if not found and fresh:
        version = max((p.name for p in Path("/usr/lib/postgresql").iterdir()), key=float)
        run(["pg_createcluster", version, "main", "--port", str(server.port)])
        found = clusters()
    cluster = next((c for c in found if c.port == server.port), None)
    if cluster is None:
        raise Failed(f"No PostgreSQL cluster uses port {server.port} (see pg_lsclusters).")
    if fresh:
        trust_loopback(cluster)
    if not cluster.online:
        say(f"  starting PostgreSQL cluster {cluster.version}/{cluster.name}")
        if not cluster.ctl("start"):
            raise Failed(f"Could not start PostgreSQL; as root run: pg_ctlcluster "
                         f"--skip-systemctl-redirect {cluster.version} {cluster.name} start")
    elif fresh:
        cluster.ctl("reload")
    else:
        say(f"  cluster {cluster.version}/{cluster.name} is online; waiting for it to accept connections")


def start_rabbitmq(server: Server) -> None:
    if run(["rabbitmq-diagnostics", "-q", "ping"], timeout=60, quiet=True):
        # The node is up but its application is not: maybe somebody is restarting it.
        say("  the RabbitMQ node runs but does not accept AMQP yet; giving it 20 s")
        if wait_for(server, 20) is None:
            return
        command = ["rabbitmqctl", "start_app"]
    else:
        say("  starting the RabbitMQ node")
        command = ["rabbitmq-server", "-detached"]
    if not run(command, timeout=120):
        raise Failed(f"Could not start RabbitMQ; as root run: {' '.join(command)}")


def infra() -> None:
    """Make sure every PostgreSQL and RabbitMQ the services use is reachable."""
    unreachable = []
    for server in servers():
        problem = problem_with(server)
        say(f"{server}: {'reachable' if problem is None else f'unreachable ({problem})'}")
        if problem is not None:
            unreachable.append(server)
    if not unreachable:
        return
    for server in unreachable:
        if tcp_open(server.host, server.port):  # it runs, but will not let us in (yet?)
            problem = wait_for(server, 10)
            if problem is not None:
                raise Failed(f"{server} accepts connections but refuses ours ({problem}). "
                             "Check the user, password and database/vhost in the service URLs.")
            say(f"{server}: reachable")
    unreachable = [s for s in unreachable if problem_with(s) is not None]
    if not unreachable:
        return
    remote = [s for s in unreachable if not s.local]
    if remote:
        raise Failed(f"{', '.join(map(str, remote))} is not on this machine, so it cannot be "
                     "started from here; start it there or point VEIKALS_<SERVICE>_DATABASE_URL / "
                     "_AMQP_URL elsewhere.")
    missing = {s.kind for s in unreachable if not installed(s.kind)}
    if missing:
        install(missing)
    # Several URLs (users, vhosts) can name one server: start each server once.
    for server in {(s.kind, s.host, s.port): s for s in unreachable}.values():
        say(f"{server}: starting it")
        if server.kind == "PostgreSQL":
            start_postgres(server, fresh=server.kind in missing)
        else:
            start_rabbitmq(server)
    for server in unreachable:
        timeout = POSTGRES_START_TIMEOUT_S if server.kind == "PostgreSQL" else RABBITMQ_START_TIMEOUT_S
        started = time.monotonic()
        problem = wait_for(server, timeout)
        if problem is not None:
            raise Failed(f"{server} still unreachable after {timeout:.0f} s ({problem}). "
                         "Check its logs (PostgreSQL: /var/log/postgresql, RabbitMQ: /var/log/rabbitmq).")
        say(f"{server}: reachable (after {time.monotonic() - started:.1f} s)")


# --- the services -------------------------------------------------------------------------

@dataclass
class Service:
    """A process the runner starts: one of the five services, or a sandbox partner."""

    name: str
    host: str
    port: int
    module: str
    args: tuple[str, ...] = ()
    ready_path: str | None = "/readyz"  # None: ready once the port accepts connections
    settings: ServiceSettings | None = None  # the five services only
    scheme: str = "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return LOG_DIR / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return RUN_DIR / f"{self.name}.pid"

    def is_ours(self, pid: int) -> bool:
        """``pid`` is alive and is this process (not a recycled pid, not a zombie)."""
        if not Path("/proc/self").exists():  # no /proc: settle for "alive"
            return pid_alive(pid)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return self.module.encode() in cmdline and all(a.encode() in cmdline for a in self.args[:2])

    def running_pid(self) -> int | None:
        """The pid from the pid file when that process is still this one."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self.is_ours(pid) else None

    def start(self) -> subprocess.Popen:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} veikals up: starting\n".encode())
            log.flush()
            process = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args], cwd=ROOT,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        self.pid_file.write_text(f"{process.pid}\n")
        return process


def service_process(name: str, settings: ServiceSettings) -> Service:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.http_host, settings.http_host)
    return Service(name, host, settings.port, f"services.{name}", settings=settings)


def services() -> list[Service]:
    return [service_process(name, settings) for name, settings in all_settings().items()]


# Which service a sandbox partner calls back, by the partner's kind.
CALLBACK_SERVICE = {"carrier": "orders", "accounting": "orders", "hosting": "privacy",
                    "psp": "payments", "email": "marketing", "sms": "marketing"}


def sandboxes() -> list[Service]:
    """A sandbox process for every registered partner whose endpoint is on this machine."""
    by_name = {s.name: s for s in services()}
    found = []
    for partner in PartnerRegistry.load():
        endpoint = urlsplit(str(partner.endpoint))
        if endpoint.hostname not in LOCAL_HOSTS:
            continue
        callee = by_name[CALLBACK_SERVICE[partner.kind]]
        found.append(Service(
            partner.name, endpoint.hostname, endpoint.port or 80, "deploy.sandbox.partner",
            args=("--name", partner.name, "--kind", partner.kind, "--port", str(endpoint.port),
                  "--secret-env", partner.secret_env[0],
                  "--callback-url", f"{callee.url}/v1/partners/{partner.name}/callbacks",
                  "--privacy-callback-url", f"{by_name['privacy'].url}/v1/partners/{partner.name}/callbacks",
                  "--store", str(SANDBOX_DIR / f"{partner.name}.jsonl")),
            ready_path="/healthz"))
    if (psp := psp_sandbox()) is not None:
        found.append(psp)
    return found


# The sandbox PSP's keys and webhook secret, made once like the partners' (Stripe's prefixes).
PSP_SECRETS = {"VEIKALS_PAYMENTS_PSP_SECRET_KEY": "sk_test_", "VEIKALS_PAYMENTS_PSP_PUBLISHABLE_KEY": "pk_test_",
               "VEIKALS_PAYMENTS_PSP_WEBHOOK_SECRET": "whsec_"}


MARKETING_KEYS = ("VEIKALS_MARKETING_LINK_KEY", "VEIKALS_MARKETING_SUPPRESSION_KEY")


def psp_sandbox() -> Service | None:
    """The sandbox PSP, when the payments service's PSP is on this machine (the default)."""
    settings = load_settings("payments", PaymentsSettings)
    api = urlsplit(settings.psp_api_base)
    if api.hostname not in LOCAL_HOSTS:
        return None
    payments = service_process("payments", settings)
    secret, publishable, webhook = PSP_SECRETS
    return Service("sandbox-psp", api.hostname, api.port or 80, "deploy.sandbox.psp",
                   args=("--port", str(api.port or 80), "--secret-key-env", secret, "--publishable-key-env",
                         publishable, "--webhook-secret-env", webhook,
                         "--webhook-url", f"{payments.url}/v1/psp/webhooks"), ready_path="/healthz")


# The one origin of the pages and the services' APIs (web/edge.py), as the Ingress's shop host.
EDGE_PORT = 8100


def edge() -> Service:
    """The edge: the pages, and /v1/<service>/... to each service."""
    routes = [arg for s in services() for arg in ("--service", f"{s.name}={s.url}")]
    return Service("edge", "127.0.0.1", EDGE_PORT, "web.edge", args=("--port", str(EDGE_PORT), *routes),
                   ready_path="/readyz")


def mail_sink() -> Service:
    """The local SMTP sink the accounts service sends to; messages land in var/mail/."""
    port = load_settings("accounts", AccountsSettings).smtp_port
    return Service("mailsink", "127.0.0.1", port, "deploy.mailsink",
                   args=("--port", str(port), "--dir", str(MAIL_DIR)), ready_path=None, scheme="smtp")


def prepare_environment(partners: list[Service]) -> None:
    """Local secrets (made once, kept in var/secrets.env): the sandbox partners' and the key
    that signs access tokens; and the services' permission to reach the sandboxes over plain
    http on loopback."""
    secrets = dict(line.split("=", 1) for line in SECRETS_FILE.read_text().splitlines()
                   if "=" in line) if SECRETS_FILE.exists() else {}
    for partner in PartnerRegistry.load():
        name = partner.secret_env[0]
        if any(s.name == partner.name for s in partners) and name not in secrets:
            secrets[name] = new_secret()
    if TOKEN_KEY_ENV not in secrets:  # one line: the PEM's line breaks written as \n
        secrets[TOKEN_KEY_ENV] = new_signing_key().replace("\n", "\\n")
    if any(s.name == "sandbox-psp" for s in partners):
        for name, prefix in PSP_SECRETS.items():
            secrets.setdefault(name, prefix + token_hex(24))
    for name in SERVICES:  # each service's key for the hashes of erased subjects
        secrets.setdefault(f"VEIKALS_{name.upper()}_SUBJECT_KEY", token_hex(32))
    for name in MARKETING_KEYS:  # signs unsubscribe links; keys the suppression hashes
        secrets.setdefault(name, token_hex(32))
    SANDBOX_DIR.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(SECRETS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:  # never readable by others, not even for a moment
        out.write("".join(f"{k}={v}\n" for k, v in sorted(secrets.items())))
    for key, value in secrets.items():
        os.environ.setdefault(key, value)
    allowed = json.dumps([f"{p.host}:{p.port}" for p in partners])
    for name in SERVICES:
        os.environ.setdefault(f"VEIKALS_{name.upper()}_WEBHOOK_ALLOWED_HOSTS", allowed)


async def readyz(session: aiohttp.ClientSession, service: Service) -> tuple[bool, str]:
    """(ready, what /readyz said)."""
    if service.ready_path is None:
        listening = await asyncio.to_thread(tcp_open, service.host, service.port)
        return listening, "listening" if listening else "no answer (cannot connect)"
    try:
        async with session.get(f"{service.url}{service.ready_path}", timeout=aiohttp.ClientTimeout(total=3)) as r:
            try:
                body = await r.json(content_type=None)
                checks = body.get("checks", {})
                detail = ", ".join(f"{k} {v}" for k, v in checks.items()) or body.get("status", "")
            except Exception:
                detail = ""
            return r.status == 200, f"{r.status} {detail}".strip()
    except aiohttp.ClientConnectorError:
        return False, "no answer (cannot connect)"
    except asyncio.TimeoutError:
        return False, "no answer (timed out)"
    except Exception as exc:
        return False, f"no answer ({describe(exc)})"


async def readiness_of(services_: list[Service]) -> list[tuple[bool, str]]:
    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*(readyz(session, s) for s in services_))


async def wait_until_ready(started: dict[str, subprocess.Popen | None], all_: list[Service],
                           timeout: float) -> dict[str, str]:
    """Poll every /readyz until all answer 200; returns the services that did not, with why."""
    waiting = {s.name: s for s in all_}
    why: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while waiting and time.monotonic() < deadline:
            for name, service in list(waiting.items()):
                process = started.get(name)
                if process is not None and process.poll() is not None:
                    why[name] = f"exited with status {process.returncode}"
                    service.pid_file.unlink(missing_ok=True)
                    del waiting[name]
                    continue
                ready, answer = await readyz(session, service)
                if ready:
                    del waiting[name]
                    why.pop(name, None)
                else:
                    why[name] = f"not ready after {timeout:.0f} s (last /readyz: {answer})"
            if waiting:
                await asyncio.sleep(0.5)
    return why


def create_databases(all_: list[Service]) -> None:
    for service in all_:
        if service.settings is None:
            continue
        name = urlsplit(service.settings.dsn).path.lstrip("/")
        try:
            created = asyncio.run(ensure_database(service.settings.dsn))
        except Exception as exc:
            raise Failed(f"Could not create database {name}: {describe(exc)}")
        say(f"database {name}: {'created' if created else 'exists'}")


async def declare_topology(recreate_empty: bool) -> None:
    from services.topology import subscriptions  # the services' code, read for their handlers
    broker = Broker(load_settings("accounts", AccountsSettings).amqp_url, name="veikals-topology")
    await broker.connect()
    try:
        specs = topology.suite_queues(list(SERVICES), subscriptions())
        refused = await topology.declare(broker, specs)
        if refused and recreate_empty:
            for name in await topology.recreate_if_empty(broker, specs, refused):
                say(f"queue {name}: had other arguments and was empty; declared anew")
                refused.discard(name)
        for name in sorted(refused):
            say(f"queue {name}: exists with other arguments; drain it, then run 'veikals topology "
                "--recreate-empty' (the services consume it as it is meanwhile)")
        say(f"topology: {len(specs) - len(refused)} of {len(specs)} queues as declared")
    finally:
        await broker.close()


CATALOGUE_FILE = ROOT / "deploy" / "catalogue.local.json"


async def seed_catalogue() -> tuple[int, int]:
    """The example products, added over RPC (those whose sku the catalogue already has stay as
    they are), so a shop started with ``up`` has something to sell: (how many, how many new)."""
    from shared.messaging import RpcClient
    products = json.loads(CATALOGUE_FILE.read_text())["products"]
    broker = Broker(load_settings("orders").amqp_url, name="veikals-seed")
    await broker.connect()
    client = RpcClient(broker, "veikals-seed", timeout=30)
    await client.start()
    try:
        return len(products), await client.call("orders", "add_products", products)
    finally:
        await client.stop()
        await broker.close()


def topology_command(recreate_empty: bool = False) -> None:
    try:
        asyncio.run(declare_topology(recreate_empty))
    except Failed:
        raise
    except Exception as exc:
        raise Failed(f"Could not declare the queues: {describe(exc)}")


def migrate_command(service: str) -> None:
    try:
        applied = asyncio.run(operations.migrate(service))
    except Exception as exc:
        raise Failed(f"Could not migrate {service}: {describe(exc)}")
    say(f"{service}: {len(applied)} migration(s) applied" + "".join(f"\n  {name}" for name in applied))


def sweep_command(service: str) -> None:
    try:
        done = asyncio.run(operations.sweep(service))
    except Exception as exc:
        raise Failed(f"The {service} sweep did not run: {describe(exc)}")
    print(json.dumps(done, indent=2, sort_keys=True))


def audit_command(args: argparse.Namespace) -> bool:
    try:
        if args.audit_command == "checkpoint":
            mark = asyncio.run(operations.audit_checkpoint())
            print(f"{mark['seq']}:{mark['hash']}")
            return True
        found = asyncio.run(operations.verify_audit_log(args.anchor))
    except LookupError as exc:
        raise Failed(str(exc))
    except Exception as exc:
        raise Failed(f"The privacy service did not answer: {describe(exc)}")
    print(json.dumps(found, indent=2, sort_keys=True))
    return bool(found["intact"])


def dlq_command(args: argparse.Namespace) -> bool:
    url = load_settings("accounts").amqp_url  # any service's: they share the broker
    try:
        if args.dlq_command == "list":
            counts = asyncio.run(operations.dead_letter_counts(url))
            rows = [[queue, str(n)] for queue, n in sorted(counts.items()) if n or args.all]
            if rows:
                print_table(["QUEUE", "DEAD LETTERS"], rows)
            else:
                say("no dead letters")
            return True
        letters = asyncio.run(operations.replay(url, args.queue, dry_run=args.dry_run, limit=args.limit))
    except LookupError as exc:
        raise Failed(str(exc))
    except Exception as exc:
        raise Failed(f"The dead letters could not be read: {describe(exc)}")
    if letters:
        print_table(["MESSAGE ID", "ERROR"], [[str(d.message_id), d.error] for d in letters])
    say(f"{len(letters)} message(s) {'would be replayed' if args.dry_run else 'replayed'} to {args.queue.removesuffix('.dead-letter')}")
    return True


def up() -> None:
    infra()
    partners = sandboxes()
    prepare_environment(partners)
    all_ = [mail_sink(), *services(), *partners, edge()]
    create_databases(all_)
    topology_command(recreate_empty=True)  # a local broker: queues from older versions are remade

    running = {s.name: s.running_pid() for s in all_}
    for service in all_:
        if running[service.name] is None and tcp_open(service.host, service.port):
            raise Failed(f"{service.name}: port {service.port} is taken by a process this "
                         f"runner did not start (see: ss -ltnp 'sport = :{service.port}').")

    started: dict[str, subprocess.Popen | None] = {}
    for service in all_:
        if running[service.name] is not None:
            say(f"{service.name}: already running (pid {running[service.name]})")
            started[service.name] = None
        else:
            started[service.name] = process = service.start()
            say(f"{service.name}: started (pid {process.pid})")

    say(f"waiting for every service and sandbox to answer ready (up to {READY_TIMEOUT_S:.0f} s) ...")
    failed = asyncio.run(wait_until_ready(started, all_, READY_TIMEOUT_S))
    if failed:
        for service in all_:
            if service.name in failed:
                say(f"\n{service.name}: {failed[service.name]}; last lines of {service.log_file}:")
                for line in tail(service.log_file):
                    say(f"  | {line}")
        raise Failed(f"{', '.join(failed)} did not become ready. Fix and run 'veikals up' again; "
                     "'veikals down' stops what is running.")

    say("\nAll services and sandbox partners are ready.")
    try:
        examples, new = asyncio.run(seed_catalogue())
        say(f"catalogue: {examples} example products, {new} of them new ({CATALOGUE_FILE.relative_to(ROOT)})\n")
    except Exception as exc:
        raise Failed(f"Could not seed the catalogue: {describe(exc)}")
    print_table(["SERVICE", "PID", "URL", "LOG"],
                [[s.name, str(s.running_pid() or "?"), s.url, str(s.log_file.relative_to(ROOT))]
                 for s in all_])
    orders = next((s for s in all_ if s.name == "orders"), all_[0])
    accounts = next((s for s in all_ if s.name == "accounts"), all_[0])
    payments = next((s for s in all_ if s.name == "payments"), all_[0])
    carrier = next((s for s in partners if "carrier" in s.name), None)
    shop = next((s for s in all_ if s.name == "edge"), all_[0])
    nameko = Path(sys.executable).with_name("nameko")
    say(f"""
See it working:
  {shop.url}/lv/                        # the shop's pages in a browser (/en/ in English)
  {shop.url}/lv/staff-login             # the staff console (the first admin: docs/operations.md)
  curl {orders.url}/readyz
  curl {orders.url}/openapi.json
  curl {orders.url}/v1/products                     # the example catalogue; order as a guest at /v1/guest-orders
  curl {accounts.url}/.well-known/jwks.json       # the keys every service verifies tokens with
  curl {payments.url}/v1/psp/config              # where a browser sends a card: the sandbox PSP (docs/payments.md)
  ls {MAIL_DIR.relative_to(ROOT)}/                              # mail the services sent (README: a customer's sign-up)
  {nameko if nameko.exists() else 'nameko'} shell --broker {display_url(orders.settings.amqp_url)}
    >>> n.rpc.{orders.name}.health()
{f"  curl {carrier.url}/_control/received     # what the sandbox carrier got" if carrier else ""}
  sandbox partner secrets: {SECRETS_FILE.relative_to(ROOT)}

Stop everything with: veikals down   (or ./dev down)""")


def display_url(url: str) -> str:
    """``url`` with its password masked, unless it is RabbitMQ's well-known local 'guest'."""
    parts = urlsplit(url)
    if parts.password and parts.password != "guest":
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_process(pid: int, sig: signal.Signals, group: bool = False) -> None:
    """Send ``sig`` to ``pid`` (to its whole process group when it leads one and ``group``)."""
    try:
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def down() -> None:
    stopping: dict[str, tuple[Service, int]] = {}
    for service in [edge(), *services(), *sandboxes(), mail_sink()]:
        pid = service.running_pid()
        if pid is None:
            say(f"{service.name}: not running")
            service.pid_file.unlink(missing_ok=True)
            continue
        signal_process(pid, signal.SIGTERM)
        stopping[service.name] = (service, pid)
        say(f"{service.name}: sent SIGTERM to pid {pid}")

    stop_timeout = max((s.settings.shutdown_grace_s for s, _ in stopping.values() if s.settings),
                       default=0) + STOP_MARGIN_S
    deadline = time.monotonic() + stop_timeout
    while stopping and time.monotonic() < deadline:
        for name, (service, pid) in list(stopping.items()):
            if not service.is_ours(pid):
                say(f"{name}: stopped")
                service.pid_file.unlink(missing_ok=True)
                del stopping[name]
        if stopping:
            time.sleep(0.25)
    for name, (service, pid) in stopping.items():
        say(f"{name}: still running after {stop_timeout:.0f} s; sending SIGKILL to pid {pid}")
        signal_process(pid, signal.SIGKILL, group=True)
        service.pid_file.unlink(missing_ok=True)
    say("PostgreSQL and RabbitMQ are left running.")


def status() -> bool:
    """Print the state of everything; True when all is reachable and every service ready."""
    healthy = True
    for server in servers():
        problem = problem_with(server)
        healthy &= problem is None
        say(f"{server}: {'reachable' if problem is None else f'UNREACHABLE ({problem})'}")
    say()
    all_ = [mail_sink(), *services(), *sandboxes(), edge()]
    answers = asyncio.run(readiness_of(all_))
    rows = []
    for service, (ready, answer) in zip(all_, answers):
        pid = service.running_pid()
        healthy &= pid is not None and ready
        rows.append([service.name, "running" if pid else "stopped", str(pid or "-"), service.url,
                     answer])
    print_table(["PROCESS", "STATE", "PID", "URL", "READY"], rows)
    return healthy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="veikals", description="Run the Veikals services on this machine.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    actions: dict[str, Callable[[], object]] = {}
    for name, action, help_ in [
        ("infra", infra, "make sure PostgreSQL and RabbitMQ are reachable (start/install them)"),
        ("up", up, "infra, databases, then start all services and wait until they are ready"),
        ("down", down, "stop the services (PostgreSQL and RabbitMQ keep running)"),
        ("status", status, "show the services and the infrastructure; exit 1 if anything is down"),
    ]:
        commands.add_parser(name, help=help_, description=help_)
        actions[name] = action
    help_ = "declare every service's queues from the manifest (a deploy step)"
    topology_parser = commands.add_parser("topology", help=help_, description=help_)
    topology_parser.add_argument("--recreate-empty", action="store_true",
                                 help="delete and declare anew the queues with other arguments that hold nothing")
    for name, help_ in [("migrate", "create a service's database if missing and apply its migrations (a deploy Job)"),
                        ("sweep", "ask a running service to run its retention sweep now (a CronJob)")]:
        sub = commands.add_parser(name, help=help_, description=help_)
        sub.add_argument("service", choices=SERVICES)
    help_ = "verify the audit log's hash chain, or print a checkpoint of it to keep elsewhere"
    audit_parser = commands.add_parser("audit", help=help_, description=help_)
    audit_commands = audit_parser.add_subparsers(dest="audit_command", required=True)
    verify_parser = audit_commands.add_parser("verify", help="walk the chain; name the first entry changed, "
                                                             "removed or moved (exit 1 if one is)")
    verify_parser.add_argument("--anchor", help="a checkpoint kept elsewhere, seq:hash")
    audit_commands.add_parser("checkpoint", help="record the chain's end now and print it (seq:hash)")
    help_ = "list dead-lettered messages per queue, or replay them to their queue"
    dlq_parser = commands.add_parser("dlq", help=help_, description=help_)
    dlq_commands = dlq_parser.add_subparsers(dest="dlq_command", required=True)
    dlq_commands.add_parser("list", help="each work queue's dead letters (non-empty ones; --all for every queue)")
    dlq_commands.choices["list"].add_argument("--all", action="store_true")
    replay_parser = dlq_commands.add_parser("replay", help="move a queue's dead letters back to it, oldest first")
    replay_parser.add_argument("queue", help="the work queue (or its .dead-letter queue)")
    replay_parser.add_argument("--dry-run", action="store_true", help="only list what would be replayed")
    replay_parser.add_argument("--limit", type=int, help="at most this many")
    args = parser.parse_args(argv)
    actions["topology"] = lambda: topology_command(args.recreate_empty)
    actions["migrate"] = lambda: migrate_command(args.service)
    actions["sweep"] = lambda: sweep_command(args.service)
    actions["dlq"] = lambda: dlq_command(args)
    actions["audit"] = lambda: audit_command(args)

    configure_logging("veikals-runner", "warning")  # keep library info logs off the terminal
    try:
        result = actions[args.command]()
    except Failed as exc:
        say(f"\nveikals {args.command}: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into head & co.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 1 if result is False else 0


if __name__ == "__main__":
    sys.exit(main())
