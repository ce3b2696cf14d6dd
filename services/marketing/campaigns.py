"""Sending a campaign: resumable, rate-limited, and only to those who consent at that moment.

Starting a campaign chooses its recipients (``campaign_deliveries``, one row each). Senders
then claim rows under a lease and, for each, in one transaction: re-read the recipient's
consent holding their row (a withdrawal waits for this one message and stops the rest), send,
and mark the row sent. A crash rolls the mark back and the row goes again after its lease, so
no recipient is skipped. E-mail can then arrive twice only if the process died between the
relay's acceptance and the commit; the message goes again with the same Message-ID, by which
receivers collapse it. A text message is a signed webhook to the SMS gateway, queued in that
same transaction, with our message id: it is sent exactly once.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import aiosmtplib
import asyncpg

from services.marketing import domain, store
from services.marketing.settings import MarketingSettings
from shared import mail
from shared.contracts.webhooks import SmsRequested
from shared.logging import get_logger, redact_text
from shared.poller import NotifiedPoller
from shared.webhooks.outbound import enqueue
from shared.webhooks.registry import Partner, PartnerKind, PartnerRegistry

log = get_logger(__name__)

NOTIFY_CHANNEL = "veikals_marketing_campaigns"
CLAIM = 10


class RateLimit:
    """At most ``per_second`` starts a second, shared by every sender of the process (0: none)."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1 / per_second if per_second > 0 else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


def sms_gateway(partners: PartnerRegistry, name: str) -> Partner | None:
    if name:
        return partners.get(name)
    found = [p for p in partners if p.kind == PartnerKind.SMS]
    return found[0] if len(found) == 1 else None


class CampaignSender(NotifiedPoller):
    def __init__(self, pool: asyncpg.Pool, settings: MarketingSettings, partners: PartnerRegistry) -> None:
        super().__init__(pool, NOTIFY_CHANNEL, "marketing-campaigns", settings.campaign_poll_s)
        self.settings = settings
        self.partners = partners
        self.lease = dt.timedelta(seconds=settings.campaign_lease_s)
        self.rate = RateLimit(settings.campaign_rate_per_s)
        self.link_key = settings.link_key.get_secret_value().encode()

    async def work(self) -> None:
        async with self.pool.acquire() as conn:
            campaigns = await store.sending_campaigns(conn)
        for campaign in campaigns:
            if self.stopping:
                return
            async with asyncio.TaskGroup() as senders:  # one failing stops the others; the next pass resumes
                for _ in range(self.settings.campaign_concurrency):
                    senders.create_task(self._drain(campaign))
            async with self.pool.acquire() as conn:
                if await store.finish_if_done(conn, campaign["id"]):
                    log.info("campaign sent", campaign=str(campaign["id"]))

    async def _drain(self, campaign: asyncpg.Record) -> None:
        """One sender: claims rows and sends them, over one SMTP connection, until none is due."""
        smtp = mail.smtp_client(self.settings) if campaign["channel"] == "email" else None
        try:
            while not self.stopping:
                async with self.pool.acquire() as conn:
                    claimed = await store.claim_deliveries(conn, campaign["id"], CLAIM, self.lease)
                if not claimed:
                    return
                for row in claimed:
                    if self.stopping:
                        return  # the rest go after their lease
                    await self.rate.wait()
                    await self._deliver(campaign, row, smtp)
        finally:
            if smtp is not None and smtp.is_connected:
                try:
                    await smtp.quit()
                except (aiosmtplib.SMTPException, OSError):
                    smtp.close()

    async def _deliver(self, campaign: asyncpg.Record, row: asyncpg.Record, smtp: aiosmtplib.SMTP | None) -> None:
        campaign_id, person_id = campaign["id"], row["person_id"]
        async with self.pool.acquire() as conn, conn.transaction():
            person = await store.recipient(conn, campaign_id, campaign["channel"], person_id)
            if person is None:
                await store.delivered(conn, campaign_id, person_id, "skipped", reason="no consent at send time")
                return
            token = domain.unsubscribe_token(self.link_key, person_id, campaign["channel"], dt.date.today())
            links = domain.unsubscribe_links(self.settings.public_url, self.settings.unsubscribe_mailbox, token)
            language = person["language"]
            try:
                if smtp is None:
                    await self._text(conn, row["id"], person["phone"], domain.sms_text(
                        campaign[f"body_{language}"], language, links))
                else:
                    await self._mail(smtp, campaign, row["id"], person["email"], language, links)
            except (aiosmtplib.SMTPRecipientsRefused, ValueError) as exc:
                await store.retry_later(conn, campaign_id, person_id, self._error(exc), give_up=True)
                return
            except (aiosmtplib.SMTPException, OSError) as exc:
                if smtp is not None:
                    smtp.close()  # a broken connection is opened afresh for the next message
                give_up = row["attempts"] >= self.settings.campaign_max_attempts
                await store.retry_later(conn, campaign_id, person_id, self._error(exc), give_up=give_up)
                log.warning("campaign message not sent; will retry", attempt=row["attempts"])
                return
            await store.delivered(conn, campaign_id, person_id, "sent")

    async def _mail(self, smtp: aiosmtplib.SMTP, campaign: asyncpg.Record, message_id: uuid.UUID, email: str,
                    language: str, links: domain.Links) -> None:
        subject = campaign[f"subject_{language}"] or campaign["name"]
        message = mail.compose(self.settings, email, subject, domain.email_body(campaign[f"body_{language}"],
                               language, links), message_id.hex, headers=domain.email_headers(links))
        if not smtp.is_connected:
            await smtp.connect()
        await smtp.send_message(message)

    async def _text(self, conn: asyncpg.Connection, message_id: uuid.UUID, phone: str, text: str) -> None:
        gateway = sms_gateway(self.partners, self.settings.sms_gateway)
        if gateway is None:
            raise OSError("no SMS gateway is registered (a partner of kind sms)")
        await enqueue(conn, gateway, SmsRequested(message_id=message_id, to=phone, text=text))

    @staticmethod
    def _error(exc: BaseException) -> str:
        return redact_text(f"{type(exc).__name__}: {exc}")[:500]
