"""Mail to people: written to the service's ``outgoing_mail`` table in the transaction that
causes it, sent by a background loop over SMTP (a real relay in production, the local sink in
development). Accounts sends verification and membership mail through it, marketing its
opt-in confirmations.

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
from pydantic import BaseModel, Field, SecretStr

from shared.logging import get_logger, redact_text
from shared.poller import NotifiedPoller

log = get_logger(__name__)

LEASE = dt.timedelta(minutes=2)
MAX_ATTEMPTS = 8
SENT_RETENTION = dt.timedelta(days=7)


class SmtpSettings(BaseModel):
    """Where mail goes (a mixin of the settings of every service that sends mail)."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = False
    smtp_timeout_s: float = Field(default=15.0, gt=0)
    mail_from: str = "Veikals <no-reply@veikals.example>"


def smtp_client(s: SmtpSettings) -> aiosmtplib.SMTP:
    """A client for the relay (not yet connected): one connection can carry many messages."""
    return aiosmtplib.SMTP(
        hostname=s.smtp_host, port=s.smtp_port, timeout=s.smtp_timeout_s,
        username=s.smtp_username or None, password=s.smtp_password.get_secret_value() or None,
        start_tls=s.smtp_starttls)


def compose(s: SmtpSettings, recipient: str, subject: str, body: str, message_key: str,
            headers: dict[str, str] | None = None) -> EmailMessage:
    """A plain-text message; its Message-ID derives from ``message_key``, so a message sent
    again after a crash carries the same id (receivers that dedupe on it show it once)."""
    message = EmailMessage()
    message["From"] = s.mail_from
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(idstring=message_key, domain="veikals")
    for name, value in (headers or {}).items():
        message[name] = value
    # 8bit keeps links whole in the raw message (a relay without 8BITMIME gets it re-encoded by
    # aiosmtplib); quoted-printable only where a line would break SMTP's 998-octet limit.
    short_lines = all(len(line.encode()) <= 900 for line in body.splitlines())
    message.set_content(body, cte="8bit" if short_lines else "quoted-printable")
    return message


async def queue_mail(conn: asyncpg.Connection, notify_channel: str, recipient: str, subject: str, body: str,
                     owner: tuple[str, uuid.UUID | None] | None = None) -> None:
    """Queue a message in the caller's transaction; ``owner`` is the column naming whom it
    is for (its row goes with theirs)."""
    if not conn.is_in_transaction():
        raise RuntimeError("queue_mail must run inside the transaction of the change it reports")
    column, value = owner or (None, None)
    extra = f", {column}" if column else ""
    await conn.execute(
        f"INSERT INTO outgoing_mail (id, recipient, subject, body{extra}) VALUES ($1, $2, $3, $4{', $5' if column else ''})",
        uuid.uuid4(), recipient, subject, body, *((value,) if column else ()))
    await conn.execute("SELECT pg_notify($1, '')", notify_channel)


class MailSender(NotifiedPoller):
    def __init__(self, pool: asyncpg.Pool, settings: SmtpSettings, notify_channel: str, name: str,
                 poll_interval: float, batch_size: int = 20) -> None:
        super().__init__(pool, notify_channel, name, poll_interval)
        self.settings = settings
        self.batch_size = batch_size

    async def work(self) -> None:
        while not self.stopping and (claimed := await self._claim()):
            for row in claimed:  # a claimed message not sent before a stop goes after its lease
                await self._send(row)

    async def _claim(self) -> list[asyncpg.Record]:
        # The lease covers the whole batch at the relay's slowest: a message still in hand is not
        # claimed again by another instance.
        lease = max(LEASE, dt.timedelta(seconds=self.batch_size * self.settings.smtp_timeout_s + 60))
        return await self.pool.fetch(
            """UPDATE outgoing_mail SET lease_until = now() + $2::interval, attempts = attempts + 1
               WHERE id IN (SELECT id FROM outgoing_mail
                            WHERE sent_at IS NULL AND next_attempt_at <= now() AND attempts < $3
                              AND (lease_until IS NULL OR lease_until < now())
                            ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
               RETURNING id, recipient, subject, body, attempts""", self.batch_size, lease, MAX_ATTEMPTS)

    async def _send(self, row: asyncpg.Record) -> None:
        s = self.settings
        try:
            message = compose(s, row["recipient"], row["subject"], row["body"], row["id"].hex)
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
