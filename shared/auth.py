"""Verifying the access tokens the accounts service issues: one small verifier for every service.

Tokens are JWTs signed with the accounts service's private key (EdDSA, ES256 or RS256); every
service verifies them with the public keys accounts publishes as a JWKS document, so no
secret is shared. Claims: ``sub`` (the account id), ``kind`` (``customer`` or ``staff``),
``roles`` (staff: ``support``, ``accounting``, ``marketing``, ``admin``), ``token_use`` (``access``: other
tokens accounts signs, such as refresh tokens, are refused here), ``sid`` (the session), ``iss``,
``aud``, ``iat``, ``exp``. A verifier given ``revocations`` also refuses the tokens of ended
sessions and closed accounts (``shared.revocations``), from memory.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import jwt
from aiohttp import web

from shared.http import Access, HTTPProblem
from shared.revocations import Revocations

ISSUER = "veikals-accounts"
AUDIENCE = "veikals"
ALGORITHMS = ["EdDSA", "ES256", "RS256"]
STAFF_ROLES = frozenset({"support", "accounting", "marketing", "admin"})
MIN_REFRESH_INTERVAL = 30.0  # an unknown kid makes us re-read the keys at most this often


@dataclass(frozen=True)
class Principal:
    subject: str
    kind: str
    roles: frozenset[str]
    session: str | None = None  # the login session the token was issued for (``sid``)


class TokenVerifier:
    """Verifies access tokens against the JWKS at ``jwks_url``; the accounts service, which
    holds the keys itself, passes them as ``keys`` instead. With ``revocations`` (every service
    but accounts, which checks the session in its database), a revoked token is refused too."""

    def __init__(self, jwks_url: str, *, cache_seconds: float = 300,
                 keys: jwt.PyJWKSet | None = None, revocations: Revocations | None = None) -> None:
        self.jwks_url = jwks_url
        self.revocations = revocations
        self.cache_seconds = cache_seconds
        self._static = keys
        self._keys: jwt.PyJWKSet | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def _key_set(self, refresh: bool = False) -> jwt.PyJWKSet:
        if self._static is not None:
            return self._static
        fetched_at = self._fetched_at
        age = time.monotonic() - fetched_at
        if self._keys is not None and age < (MIN_REFRESH_INTERVAL if refresh else self.cache_seconds):
            return self._keys
        async with self._lock:
            if self._keys is None or self._fetched_at == fetched_at:  # nobody fetched meanwhile
                timeout = aiohttp.ClientTimeout(total=5)
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    async with session.get(self.jwks_url) as response:
                        response.raise_for_status()
                        self._keys = jwt.PyJWKSet.from_dict(await response.json(content_type=None))
                self._fetched_at = time.monotonic()
            return self._keys

    async def verify(self, token: str) -> Principal:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as exc:
            raise HTTPProblem(401, "Invalid token", str(exc))
        try:
            keys = await self._key_set()
            if kid not in {k.key_id for k in keys.keys}:
                keys = await self._key_set(refresh=True)  # accounts may have rotated its key
        except (aiohttp.ClientError, asyncio.TimeoutError, jwt.PyJWKSetError, ValueError) as exc:
            raise HTTPProblem(503, "Token keys unavailable",
                              f"The accounts service's keys could not be read: {type(exc).__name__}")
        key = next((k for k in keys.keys if k.key_id == kid), None)
        if key is None:
            raise HTTPProblem(401, "Invalid token", "The token is signed by an unknown key.")
        try:
            claims = jwt.decode(token, key, algorithms=ALGORITHMS, audience=AUDIENCE,
                                issuer=ISSUER, options={"require": ["exp", "sub", "iss", "aud"]})
        except jwt.InvalidTokenError as exc:
            raise HTTPProblem(401, "Invalid token", str(exc))
        if claims.get("token_use") != "access":
            raise HTTPProblem(401, "Invalid token", "This is not an access token.")
        sid = claims.get("sid")
        if self.revocations is not None and self.revocations.refuses(
                str(claims["sub"]), None if sid is None else str(sid), claims.get("iat")):
            raise HTTPProblem(401, "Session ended", "Sign in again.")
        return Principal(subject=str(claims["sub"]), kind=str(claims.get("kind", "")),
                         roles=frozenset(claims.get("roles") or ()),
                         session=str(sid) if sid is not None else None)


async def authenticate(request: web.Request, verifier: TokenVerifier) -> Principal:
    """Whoever sent the request's bearer token (401 without a valid one)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise HTTPProblem(401, "Authentication required",
                          "Send an access token as 'Authorization: Bearer <token>'.")
    if not token.isascii():  # a JWT is ASCII; anything else cannot be one of ours
        raise HTTPProblem(401, "Invalid token", "The token is not a JWT.")
    return await verifier.verify(token)


def authorize(principal: Principal, access: Access) -> Principal:
    """``principal`` if it may do what ``access`` allows (403 otherwise). A customer endpoint
    refuses staff tokens: staff act on customers through the recorded staff routes, never as
    them."""
    if access.kind == "any":
        return principal
    if principal.kind != access.kind:
        raise HTTPProblem(403, "Not allowed", access.describe())
    if access.kind == "staff" and not principal.roles & (access.roles or STAFF_ROLES):
        raise HTTPProblem(403, "Not allowed", access.describe())
    return principal


async def check_token(request: web.Request, verifier: TokenVerifier, access: Access) -> Principal:
    """The caller, authenticated by its token and authorised for ``access``."""
    return authorize(await authenticate(request, verifier), access)
