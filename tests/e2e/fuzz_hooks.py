"""schemathesis hooks for the fuzz test (loaded with ``SCHEMATHESIS_HOOKS=tests.e2e.fuzz_hooks``).

Each operation that needs a token (its ``x-veikals-access`` in the OpenAPI document) gets the
kind it asks for: staff operations a staff member's token with every role, the others a
customer's. The tokens come from signing in at the accounts service; one that stops working
(the fuzzer also signs out, through ``/v1/auth/logout``) is replaced by signing in again.
"""
from __future__ import annotations

import os

import requests
import schemathesis

ACCOUNTS_URL = os.environ.get("VEIKALS_FUZZ_ACCOUNTS_URL", "http://127.0.0.1:8101")
PASSWORD = os.environ.get("VEIKALS_FUZZ_PASSWORD", "")
SIGN_IN = {
    "customer": ("/v1/auth/login", os.environ.get("VEIKALS_FUZZ_CUSTOMER_EMAIL", "")),
    "staff": ("/v1/staff/auth/login", os.environ.get("VEIKALS_FUZZ_STAFF_EMAIL", "")),
}


def _kind(operation) -> str:
    access = operation.definition.raw.get("x-veikals-access") or {}
    return "staff" if access.get("kind") == "staff" else "customer"


def _needs_token(ctx) -> bool:
    return "x-veikals-access" in ctx.operation.definition.raw


@schemathesis.auth(cache_by_key=lambda case, ctx: _kind(case.operation)).apply_to(_needs_token)
class VeikalsTokens:
    def get(self, case, ctx) -> str:
        path, email = SIGN_IN[_kind(case.operation)]
        response = requests.post(ACCOUNTS_URL + path, json={"email": email, "password": PASSWORD}, timeout=30)
        response.raise_for_status()
        return response.json()["access_token"]

    def set(self, case, data: str, ctx) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
