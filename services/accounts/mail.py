"""Mail to customers: what each message says, in the customer's language (Latvian, the default,
or English). ``shared.mail`` queues it in the transaction that causes it and sends it over SMTP.

Each link opens a page of the shop, ``{shop_url}/{language}/<page>`` (``web/edge.py``)."""
from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from services.accounts.settings import AccountsSettings
from services.payments.schemas import MembershipNotice
from shared import mail

NOTIFY_CHANNEL = "veikals_accounts_mail"


async def queue_mail(conn: asyncpg.Connection, account_id: uuid.UUID | None, recipient: str,
                     subject: str, body: str) -> None:
    await mail.queue_mail(conn, NOTIFY_CHANNEL, recipient, subject, body, owner=("account_id", account_id))


def page(shop_url: str, language: str, path: str) -> str:
    return f"{shop_url.rstrip('/')}/{language}/{path}"


def greeting(name: str, language: str) -> str:
    return f"Labdien, {name}!" if language == "lv" else f"Hello {name},"


def verification_mail(shop_url: str, name: str, token: str, language: str, *, new_address: bool) -> tuple[str, str]:
    link = page(shop_url, language, f"verify-email?token={token}")
    if language == "lv":
        what = "savu jauno e-pasta adresi" if new_address else "e-pasta adresi savam jaunajam kontam"
        return ("Apstipriniet savu e-pasta adresi",
                f"{greeting(name, language)}\n\nLūdzu, apstipriniet {what}. Lai to izdarītu, atveriet šo saiti "
                f"un ievadiet savu paroli:\n\n{link}\n\nVai arī ievadiet šo kodu kopā ar paroli:\n\n"
                f"kods: {token}\n\nJa šo vēstuli negaidījāt, neņemiet to vērā: bez apstiprinājuma nekas "
                "netiks mainīts.\n")
    what = "your new e-mail address" if new_address else "your e-mail address for your new account"
    return ("Confirm your e-mail address",
            f"{greeting(name, language)}\n\nPlease confirm {what} by opening this link and entering your "
            f"password:\n\n{link}\n\nor enter this code with your password:\n\ncode: {token}\n\n"
            "If you did not ask for this, ignore this message: nothing changes without it.\n")


def address_in_use_mail(shop_url: str, language: str) -> tuple[str, str]:
    login = page(shop_url, language, "login")
    if language == "lv":
        return ("Jūsu e-pasta adrese jau ir reģistrēta",
                "Kāds (iespējams, jūs) mēģināja reģistrēt kontu ar šo e-pasta adresi vai pārcelt uz "
                "to citu kontu, taču ar šo adresi mūsu veikalā jau ir konts.\n\n"
                f"Lai pieteiktos, atveriet {login}. Ja neatceraties paroli, tur varat izvēlēties jaunu. "
                "Ja tas nebijāt jūs, neņemiet šo vēstuli vērā: nekas nav mainīts.\n")
    return ("Your address is already registered",
            "Someone, perhaps you, tried to register or move an account to this e-mail address, "
            "which already belongs to an account in our shop.\n\n"
            f"To sign in, go to {login}; if you have forgotten the password, you can choose a new one "
            "there. If it was not you, ignore this message: nothing has changed.\n")


def password_reset_mail(shop_url: str, name: str, token: str, language: str, ttl_s: int) -> tuple[str, str]:
    link = page(shop_url, language, f"reset-password?token={token}")
    if language == "lv":
        return ("Paroles atjaunošana",
                f"{greeting(name, language)}\n\nKāds (iespējams, jūs) lūdza atjaunot jūsu konta paroli. "
                f"Lai izvēlētos jaunu paroli, atveriet šo saiti:\n\n{link}\n\nVai arī ievadiet šo kodu "
                f"paroles maiņas lapā:\n\nkods: {token}\n\nSaiti var izmantot vienu reizi "
                f"{within(ttl_s, language)} laikā. Kad jaunā parole būs iestatīta, visās ierīcēs būs "
                "jāpiesakās no jauna.\n\n"
                "Ja jūs to nelūdzāt, neņemiet šo vēstuli vērā: jūsu parole paliek tā pati.\n")
    return ("Choose a new password",
            f"{greeting(name, language)}\n\nSomeone, perhaps you, asked to reset the password of your "
            f"account. To choose a new password, open this link:\n\n{link}\n\nor enter this code on "
            f"the password reset page:\n\ncode: {token}\n\nThe link works once, within "
            f"{within(ttl_s, language)}. Setting a new password signs your account out on every device.\n\n"
            "If you did not ask for this, ignore this message: your password stays as it is.\n")


def within(seconds: int, language: str) -> str:
    """A period as a person says it: "1 hour", "90 minutes"; in Latvian as "... laikā" needs it
    ("1 stundas", "24 stundu", "90 minūšu")."""
    count, unit = (seconds // 3600, "hour") if seconds % 3600 == 0 else (max(seconds // 60, 1), "minute")
    if language == "lv":
        singular = count % 10 == 1 and count % 100 != 11
        word = {"hour": ("stundas", "stundu"), "minute": ("minūtes", "minūšu")}[unit][0 if singular else 1]
        return f"{count} {word}"
    return f"{count} {unit}{'' if count == 1 else 's'}"


def euros(cents: int, currency: str, language: str) -> str:
    return f"{cents // 100}{',' if language == 'lv' else '.'}{cents % 100:02d} {currency}"


def day(moment: dt.datetime | None) -> str:
    return moment.strftime("%d.%m.%Y") if moment else ""


def membership_mail(shop_url: str, name: str, notice: MembershipNotice, language: str) -> tuple[str, str]:
    """What a customer is told about their membership (P7), by the payments service's notice."""
    price, end, retry = euros(notice.amount_cents, notice.currency, language), day(notice.period_end), day(
        notice.next_attempt_at)
    link = page(shop_url, language, "account")
    if language == "lv":
        subject, text = {
            "started": ("Laipni lūdzam: jūsu dalība ir sākusies",
                        f"Jūsu dalība ir sākusies. Mēs iekasējām {price}; nākamais maksājums būs {end}."),
            "renewed": ("Jūsu dalība ir pagarināta",
                        f"Mēs iekasējām {price} par vēl vienu jūsu dalības mēnesi, līdz {end}."),
            "charge_failed": ("Neizdevās iekasēt dalības maksu no jūsu kartes",
                              f"Dalības maksu {price} neizdevās iekasēt. Mēs mēģināsim vēlreiz {retry}; "
                              "lūdzu, pārbaudiet savu karti vai saglabājiet citu."),
            "lapsed": ("Jūsu dalība ir beigusies",
                       f"Pēc vairākiem mēģinājumiem mums neizdevās iekasēt dalības maksu {price}, tāpēc "
                       "jūsu dalība ir beigusies. To var atsākt jebkurā laikā."),
            "cancelled": ("Jūsu dalība ir atcelta",
                          f"Jūsu dalība ir atcelta; tā ir spēkā līdz {end}, un maksa vairs netiks iekasēta."),
            "ended": ("Jūsu dalība ir beigusies", "Jūsu dalība ir beigusies; maksa vairs netiks iekasēta."),
        }[notice.kind]
        return subject, f"{greeting(name, language)}\n\n{text}\n\nJūsu dalība: {link}\n"
    subject, text = {
        "started": ("Welcome: your membership has started",
                    f"your membership has started. We charged {price}; the next charge is on {end}."),
        "renewed": ("Your membership is renewed",
                    f"we charged {price} for another month of your membership, until {end}."),
        "charge_failed": ("We could not charge your card for the membership",
                          f"charging {price} for your membership did not succeed. We will try again on "
                          f"{retry}; please check your card or save another one."),
        "lapsed": ("Your membership has ended",
                   f"we could not charge {price} for your membership after several tries, so it has ended. "
                   "You can start it again at any time."),
        "cancelled": ("Your membership is cancelled",
                      f"your membership is cancelled; it stays active until {end} and nothing more will be charged."),
        "ended": ("Your membership has ended", "your membership has ended; nothing more will be charged."),
    }[notice.kind]
    return subject, f"{greeting(name, language)}\n\n{text}\n\nYour membership: {link}\n"


def sender(pool: asyncpg.Pool, settings: AccountsSettings) -> mail.MailSender:
    return mail.MailSender(pool, settings, NOTIFY_CHANNEL, "accounts-mail", settings.outbox_poll_s)
