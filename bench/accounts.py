"""Sign-ins per second at a stated argon2id cost, and token verifications in another service.

The accounts service runs as its own process (``python -m services.accounts``), with the
argon2id cost given by ``--time-cost``/``--memory-kib``/``--parallelism`` (default: the
service's defaults, argon2-cffi's RFC 9106 low-memory profile t=3, m=64 MiB, p=4) and
``--hash-concurrency`` hashes at once. Its mail goes to an in-process SMTP sink, from which the
customers' verification codes are read.

logins
    ``--customers`` customers are registered and verified over HTTP, then for each K in
    ``--concurrency`` K clients sign in ``--logins`` times in all (``POST /v1/auth/login``, a
    correct password, each sign-in a new session). Reported: sign-ins/s, and the p50/p99 of
    one sign-in's latency. The same is done with a wrong password for known addresses and with
    unknown addresses (the decoy hash): both answer 401, and should take the same time (no
    enumeration by timing). Each customer's failures are cleared by its next correct sign-in.
verifications
    An admin (made with ``python -m services.accounts.admin``) signs in. In this process, a
    ``shared.auth.TokenVerifier`` reading the accounts service's JWKS over HTTP (as every other
    service does) verifies one access token ``--verifications`` times: verifications/s on one
    core. Then the orders service, run as its own process with the same JWKS URL, answers
    ``GET /v1/staff/partners`` (a staff route: token verified, role checked) to K concurrent
    clients for ``--requests`` requests, against ``GET /healthz`` (no token) as the baseline.

Databases ``veikals_bench_<random>_<service>`` and a vhost of its own are created and dropped.

    .venv/bin/python bench/accounts.py
    .venv/bin/python bench/accounts.py --memory-kib 19456 --time-cost 2 --parallelism 1
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import aiohttp

from deploy.mailsink import MailSink, code_in
from services.accounts.tokens import new_signing_key
from shared import db
from shared.auth import TokenVerifier
from shared.logging import configure_logging
from processes import bench_vhost, free_port, load, percentile, stop_process, wait_ready  # bench/processes.py (the script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
PG_BASE = "postgresql://postgres@127.0.0.1:5432"
PASSWORD = "bench password 123"


def row(label: str, rate: float, latencies: list[float], unit: str = "/s") -> None:
    print(f"  {label:<52} {rate:9.1f}{unit}   p50 {percentile(latencies, 50):8.2f} ms"
          f"   p99 {percentile(latencies, 99):8.2f} ms", flush=True)


@contextlib.contextmanager
def stopped_at_exit(processes: list[subprocess.Popen]) -> Iterator[None]:
    """Stop the services (before their vhost goes)."""
    try:
        yield
    finally:
        for process in processes:
            stop_process(process)


async def post(http: aiohttp.ClientSession, url: str, body: dict, expect: int) -> dict:
    async with http.post(url, json=body) as response:
        if response.status != expect:
            raise SystemExit(f"{url}: {response.status} {await response.text()}")
        return await response.json()


async def main(args: argparse.Namespace) -> None:
    run = uuid.uuid4().hex[:8]
    dsns = {name: f"{PG_BASE}/veikals_bench_{run}_{name}" for name in ("accounts", "orders")}
    ports = {name: free_port() for name in dsns}
    sink = MailSink()
    await sink.start()
    processes: list[subprocess.Popen] = []
    try:
        with bench_vhost() as vhost, stopped_at_exit(processes):
            amqp = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
            jwks = f"http://127.0.0.1:{ports['accounts']}/.well-known/jwks.json"
            env = {**os.environ, "VEIKALS_ACCOUNTS_JWT_SIGNING_KEY": new_signing_key(),
                   "VEIKALS_ACCOUNTS_SMTP_PORT": str(sink.port),
                   "VEIKALS_ACCOUNTS_ARGON2_TIME_COST": str(args.time_cost),
                   "VEIKALS_ACCOUNTS_ARGON2_MEMORY_KIB": str(args.memory_kib),
                   "VEIKALS_ACCOUNTS_ARGON2_PARALLELISM": str(args.parallelism),
                   "VEIKALS_ACCOUNTS_HASH_CONCURRENCY": str(args.hash_concurrency),
                   # The benchmark is one client on loopback: lift the per-network limits.
                   "VEIKALS_ACCOUNTS_REGISTER_MAX_PER_NETWORK": "1000000",
                   "VEIKALS_ACCOUNTS_NETWORK_MAX_FAILURES": "1000000",
                   "VEIKALS_ACCOUNTS_LOGIN_MAX_FAILURES": "1000000",
                   "VEIKALS_ACCOUNTS_LOG_LEVEL": "warning", "VEIKALS_ORDERS_LOG_LEVEL": "warning"}
            for name in dsns:
                prefix = f"VEIKALS_{name.upper()}_"
                env.update({prefix + "AMQP_URL": amqp, prefix + "DATABASE_URL": dsns[name],
                            prefix + "HTTP_PORT": str(ports[name]), prefix + "JWKS_URL": jwks})
            for name in dsns:
                processes.append(subprocess.Popen([sys.executable, "-m", f"services.{name}"], cwd=ROOT,
                                                  env=env, stdout=subprocess.DEVNULL))
            accounts = f"http://127.0.0.1:{ports['accounts']}"
            orders = f"http://127.0.0.1:{ports['orders']}"
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                for base, process in zip((accounts, orders), processes):
                    await wait_ready(http, base, process)
                print(f"argon2id t={args.time_cost} m={args.memory_kib} KiB p={args.parallelism}, "
                      f"{args.hash_concurrency} hashes at once; {os.cpu_count()} cores", flush=True)

                emails = [f"bench{n}@example.lv" for n in range(args.customers)]
                for email in emails:
                    await post(http, f"{accounts}/v1/accounts", {
                        "name": "Bench", "email": email, "phone": "+37120000000", "password": PASSWORD,
                        "terms_version": "1"}, 202)
                for email in emails:
                    [message] = await sink.wait_for(email, timeout=60)
                    await post(http, f"{accounts}/v1/accounts/verify-email", {"token": code_in(message), "password": PASSWORD}, 200)

                print("sign-ins (POST /v1/auth/login)")
                for k in args.concurrency:
                    rate, latencies = await load(k, args.logins, lambda i: post(
                        http, f"{accounts}/v1/auth/login", {"email": emails[i % len(emails)], "password": PASSWORD}, 200))
                    row(f"known address, {k} at once", rate, latencies)
                    rate, latencies = await load(k, args.logins, lambda i: post(
                        http, f"{accounts}/v1/auth/login", {"email": emails[i % len(emails)], "password": "wrong!"}, 401))
                    row(f"known address, wrong password (401), {k} at once", rate, latencies)
                    rate, latencies = await load(k, args.logins, lambda i: post(
                        http, f"{accounts}/v1/auth/login", {"email": f"nobody{i}@example.lv", "password": PASSWORD}, 401))
                    row(f"unknown address (401), {k} at once", rate, latencies)

                done = await asyncio.to_thread(subprocess.run, [
                    sys.executable, "-m", "services.accounts.admin", "create-staff", "--email", "admin@bench.example",
                    "--name", "Admin", "--role", "admin"], cwd=ROOT, capture_output=True, text=True,
                    env={**env, "VEIKALS_STAFF_PASSWORD": PASSWORD})
                if done.returncode != 0:
                    raise SystemExit(done.stderr)
                token = (await post(http, f"{accounts}/v1/staff/auth/login",
                                    {"email": "admin@bench.example", "password": PASSWORD}, 200))["access_token"]

                print("token verifications")
                verifier = TokenVerifier(jwks)
                await verifier.verify(token)  # reads the JWKS once
                if args.verifications:
                    rate, latencies = await load(1, args.verifications, lambda i: verifier.verify(token))
                    row("TokenVerifier.verify, in process", rate, latencies)
                headers = {"Authorization": f"Bearer {token}"}

                async def get(path: str, with_token: bool) -> None:
                    async with http.get(f"{orders}{path}", headers=headers if with_token else None) as response:
                        if response.status != 200:
                            raise SystemExit(f"{path}: {response.status}")
                        await response.read()
                for k in args.concurrency if args.requests else []:
                    rate, latencies = await load(k, args.requests, lambda i: get("/healthz", False))
                    row(f"orders GET /healthz (no token), {k} at once", rate, latencies)
                    rate, latencies = await load(k, args.requests, lambda i: get("/v1/staff/partners", True))
                    row(f"orders GET /v1/staff/partners (token), {k} at once", rate, latencies)
    finally:
        await sink.stop()
        for dsn in dsns.values():
            await db.drop_database(dsn)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-cost", type=int, default=3)
    parser.add_argument("--memory-kib", type=int, default=65536)
    parser.add_argument("--parallelism", type=int, default=4)
    parser.add_argument("--hash-concurrency", type=int, default=2)
    parser.add_argument("--customers", type=int, default=10)
    parser.add_argument("--logins", type=int, default=100)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",") if x], default=[1, 8])
    parser.add_argument("--verifications", type=int, default=5000, help="0: skip")
    parser.add_argument("--requests", type=int, default=2000, help="0: skip")
    configure_logging("bench", "warning")
    asyncio.run(main(parser.parse_args()))
