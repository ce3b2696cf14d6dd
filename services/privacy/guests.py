"""Requests from guests, who bought without an account: a one-time code mailed to the address
proves they hold it before anything happens, and again before an export is downloaded.

Whatever the address, the answer is the same (a code goes to it): no one learns from us
whether an address has orders. A code works once, for ``CODE_TTL``; ``MAX_ATTEMPTS`` wrong
guesses void the address's codes; at most ``MAX_CODES_PER_HOUR`` are mailed to one address.
"""
from __future__ import annotations

import datetime as dt
import hmac
import json
import secrets
import uuid

import asyncpg

from services.privacy import domain, mail

CODE_TTL = dt.timedelta(minutes=30)
MAX_ATTEMPTS = 5
MAX_CODES_PER_HOUR = 3
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read from a mail, typed by hand


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


async def send_code(conn: asyncpg.Connection, email: str, purpose: str, language: str, *,
                    asked: dict | None = None, request_id: uuid.UUID | None = None) -> None:
    """Mail a code to ``email`` (unless enough went there this hour: the answer is the same)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('guest-code:' || $1))", email)  # one at a time
    recent = await conn.fetchval(
        "SELECT count(*) FROM guest_codes WHERE email = $1 AND created_at > now() - interval '1 hour'", email)
    if recent >= MAX_CODES_PER_HOUR:
        return
    code = new_code()
    await conn.execute(
        """INSERT INTO guest_codes (id, email, code_hash, purpose, asked, request_id, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, now() + $7::interval)""",
        uuid.uuid4(), email, domain.token_hash(code), purpose, json.dumps(asked) if asked else None, request_id,
        CODE_TTL)
    await mail.code(conn, email, code, purpose, language)


async def use_code(conn: asyncpg.Connection, email: str, code: str, purpose: str,
                   request_id: uuid.UUID | None = None) -> asyncpg.Record | None:
    """The code's row, used up, if ``code`` is a live one of ``email`` for ``purpose``; a wrong
    guess counts against every live code of the address."""
    rows = await conn.fetch(
        """SELECT id, code_hash, asked, request_id FROM guest_codes WHERE email = $1 AND purpose = $2
             AND used_at IS NULL AND expires_at > now() AND attempts < $3
             AND ($4::uuid IS NULL OR request_id = $4) FOR UPDATE""", email, purpose, MAX_ATTEMPTS, request_id)
    wanted = domain.token_hash(code.strip().upper())
    for row in rows:
        if hmac.compare_digest(row["code_hash"], wanted):
            await conn.execute("UPDATE guest_codes SET used_at = now() WHERE id = $1", row["id"])
            return row
    await conn.execute("UPDATE guest_codes SET attempts = attempts + 1 WHERE id = ANY($1)", [r["id"] for r in rows])
    return None
