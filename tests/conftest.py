"""Fixtures for every tier: a RabbitMQ vhost and PostgreSQL databases of the test run's own.

Nothing depends on what an earlier run left: the vhost and each database are created here
with random names and removed afterwards.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import uuid
from urllib.parse import quote

import pytest

from shared import db
from shared.logging import configure_logging
from tests import cardscan

AMQP_BASE = os.environ.get("VEIKALS_TEST_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672")
PG_BASE = os.environ.get("VEIKALS_TEST_PG_BASE", "postgresql://postgres@127.0.0.1:5432")


def rabbitmqctl(*args: str) -> str:
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmqctl is not installed: run the tests through ./dev test")
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


@contextlib.contextmanager
def own_vhost():
    """A RabbitMQ vhost of its own (its URL), deleted afterwards with all its queues."""
    name = f"veikals-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"{AMQP_BASE}/{quote(name, safe='')}"
    finally:
        rabbitmqctl("delete_vhost", name)


@pytest.fixture
def amqp_url() -> str:
    """Each test gets an empty vhost: durable queues never carry over from another test."""
    with own_vhost() as url:
        yield url


# What the card-number scan found (tests/cardscan.py); the session fails if anything is here.
CARD_FINDINGS: list[str] = []


async def scanned_and_dropped(dsn: str) -> None:
    """Drop a database the tests made, after looking through it for card numbers."""
    try:
        CARD_FINDINGS.extend(await cardscan.scan_database(dsn))
    finally:
        await db.drop_database(dsn)


@contextlib.asynccontextmanager
async def own_database():
    dsn = f"{PG_BASE}/veikals_test_{uuid.uuid4().hex[:10]}"
    await db.ensure_database(dsn)
    try:
        yield dsn
    finally:
        await scanned_and_dropped(dsn)


@pytest.fixture
async def database():
    """A fresh, empty database for one test; dropped afterwards."""
    async with own_database() as dsn:
        yield dsn


@pytest.fixture
async def other_database():
    """A second one, for a process that must not share the first (another service's)."""
    async with own_database() as dsn:
        yield dsn


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def eventually(check, timeout: float = 15.0, interval: float = 0.1):
    """Await ``check()`` until it returns something truthy; fail with its last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        await asyncio.sleep(interval)


class _Tee:
    """In-process services log through our own pipeline (redaction included) to the session's
    log file, and to the test's captured output as well."""

    def __init__(self, path) -> None:
        self.file = open(path, "a", encoding="utf-8")

    def write(self, text: str) -> int:
        self.file.write(text)
        return sys.stdout.write(text)

    def flush(self) -> None:
        self.file.flush()
        sys.stdout.flush()


def pytest_sessionstart(session: pytest.Session) -> None:
    folder = session.config._tmp_path_factory.getbasetemp() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    session.config.stash[_LOG] = _Tee(folder / "in-process.log")


def pytest_runtest_setup(item: pytest.Item) -> None:
    configure_logging("tests", "info", stream=item.config.stash[_LOG])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The scan after the whole suite: every database was scanned before it was dropped; now
    every log file the session wrote."""
    session.config.stash[_LOG].file.flush()
    found = CARD_FINDINGS + cardscan.scan_files(session.config._tmp_path_factory.getbasetemp())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if found:
        if reporter is not None:
            reporter.write_sep("=", "card data found after the suite (P3, P17)", red=True)
            for finding in found[:50]:
                reporter.write_line(finding)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        reporter.write_line("card scan: no card number or CVC in any database or log the tests wrote")


_LOG = pytest.StashKey[_Tee]()
