"""Mail to customers: written to ``outgoing_mail`` in the transaction that causes it, sent by a
background loop over SMTP (a real relay in production, the local sink in development).

A message is claimed under a lease and sent outside any transaction; a crash between the send
and the mark sends it again after the lease (mail is at least once). Failures back off and stop
after ``MAX_ATTEMPTS``. Sent mail is deleted after ``SENT_RETENTION``: it holds codes and names.
"""
from __future__ import annotations

import datetime as dt
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib
import asyncpg

from services.accounts.settings import AccountsSettings
from services.payments.schemas import MembershipNotice
from shared.logging import get_logger, redact_text
from shared.poller import NotifiedPoller

log = get_logger(__name__)

NOTIFY_CHANNEL = "veikals_accounts_mail"
LEASE = dt.timedelta(minutes=2)
MAX_ATTEMPTS = 8
SENT_RETENTION = dt.timedelta(days=7)


async def queue_mail(conn: asyncpg.Connection, account_id: uuid.UUID | None, recipient: str,
                     subject: str, body: str) -> None:
    if not conn.is_in_transaction():
        raise RuntimeError("queue_mail must run inside the transaction of the change it reports")
    await conn.execute(
        "INSERT INTO outgoing_mail (id, account_id, recipient, subject, body) VALUES ($1, $2, $3, $4, $5)",
        uuid.uuid4(), account_id, recipient, subject, body)
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)


def verification_mail(shop_url: str, name: str, token: str, *, new_address: bool) -> tuple[str, str]:
    link = f"{shop_url.rstrip('/')}/verify-email?token={token}"
    what = "your new e-mail address" if new_address else "your e-mail address for your new account"
    return ("Confirm your e-mail address",
            f"Hello {name},\n\nPlease confirm {what} by opening this link and entering your "
            f"password:\n\n{link}\n\nor enter this code with your password:\n\ncode: {token}\n\n"
            "If you did not ask for this, ignore this message: nothing changes without it.\n")


def address_in_use_mail(shop_url: str) -> tuple[str, str]:
    return ("Your address is already registered",
            "Someone, perhaps you, tried to register or move an account to this e-mail address, "
            "which already belongs to an account in our shop.\n\n"
            f"To sign in, go to {shop_url.rstrip('/')}/login. If it was not you, ignore this "
            "message: nothing has changed.\n")


def euros(cents: int, currency: str) -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency}"


def membership_mail(shop_url: str, name: str, notice: MembershipNotice) -> tuple[str, str]:
    """What a customer is told about their membership (P7), by the payments service's notice."""
    price = euros(notice.amount_cents, notice.currency)
    day = (lambda moment: moment.strftime("%d.%m.%Y") if moment else "")
    manage = f"\n\nYour membership: {shop_url.rstrip('/')}/account/membership\n"
    subject, text = {
        "started": ("Welcome: your membership has started",
                    f"your membership has started. We charged {price}; the next charge is on "
                    f"{day(notice.period_end)}."),
        "renewed": ("Your membership is renewed",
                    f"we charged {price} for another month of your membership, until {day(notice.period_end)}."),
        "charge_failed": ("We could not charge your card for the membership",
                          f"charging {price} for your membership did not succeed. We will try again on "
                          f"{day(notice.next_attempt_at)}; please check your card or save another one."),
        "lapsed": ("Your membership has ended",
                   f"we could not charge {price} for your membership after several tries, so it has ended. "
                   "You can start it again at any time."),
        "cancelled": ("Your membership is cancelled",
                      f"your membership is cancelled; it stays active until {day(notice.period_end)} and "
                      "nothing more will be charged."),
        "ended": ("Your membership has ended", "your membership has ended; nothing more will be charged."),
    }[notice.kind]
    return subject, f"Hello {name},\n\n{text}{manage}"


class MailSender(NotifiedPoller):
    def __init__(self, pool: asyncpg.Pool, settings: AccountsSettings, batch_size: int = 20) -> None:
        super().__init__(pool, NOTIFY_CHANNEL, "accounts-mail", settings.outbox_poll_s)
        self.settings = settings
        self.batch_size = batch_size

    async def work(self) -> None:
        while not self.stopping and (claimed := await self._claim()):
            for row in claimed:  # a claimed message not sent before a stop goes after its lease
                await self._send(row)

    async def _claim(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            """UPDATE outgoing_mail SET lease_until = now() + $2::interval, attempts = attempts + 1
               WHERE id IN (SELECT id FROM outgoing_mail
                            WHERE sent_at IS NULL AND next_attempt_at <= now() AND attempts < $3
                              AND (lease_until IS NULL OR lease_until < now())
                            ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
               RETURNING id, recipient, subject, body, attempts""", self.batch_size, LEASE, MAX_ATTEMPTS)

    async def _send(self, row: asyncpg.Record) -> None:
        s = self.settings
        try:
            message = EmailMessage()
            message["From"] = s.mail_from
            message["To"] = row["recipient"]
            message["Subject"] = row["subject"]
            message["Date"] = formatdate(localtime=False)
            message["Message-ID"] = make_msgid(idstring=row["id"].hex, domain="veikals")
            message.set_content(row["body"])
        except (ValueError, TypeError) as exc:  # no retry can make this message
            await self._give_up(row, f"cannot be composed: {exc}")
            return
        try:
            await aiosmtplib.send(
                message, hostname=s.smtp_host, port=s.smtp_port, timeout=s.smtp_timeout_s,
                username=s.smtp_username or None, password=s.smtp_password.get_secret_value() or None,
                start_tls=s.smtp_starttls)
        except ValueError as exc:  # aiosmtplib refuses the address itself: no retry can send it
            await self._give_up(row, f"cannot be sent to this address: {exc}")
            return
        except (aiosmtplib.SMTPException, OSError) as exc:
            error = redact_text(f"{type(exc).__name__}: {exc}")[:500]
            await self.pool.execute(
                """UPDATE outgoing_mail SET lease_until = NULL, last_error = $2,
                   next_attempt_at = now() + least(interval '15 seconds' * power(2, attempts), interval '1 hour')
                   WHERE id = $1""", row["id"], error)
            log.warning("mail not sent; will retry", attempt=row["attempts"], error=error)
            return
        await self.pool.execute(
            "UPDATE outgoing_mail SET sent_at = now(), lease_until = NULL, last_error = NULL WHERE id = $1",
            row["id"])

    async def _give_up(self, row: asyncpg.Record, why: str) -> None:
        await self.pool.execute(
            "UPDATE outgoing_mail SET lease_until = NULL, attempts = $3, last_error = $2 WHERE id = $1",
            row["id"], redact_text(why)[:500], MAX_ATTEMPTS)
        log.error("mail given up", error=why.split(":")[0])

    async def prune(self) -> None:
        await self.pool.execute(
            """DELETE FROM outgoing_mail WHERE (sent_at < now() - $1::interval)
               OR (attempts >= $2 AND created_at < now() - $1::interval)""", SENT_RETENTION, MAX_ATTEMPTS)
