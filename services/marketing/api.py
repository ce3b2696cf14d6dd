"""The marketing service's HTTP routes: consents (the customer's, a guest's by double opt-in,
support's on a customer's request), the unsubscribe and confirmation links, objections, the
preference profile, and campaigns for staff with the marketing role.

The shared view has checked the caller against each route's ``auth`` and validated the path,
query and body before a handler here runs.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from services.accounts.client import contact_details
from services.marketing import domain, pages, schemas, store
from services.marketing.consents import Ledger, UnknownWording
from shared.auth import Principal
from shared.contracts.audit import StaffAccessed
from shared.http import CUSTOMER, Endpoint, FieldError, HTTPProblem, staff

if TYPE_CHECKING:
    from services.marketing.service import MarketingService

# What a staff look-up of someone's consents shows (recorded in the audit log, P16).
CONSENT_RECORD = ("consents", "consent ledger")
BAD_LINK = HTTPProblem(404, "Unknown or expired link",
                       "This link is not one of ours, or it has expired. Your consents are unchanged.")
ANSWERS = {
    "granted": "The consent is recorded.",
    "unchanged": "The consent stood so already.",
    "confirmation_sent": "A link to confirm it is on its way to the e-mail address; it takes effect when confirmed.",
    "withdrawn": "The consent is withdrawn; nothing more is sent for it.",
}


def customer_of(caller: Principal) -> uuid.UUID:
    return uuid.UUID(caller.subject)


def answer(status: str) -> schemas.Accepted:
    return schemas.Accepted(status=status, detail=ANSWERS[status])


def unknown_wording(version: str) -> HTTPProblem:
    return HTTPProblem(404, "No such wording", f"No wording {version!r} is published for this consent "
                       "(GET /v1/consent-wordings lists them).",
                       [FieldError(field="body.wording_version", message="no such wording", type="not_found")])


def wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


class MarketingApi:
    def __init__(self, service: MarketingService) -> None:
        self.pool = service.pool
        self.rpc = service.rpc
        self.outbox = service.outbox
        self.ledger: Ledger = service.ledger
        self.settings = service.settings
        self.link_key = self.settings.link_key.get_secret_value().encode()

    async def customer(self, conn: asyncpg.Connection, customer_id: uuid.UUID,
                       language: str | None = None) -> asyncpg.Record:
        """The customer's row, locked; their contact details are read from accounts the first time."""
        person = await store.person_of_customer(conn, customer_id)
        contact = None if person is not None and person["email"] else await contact_details(self.rpc, customer_id)
        return await self.ledger.customer(conn, customer_id, contact, language)

    async def grant(self, conn: asyncpg.Connection, person: asyncpg.Record, consent, version: str, source: str,
                    staff_id: uuid.UUID | None = None) -> schemas.Accepted:
        try:
            status = await self.ledger.grant(conn, person, consent.purpose, schemas.channel_of(consent), version,
                                             source, staff_id)
        except UnknownWording:
            raise unknown_wording(version)
        except LookupError as exc:
            raise HTTPProblem(409, "Nowhere to send", f"The account has {exc}; add one first.")
        return answer(status)

    # --- public -----------------------------------------------------------------------------

    async def wordings(self, request: web.Request) -> schemas.WordingList:
        async with self.pool.acquire() as conn:
            rows = await store.wordings(conn)
        return schemas.WordingList(items=[schemas.Wording.model_validate(dict(r)) for r in rows])

    async def guest_consent(self, request: web.Request, body: schemas.GuestConsent) -> schemas.Accepted:
        """Whatever the address, the same answer: a link goes to it (unless it consents already)."""
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                await self.ledger.check_wording(conn, body.wording_version, "direct_marketing", "email")
            except UnknownWording:
                raise unknown_wording(body.wording_version)
            person = await store.add_guest(conn, body.email, self.ledger.keys(body.email, None)["email_key"],
                                           body.language)
            await self.ledger.grant(conn, person, "direct_marketing", "email", body.wording_version, "web")
        return schemas.Accepted(status="accepted", detail="If the address is yours, confirm by the link we sent it.")

    async def confirmation_page(self, request: web.Request, query: schemas.TokenQuery) -> web.Response:
        async with self.pool.acquire() as conn:
            pending = await store.confirmation(conn, domain.token_hash(query.token))
        if pending is None:
            raise BAD_LINK
        return pages.ask("confirm", pending["language"], str(request.rel_url))

    async def confirm(self, request: web.Request, query: schemas.TokenQuery) -> schemas.Accepted | web.Response:
        token_hash = domain.token_hash(query.token)
        async with self.pool.acquire() as conn, conn.transaction():
            pending = await store.confirmation(conn, token_hash)
            if pending is None or not await self.ledger.confirm(conn, query.token):
                raise BAD_LINK
        if wants_html(request):
            return pages.done("confirm", pending["language"])
        return schemas.Accepted(status="confirmed", detail="The e-mail consent is confirmed.")

    def read_link(self, token: str) -> tuple[uuid.UUID, str]:
        try:
            return domain.read_unsubscribe_token(self.link_key, token, dt.date.today(),
                                                 self.settings.unsubscribe_token_days)
        except domain.BadToken:
            raise BAD_LINK

    async def unsubscribe_page(self, request: web.Request, query: schemas.TokenQuery) -> web.Response:
        person_id, channel = self.read_link(query.token)
        async with self.pool.acquire() as conn:
            person = await store.person(conn, person_id)
        return pages.ask("unsubscribe", person["language"] if person else "lv", str(request.rel_url), channel)

    async def unsubscribe(self, request: web.Request, query: schemas.TokenQuery) -> schemas.Accepted | web.Response:
        """RFC 8058 one-click: no login, no body needed; at once, and the same answer when repeated."""
        person_id, channel = self.read_link(query.token)
        async with self.pool.acquire() as conn, conn.transaction():
            person = await store.person(conn, person_id, lock=True)
            if person is not None:
                await self.ledger.withdraw(conn, person, "direct_marketing", channel, "unsubscribe_link")
        if wants_html(request):
            return pages.done("unsubscribe", person["language"] if person else "lv", channel)
        return schemas.Accepted(status="unsubscribed", detail=f"No more offers by {channel}.")

    # --- the customer's -------------------------------------------------------------------------

    async def my_consents(self, request: web.Request, caller: Principal) -> schemas.Consents:
        async with self.pool.acquire() as conn:
            return await self.ledger.state(conn, await store.person_of_customer(conn, customer_of(caller)))

    async def my_history(self, request: web.Request, caller: Principal) -> schemas.Ledger:
        async with self.pool.acquire() as conn:
            person = await store.person_of_customer(conn, customer_of(caller))
            rows = [] if person is None else await store.ledger(conn, person["id"])
        return schemas.Ledger(items=[schemas.LedgerEntry.model_validate(dict(r)) for r in rows])

    async def my_grant(self, request: web.Request, caller: Principal, body: schemas.ConsentGrant) -> schemas.Accepted:
        async with self.pool.acquire() as conn, conn.transaction():
            person = await self.customer(conn, customer_of(caller), body.language)
            return await self.grant(conn, person, body.consent, body.wording_version, "web")

    async def my_withdrawal(self, request: web.Request, caller: Principal,
                            body: schemas.ConsentWithdrawal) -> schemas.Accepted:
        async with self.pool.acquire() as conn, conn.transaction():
            person = await store.person_of_customer(conn, customer_of(caller), lock=True)
            if person is None or not await self.ledger.withdraw(
                    conn, person, body.consent.purpose, schemas.channel_of(body.consent), "web"):
                return answer("unchanged")
        return answer("withdrawn")

    async def my_objection(self, request: web.Request, caller: Principal, body: schemas.ObjectionIn) -> schemas.Accepted:
        async with self.pool.acquire() as conn, conn.transaction():
            person = await self.customer(conn, customer_of(caller))
            await self.ledger.object(conn, person, body.purpose, "web")
        return schemas.Accepted(status="objected", detail=f"Your objection stands: no more {body.purpose.replace('_', ' ')}.")

    async def my_profile(self, request: web.Request, caller: Principal) -> schemas.ProfileAnswer:
        async with self.pool.acquire() as conn:
            person = await store.person_of_customer(conn, customer_of(caller))
            row, categories = (None, []) if person is None else await store.profile(conn, person["id"])
        if row is None:
            return schemas.ProfileAnswer(profile=None)
        return schemas.ProfileAnswer(profile=schemas.Profile(
            orders=row["orders"], spend_cents=row["spend_cents"], currency=row["currency"],
            orders_per_month=domain.orders_per_month(row["orders"], row["first_order_at"], row["last_order_at"]),
            first_order_at=row["first_order_at"], last_order_at=row["last_order_at"],
            categories=[schemas.CategoryProfile.model_validate(dict(c)) for c in categories]))

    # --- support, on a customer's request ------------------------------------------------------

    async def staff_person(self, conn: asyncpg.Connection, caller: Principal, whom: schemas.Whom,
                           categories: list[str], *, create: bool = False,
                           language: str | None = None) -> tuple[asyncpg.Record | None, uuid.UUID]:
        """The person support acts on, and the record of the access with its reason (P16)."""
        if whom.customer_id is not None:
            person = await (self.customer(conn, whom.customer_id, language) if create else
                            store.person_of_customer(conn, whom.customer_id, lock=True))
        elif create:
            assert whom.email is not None
            person = await store.add_guest(conn, whom.email, self.ledger.keys(whom.email, None)["email_key"],
                                           language or "lv")
        else:
            person = await store.guest(conn, whom.email, lock=True)
        customer_id = whom.customer_id or (person["customer_id"] if person else None)
        access = await store.record_access(conn, customer_of(caller), person and person["id"], customer_id,
                                           whom.reason, categories)
        # No subject: the audit record outlives the customer's erasure (P16).
        await self.outbox.add(conn, "staff_accessed", StaffAccessed(
            access_id=access["id"], staff_id=customer_of(caller), customer_id=customer_id, reason=whom.reason,
            categories=categories, at=access["at"]).model_dump(mode="json"))
        return person, access["id"]

    async def staff_lookup(self, request: web.Request, caller: Principal, body: schemas.Whom) -> schemas.StaffConsentView:
        async with self.pool.acquire() as conn, conn.transaction():
            person, access_id = await self.staff_person(conn, caller, body, list(CONSENT_RECORD))
            if person is not None:
                return schemas.StaffConsentView(
                    access_id=access_id, consents=await self.ledger.state(conn, person),
                    ledger=[schemas.LedgerEntry.model_validate(dict(r)) for r in await store.ledger(conn, person["id"])])
        # The look is recorded (committed) even when it found nothing.
        raise HTTPProblem(404, "No consents", "Marketing holds nothing for this customer or address.")

    async def staff_grant(self, request: web.Request, caller: Principal, body: schemas.StaffGrant) -> schemas.Accepted:
        async with self.pool.acquire() as conn, conn.transaction():
            person, _ = await self.staff_person(conn, caller, body, list(CONSENT_RECORD), create=True, language=body.language)
            assert person is not None
            return await self.grant(conn, person, body.consent, body.wording_version, "support", customer_of(caller))

    async def staff_withdrawal(self, request: web.Request, caller: Principal,
                               body: schemas.StaffWithdrawal) -> schemas.Accepted:
        async with self.pool.acquire() as conn, conn.transaction():
            person, _ = await self.staff_person(conn, caller, body, list(CONSENT_RECORD))
            if person is None or not await self.ledger.withdraw(
                    conn, person, body.consent.purpose, schemas.channel_of(body.consent), "support",
                    customer_of(caller)):
                return answer("unchanged")
        return answer("withdrawn")

    # --- campaigns ------------------------------------------------------------------------------

    @staticmethod
    def campaign_view(row: asyncpg.Record) -> schemas.Campaign:
        return schemas.Campaign.model_validate({**dict(row), "audience": json.loads(row["audience"])})

    async def new_campaign(self, request: web.Request, caller: Principal, body: schemas.CampaignIn) -> schemas.Campaign:
        subject = body.subject
        async with self.pool.acquire() as conn, conn.transaction():
            campaign_id = await store.add_campaign(conn, {
                "name": body.name, "channel": body.channel, "subject_lv": subject and subject.lv,
                "subject_en": subject and subject.en, "body_lv": body.body.lv, "body_en": body.body.en,
                "audience": body.audience.model_dump(exclude_none=True)}, customer_of(caller))
            return self.campaign_view(await store.campaign(conn, campaign_id))

    async def list_campaigns(self, request: web.Request, caller: Principal,
                             query: schemas.CampaignQuery) -> schemas.CampaignList:
        async with self.pool.acquire() as conn:
            rows = await store.campaigns(conn, query.after, query.limit + 1)
        items = [self.campaign_view(r) for r in rows[:query.limit]]
        return schemas.CampaignList(items=items, next_cursor=items[-1].id if len(rows) > query.limit else None)

    async def read_campaign(self, request: web.Request, caller: Principal, params: schemas.IdPath) -> schemas.Campaign:
        async with self.pool.acquire() as conn:
            row = await store.campaign(conn, params.id)
        if row is None:
            raise HTTPProblem(404, "No such campaign", "No campaign has this id.")
        return self.campaign_view(row)

    async def locked_campaign(self, conn: asyncpg.Connection, campaign_id: uuid.UUID, *states: str) -> asyncpg.Record:
        row = await store.campaign(conn, campaign_id, lock=True)
        if row is None:
            raise HTTPProblem(404, "No such campaign", "No campaign has this id.")
        if row["status"] not in states:
            raise HTTPProblem(409, f"The campaign is {row['status']}", f"Only a campaign {' or '.join(states)} can be.")
        return row

    async def send_campaign(self, request: web.Request, caller: Principal, params: schemas.IdPath) -> schemas.Campaign:
        """Choose the recipients now (those who consent at this moment) and start sending."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self.locked_campaign(conn, params.id, "draft")
            await store.start_campaign(conn, row["id"], row["channel"], json.loads(row["audience"]))
            return self.campaign_view(await store.campaign(conn, row["id"]))

    async def cancel_campaign(self, request: web.Request, caller: Principal, params: schemas.IdPath) -> schemas.Campaign:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self.locked_campaign(conn, params.id, "draft", "sending")
            await store.cancel_campaign(conn, row["id"])
            return self.campaign_view(await store.campaign(conn, row["id"]))

    def endpoints(self) -> list[Endpoint]:
        E, me, links, path, token = Endpoint, ["me"], ["links"], schemas.IdPath, schemas.TokenQuery
        support, marketing = staff("support", "admin"), staff("marketing", "admin")
        return [
            E("GET", "/v1/consent-wordings", self.wordings, "The wordings a consent is given to (Latvian, English)",
              response=schemas.WordingList, tags=["consents"]),
            E("POST", "/v1/guest-consents", self.guest_consent,
              "A guest's e-mail consent (at checkout): a confirmation link goes to the address",
              body=schemas.GuestConsent, response=schemas.Accepted, status=202, problems=(404,), tags=["consents"]),
            E("GET", "/v1/consents/confirm", self.confirmation_page, "The page that asks to confirm an e-mail consent",
              query=token, problems=(404,), tags=links),
            E("POST", "/v1/consents/confirm", self.confirm, "Confirm an e-mail consent (double opt-in)",
              query=token, response=schemas.Accepted, problems=(404,), tags=links),
            E("GET", "/v1/unsubscribe", self.unsubscribe_page,
              "The page of a message's unsubscribe link: asks for a press of its button", query=token,
              problems=(404,), tags=links),
            E("POST", "/v1/unsubscribe", self.unsubscribe, "One-click unsubscribe (RFC 8058), without login",
              query=token, response=schemas.Accepted, problems=(404,), tags=links),
            E("GET", "/v1/me/consents", self.my_consents, "Your consents as they stand", response=schemas.Consents,
              auth=CUSTOMER, tags=me),
            E("GET", "/v1/me/consents/history", self.my_history, "Every change of your consents, newest first",
              response=schemas.Ledger, auth=CUSTOMER, tags=me),
            E("POST", "/v1/me/consents", self.my_grant, "Give a consent (an e-mail one is confirmed by link)",
              body=schemas.ConsentGrant, response=schemas.Accepted, auth=CUSTOMER, problems=(404, 409, 503), tags=me),
            E("POST", "/v1/me/consents/withdraw", self.my_withdrawal, "Withdraw a consent, at once",
              body=schemas.ConsentWithdrawal, response=schemas.Accepted, auth=CUSTOMER, tags=me),
            E("POST", "/v1/me/objections", self.my_objection,
              "Object to direct marketing or profiling (Art. 21): it stops at once", body=schemas.ObjectionIn,
              response=schemas.Accepted, auth=CUSTOMER, problems=(404, 503), tags=me),
            E("GET", "/v1/me/profile", self.my_profile, "Your preference profile, if there is one",
              response=schemas.ProfileAnswer, auth=CUSTOMER, tags=me),
            E("POST", "/v1/staff/consent-lookups", self.staff_lookup,
              "A customer's or address's consents and ledger (support; recorded with its reason)",
              body=schemas.Whom, response=schemas.StaffConsentView, auth=support, problems=(404,), tags=["staff"],
              audited=CONSENT_RECORD),
            E("POST", "/v1/staff/consents/grant", self.staff_grant,
              "Record a consent the customer asked for by e-mail (support; recorded; e-mail ones are confirmed by link)",
              body=schemas.StaffGrant, response=schemas.Accepted, auth=support, problems=(404, 409, 503),
              tags=["staff"], audited=CONSENT_RECORD),
            E("POST", "/v1/staff/consents/withdraw", self.staff_withdrawal,
              "Withdraw a consent on the customer's e-mailed request (support; recorded)",
              body=schemas.StaffWithdrawal, response=schemas.Accepted, auth=support, tags=["staff"],
              audited=CONSENT_RECORD),
            E("POST", "/v1/staff/campaigns", self.new_campaign, "Create a campaign (a draft)",
              body=schemas.CampaignIn, response=schemas.Campaign, status=201, auth=marketing, tags=["campaigns"],
              audited=()),  # campaigns show counts, never recipients
            E("GET", "/v1/staff/campaigns", self.list_campaigns, "Campaigns, newest first",
              query=schemas.CampaignQuery, response=schemas.CampaignList, auth=marketing, tags=["campaigns"],
              audited=()),
            E("GET", "/v1/staff/campaigns/{id}", self.read_campaign, "One campaign and its progress", params=path,
              response=schemas.Campaign, auth=marketing, problems=(404,), tags=["campaigns"], audited=()),
            E("POST", "/v1/staff/campaigns/{id}/send", self.send_campaign,
              "Send a draft: to those who consent at this moment", params=path, response=schemas.Campaign,
              auth=marketing, problems=(404, 409), tags=["campaigns"], audited=()),
            E("POST", "/v1/staff/campaigns/{id}/cancel", self.cancel_campaign,
              "Cancel a draft, or stop a campaign being sent", params=path, response=schemas.Campaign,
              auth=marketing, problems=(404, 409), tags=["campaigns"], audited=()),
        ]
