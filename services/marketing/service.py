"""The marketing service: the consent ledger, campaigns by e-mail and SMS, one-click
unsubscribe, preference profiles, objections, suppression after erasure, and its part of every
erasure and export.

HTTP routes are in ``api.py``, the ledger's operations in ``consents.py``, sending in
``campaigns.py``. Here: what the service offers over RPC and AMQP. It publishes on
``marketing.events``: ``consent_changed``, ``staff_accessed``. It applies accounts' events (a
changed address or phone, a closed account) and orders' ``order_paid`` (profiles).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from services.accounts.schemas import AccountClosed, EmailChanged, ProfileChanged
from services.marketing import campaigns, consents, privacy, store
from services.marketing.api import MarketingApi
from services.marketing.settings import MarketingSettings
from services.orders.schemas import OrderPaid
from shared import mail
from shared.contracts import webhooks as contracts
from shared.contracts.privacy import DataSubject, ErasureOutcome, ErasureRequest, ExportChunk, ExportRequest
from shared.http import Endpoint, HTTPProblem
from shared.logging import get_logger
from shared.poller import NotifiedPoller
from shared.service import Dependencies, Service, event_handler, rpc
from shared.webhooks.registry import Partner

log = get_logger(__name__)


class MarketingService(Service):
    name = "marketing"
    migrations = Path(__file__).parent / "migrations"
    inventory = privacy.INVENTORY
    retention_clocks = privacy.CLOCKS
    settings_class = MarketingSettings

    def __init__(self, deps: Dependencies) -> None:
        super().__init__(deps)
        self.settings = deps.settings
        assert isinstance(self.settings, MarketingSettings)
        for secret in ("link_key", "suppression_key"):
            if not getattr(self.settings, secret).get_secret_value():
                raise ValueError(f"VEIKALS_MARKETING_{secret.upper()} is not set: without it anyone could forge "
                                 "unsubscribe links or read suppressed addresses back")
        self.ledger = consents.Ledger(self.outbox, self.settings)

    def endpoints(self) -> list[Endpoint]:
        return MarketingApi(self).endpoints()

    def background(self) -> list[NotifiedPoller]:
        return [campaigns.CampaignSender(self.pool, self.settings, self.partners),
                mail.MailSender(self.pool, self.settings, consents.MAIL_CHANNEL, "marketing-mail",
                                self.settings.outbox_poll_s),
                privacy.RetentionSweep(self.pool, self.settings)]

    # --- what accounts and orders tell us -------------------------------------------------------

    @event_handler("accounts", "email_changed", keep="newest")
    async def on_email_changed(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        """The consent moves to the new address (accounts verified it); nothing is granted anew,
        and an address suppressed after an erasure stays so until it is confirmed afresh."""
        changed = EmailChanged.model_validate(data)
        email = changed.email.strip().lower()
        person = await store.update_contact(conn, changed.customer_id, email=email,
                                            email_key=self.ledger.keys(email, None)["email_key"])
        if person is not None:
            await store.drop_confirmations(conn, person["id"])  # they asked for the old address

    @event_handler("accounts", "profile_changed", keep="newest")
    async def on_profile_changed(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        """The name, phone and language as accounts holds them: a customer's mail goes out in
        the language of their account."""
        changed = ProfileChanged.model_validate(data)
        language = {} if changed.language is None else {"language": changed.language}
        await store.update_contact(conn, changed.customer_id, name=changed.name, phone=changed.phone,
                                   phone_key=self.ledger.keys(None, changed.phone)["phone_key"], **language)

    @event_handler("accounts", "account_closed")
    async def on_account_closed(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        """Nothing more is sent or analysed from the moment the account closes (its erasure follows)."""
        closed = AccountClosed.model_validate(data)
        person = await store.person_of_customer(conn, closed.customer_id, lock=True)
        if person is not None:
            await self.ledger.close(conn, person, "account_closed")

    @event_handler("orders", "order_paid")
    async def on_order_paid(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        """A paid order counts in the customer's profile, only while they consent to profiling
        and have not objected."""
        paid = OrderPaid.model_validate(data)
        if paid.customer_id is None:
            return  # guests have no profile
        person_id = await store.may_profile(conn, paid.customer_id)
        if person_id is not None:
            await store.add_to_profile(conn, person_id, paid.gross_cents, paid.currency, paid.at,
                                       [(line.category, line.quantity, line.gross_cents) for line in paid.lines])

    async def on_partner_callback(self, conn: asyncpg.Connection, partner: Partner,
                                  reply: contracts.PartnerReply) -> None:
        """The SMS gateway delivered a text."""
        if isinstance(reply, contracts.SmsDelivered) and not await store.sms_delivered(conn, reply.message_id):
            raise HTTPProblem(422, "Unknown message", "No text message of ours has this id.")

    # --- for the privacy service ----------------------------------------------------------------

    @rpc(changes_state=True)
    async def apply_objection(self, conn: asyncpg.Connection, subject: dict[str, Any], purpose: str) -> int:
        """Art. 21: the subject objects to ``direct_marketing`` or ``profiling``; it stops now.
        How many of the subject's records it applies to (a customer unknown here gets one, so
        the objection stands when they arrive)."""
        if purpose not in ("direct_marketing", "profiling"):
            raise ValueError(f"not a purpose: {purpose!r}")
        parsed = DataSubject.model_validate(subject)
        people = await consents.people_of(conn, parsed, lock=True)
        if not people and parsed.customer_id is not None:
            people = [await self.ledger.customer(conn, parsed.customer_id, None)]
        for person in people:
            await self.ledger.object(conn, person, purpose, "privacy_request")
        return len(people)

    @rpc(changes_state=True)
    async def withdraw_consent(self, conn: asyncpg.Connection, subject: dict[str, Any],
                               purpose: str | None = None, channel: str | None = None) -> int:
        """Art. 7(3): withdraw the subject's consents (all, or one purpose, or one channel);
        how many entries it took."""
        parsed = DataSubject.model_validate(subject)
        scopes = [(p, c) for p, c in (("direct_marketing", "email"), ("direct_marketing", "sms"), ("profiling", None))
                  if (purpose is None or p == purpose) and (channel is None or c == channel)]
        if not scopes:
            raise ValueError(f"no consent is for purpose {purpose!r} and channel {channel!r}")
        withdrawn = 0
        for person in await consents.people_of(conn, parsed, lock=True):
            for p, c in scopes:
                withdrawn += await self.ledger.withdraw(conn, person, p, c, "privacy_request")
        return withdrawn

    # --- the privacy participant ----------------------------------------------------------------

    @rpc(changes_state=False)
    async def privacy_export(self, request: dict[str, Any]) -> ExportChunk:
        parsed = ExportRequest.model_validate(request)
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            return await privacy.export_chunk(conn, parsed)

    @rpc(changes_state=True)
    async def privacy_erase(self, conn: asyncpg.Connection, request: dict[str, Any]) -> ErasureOutcome:
        return await privacy.erase(conn, ErasureRequest.model_validate(request), self.forget,
                                   self.ledger.suppression_key)

    @rpc(changes_state=True)
    async def run_retention_sweep(self, conn: asyncpg.Connection) -> dict[str, int]:
        """Delete what has been kept for its declared period now (the CronJob calls this)."""
        return await privacy.sweep(conn, self.settings)
