"""SQL for the accounts service's tables; nothing else touches them."""
from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

PROFILE_COLUMNS = """a.id, a.name, a.email, a.phone, a.email_verified_at IS NOT NULL AS email_verified,
    a.terms_version, a.terms_accepted_at, a.created_at, a.closed_at, a.language,
    (SELECT v.email FROM email_verifications v WHERE v.account_id = a.id AND v.purpose = 'change'
       AND v.used_at IS NULL AND v.expires_at > now() ORDER BY v.created_at DESC LIMIT 1) AS pending_email"""
ADDRESS_COLUMNS = "id, label, recipient, phone, line1, line2, city, postal_code, country, created_at, updated_at"


async def account_by_email(conn: asyncpg.Connection, kind: str, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM accounts WHERE kind = $1 AND lower(email) = $2", kind, email)


async def account(conn: asyncpg.Connection, account_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM accounts WHERE id = $1{' FOR UPDATE' if lock else ''}", account_id)


async def create_account(conn: asyncpg.Connection, *, kind: str, name: str, email: str,
                         phone: str | None, password_hash: str, roles: list[str] = (),
                         terms_version: str | None = None, language: str | None = None) -> uuid.UUID | None:
    """A new account, its address confirmed (a customer by the mailed code, staff by the admin
    who made it); its id, or None when the address is already taken."""
    return await conn.fetchval(
        """INSERT INTO accounts (id, kind, roles, name, email, phone, password_hash, terms_version,
                                 terms_accepted_at, email_verified_at, language)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $8::text IS NULL THEN NULL ELSE now() END, now(),
                   coalesce($9, 'lv'))
           ON CONFLICT DO NOTHING RETURNING id""",
        uuid.uuid4(), kind, list(roles), name, email, phone, password_hash, terms_version, language)


async def profile(conn: asyncpg.Connection, account_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {PROFILE_COLUMNS} FROM accounts a WHERE a.id = $1 AND a.kind = 'customer' AND a.erased_at IS NULL",
        account_id)


async def update_profile(conn: asyncpg.Connection, account_id: uuid.UUID, name: str | None,
                         phone: str | None, language: str | None = None) -> asyncpg.Record:
    return await conn.fetchrow(
        """UPDATE accounts SET name = coalesce($2, name), phone = coalesce($3, phone),
                               language = coalesce($4, language), updated_at = now()
           WHERE id = $1 RETURNING name, phone, language, updated_at""", account_id, name, phone, language)


async def set_password_hash(conn: asyncpg.Connection, account_id: uuid.UUID, password_hash: str) -> None:
    await conn.execute("UPDATE accounts SET password_hash = $2 WHERE id = $1", account_id, password_hash)


async def add_change_code(conn: asyncpg.Connection, account_id: uuid.UUID, email: str,
                          token_hash: bytes, ttl: int) -> None:
    await conn.execute(
        """INSERT INTO email_verifications (token_hash, account_id, email, purpose, expires_at)
           VALUES ($1, $2, $3, 'change', now() + $4 * interval '1 second')""",
        token_hash, account_id, email, ttl)


async def add_registration(conn: asyncpg.Connection, *, email: str, name: str, phone: str,
                           password_hash: str, terms_version: str, language: str, token_hash: bytes,
                           ttl: int) -> None:
    await conn.execute(
        """INSERT INTO email_verifications (token_hash, email, purpose, name, phone, password_hash,
                                            terms_version, language, expires_at)
           VALUES ($1, $2, 'register', $3, $4, $5, $6, $7, now() + $8 * interval '1 second')""",
        token_hash, email, name, phone, password_hash, terms_version, language, ttl)


async def pending_code(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    """An unused, unexpired e-mail verification code with what it confirms."""
    return await conn.fetchrow(
        """SELECT v.*, a.password_hash AS account_password_hash, a.kind, a.closed_at
           FROM email_verifications v LEFT JOIN accounts a ON a.id = v.account_id
           WHERE v.token_hash = $1 AND v.used_at IS NULL AND v.expires_at > now()""", token_hash)


async def withdraw_change_codes(conn: asyncpg.Connection, account_id: uuid.UUID) -> None:
    await conn.execute(
        """UPDATE email_verifications SET used_at = now()
           WHERE account_id = $1 AND purpose = 'change' AND used_at IS NULL""", account_id)


async def withdraw_registrations(conn: asyncpg.Connection, email: str) -> None:
    await conn.execute(
        """UPDATE email_verifications SET used_at = now()
           WHERE purpose = 'register' AND lower(email) = $1 AND used_at IS NULL""", email)


async def use_code(conn: asyncpg.Connection, token_hash: bytes) -> bool:
    """Spend an unused, unexpired code; False when it is spent or expired meanwhile."""
    return await conn.fetchval(
        """UPDATE email_verifications SET used_at = now()
           WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING true""",
        token_hash) is not None


async def email_taken(conn: asyncpg.Connection, kind: str, email: str, other_than: uuid.UUID) -> bool:
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE kind = $1 AND lower(email) = $2 AND id <> $3)",
        kind, email, other_than)


async def verify_email(conn: asyncpg.Connection, account_id: uuid.UUID, email: str) -> None:
    """The account's address is now ``email``; a reset code mailed to the old one stops working."""
    await conn.execute(
        """UPDATE accounts SET email = $2, email_verified_at = now(), updated_at = now()
           WHERE id = $1""", account_id, email)
    await withdraw_resets(conn, account_id)


async def add_reset(conn: asyncpg.Connection, account_id: uuid.UUID, token_hash: bytes, ttl: int) -> None:
    """A password reset code for the account; the ones it had before stop working."""
    await withdraw_resets(conn, account_id)
    await conn.execute(
        """INSERT INTO password_resets (token_hash, account_id, expires_at)
           VALUES ($1, $2, now() + $3 * interval '1 second')""", token_hash, account_id, ttl)


async def pending_reset(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    """The open customer account an unused, unexpired reset code is for: ``id``, ``email``."""
    return await conn.fetchrow(
        """SELECT a.id, a.email FROM password_resets r JOIN accounts a ON a.id = r.account_id
           WHERE r.token_hash = $1 AND r.used_at IS NULL AND r.expires_at > now()
             AND a.kind = 'customer' AND a.closed_at IS NULL""", token_hash)


async def use_reset(conn: asyncpg.Connection, token_hash: bytes, account_id: uuid.UUID) -> bool:
    """Spend the account's unused, unexpired code, holding the account's row until the
    transaction ends; False when it was spent, withdrawn or expired meanwhile."""
    await account(conn, account_id, lock=True)
    return await conn.fetchval(
        """UPDATE password_resets SET used_at = now()
           WHERE token_hash = $1 AND account_id = $2 AND used_at IS NULL AND expires_at > now()
           RETURNING true""", token_hash, account_id) is not None


async def withdraw_resets(conn: asyncpg.Connection, account_id: uuid.UUID) -> None:
    await conn.execute("UPDATE password_resets SET used_at = now() WHERE account_id = $1 AND used_at IS NULL",
                       account_id)


async def take_attempt(conn: asyncpg.Connection, key: bytes, limit: int, window_s: int) -> dt.datetime | None:
    """Count an attempt against ``key`` unless ``limit`` are counted within the window already;
    then the time of the oldest of them (None: counted). One caller per key at a time."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(encode($1, 'hex'), 0))", key)
    row = await conn.fetchrow(
        """SELECT count(*) AS n, min(at) AS first FROM throttle
           WHERE key = $1 AND at > now() - $2 * interval '1 second'""", key, window_s)
    if row["n"] >= limit:
        return row["first"]
    await conn.execute("INSERT INTO throttle (key) VALUES ($1)", key)
    return None


async def forget_latest_attempt(conn: asyncpg.Connection, key: bytes | None) -> None:
    await conn.execute(
        """DELETE FROM throttle WHERE ctid = (SELECT ctid FROM throttle WHERE key = $1
                                               ORDER BY at DESC LIMIT 1)""", key)


async def clear_attempts(conn: asyncpg.Connection, key: bytes | None) -> None:
    await conn.execute("DELETE FROM throttle WHERE key = $1", key)


async def start_session(conn: asyncpg.Connection, account_id: uuid.UUID, ip: str | None,
                        user_agent: str | None, refresh_hash: bytes, ttl: int,
                        network: str | None) -> uuid.UUID:
    session_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO sessions (id, account_id, ip, user_agent, expires_at)
           VALUES ($1, $2, $3, $4, now() + $5 * interval '1 second')""",
        session_id, account_id, ip, user_agent, ttl)
    await conn.execute("INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)",
                       refresh_hash, session_id)
    if network is not None:
        await conn.execute(
            """INSERT INTO login_stats (day, network, logins) VALUES (current_date, $1, 1)
               ON CONFLICT (day, network) DO UPDATE SET logins = login_stats.logins + 1""", network)
    return session_id


async def refresh_token(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT r.session_id, r.rotated_at, s.account_id, s.ended_at, s.expires_at <= now() AS expired,
                  greatest(extract(epoch FROM s.expires_at - now()), 0)::integer AS expires_in,
                  a.kind, a.roles, a.closed_at
           FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id
           JOIN accounts a ON a.id = s.account_id
           WHERE r.token_hash = $1 FOR UPDATE OF r, s""", token_hash)


async def rotate_refresh(conn: asyncpg.Connection, old_hash: bytes, new_hash: bytes,
                         session_id: uuid.UUID) -> None:
    await conn.execute("UPDATE refresh_tokens SET rotated_at = now() WHERE token_hash = $1", old_hash)
    await conn.execute("INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)",
                       new_hash, session_id)
    await conn.execute("UPDATE sessions SET last_used_at = now() WHERE id = $1", session_id)


async def session_active(conn: asyncpg.Connection | asyncpg.Pool, session_id: uuid.UUID,
                         account_id: uuid.UUID) -> bool:
    return await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM sessions s JOIN accounts a ON a.id = s.account_id
           WHERE s.id = $1 AND s.account_id = $2 AND s.ended_at IS NULL AND s.expires_at > now()
             AND a.closed_at IS NULL)""", session_id, account_id)


async def end_session(conn: asyncpg.Connection, account_id: uuid.UUID, session_id: uuid.UUID,
                      reason: str) -> dt.datetime | None:
    """End an open session: when (None if it had ended already)."""
    return await conn.fetchval(
        """UPDATE sessions SET ended_at = now(), end_reason = $3
           WHERE id = $1 AND account_id = $2 AND ended_at IS NULL RETURNING ended_at""",
        session_id, account_id, reason)


async def end_all_sessions(conn: asyncpg.Connection, account_id: uuid.UUID, reason: str) -> list[asyncpg.Record]:
    """End every open session of the account: each one's ``id``, ``ended_at`` and ``expires_at``."""
    return await conn.fetch(
        """UPDATE sessions SET ended_at = now(), end_reason = $2 WHERE account_id = $1 AND ended_at IS NULL
           RETURNING id, ended_at, expires_at""", account_id, reason)


async def revocations(conn: asyncpg.Connection, within_s: int) -> list[asyncpg.Record]:
    """Sessions ended and accounts closed (or erased) in the last ``within_s`` seconds:
    ``account_id``, ``session_id`` (NULL: the whole account), ``at``, ``reason``."""
    return await conn.fetch(
        """SELECT account_id, id AS session_id, ended_at AS at, coalesce(end_reason, 'ended') AS reason
           FROM sessions WHERE ended_at > now() - $1 * interval '1 second'
           UNION ALL
           SELECT id, NULL, closed_at, CASE WHEN erased_at IS NULL THEN 'account closed' ELSE 'account erased' END
           FROM accounts WHERE closed_at > now() - $1 * interval '1 second'""", within_s)


async def sessions(conn: asyncpg.Connection, account_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, host(ip) AS ip, user_agent, created_at, last_used_at, expires_at, ended_at
           FROM sessions WHERE account_id = $1 ORDER BY created_at DESC""", account_id)


async def session_exists(conn: asyncpg.Connection, account_id: uuid.UUID, session_id: uuid.UUID) -> bool:
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1 AND account_id = $2)",
                               session_id, account_id)


async def addresses(conn: asyncpg.Connection, account_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {ADDRESS_COLUMNS} FROM addresses WHERE account_id = $1 ORDER BY created_at, id", account_id)


async def address(conn: asyncpg.Connection, account_id: uuid.UUID, address_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {ADDRESS_COLUMNS} FROM addresses WHERE id = $1 AND account_id = $2", address_id, account_id)


ADDRESS_FIELDS = ("label", "recipient", "phone", "line1", "line2", "city", "postal_code", "country")


async def add_address(conn: asyncpg.Connection, account_id: uuid.UUID, fields: dict) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO addresses (id, account_id, {', '.join(ADDRESS_FIELDS)})
            VALUES ($1, $2, {', '.join(f'${i}' for i in range(3, 3 + len(ADDRESS_FIELDS)))})
            RETURNING {ADDRESS_COLUMNS}""",
        uuid.uuid4(), account_id, *(fields.get(f) for f in ADDRESS_FIELDS))


async def replace_address(conn: asyncpg.Connection, account_id: uuid.UUID, address_id: uuid.UUID,
                          fields: dict) -> asyncpg.Record | None:
    assignments = ", ".join(f"{f} = ${i}" for i, f in enumerate(ADDRESS_FIELDS, start=3))
    return await conn.fetchrow(
        f"""UPDATE addresses SET {assignments}, updated_at = now() WHERE id = $1 AND account_id = $2
            RETURNING {ADDRESS_COLUMNS}""",
        address_id, account_id, *(fields.get(f) for f in ADDRESS_FIELDS))


async def delete_address(conn: asyncpg.Connection, account_id: uuid.UUID, address_id: uuid.UUID) -> bool:
    return await conn.fetchval("DELETE FROM addresses WHERE id = $1 AND account_id = $2 RETURNING true",
                               address_id, account_id) is not None


async def close_account(conn: asyncpg.Connection, account_id: uuid.UUID) -> asyncpg.Record | None:
    """Close an open account: its closing time and contact details (None if already closed).
    The account's row first, then its codes: the order a password reset takes them in."""
    closed = await conn.fetchrow(
        """UPDATE accounts SET closed_at = now(), updated_at = now() WHERE id = $1 AND closed_at IS NULL
           RETURNING closed_at, email, phone""", account_id)
    await conn.execute(
        "UPDATE email_verifications SET used_at = now() WHERE account_id = $1 AND used_at IS NULL", account_id)
    await withdraw_resets(conn, account_id)
    return closed


async def record_staff_access(conn: asyncpg.Connection, staff_id: uuid.UUID, customer_id: uuid.UUID,
                              reason: str, categories: list[str]) -> asyncpg.Record:
    return await conn.fetchrow(
        """INSERT INTO staff_access (id, staff_id, customer_id, reason, categories)
           VALUES ($1, $2, $3, $4, $5) RETURNING id, at""",
        uuid.uuid4(), staff_id, customer_id, reason, categories)


async def usage(conn: asyncpg.Connection, days: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT day, network::text AS network, logins FROM login_stats
           WHERE day > current_date - $1::integer ORDER BY day DESC, logins DESC, network""", days)
