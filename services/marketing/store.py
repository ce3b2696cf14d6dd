"""SQL for the marketing service's tables; nothing else touches them."""
from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg

from shared.db import count  # noqa: F401 (the marketing modules count rows through store)

PERSON_COLUMNS = "id, customer_id, email, email_key, phone, phone_key, name, language, created_at, closed_at"


# --- people -------------------------------------------------------------------------------------

async def person_of_customer(conn: asyncpg.Connection, customer_id: uuid.UUID, *,
                             lock: bool = False) -> asyncpg.Record | None:
    """The customer's row; ``lock`` takes it for a change of their consents (a campaign's
    sender holds it shared while it sends them a message)."""
    return await conn.fetchrow(f"SELECT {PERSON_COLUMNS} FROM people WHERE customer_id = $1"
                               + (" FOR UPDATE" if lock else ""), customer_id)


async def person(conn: asyncpg.Connection, person_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {PERSON_COLUMNS} FROM people WHERE id = $1"
                               + (" FOR UPDATE" if lock else ""), person_id)


async def guest(conn: asyncpg.Connection, email: str, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {PERSON_COLUMNS} FROM people WHERE customer_id IS NULL AND email = $1"
                               + (" FOR UPDATE" if lock else ""), email)


async def add_customer(conn: asyncpg.Connection, customer_id: uuid.UUID, contact: dict[str, Any]) -> asyncpg.Record:
    """The customer's row, made on their first consent (another request may make it first)."""
    await conn.execute(
        """INSERT INTO people (id, customer_id, email, email_key, phone, phone_key, name, language)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (customer_id) DO NOTHING""",
        uuid.uuid4(), customer_id, contact.get("email"), contact.get("email_key"), contact.get("phone"),
        contact.get("phone_key"), contact.get("name"), contact.get("language", "lv"))
    found = await person_of_customer(conn, customer_id, lock=True)
    assert found is not None
    return found


async def add_guest(conn: asyncpg.Connection, email: str, email_key: bytes, language: str) -> asyncpg.Record:
    await conn.execute(
        """INSERT INTO people (id, email, email_key, language) VALUES ($1, $2, $3, $4)
           ON CONFLICT (email) WHERE customer_id IS NULL DO NOTHING""", uuid.uuid4(), email, email_key, language)
    found = await guest(conn, email, lock=True)
    assert found is not None
    return found


async def set_language(conn: asyncpg.Connection, person_id: uuid.UUID, language: str) -> asyncpg.Record:
    return await conn.fetchrow(f"UPDATE people SET language = $2 WHERE id = $1 RETURNING {PERSON_COLUMNS}",
                               person_id, language)


async def update_contact(conn: asyncpg.Connection, customer_id: uuid.UUID, **columns: Any) -> asyncpg.Record | None:
    """Change the customer's e-mail address, phone or name (as accounts tells); their row, if any."""
    assignments = ", ".join(f"{c} = ${i}" for i, c in enumerate(columns, start=2))
    return await conn.fetchrow(f"UPDATE people SET {assignments} WHERE customer_id = $1 RETURNING {PERSON_COLUMNS}",
                               customer_id, *columns.values())


async def close(conn: asyncpg.Connection, person_id: uuid.UUID) -> None:
    await conn.execute("UPDATE people SET closed_at = coalesce(closed_at, now()) WHERE id = $1", person_id)


# --- the ledger ---------------------------------------------------------------------------------

async def wording(conn: asyncpg.Connection, version: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT version, channel, purpose, text_lv, text_en, published_at FROM consent_wordings WHERE version = $1",
        version)


async def wordings(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("""SELECT version, channel, purpose, text_lv, text_en, published_at
                               FROM consent_wordings ORDER BY purpose, channel NULLS FIRST, published_at DESC""")


async def current(conn: asyncpg.Connection, person_id: uuid.UUID) -> list[asyncpg.Record]:
    """The newest entry of each purpose and channel: the consent as it stands."""
    return await conn.fetch(
        """SELECT DISTINCT ON (purpose, channel) purpose, channel, granted, source, wording_version, address, at
           FROM consent_entries WHERE person_id = $1 ORDER BY purpose, channel, id DESC""", person_id)


async def granted(conn: asyncpg.Connection, person_id: uuid.UUID, purpose: str, channel: str | None) -> bool:
    return bool(await conn.fetchval(
        """SELECT granted FROM consent_entries WHERE person_id = $1 AND purpose = $2
             AND channel IS NOT DISTINCT FROM $3 ORDER BY id DESC LIMIT 1""", person_id, purpose, channel))


async def record(conn: asyncpg.Connection, person_id: uuid.UUID, purpose: str, channel: str | None, granted: bool,
                 source: str, *, wording_version: str | None = None, address: str | None = None,
                 staff_id: uuid.UUID | None = None) -> asyncpg.Record:
    return await conn.fetchrow(
        """INSERT INTO consent_entries (person_id, channel, purpose, granted, source, wording_version, address, staff_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, at""",
        person_id, channel, purpose, granted, source, wording_version, address, staff_id)


async def ledger(conn: asyncpg.Connection, person_id: uuid.UUID, limit: int = 200) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, purpose, channel, granted, source, wording_version, address, staff_id IS NOT NULL AS by_staff, at
           FROM consent_entries WHERE person_id = $1 ORDER BY id DESC LIMIT $2""", person_id, limit)


async def add_confirmation(conn: asyncpg.Connection, token_hash: bytes, person_id: uuid.UUID, email: str,
                           wording_version: str, source: str, staff_id: uuid.UUID | None, ttl: dt.timedelta) -> None:
    await conn.execute(
        """INSERT INTO consent_confirmations (token_hash, person_id, email, wording_version, source, staff_id, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, now() + $7::interval)""",
        token_hash, person_id, email, wording_version, source, staff_id, ttl)


async def recently_asked(conn: asyncpg.Connection, person_id: uuid.UUID, within: dt.timedelta) -> bool:
    return await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM consent_confirmations WHERE person_id = $1 AND expires_at > now()
                          AND requested_at > now() - $2::interval)""", person_id, within)


async def take_confirmation(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    """The unexpired confirmation the token is for, used up (None when there is none)."""
    return await conn.fetchrow(
        """DELETE FROM consent_confirmations WHERE token_hash = $1 AND expires_at > now()
           RETURNING person_id, email, wording_version, source, staff_id""", token_hash)


async def pending_confirmations(conn: asyncpg.Connection, person_id: uuid.UUID) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM consent_confirmations WHERE person_id = $1 AND expires_at > now()", person_id)


async def drop_confirmations(conn: asyncpg.Connection, person_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM consent_confirmations WHERE person_id = $1", person_id)


async def objections(conn: asyncpg.Connection, person_id: uuid.UUID) -> list[str]:
    return [r["purpose"] for r in await conn.fetch(
        "SELECT purpose FROM objections WHERE person_id = $1 ORDER BY purpose", person_id)]


async def object_to(conn: asyncpg.Connection, person_id: uuid.UUID, purpose: str, source: str) -> bool:
    """Record the objection; False when it stood already."""
    return await conn.fetchval(
        """INSERT INTO objections (person_id, purpose, source) VALUES ($1, $2, $3)
           ON CONFLICT (person_id, purpose) DO NOTHING RETURNING true""", person_id, purpose, source) or False


async def lift_objection(conn: asyncpg.Connection, person_id: uuid.UUID, purpose: str) -> None:
    await conn.execute("DELETE FROM objections WHERE person_id = $1 AND purpose = $2", person_id, purpose)


async def unsuppress(conn: asyncpg.Connection, key: bytes | None) -> None:
    if key is not None:
        await conn.execute("DELETE FROM suppressions WHERE key = $1", key)


async def suppress(conn: asyncpg.Connection, keys: list[tuple[bytes, str]]) -> None:
    await conn.execute(
        """INSERT INTO suppressions (key, kind) SELECT * FROM unnest($1::bytea[], $2::text[])
           ON CONFLICT (key) DO UPDATE SET suppressed_at = now()""", [k for k, _ in keys], [kind for _, kind in keys])


async def suppressed(conn: asyncpg.Connection, key: bytes | None) -> bool:
    return key is not None and await conn.fetchval("SELECT EXISTS (SELECT 1 FROM suppressions WHERE key = $1)", key)


# --- profiles -----------------------------------------------------------------------------------

async def may_profile(conn: asyncpg.Connection, customer_id: uuid.UUID) -> uuid.UUID | None:
    """The customer's row, held until the transaction ends, if they consent to profiling and
    have not objected (an objection waits for it, then deletes what it wrote)."""
    return await conn.fetchval(
        """SELECT p.id FROM people p WHERE p.customer_id = $1 AND p.closed_at IS NULL
             AND (SELECT granted FROM consent_entries e WHERE e.person_id = p.id AND e.purpose = 'profiling'
                  ORDER BY e.id DESC LIMIT 1)
             AND NOT EXISTS (SELECT 1 FROM objections o WHERE o.person_id = p.id AND o.purpose = 'profiling')
           FOR SHARE""", customer_id)


async def add_to_profile(conn: asyncpg.Connection, person_id: uuid.UUID, gross_cents: int, currency: str,
                         at: dt.datetime, lines: list[tuple[str, int, int]]) -> bool:
    """Count a paid order in the profile; False when it is in another currency than the profile's."""
    added = await conn.fetchval(
        """INSERT INTO profiles (person_id, orders, spend_cents, currency, first_order_at, last_order_at)
           VALUES ($1, 1, $2, $3, $4, $4)
           ON CONFLICT (person_id) DO UPDATE SET orders = profiles.orders + 1,
               spend_cents = profiles.spend_cents + EXCLUDED.spend_cents,
               first_order_at = least(profiles.first_order_at, EXCLUDED.first_order_at),
               last_order_at = greatest(profiles.last_order_at, EXCLUDED.last_order_at), updated_at = now()
           WHERE profiles.currency = EXCLUDED.currency RETURNING true""", person_id, gross_cents, currency, at)
    if not added:
        return False
    await conn.execute(
        """INSERT INTO profile_categories (person_id, category, items, spend_cents)
           SELECT $1, category, sum(items), sum(spend) FROM unnest($2::text[], $3::int[], $4::bigint[])
                  AS l(category, items, spend) GROUP BY category
           ON CONFLICT (person_id, category) DO UPDATE SET items = profile_categories.items + EXCLUDED.items,
               spend_cents = profile_categories.spend_cents + EXCLUDED.spend_cents""",
        person_id, [c for c, _, _ in lines], [n for _, n, _ in lines], [s for _, _, s in lines])
    return True


async def profile(conn: asyncpg.Connection, person_id: uuid.UUID) -> tuple[asyncpg.Record | None, list[asyncpg.Record]]:
    row = await conn.fetchrow(
        "SELECT orders, spend_cents, currency, first_order_at, last_order_at FROM profiles WHERE person_id = $1",
        person_id)
    categories = await conn.fetch(
        """SELECT category, items, spend_cents FROM profile_categories WHERE person_id = $1
           ORDER BY spend_cents DESC, category""", person_id)
    return row, categories


async def delete_profile(conn: asyncpg.Connection, person_id: uuid.UUID) -> bool:
    return count(await conn.execute("DELETE FROM profiles WHERE person_id = $1", person_id)) > 0


# --- campaigns ----------------------------------------------------------------------------------

CAMPAIGN_COLUMNS = """c.id, c.name, c.channel, c.subject_lv, c.subject_en, c.body_lv, c.body_en, c.audience,
    c.status, c.created_at, c.started_at, c.finished_at,
    (SELECT count(*) FROM campaign_deliveries d WHERE d.campaign_id = c.id) AS recipients,
    (SELECT count(*) FROM campaign_deliveries d WHERE d.campaign_id = c.id AND d.status = 'pending') AS pending,
    (SELECT count(*) FROM campaign_deliveries d WHERE d.campaign_id = c.id AND d.status = 'sent') AS sent,
    (SELECT count(*) FROM campaign_deliveries d WHERE d.campaign_id = c.id AND d.status = 'skipped') AS skipped,
    (SELECT count(*) FROM campaign_deliveries d WHERE d.campaign_id = c.id AND d.status = 'failed') AS failed"""


async def add_campaign(conn: asyncpg.Connection, campaign: dict[str, Any], staff_id: uuid.UUID) -> uuid.UUID:
    campaign_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO campaigns (id, name, channel, subject_lv, subject_en, body_lv, body_en, audience, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        campaign_id, campaign["name"], campaign["channel"], campaign["subject_lv"], campaign["subject_en"],
        campaign["body_lv"], campaign["body_en"], json.dumps(campaign["audience"]), staff_id)
    return campaign_id


async def campaign(conn: asyncpg.Connection, campaign_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    if lock:
        await conn.execute("SELECT 1 FROM campaigns WHERE id = $1 FOR UPDATE", campaign_id)
    return await conn.fetchrow(f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns c WHERE c.id = $1", campaign_id)


async def campaigns(conn: asyncpg.Connection, after: uuid.UUID | None, limit: int) -> list[asyncpg.Record]:
    """Newest first, from the one after ``after``."""
    return await conn.fetch(
        f"""SELECT {CAMPAIGN_COLUMNS} FROM campaigns c
            WHERE ($1::uuid IS NULL OR (c.created_at, c.id) < (SELECT created_at, id FROM campaigns WHERE id = $1))
            ORDER BY c.created_at DESC, c.id DESC LIMIT $2""", after, limit)


# Whom a message of a campaign on channel $2 may reach now: consent on that channel, no
# objection, the account open, an address to send to, and the address not suppressed after
# an erasure. The sender asks it again of each recipient just before sending.
MAY_RECEIVE = """p.closed_at IS NULL
    AND (CASE WHEN $2 = 'email' THEN p.email ELSE p.phone END) IS NOT NULL
    AND (SELECT e.granted FROM consent_entries e WHERE e.person_id = p.id AND e.purpose = 'direct_marketing'
         AND e.channel = $2 ORDER BY e.id DESC LIMIT 1)
    AND NOT EXISTS (SELECT 1 FROM objections o WHERE o.person_id = p.id AND o.purpose = 'direct_marketing')
    AND NOT EXISTS (SELECT 1 FROM suppressions s
                    WHERE s.key = (CASE WHEN $2 = 'email' THEN p.email_key ELSE p.phone_key END))"""


async def start_campaign(conn: asyncpg.Connection, campaign_id: uuid.UUID, channel: str,
                         audience: dict[str, Any]) -> int:
    """Choose the recipients (one per address: a customer before a guest of the same address)
    and mark the campaign sending; how many."""
    segment, args = [], []
    if audience.get("category") is not None:
        args.append(audience["category"])
        segment.append(f"EXISTS (SELECT 1 FROM profile_categories pc WHERE pc.person_id = p.id AND pc.category = ${len(args) + 2})")
    for key, condition in (("min_orders", "pr.orders >= ${}"), ("min_spend_cents", "pr.spend_cents >= ${}"),
                           ("active_within_days", "pr.last_order_at >= now() - make_interval(days => ${})")):
        if audience.get(key) is not None:
            args.append(audience[key])
            segment.append(f"EXISTS (SELECT 1 FROM profiles pr WHERE pr.person_id = p.id AND {condition.format(len(args) + 2)})")
    where = " AND ".join([MAY_RECEIVE, *segment])
    address = "p.email" if channel == "email" else "p.phone"
    added = await conn.execute(
        f"""INSERT INTO campaign_deliveries (campaign_id, person_id, id)
            SELECT $1, id, gen_random_uuid() FROM (
                SELECT DISTINCT ON ({address}) p.id FROM people p WHERE {where}
                ORDER BY {address}, p.customer_id IS NULL, p.created_at) chosen""",
        campaign_id, channel, *args)
    await conn.execute("UPDATE campaigns SET status = 'sending', started_at = now() WHERE id = $1", campaign_id)
    await conn.execute("SELECT pg_notify('veikals_marketing_campaigns', '')")
    return count(added)


async def cancel_campaign(conn: asyncpg.Connection, campaign_id: uuid.UUID) -> None:
    await conn.execute("UPDATE campaigns SET status = 'cancelled', finished_at = now() WHERE id = $1", campaign_id)
    await conn.execute(
        """UPDATE campaign_deliveries SET status = 'skipped', skipped_reason = 'campaign cancelled', lease_until = NULL
           WHERE campaign_id = $1 AND status = 'pending'""", campaign_id)


async def sending_campaigns(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, channel, subject_lv, subject_en, body_lv, body_en, name FROM campaigns
           WHERE status = 'sending' ORDER BY started_at""")


async def claim_deliveries(conn: asyncpg.Connection, campaign_id: uuid.UUID, limit: int,
                           lease: dt.timedelta) -> list[asyncpg.Record]:
    """Up to ``limit`` rows due, leased to the caller, in the order they are to go."""
    return sorted(await conn.fetch(
        """UPDATE campaign_deliveries SET lease_until = now() + $3::interval, attempts = attempts + 1
           WHERE campaign_id = $1 AND person_id IN (
               SELECT person_id FROM campaign_deliveries WHERE campaign_id = $1 AND status = 'pending'
                 AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until < now())
               ORDER BY next_attempt_at, person_id LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING person_id, id, attempts""", campaign_id, limit, lease), key=lambda r: r["person_id"])


async def recipient(conn: asyncpg.Connection, campaign_id: uuid.UUID, channel: str,
                    person_id: uuid.UUID) -> asyncpg.Record | None:
    """The recipient's address and language if the campaign is still sending and they may
    receive it now; their row is held (shared) until the message is sent and marked, so a
    withdrawal waits for this one message and stops every later one."""
    return await conn.fetchrow(
        f"""SELECT p.email, p.phone, p.language FROM people p
            WHERE p.id = $3 AND {MAY_RECEIVE}
              AND EXISTS (SELECT 1 FROM campaigns c WHERE c.id = $1 AND c.status = 'sending')
            FOR SHARE OF p""", campaign_id, channel, person_id)


async def delivered(conn: asyncpg.Connection, campaign_id: uuid.UUID, person_id: uuid.UUID, status: str, *,
                    reason: str | None = None) -> None:
    await conn.execute(
        """UPDATE campaign_deliveries SET status = $3, lease_until = NULL,
               sent_at = CASE WHEN $3 = 'sent' THEN now() END, skipped_reason = $4, last_error = NULL
           WHERE campaign_id = $1 AND person_id = $2""", campaign_id, person_id, status, reason)


async def retry_later(conn: asyncpg.Connection, campaign_id: uuid.UUID, person_id: uuid.UUID, error: str,
                      give_up: bool) -> None:
    await conn.execute(
        """UPDATE campaign_deliveries SET lease_until = NULL, last_error = $3,
               status = CASE WHEN $4 THEN 'failed' ELSE status END,
               next_attempt_at = now() + least(interval '10 seconds' * power(2, attempts), interval '30 minutes')
           WHERE campaign_id = $1 AND person_id = $2""", campaign_id, person_id, error, give_up)


async def finish_if_done(conn: asyncpg.Connection, campaign_id: uuid.UUID) -> bool:
    return count(await conn.execute(
        """UPDATE campaigns SET status = 'sent', finished_at = now() WHERE id = $1 AND status = 'sending'
             AND NOT EXISTS (SELECT 1 FROM campaign_deliveries WHERE campaign_id = $1 AND status = 'pending')""",
        campaign_id)) > 0


async def sms_delivered(conn: asyncpg.Connection, message_id: uuid.UUID) -> bool:
    return count(await conn.execute(
        "UPDATE campaign_deliveries SET delivered_at = coalesce(delivered_at, now()) WHERE id = $1",
        message_id)) > 0


# --- staff --------------------------------------------------------------------------------------

async def record_access(conn: asyncpg.Connection, staff_id: uuid.UUID, person_id: uuid.UUID | None,
                        customer_id: uuid.UUID | None, reason: str, categories: list[str]) -> asyncpg.Record:
    return await conn.fetchrow(
        """INSERT INTO staff_access (id, staff_id, person_id, customer_id, reason, categories)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, at""",
        uuid.uuid4(), staff_id, person_id, customer_id, reason, categories)


async def confirmation(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    """The unexpired confirmation a token is for, left in place (the page that asks to confirm)."""
    return await conn.fetchrow(
        """SELECT c.person_id, p.language FROM consent_confirmations c JOIN people p ON p.id = c.person_id
           WHERE c.token_hash = $1 AND c.expires_at > now()""", token_hash)


async def people_of(conn: asyncpg.Connection, customer_ids: list[uuid.UUID], emails: list[str], phones: list[str],
                    *, lock: bool = False) -> list[asyncpg.Record]:
    """The customers' rows, and the guest rows of these addresses and numbers (or of the
    customers' own addresses)."""
    own = await conn.fetch("SELECT email FROM people WHERE customer_id = ANY($1) AND email IS NOT NULL", customer_ids)
    return await conn.fetch(
        f"""SELECT {PERSON_COLUMNS} FROM people WHERE customer_id = ANY($1)
            OR (customer_id IS NULL AND (email = ANY($2) OR phone = ANY($3))) ORDER BY id"""
        + (" FOR UPDATE" if lock else ""), customer_ids, sorted({*emails, *(r["email"] for r in own)}), sorted(phones))
