"""The accounts service: customers and staff, sign-in, sessions, profiles and address books.

HTTP routes for the shop's frontend (``/v1/accounts``, ``/v1/auth``, ``/v1/me``) and the staff
console (``/v1/staff``) are in ``api.py``; the JWKS every other service verifies tokens with
is among them. Here: how a caller is authenticated, the background loops, and the privacy
participant methods over RPC. Every change another service may need is an outbox event on
``accounts.events``: ``email_changed``, ``profile_changed``, ``account_closed``,
``staff_accessed``, and ``access_revoked`` (a session ended, the account closed or its
password reset: every instance of every service refuses its tokens from then on,
``shared.revocations``). It mails customers, in their language, what payments tells them of
their membership.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from services.accounts import domain, mail, schemas, store
from services.accounts.api import AccountsApi, account_of, change_profile, create_staff_account
from services.accounts.privacy import CLOCKS, INVENTORY, RetentionSweep, erase, export_chunk, inventory, sweep
from services.accounts.settings import AccountsSettings
from services.accounts.tokens import SigningKeys
from shared.auth import Principal, TokenVerifier, authenticate, authorize
from shared.contracts.privacy import ErasureOutcome, ErasureRequest, ExportChunk, ExportRequest
from shared.http import Access, Endpoint, HTTPProblem
from shared.poller import NotifiedPoller
from shared.revocations import AccessRevoked
from services.payments.schemas import MembershipNotice
from shared.service import Dependencies, Service, event_handler, rpc

__all__ = ["AccountsService", "create_staff_account"]


class AccountsService(Service):
    name = "accounts"
    migrations = Path(__file__).parent / "migrations"
    inventory = INVENTORY
    retention_clocks = CLOCKS
    settings_class = AccountsSettings

    def __init__(self, deps: Dependencies) -> None:
        super().__init__(deps)
        s = self.settings = deps.settings
        assert isinstance(s, AccountsSettings)
        self.keys = SigningKeys(s.jwt_signing_key.get_secret_value(), s.jwt_previous_public_keys)
        self.tokens = TokenVerifier("", keys=self.keys.key_set)  # our own keys, no HTTP round trip
        self.passwords = domain.Passwords(s.argon2_time_cost, s.argon2_memory_kib,
                                          s.argon2_parallelism, s.hash_concurrency)
        self.inventory = inventory(s.session_log_days)
        self.throttle_secret = (s.throttle_key.get_secret_value() or s.jwt_signing_key.get_secret_value()).encode()

    def background(self) -> list[NotifiedPoller]:
        return [mail.sender(self.pool, self.settings),
                RetentionSweep(self.pool, self.settings)]

    async def authenticate(self, request: web.Request, access: Access) -> Principal:
        """The caller, whose session must still be open: signing out, ending a session or
        closing the account stops its tokens here at once, on every route of this service
        (other services learn it from ``access_revoked``, ``shared.revocations``)."""
        principal = await authenticate(request, self.tokens)
        if principal.session is None or not await store.session_active(
                self.pool, uuid.UUID(principal.session), account_of(principal)):
            raise HTTPProblem(401, "Session ended", "Sign in again.")
        return authorize(principal, access)

    def endpoints(self) -> list[Endpoint]:
        return AccountsApi(self).endpoints()

    @event_handler("payments", "membership_notice")
    async def on_membership_notice(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        """Tell the customer (by e-mail, the address only we hold) what happened to their membership."""
        notice = MembershipNotice.model_validate(data)
        profile = await store.profile(conn, notice.customer_id)
        if profile is None:  # closed or erased: nobody to tell
            return
        subject, body = mail.membership_mail(self.settings.shop_url, profile["name"], notice, profile["language"])
        await mail.queue_mail(conn, notice.customer_id, profile["email"], subject, body)

    @rpc(changes_state=False)
    async def checkout_details(self, customer_id: str, address_id: str | None = None) -> dict[str, Any] | None:
        """What orders needs to take a customer's order: their name, e-mail and phone, and the
        address ``address_id`` from their address book (None when it is not theirs); and the
        language they read (others write to them in it). None when there is no such open account."""
        try:
            account_id = uuid.UUID(customer_id)
            wanted = None if address_id is None else uuid.UUID(address_id)
        except ValueError:
            return None
        async with self.pool.acquire() as conn:
            profile = await store.profile(conn, account_id)
            if profile is None or profile["closed_at"] is not None:
                return None
            address = None if wanted is None else await store.address(conn, account_id, wanted)
        return {"name": profile["name"], "email": profile["email"], "phone": profile["phone"],
                "language": profile["language"], "address": None if address is None else {
                    k: address[k] for k in ("recipient", "phone", "line1", "line2", "city",
                                            "postal_code", "country")}}

    @rpc(changes_state=False)
    async def access_revocations(self) -> list[AccessRevoked]:
        """The sessions ended and accounts closed whose tokens may still be alive (within the
        access-token lifetime): what an instance of another service loads when it starts or
        reconnects, after binding its queue for ``access_revoked`` (``shared.revocations``)."""
        ttl = self.settings.access_token_ttl_s
        async with self.pool.acquire() as conn:
            rows = await store.revocations(conn, ttl)
        return [domain.access_revoked(r["account_id"], r["session_id"], r["at"], r["reason"], ttl) for r in rows]

    @rpc(changes_state=True)
    async def rectify(self, conn: asyncpg.Connection, customer_id: str, corrections: dict[str, Any]) -> list[str]:
        """Art. 16: correct the customer's name or phone (a rectification request); the fields
        corrected (none when there is no open account)."""
        change = schemas.ProfileChange.model_validate(corrections)
        account = await store.profile(conn, uuid.UUID(customer_id))
        if account is None or account["closed_at"] is not None:
            return []
        await change_profile(conn, self.outbox, uuid.UUID(customer_id), change)
        return sorted(change.model_dump(exclude_none=True))

    # --- the privacy participant -----------------------------------------------------------

    @rpc(changes_state=False)
    async def privacy_export(self, request: dict[str, Any]) -> ExportChunk:
        parsed = ExportRequest.model_validate(request)
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            return await export_chunk(conn, parsed)

    @rpc(changes_state=True)
    async def privacy_erase(self, conn: asyncpg.Connection, request: dict[str, Any]) -> ErasureOutcome:
        parsed = ErasureRequest.model_validate(request)
        return await erase(conn, parsed, lambda email: [
            domain.throttle_key(self.throttle_secret, "login", f"customer:{email}"),
            domain.throttle_key(self.throttle_secret, "reset-address", email)], self.forget)

    @rpc(changes_state=True)
    async def run_retention_sweep(self, conn: asyncpg.Connection) -> dict[str, int]:
        """Delete what has been kept for its declared period now (the CronJob calls this)."""
        return await sweep(conn, self.settings.session_log_days)
