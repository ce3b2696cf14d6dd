"""The consent ledger's operations (P21, P28, P29), each in the caller's transaction.

Every change appends to ``consent_entries`` and tells others (``consent_changed``); the
current state is each purpose's newest entry. A person's row is locked for a change, and a
campaign's sender holds it shared while it sends them a message: a withdrawal waits for that
one message and stops every later one. A new e-mail consent is only asked for here; it takes
effect when the link we mail is followed and confirmed (double opt-in).
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.marketing import domain, schemas, store
from services.marketing.settings import MarketingSettings
from shared import mail
from shared.contracts.privacy import DataSubject
from shared.outbox import Outbox
from shared.subjects import Subject

MAIL_CHANNEL = "veikals_marketing_mail"
RESEND_AFTER = dt.timedelta(minutes=10)


class UnknownWording(LookupError):
    """No wording of that version for that consent."""


@dataclass
class Ledger:
    outbox: Outbox
    settings: MarketingSettings

    @property
    def suppression_key(self) -> bytes:
        return self.settings.suppression_key.get_secret_value().encode()

    def keys(self, email: str | None, phone: str | None) -> dict[str, bytes | None]:
        return {"email_key": email and domain.keyed(self.suppression_key, "email", email),
                "phone_key": phone and domain.keyed(self.suppression_key, "phone", phone)}

    async def customer(self, conn: asyncpg.Connection, customer_id: uuid.UUID,
                       contact: dict[str, Any] | None, language: str | None = None) -> asyncpg.Record:
        """The customer's row, locked; made from ``contact`` (accounts' details) the first time.
        Its language is ``language`` when given (the one the customer was just shown the
        wording in), else the account's."""
        person = await store.person_of_customer(conn, customer_id, lock=True)
        if person is not None and person["email"] is None and contact:  # made by an objection, unknown then
            email = contact.get("email") and contact["email"].strip().lower()
            told = {"language": contact["language"]} if contact.get("language") else {}
            person = await store.update_contact(conn, customer_id, email=email, phone=contact.get("phone"),
                                                name=contact.get("name"), **told, **self.keys(email, contact.get("phone")))
        if person is None:
            details = dict(contact or {})
            email = details.get("email") and details["email"].strip().lower()
            person = await store.add_customer(conn, customer_id, {
                "email": email, "phone": details.get("phone"), "name": details.get("name"),
                "language": language or details.get("language") or "lv", **self.keys(email, details.get("phone"))})
        elif language is not None and person["language"] != language:
            person = await store.set_language(conn, person["id"], language)
        return person

    async def check_wording(self, conn: asyncpg.Connection, version: str, purpose: str, channel: str | None) -> None:
        found = await store.wording(conn, version)
        if found is None or (found["purpose"], found["channel"]) != (purpose, channel):
            raise UnknownWording(version)

    async def change(self, conn: asyncpg.Connection, person: asyncpg.Record, purpose: str, channel: str | None,
                     granted: bool, source: str, *, wording_version: str | None = None,
                     staff_id: uuid.UUID | None = None) -> bool:
        """Append the entry unless the consent stands so already; whether it changed."""
        if await store.granted(conn, person["id"], purpose, channel) == granted:
            return False
        address = person["email"] if channel == "email" else person["phone"] if channel == "sms" else None
        entry = await store.record(conn, person["id"], purpose, channel, granted, source,
                                   wording_version=wording_version, address=address, staff_id=staff_id)
        if not granted and purpose == "profiling":
            await store.delete_profile(conn, person["id"])  # processing on consent ends with it
        subject = Subject.customer(person["customer_id"]) if person["customer_id"] else (
            Subject.email(person["email"]) if person["email"] else None)
        await self.outbox.add(conn, "consent_changed", schemas.ConsentChanged(
            person_id=person["id"], customer_id=person["customer_id"], purpose=purpose, channel=channel,
            granted=granted, source=source, at=entry["at"]).model_dump(mode="json"), subject=subject)
        return True

    async def grant(self, conn: asyncpg.Connection, person: asyncpg.Record, purpose: str, channel: str | None,
                    wording_version: str, source: str, staff_id: uuid.UUID | None = None) -> str:
        """Grant it, or (e-mail) mail the link that will: ``granted``, ``unchanged``,
        ``confirmation_sent``. Raises UnknownWording, or LookupError when there is no address."""
        await self.check_wording(conn, wording_version, purpose, channel)
        if channel == "email":
            if not person["email"]:
                raise LookupError("no e-mail address")
            if await store.granted(conn, person["id"], purpose, channel) and not await store.suppressed(
                    conn, person["email_key"]):
                return "unchanged"
            # One link in ten minutes: a public form must not become a way to flood an inbox.
            if not await store.recently_asked(conn, person["id"], RESEND_AFTER):
                await self.ask_confirmation(conn, person, wording_version, source, staff_id)
            return "confirmation_sent"
        if channel == "sms":
            if not person["phone"]:
                raise LookupError("no phone number")
            await store.unsuppress(conn, person["phone_key"])  # a fresh consent, given now
        await store.lift_objection(conn, person["id"], purpose)  # the holder's own new consent
        changed = await self.change(conn, person, purpose, channel, True, source,
                                    wording_version=wording_version, staff_id=staff_id)
        return "granted" if changed else "unchanged"

    async def ask_confirmation(self, conn: asyncpg.Connection, person: asyncpg.Record, wording_version: str,
                               source: str, staff_id: uuid.UUID | None) -> None:
        token, token_hash = domain.confirmation_token()
        s = self.settings
        await store.add_confirmation(conn, token_hash, person["id"], person["email"], wording_version, source,
                                     staff_id, dt.timedelta(seconds=s.confirmation_ttl_s))
        wording = await store.wording(conn, wording_version)
        language = person["language"]
        subject, body = domain.confirmation_mail(s.public_url, token, wording[f"text_{language}"], language)
        await mail.queue_mail(conn, MAIL_CHANNEL, person["email"], subject, body, owner=("person_id", person["id"]))

    async def confirm(self, conn: asyncpg.Connection, token: str) -> bool:
        """The double opt-in: the e-mail consent the token asked for takes effect (False when
        the token is unknown, used or expired)."""
        pending = await store.take_confirmation(conn, domain.token_hash(token))
        if pending is None:
            return False
        person = await store.person(conn, pending["person_id"], lock=True)
        if person is None or person["email"] != pending["email"] or person["closed_at"] is not None:
            return False  # the address changed since, or the account closed: it confirms nothing
        await store.unsuppress(conn, person["email_key"])  # a fresh consent, confirmed now
        await store.lift_objection(conn, person["id"], "direct_marketing")
        await self.change(conn, person, "direct_marketing", "email", True, "double_opt_in",
                          wording_version=pending["wording_version"], staff_id=pending["staff_id"])
        return True

    async def withdraw(self, conn: asyncpg.Connection, person: asyncpg.Record, purpose: str, channel: str | None,
                       source: str, staff_id: uuid.UUID | None = None) -> bool:
        if channel == "email" or (purpose == "direct_marketing" and channel is None):
            await store.drop_confirmations(conn, person["id"])
        return await self.change(conn, person, purpose, channel, False, source, staff_id=staff_id)

    async def object(self, conn: asyncpg.Connection, person: asyncpg.Record, purpose: str, source: str) -> None:
        """Art. 21: processing for ``purpose`` stops now; for profiling the profile goes and
        later orders do not rebuild it."""
        await store.object_to(conn, person["id"], purpose, source)
        if purpose == "profiling":
            await self.withdraw(conn, person, "profiling", None, "objection")
            await store.delete_profile(conn, person["id"])
        else:
            for channel in domain.CHANNELS:
                await self.withdraw(conn, person, "direct_marketing", channel, "objection")

    async def close(self, conn: asyncpg.Connection, person: asyncpg.Record, source: str) -> None:
        """Everything withdrawn (an account closed): nothing more is sent or analysed."""
        for channel in domain.CHANNELS:
            await self.withdraw(conn, person, "direct_marketing", channel, source)
        await self.withdraw(conn, person, "profiling", None, source)
        await store.close(conn, person["id"])

    async def state(self, conn: asyncpg.Connection, person: asyncpg.Record | None) -> schemas.Consents:
        if person is None:
            return schemas.Consents(consents=[], awaiting_confirmation=0, objections=[])
        return schemas.Consents(
            consents=[schemas.ConsentStatus(purpose=r["purpose"], channel=r["channel"], granted=r["granted"],
                                            since=r["at"], source=r["source"], wording_version=r["wording_version"])
                      for r in await store.current(conn, person["id"])],
            awaiting_confirmation=await store.pending_confirmations(conn, person["id"]),
            objections=await store.objections(conn, person["id"]))


async def people_of(conn: asyncpg.Connection, subject: DataSubject, *, lock: bool = False) -> list[asyncpg.Record]:
    """Every row a data subject has here: the customer's, and the guest rows of the request's
    e-mail addresses and phone numbers or of the customer's own (account-verified) address.
    Nothing is followed through a phone number, which no one verified and a family may share;
    another customer's row is never found by an address or number."""
    customer_ids = [subject.customer_id] if subject.customer_id else []
    return await store.people_of(conn, customer_ids, subject.emails, list(set(subject.phones)), lock=lock)
