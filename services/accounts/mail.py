"""Mail to customers: what each message says. ``shared.mail`` queues it in the transaction that
causes it and sends it over SMTP."""
from __future__ import annotations

import uuid

import asyncpg

from services.accounts.settings import AccountsSettings
from services.payments.schemas import MembershipNotice
from shared import mail

NOTIFY_CHANNEL = "veikals_accounts_mail"


async def queue_mail(conn: asyncpg.Connection, account_id: uuid.UUID | None, recipient: str,
                     subject: str, body: str) -> None:
    await mail.queue_mail(conn, NOTIFY_CHANNEL, recipient, subject, body, owner=("account_id", account_id))


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


def sender(pool: asyncpg.Pool, settings: AccountsSettings) -> mail.MailSender:
    return mail.MailSender(pool, settings, NOTIFY_CHANNEL, "accounts-mail", settings.outbox_poll_s)
