"""A schema-driven fuzzer (schemathesis) over every service's OpenAPI document.

The whole suite runs as processes; ``st run`` calls every operation each service documents
with data generated from its schema, data the schema allows and data it forbids, and with a
customer's or a staff member's token as the operation asks (``tests/e2e/fuzz_hooks.py``). All
of schemathesis' checks apply, among them: no 5xx; every answer is documented, with its
content type and schema; schema-valid input is not refused (no 400 or 422); schema-invalid
input is refused; an operation that needs a token answers 401 without one or with a forged
one. Generation is deterministic, so a run is the same each time; set
``VEIKALS_FUZZ_EXAMPLES`` higher by hand for a deeper search.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import aiohttp
import pytest

from deploy.mailsink import MailSink, code_in
from tests.conftest import own_vhost
from tests.e2e.processes import ROOT, SERVICES, running_suite

EXAMPLES = os.environ.get("VEIKALS_FUZZ_EXAMPLES", "20")
PASSWORD = "fuzzing is a long password"
CUSTOMER_EMAIL = "fuzz.customer@example.lv"
STAFF_EMAIL = "fuzz.staff@shop.example"
# The fuzzer signs in, and fails to, by the thousand from loopback; the limits that guard
# against that are tested in tests/integration/test_accounts.py.
SETTINGS = {
    "VEIKALS_ACCOUNTS_ARGON2_TIME_COST": "1",
    "VEIKALS_ACCOUNTS_LOGIN_MAX_FAILURES": "1000000",
    "VEIKALS_ACCOUNTS_NETWORK_MAX_FAILURES": "1000000",
    "VEIKALS_ACCOUNTS_REGISTER_MAX_PER_NETWORK": "1000000",
    "VEIKALS_ACCOUNTS_RESET_MAX_PER_ADDRESS": "1000000",
    "VEIKALS_ACCOUNTS_RESET_MAX_PER_NETWORK": "1000000",
}


@pytest.fixture(scope="module")
def amqp_url():
    with own_vhost() as url:
        yield url


@pytest.fixture(scope="module")
async def fuzzed(amqp_url, tmp_path_factory):
    """The suite, with a verified customer and a staff member holding every role."""
    sink = MailSink()
    await sink.start()
    try:
        async with running_suite(amqp_url, tmp_path_factory.mktemp("fuzz-logs"), sink.port, SETTINGS) as procs:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{procs['accounts'].url}/v1/accounts", json={
                        "name": "Fuzz Customer", "email": CUSTOMER_EMAIL, "phone": "+37120000099",
                        "password": PASSWORD, "terms_version": "2026-01"}) as response:
                    assert response.status == 202, await response.text()
                [message] = await sink.wait_for(CUSTOMER_EMAIL, timeout=30)
                async with http.post(f"{procs['accounts'].url}/v1/accounts/verify-email",
                                     json={"token": code_in(message), "password": PASSWORD}) as response:
                    assert response.status == 200, await response.text()
            done = await asyncio.to_thread(subprocess.run, [
                sys.executable, "-m", "services.accounts.admin", "create-staff", "--email", STAFF_EMAIL,
                "--name", "Fuzz Staff", "--role", "admin", "--role", "support", "--role", "accounting",
                "--role", "marketing"],
                cwd=ROOT, capture_output=True, text=True, timeout=60,
                env={**os.environ, "VEIKALS_STAFF_PASSWORD": PASSWORD,
                     "VEIKALS_ACCOUNTS_DATABASE_URL": procs["accounts"].dsn})
            assert done.returncode == 0, done.stderr
            yield procs
    finally:
        await sink.stop()


@pytest.mark.parametrize("service", SERVICES)
async def test_every_operation_survives_the_fuzzer(fuzzed, service, tmp_path):
    accounts, target = fuzzed["accounts"], fuzzed[service]
    report = tmp_path / "junit.xml"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SCHEMATHESIS_HOOKS": "tests.e2e.fuzz_hooks",
           "VEIKALS_FUZZ_ACCOUNTS_URL": accounts.url, "VEIKALS_FUZZ_PASSWORD": PASSWORD,
           "VEIKALS_FUZZ_CUSTOMER_EMAIL": CUSTOMER_EMAIL, "VEIKALS_FUZZ_STAFF_EMAIL": STAFF_EMAIL}
    # A working folder of its own: schemathesis keeps a cache of earlier failures in its cwd,
    # which would make one run depend on the last.
    done = await asyncio.to_thread(subprocess.run, [
        str(Path(sys.executable).with_name("st")), "run", f"{target.url}/openapi.json",
        "--checks", "all", "--generation-deterministic", "--max-examples", EXAMPLES,
        "--request-timeout", "30", "--report", "junit", "--report-junit-path", str(report),
        "--no-color"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    tested = _operations(report)
    print(f"fuzzer: {service}: {len(tested)} operations reached")
    assert done.returncode == 0, output[-12000:]
    documented = _documented_operations(output)
    assert documented and len(tested) == documented, output[-3000:]


def _operations(report: Path) -> set[str]:
    if not report.exists():
        return set()
    names = (case.get("name", "") for case in ElementTree.parse(report).iter("testcase"))
    return {name for name in names if name.split(" ")[0] in {"GET", "POST", "PUT", "PATCH", "DELETE"}}


def _documented_operations(output: str) -> int:
    for line in output.splitlines():  # "Operations:       31 selected / 31 total"
        words = line.split()
        if words[:1] == ["Operations:"] and "total" in words:
            return int(words[-2])
    return 0
