"""The rules of accounts, with no I/O: passwords, secrets, addresses, networks, throttling,
revoked tokens."""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import ipaddress
import secrets
import uuid

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from shared.revocations import AccessRevoked

MIN_PASSWORD = 10
MAX_PASSWORD = 256


def new_secret() -> tuple[str, bytes]:
    """A random URL-safe secret (refresh token, verification code) and the hash we store."""
    token = secrets.token_urlsafe(32)
    return token, secret_hash(token)


def secret_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def network_of(ip: str | None) -> str | None:
    """The address with its host part dropped (/24 for IPv4, /48 for IPv6): for statistics."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def throttle_key(secret: bytes, kind: str, value: str) -> bytes:
    """A keyed hash: the throttle table never holds an address in the clear."""
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).digest()


def access_revoked(account_id: uuid.UUID, session_id: uuid.UUID | None, at: dt.datetime, reason: str,
                   token_ttl_s: int) -> AccessRevoked:
    """What every service is told when tokens stop: those of the session (None: of every session
    of the account) issued up to ``at``; the last of them expires ``token_ttl_s`` later."""
    return AccessRevoked(account_id=account_id, session_id=session_id, revoked_at=at,
                         expires_at=at + dt.timedelta(seconds=token_ttl_s), reason=reason)


class Passwords:
    """argon2id hashing, in worker threads so the event loop never waits on it, and at most
    ``concurrency`` at once (each hash takes ``memory_kib``)."""

    def __init__(self, time_cost: int, memory_kib: int, parallelism: int, concurrency: int) -> None:
        self.hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib,
                                     parallelism=parallelism, type=Type.ID)
        self._slots = asyncio.Semaphore(concurrency)
        # Checked against when the address is unknown, so that answer takes as long as any.
        self._decoy = self.hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self._verify, stored or self._decoy, password) and stored is not None

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self.hasher.check_needs_rehash(stored)
