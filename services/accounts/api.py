"""The accounts service's HTTP routes: registration, sign-in, the customer's own data, staff.

Each route is an ``Endpoint`` (``shared.http``): the shared view has already checked the
caller's token against the route's ``access`` (``AccountsService.authenticate``: the session
must still be open) and validated the path, query and body before a handler here runs.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from services.accounts import domain, mail, schemas, store
from shared.auth import Principal
from shared.contracts.audit import StaffAccessed
from shared.http import CUSTOMER, SIGNED_IN, Endpoint, HTTPProblem, staff
from shared.logging import get_logger
from shared.outbox import Outbox
from shared.subjects import Subject

if TYPE_CHECKING:
    from services.accounts.service import AccountsService

log = get_logger(__name__)

# What a staff look-up of a customer shows (recorded in the audit log, P16).
CUSTOMER_RECORD = ("contact details", "delivery addresses")

MAX_ADDRESSES = 20
WRONG_LOGIN = HTTPProblem(401, "Wrong e-mail or password", "Check both and try again.")
NOT_FOUND = HTTPProblem(404, "Not found", "There is no such item in your account.")
ACCEPTED_REGISTRATION = schemas.Accepted(
    status="verification sent",
    detail="If the address can receive mail, a message with a verification link is on its way.")
ACCEPTED_RESET = schemas.Accepted(
    status="reset sent",
    detail="If a customer account has this address, a message with a link to choose a new password is on its way.")


async def change_profile(conn: asyncpg.Connection, outbox: Outbox, account_id: uuid.UUID,
                         change: schemas.ProfileChange) -> None:
    """Correct the name or phone, or choose the language (the customer, or a rectification
    request), and tell others."""
    changed = await store.update_profile(conn, account_id, change.name, change.phone, change.language)
    await outbox.add(conn, "profile_changed", schemas.ProfileChanged(
        customer_id=account_id, name=changed["name"], phone=changed["phone"], language=changed["language"],
        changed_at=changed["updated_at"]).model_dump(mode="json"), subject=Subject.customer(account_id))


class AccountsApi:
    def __init__(self, service: AccountsService) -> None:
        self.pool = service.pool
        self.settings = service.settings
        self.passwords = service.passwords
        self.keys = service.keys
        self.outbox = service.outbox
        self.throttle_secret = service.throttle_secret

    # --- guards ----------------------------------------------------------------------------

    def client_ip(self, request: web.Request) -> str | None:
        """The client's address: behind a trusted proxy, the entry that proxy appended (the
        last; the ones before it are the client's to write)."""
        candidates = [request.remote]
        if self.settings.trust_forwarded_for and (forwarded := request.headers.get("X-Forwarded-For")):
            candidates.insert(0, forwarded.split(",")[-1].strip())
        return next((c for c in candidates if domain.network_of(c) is not None), None)

    def throttled(self, kind: str, value: str | None) -> bytes | None:
        return None if value is None else domain.throttle_key(self.throttle_secret, kind, value)

    async def take_attempt(self, key: bytes | None, limit: int, window: int, what: str) -> None:
        """Count an attempt against ``key`` before it is tried (so parallel guesses cannot all
        pass the check), or refuse it with 429 when ``limit`` are already counted."""
        if key is None:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            first = await store.take_attempt(conn, key, limit, window)
        if first is not None:
            wait = max(int(window - (dt.datetime.now(dt.timezone.utc) - first).total_seconds()), 1)
            raise HTTPProblem(429, "Too many attempts", f"{what} Try again in {wait} seconds.",
                              headers={"Retry-After": str(wait)})

    async def confirm_password(self, account: asyncpg.Record, password: str, what: str) -> None:
        """Re-authentication for a sensitive change, limited like sign-in."""
        s = self.settings
        key = self.throttled("login", f"{account['kind']}:{(account['email'] or '').lower()}")
        await self.take_attempt(key, s.login_max_failures, s.login_window_s,
                                "Too many wrong passwords for this account.")
        if not await self.passwords.verify(account["password_hash"], password):
            raise HTTPProblem(403, "Wrong password", f"Confirm {what} with your current password.")
        async with self.pool.acquire() as conn:
            await store.clear_attempts(conn, key)

    # --- registration and e-mail verification ----------------------------------------------

    async def register(self, request: web.Request, body: schemas.Registration) -> schemas.Accepted:
        """A registration is only a code until it is confirmed with its own password; then the
        account exists. So nobody can hold an address they cannot read, and a second
        registration of an address (its owner's, or anyone's) withdraws no one's code."""
        s = self.settings
        network = self.throttled("register", domain.network_of(self.client_ip(request)))
        await self.take_attempt(network, s.register_max_per_network, 3600,
                                "Too many registrations from your network.")
        password_hash = await self.passwords.hash(body.password)  # also when the address is taken
        async with self.pool.acquire() as conn, conn.transaction():
            if (owner := await store.account_by_email(conn, "customer", body.email)) is not None:
                # The same answer as for a new address; the owner learns of the attempt by mail.
                await mail.queue_mail(conn, None, body.email, *mail.address_in_use_mail(s.shop_url, owner["language"]))
                return ACCEPTED_REGISTRATION
            token, token_hash = domain.new_secret()
            await store.add_registration(
                conn, email=body.email, name=body.name, phone=body.phone, password_hash=password_hash,
                terms_version=body.terms_version, language=body.language, token_hash=token_hash,
                ttl=s.verification_ttl_s)
            await mail.queue_mail(conn, None, body.email, *mail.verification_mail(
                s.shop_url, body.name, token, body.language, new_address=False))
        return ACCEPTED_REGISTRATION

    async def send_change_code(self, conn: asyncpg.Connection, account: asyncpg.Record, email: str, *,
                               mail_code: bool = True) -> None:
        token, token_hash = domain.new_secret()
        await store.withdraw_change_codes(conn, account["id"])  # only the newest code works
        await store.add_change_code(conn, account["id"], email, token_hash, self.settings.verification_ttl_s)
        if mail_code:
            await mail.queue_mail(conn, account["id"], email, *mail.verification_mail(
                self.settings.shop_url, account["name"], token, account["language"], new_address=True))

    async def verify_email(self, request: web.Request, body: schemas.EmailConfirmation) -> schemas.Accepted:
        """Confirm an address with the code mailed to it and the account's password (for a
        registration, the password it was made with): reading the mailbox alone is not enough."""
        s = self.settings
        token_hash = domain.secret_hash(body.token)
        await self.take_attempt(self.throttled("code", body.token), s.login_max_failures, s.login_window_s,
                                "Too many wrong passwords for this code.")
        invalid = HTTPProblem(404, "Unknown or expired code",
                              "Ask for a new verification message and use the newest link.")
        async with self.pool.acquire() as conn:
            found = await store.pending_code(conn, token_hash)
        if found is None or found["closed_at"] is not None:
            raise invalid
        registering = found["purpose"] == "register"
        stored = found["password_hash"] if registering else found["account_password_hash"]
        if not await self.passwords.verify(stored, body.password):
            raise HTTPProblem(403, "Wrong password",
                              "Enter the password of the account this address is for.")
        taken = HTTPProblem(409, "Address already in use",
                            "An account uses this address now; sign in to it, or choose another address.")
        async with self.pool.acquire() as conn, conn.transaction():
            if not await store.use_code(conn, token_hash):
                raise invalid
            try:
                async with conn.transaction():  # another request may confirm it at the same moment
                    if registering:
                        if await store.create_account(
                                conn, kind="customer", name=found["name"], email=found["email"],
                                phone=found["phone"], password_hash=found["password_hash"],
                                terms_version=found["terms_version"], language=found["language"]) is None:
                            raise taken
                        await store.withdraw_registrations(conn, found["email"])
                    else:
                        if await store.email_taken(conn, found["kind"], found["email"], found["account_id"]):
                            raise taken
                        await store.verify_email(conn, found["account_id"], found["email"])
            except asyncpg.UniqueViolationError:
                raise taken from None
            if not registering:
                await self.outbox.add(conn, "email_changed", schemas.EmailChanged(
                    customer_id=found["account_id"], email=found["email"],
                    changed_at=dt.datetime.now(dt.timezone.utc)).model_dump(mode="json"),
                    subject=Subject.customer(found["account_id"]))
        return schemas.Accepted(status="verified", detail="The address is confirmed.")

    # --- a forgotten password --------------------------------------------------------------

    async def request_password_reset(self, request: web.Request,
                                     body: schemas.PasswordResetRequest) -> schemas.Accepted:
        """Mail a reset code to the address when a customer account has it; the same answer
        whatever the address. A staff address gets nothing: a mailbox alone must not open a
        staff account."""
        s = self.settings
        await self.take_attempt(self.throttled("reset-network", domain.network_of(self.client_ip(request))),
                                s.reset_max_per_network, 3600, "Too many password resets from your network.")
        await self.take_attempt(self.throttled("reset-address", body.email), s.reset_max_per_address, 3600,
                                "Too many password resets for this address.")
        async with self.pool.acquire() as conn, conn.transaction():
            account = await store.account_by_email(conn, "customer", body.email)
            if account is None or account["closed_at"] is not None:
                return ACCEPTED_RESET
            token, token_hash = domain.new_secret()
            await store.add_reset(conn, account["id"], token_hash, s.password_reset_ttl_s)
            await mail.queue_mail(conn, account["id"], account["email"], *mail.password_reset_mail(
                s.shop_url, account["name"], token, account["language"], s.password_reset_ttl_s))
        return ACCEPTED_RESET

    async def reset_password(self, request: web.Request, body: schemas.PasswordReset) -> schemas.Accepted:
        """Set a new password with the mailed code. The code is spent, and every session of the
        account ends, in every service at once (``access_revoked``): whoever knew the old
        password is out. Wrong codes count against the client's network like failed sign-ins."""
        s = self.settings
        network = self.throttled("reset-code", domain.network_of(self.client_ip(request)))
        await self.take_attempt(network, s.network_max_failures, s.login_window_s,
                                "Too many wrong codes from your network.")
        token_hash = domain.secret_hash(body.token)
        invalid = HTTPProblem(404, "Unknown or expired code",
                              "Ask for a new password reset message and use the newest link.")
        async with self.pool.acquire() as conn:
            found = await store.pending_reset(conn, token_hash)
        if found is None:
            raise invalid
        password_hash = await self.passwords.hash(body.password)
        account_id, ttl = found["id"], dt.timedelta(seconds=s.access_token_ttl_s)
        async with self.pool.acquire() as conn, conn.transaction():
            if not await store.use_reset(conn, token_hash, account_id):
                raise invalid
            await store.set_password_hash(conn, account_id, password_hash)
            for session in await store.end_all_sessions(conn, account_id, "password reset"):
                # One revocation per session, not one for the whole account: that would also
                # refuse a sign-in with the new password within the same second (``iat`` has
                # whole seconds). A session long expired has no live token left to refuse.
                if session["expires_at"] > session["ended_at"] - ttl:
                    await self.revoke(conn, account_id, session["id"], session["ended_at"], "password reset")
            await store.clear_attempts(conn, self.throttled("login", f"customer:{found['email']}"))
            await store.forget_latest_attempt(conn, network)  # a right code is no failure
        return schemas.Accepted(status="password changed",
                                detail="Your new password is set; sign in with it on every device.")

    # --- sign-in ---------------------------------------------------------------------------

    async def login(self, request: web.Request, body: schemas.Login, kind: str = "customer") -> schemas.TokenPair:
        s = self.settings
        ip = self.client_ip(request)
        address_key = self.throttled("login", f"{kind}:{body.email}")
        network_key = self.throttled("network", domain.network_of(ip))
        await self.take_attempt(network_key, s.network_max_failures, s.login_window_s,
                                "Too many failed sign-ins from your network.")
        await self.take_attempt(address_key, s.login_max_failures, s.login_window_s,
                                "Too many failed sign-ins for this address.")
        async with self.pool.acquire() as conn:
            account = await store.account_by_email(conn, kind, body.email)
        usable = account is not None and account["closed_at"] is None
        # An unknown address is checked against a decoy hash: same work, same answer, same time.
        if not await self.passwords.verify(account["password_hash"] if usable else None, body.password):
            raise WRONG_LOGIN  # the attempts taken above stay counted
        rehash = await self.passwords.hash(body.password) if self.passwords.needs_rehash(
            account["password_hash"]) else None
        refresh, refresh_hash = domain.new_secret()
        async with self.pool.acquire() as conn, conn.transaction():
            # Locked against a password reset at the same moment: a session is started with the
            # password the account has, or the reset ends it.
            if (await store.account(conn, account["id"], lock=True))["password_hash"] != account["password_hash"]:
                raise WRONG_LOGIN
            await store.clear_attempts(conn, address_key)
            await store.forget_latest_attempt(conn, network_key)  # a success is no failure
            if rehash:
                await store.set_password_hash(conn, account["id"], rehash)
            session_id = await store.start_session(
                conn, account["id"], ip, (request.headers.get("User-Agent") or "")[:400] or None,
                refresh_hash, s.refresh_token_ttl_s, domain.network_of(ip))
        return self.token_pair(account, session_id, refresh, s.refresh_token_ttl_s)

    def token_pair(self, account: asyncpg.Record | dict, session_id: uuid.UUID, refresh: str,
                   refresh_expires_in: int) -> schemas.TokenPair:
        s = self.settings
        access, _ = self.keys.access_token(subject=account["id"], kind=account["kind"],
                                           roles=list(account["roles"]), session=session_id,
                                           ttl=s.access_token_ttl_s)
        return schemas.TokenPair(access_token=access, expires_in=s.access_token_ttl_s,
                                 refresh_token=refresh, refresh_expires_in=refresh_expires_in)

    async def refresh(self, request: web.Request, body: schemas.Refresh) -> schemas.TokenPair:
        old_hash = domain.secret_hash(body.refresh_token)
        refresh, refresh_hash = domain.new_secret()
        stolen = False
        async with self.pool.acquire() as conn, conn.transaction():
            found = await store.refresh_token(conn, old_hash)
            if found is not None and found["rotated_at"] is not None and found["ended_at"] is None:
                # A used token again: someone holds a copy. End the session for both of them.
                ended = await store.end_session(conn, found["account_id"], found["session_id"], "refresh token reused")
                await self.revoke(conn, found["account_id"], found["session_id"], ended, "refresh token reused")
                stolen = True
            elif found is not None and not (found["ended_at"] or found["expired"] or found["closed_at"]):
                await store.rotate_refresh(conn, old_hash, refresh_hash, found["session_id"])
                account = {"id": found["account_id"], "kind": found["kind"], "roles": found["roles"]}
                return self.token_pair(account, found["session_id"], refresh, found["expires_in"])
        if stolen:
            log.warning("refresh token reused; session ended", session=str(found["session_id"]))
        raise HTTPProblem(401, "Invalid refresh token", "Sign in again.")

    async def logout(self, request: web.Request, caller: Principal) -> web.Response:
        account_id, session_id = account_of(caller), uuid.UUID(caller.session)
        async with self.pool.acquire() as conn, conn.transaction():
            ended = await store.end_session(conn, account_id, session_id, "signed out")
            await self.revoke(conn, account_id, session_id, ended, "signed out")
        return web.Response(status=204)

    async def revoke(self, conn: asyncpg.Connection, account_id: uuid.UUID, session_id: uuid.UUID | None,
                     at: dt.datetime | None, reason: str) -> None:
        """Tell every service to refuse the tokens of the session (None: of every session of the
        account) issued up to ``at`` (``access_revoked``); nothing when nothing ended (None)."""
        if at is not None:
            await self.outbox.add(conn, "access_revoked", domain.access_revoked(
                account_id, session_id, at, reason, self.settings.access_token_ttl_s).model_dump(mode="json"))

    # --- the customer's own data -----------------------------------------------------------

    async def profile(self, conn: asyncpg.Connection, account_id: uuid.UUID) -> schemas.Profile:
        row = await store.profile(conn, account_id)
        if row is None:
            raise HTTPProblem(401, "Session ended", "Sign in again.")
        return schemas.Profile.model_validate(dict(row))

    async def read_profile(self, request: web.Request, caller: Principal) -> schemas.Profile:
        async with self.pool.acquire() as conn:
            return await self.profile(conn, account_of(caller))

    async def change_profile(self, request: web.Request, caller: Principal,
                             body: schemas.ProfileChange) -> schemas.Profile:
        account_id = account_of(caller)
        async with self.pool.acquire() as conn, conn.transaction():
            await change_profile(conn, self.outbox, account_id, body)
            return await self.profile(conn, account_id)

    async def change_email(self, request: web.Request, caller: Principal, body: schemas.EmailChange) -> schemas.Accepted:
        account_id = account_of(caller)
        async with self.pool.acquire() as conn:
            account = await store.account(conn, account_id)
        await self.confirm_password(account, body.password, "the change")
        if body.email == (account["email"] or "").lower():
            raise HTTPProblem(409, "Same address", "This is already your address.")
        async with self.pool.acquire() as conn, conn.transaction():
            owner = await store.account_by_email(conn, "customer", body.email)  # not this account's address
            # The profile shows the address as pending either way: it tells nobody whether
            # the address has an account; its owner hears of the attempt by mail.
            await self.send_change_code(conn, account, body.email, mail_code=owner is None)
            if owner is not None:
                await mail.queue_mail(conn, None, body.email, *mail.address_in_use_mail(
                    self.settings.shop_url, owner["language"]))
        return schemas.Accepted(status="verification sent",
                                detail="The new address takes effect once you open the link we sent to it.")

    async def list_addresses(self, request: web.Request, caller: Principal) -> schemas.AddressList:
        async with self.pool.acquire() as conn:
            rows = await store.addresses(conn, account_of(caller))
        return schemas.AddressList(items=[schemas.Address.model_validate(dict(r)) for r in rows])

    async def add_address(self, request: web.Request, caller: Principal, body: schemas.AddressIn) -> schemas.Address:
        account_id = account_of(caller)
        async with self.pool.acquire() as conn, conn.transaction():
            await store.account(conn, account_id, lock=True)  # one count at a time per account
            if len(await store.addresses(conn, account_id)) >= MAX_ADDRESSES:
                raise HTTPProblem(409, "Address book full",
                                  f"An address book holds at most {MAX_ADDRESSES} addresses; remove one first.")
            row = await store.add_address(conn, account_id, body.model_dump())
        return schemas.Address.model_validate(dict(row))

    async def read_address(self, request: web.Request, caller: Principal,
                           params: schemas.IdPath) -> schemas.Address:
        async with self.pool.acquire() as conn:
            row = await store.address(conn, account_of(caller), params.id)
        if row is None:
            raise NOT_FOUND
        return schemas.Address.model_validate(dict(row))

    async def replace_address(self, request: web.Request, caller: Principal, params: schemas.IdPath,
                              body: schemas.AddressIn) -> schemas.Address:
        async with self.pool.acquire() as conn:
            row = await store.replace_address(conn, account_of(caller), params.id, body.model_dump())
        if row is None:
            raise NOT_FOUND
        return schemas.Address.model_validate(dict(row))

    async def delete_address(self, request: web.Request, caller: Principal, params: schemas.IdPath) -> web.Response:
        async with self.pool.acquire() as conn:
            if not await store.delete_address(conn, account_of(caller), params.id):
                raise NOT_FOUND
        return web.Response(status=204)

    async def list_sessions(self, request: web.Request, caller: Principal) -> schemas.SessionList:
        async with self.pool.acquire() as conn:
            rows = await store.sessions(conn, account_of(caller))
        return schemas.SessionList(items=[schemas.Session(**r, current=str(r["id"]) == caller.session)
                                          for r in rows])

    async def end_session(self, request: web.Request, caller: Principal, params: schemas.IdPath) -> web.Response:
        account_id, session_id = account_of(caller), params.id
        async with self.pool.acquire() as conn, conn.transaction():
            if not await store.session_exists(conn, account_id, session_id):
                raise NOT_FOUND
            ended = await store.end_session(conn, account_id, session_id, "ended by the customer")
            await self.revoke(conn, account_id, session_id, ended, "ended by the customer")
        return web.Response(status=204)

    async def close_account(self, request: web.Request, caller: Principal,
                            body: schemas.Reauthentication) -> schemas.Accepted:
        account_id = account_of(caller)
        async with self.pool.acquire() as conn:
            account = await store.account(conn, account_id)
        await self.confirm_password(account, body.password, "closing the account")
        async with self.pool.acquire() as conn, conn.transaction():
            closed = await store.close_account(conn, account_id)
            if closed is not None:  # a second request (a double click) closes nothing more
                await store.end_all_sessions(conn, account_id, "account closed")
                await self.revoke(conn, account_id, None, closed["closed_at"], "account closed")
                await self.outbox.add(conn, "account_closed", schemas.AccountClosed(
                    customer_id=account_id, email=closed["email"], phone=closed["phone"],
                    closed_at=closed["closed_at"]).model_dump(mode="json"), subject=Subject.customer(account_id))
        return schemas.Accepted(status="closed", detail="Your account is closed; the erasure of your "
                                "data has started and you will be told its outcome.")

    # --- staff -----------------------------------------------------------------------------

    async def staff_login(self, request: web.Request, body: schemas.Login) -> schemas.TokenPair:
        return await self.login(request, body, kind="staff")

    async def create_staff(self, request: web.Request, caller: Principal,
                           body: schemas.StaffAccountIn) -> schemas.StaffAccount:
        staff_id = await create_staff_account(self.pool, self.passwords, body)
        if staff_id is None:
            raise HTTPProblem(409, "Address already in use", "A staff account with this address exists.")
        return schemas.StaffAccount(id=staff_id, name=body.name, email=body.email, roles=body.roles)

    async def lookup_customer(self, request: web.Request, caller: Principal,
                              body: schemas.CustomerLookup) -> schemas.CustomerRecord:
        staff_id = account_of(caller)
        async with self.pool.acquire() as conn, conn.transaction():
            customer_id = body.customer_id or await conn.fetchval(
                "SELECT id FROM accounts WHERE kind = 'customer' AND lower(email) = $1", body.email)
            row = customer_id and await store.profile(conn, customer_id)
            if not row:
                raise HTTPProblem(404, "No such customer", "No customer account matches.")
            categories = list(CUSTOMER_RECORD)
            access = await store.record_staff_access(conn, staff_id, customer_id, body.reason, categories)
            # No subject: the audit record outlives the customer's erasure (P16).
            await self.outbox.add(conn, "staff_accessed", StaffAccessed(
                access_id=access["id"], staff_id=staff_id, customer_id=customer_id, reason=body.reason,
                categories=categories, at=access["at"]).model_dump(mode="json"))
            addresses = await store.addresses(conn, customer_id)
        log.info("staff looked at a customer", staff=str(staff_id), customer=str(customer_id),
                 access=str(access["id"]))
        return schemas.CustomerRecord(
            access_id=access["id"], profile=schemas.Profile.model_validate(dict(row)),
            closed_at=row["closed_at"], addresses=[schemas.Address.model_validate(dict(a)) for a in addresses])

    async def usage_stats(self, request: web.Request, caller: Principal,
                          query: schemas.UsageQuery) -> schemas.UsageStats:
        async with self.pool.acquire() as conn:
            rows = await store.usage(conn, query.days)
        return schemas.UsageStats(items=[schemas.UsageRow(**r) for r in rows])

    async def jwks(self, request: web.Request) -> web.Response:
        return web.json_response(schemas.Jwks(**self.keys.jwks).model_dump(),
                                 headers={"Cache-Control": "public, max-age=300"})

    def endpoints(self) -> list[Endpoint]:
        E, me, path = Endpoint, ["me"], schemas.IdPath
        admin, support = staff("admin"), staff("support", "admin")
        return [
            E("GET", "/.well-known/jwks.json", self.jwks, "Public keys of the access tokens",
              response=schemas.Jwks, tags=["tokens"]),
            E("POST", "/v1/accounts", self.register, "Register a customer account",
              body=schemas.Registration, response=schemas.Accepted, status=202, problems=(429,),
              tags=["accounts"]),
            E("POST", "/v1/accounts/verify-email", self.verify_email, "Confirm an e-mail address",
              body=schemas.EmailConfirmation, response=schemas.Accepted, problems=(403, 404, 409, 429),
              tags=["accounts"]),
            E("POST", "/v1/auth/login", self.login, "Sign in (customer)", body=schemas.Login,
              response=schemas.TokenPair, problems=(401, 429), tags=["auth"]),
            E("POST", "/v1/auth/password-reset", self.request_password_reset,
              "Forgot the password: mail a reset link (customer)", body=schemas.PasswordResetRequest,
              response=schemas.Accepted, status=202, problems=(429,), tags=["auth"]),
            E("POST", "/v1/auth/password-reset/confirm", self.reset_password,
              "Set a new password with the mailed code (ends every session)", body=schemas.PasswordReset,
              response=schemas.Accepted, problems=(404, 429), tags=["auth"]),
            E("POST", "/v1/auth/refresh", self.refresh, "New tokens for a refresh token",
              body=schemas.Refresh, response=schemas.TokenPair, problems=(401,), tags=["auth"]),
            E("POST", "/v1/auth/logout", self.logout, "Sign out (ends this session; customers and staff)",
              status=204, auth=SIGNED_IN, tags=["auth"]),
            E("GET", "/v1/me", self.read_profile, "Your profile", response=schemas.Profile,
              auth=CUSTOMER, tags=me),
            E("PATCH", "/v1/me", self.change_profile, "Correct your name or phone, or choose the language",
              body=schemas.ProfileChange, response=schemas.Profile, auth=CUSTOMER, tags=me),
            E("POST", "/v1/me/email", self.change_email, "Change your e-mail (after verifying the new one)",
              body=schemas.EmailChange, response=schemas.Accepted, status=202, auth=CUSTOMER,
              problems=(409, 429), tags=me),
            E("GET", "/v1/me/addresses", self.list_addresses, "Your address book",
              response=schemas.AddressList, auth=CUSTOMER, tags=me),
            E("POST", "/v1/me/addresses", self.add_address, "Add a delivery address",
              body=schemas.AddressIn, response=schemas.Address, status=201, auth=CUSTOMER,
              problems=(409,), tags=me),
            E("GET", "/v1/me/addresses/{id}", self.read_address, "One address", params=path,
              response=schemas.Address, auth=CUSTOMER, problems=(404,), tags=me),
            E("PUT", "/v1/me/addresses/{id}", self.replace_address, "Correct an address", params=path,
              body=schemas.AddressIn, response=schemas.Address, auth=CUSTOMER, problems=(404,), tags=me),
            E("DELETE", "/v1/me/addresses/{id}", self.delete_address, "Remove an address", params=path,
              status=204, auth=CUSTOMER, problems=(404,), tags=me),
            E("GET", "/v1/me/sessions", self.list_sessions, "Where you are signed in",
              response=schemas.SessionList, auth=CUSTOMER, tags=me),
            E("DELETE", "/v1/me/sessions/{id}", self.end_session, "End a session", params=path,
              status=204, auth=CUSTOMER, problems=(404,), tags=me),
            E("POST", "/v1/me/close", self.close_account, "Close your account (starts erasure)",
              body=schemas.Reauthentication, response=schemas.Accepted, status=202, auth=CUSTOMER,
              problems=(429,), tags=me),
            E("POST", "/v1/staff/auth/login", self.staff_login, "Sign in (staff)", body=schemas.Login,
              response=schemas.TokenPair, problems=(401, 429), tags=["staff"]),
            E("POST", "/v1/staff/accounts", self.create_staff, "Create a staff account (admin)",
              body=schemas.StaffAccountIn, response=schemas.StaffAccount, status=201, auth=admin,
              problems=(409,), tags=["staff"], audited=()),
            E("POST", "/v1/staff/customer-lookups", self.lookup_customer,
              "Look at a customer's data (support; recorded with its reason)",
              body=schemas.CustomerLookup, response=schemas.CustomerRecord, auth=support,
              problems=(404,), tags=["staff"], audited=CUSTOMER_RECORD),
            E("GET", "/v1/staff/usage-stats", self.usage_stats, "Sign-ins per day and network (admin)",
              query=schemas.UsageQuery, response=schemas.UsageStats, auth=admin, tags=["staff"],
              audited=()),  # counts per day and network, no one in them
        ]


def account_of(principal: Principal) -> uuid.UUID:
    """The account a token of ours was issued to (its subject is always an account id)."""
    return uuid.UUID(principal.subject)


async def create_staff_account(pool: asyncpg.Pool, passwords: domain.Passwords,
                               body: schemas.StaffAccountIn) -> uuid.UUID | None:
    """A new staff account (verified: an admin or an operator vouches for it), or None when
    the address is taken."""
    password_hash = await passwords.hash(body.password)
    async with pool.acquire() as conn:
        return await store.create_account(conn, kind="staff", name=body.name, email=body.email, phone=None,
                                          password_hash=password_hash, roles=sorted(set(body.roles)))
