"""Marketing's rules, without I/O: what a consent covers, the signed unsubscribe token, what a
campaign message says and carries (RFC 8058), and how a profile reads."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import struct
import uuid
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

Channel = Literal["email", "sms"]
Purpose = Literal["direct_marketing", "profiling"]
Language = Literal["lv", "en"]
CHANNELS: tuple[Channel, ...] = ("email", "sms")
EPOCH = dt.date(2020, 1, 1)


class BadToken(ValueError):
    """A link's token that is not ours, was altered, or has expired."""


# --- the unsubscribe token: opaque, signed, no address in it ------------------------------------

def unsubscribe_token(key: bytes, person_id: uuid.UUID, channel: Channel, issued: dt.date) -> str:
    """``person id | channel | day issued``, signed; a mail client's one-click POST carries it."""
    payload = person_id.bytes + CHANNELS.index(channel).to_bytes(1, "big") + struct.pack(">H", (issued - EPOCH).days)
    mac = hmac.new(key, b"unsubscribe:" + payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")


def read_unsubscribe_token(key: bytes, token: str, today: dt.date, valid_days: int) -> tuple[uuid.UUID, Channel]:
    """The person and channel a token unsubscribes; BadToken when forged or expired."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        raise BadToken("not a token of ours") from None
    if len(raw) != 16 + 1 + 2 + 16:
        raise BadToken("not a token of ours")
    payload, mac = raw[:19], raw[19:]
    if not hmac.compare_digest(mac, hmac.new(key, b"unsubscribe:" + payload, hashlib.sha256).digest()[:16]):
        raise BadToken("not a token of ours")
    if payload[16] >= len(CHANNELS):
        raise BadToken("not a token of ours")
    issued = EPOCH + dt.timedelta(days=struct.unpack(">H", payload[17:19])[0])
    if today - issued > dt.timedelta(days=valid_days) or issued > today + dt.timedelta(days=1):
        raise BadToken("the link has expired")
    return uuid.UUID(bytes=payload[:16]), CHANNELS[payload[16]]


def confirmation_token() -> tuple[str, bytes]:
    """A new double opt-in token and the hash it is stored under."""
    token = secrets.token_urlsafe(24)
    return token, token_hash(token)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def keyed(key: bytes, kind: Literal["email", "phone"], value: str) -> bytes:
    """The suppression hash of an address or number (HMAC-SHA256, the service's secret)."""
    normal = value.strip().lower() if kind == "email" else value.strip()
    return hmac.new(key, f"{kind}:{normal}".encode(), hashlib.sha256).digest()


# --- messages ----------------------------------------------------------------------------------

FOOTER = {
    "lv": "Jūs saņemat šo vēstuli, jo piekritāt Veikala piedāvājumiem. Atteikties: {link}",
    "en": "You receive this because you agreed to Veikals offers. Unsubscribe: {link}",
}
SMS_STOP = {"lv": "Atteikties: {link}", "en": "Stop: {link}"}


@dataclass(frozen=True)
class Links:
    page: str        # the confirmation page (GET) and the one-click target (POST)
    mailto: str


def unsubscribe_links(public_url: str, mailbox: str, token: str) -> Links:
    return Links(page=f"{public_url.rstrip('/')}/v1/unsubscribe?token={token}",
                 mailto=f"mailto:{mailbox}?subject={quote('unsubscribe ' + token)}")


def email_headers(links: Links) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe: the HTTPS link first, the mailbox beside it."""
    return {"List-Unsubscribe": f"<{links.page}>, <{links.mailto}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def email_body(body: str, language: Language, links: Links) -> str:
    return f"{body.rstrip()}\n\n--\n{FOOTER[language].format(link=links.page)}\n"


def sms_text(body: str, language: Language, links: Links) -> str:
    return f"{body.rstrip()}\n{SMS_STOP[language].format(link=links.page)}"


def confirmation_mail(public_url: str, token: str, wording: str, language: Language) -> tuple[str, str]:
    link = f"{public_url.rstrip('/')}/v1/consents/confirm?token={token}"
    if language == "lv":
        return ("Apstipriniet Veikala jaunumu saņemšanu",
                f"Lūdzu, apstipriniet, ka vēlaties saņemt Veikala piedāvājumus uz šo adresi:\n\n{link}\n\n"
                f"Jūs piekrītat: {wording}\n\nJa to nelūdzāt jūs, neko nedariet: bez apstiprinājuma "
                "mēs jums nerakstīsim.\n")
    return ("Confirm Veikals offers by e-mail",
            f"Please confirm that you want to receive Veikals offers at this address:\n\n{link}\n\n"
            f"You agree to: {wording}\n\nIf you did not ask for this, do nothing: without your "
            "confirmation we will not write to you.\n")


# --- profiles ----------------------------------------------------------------------------------

def orders_per_month(orders: int, first: dt.datetime, last: dt.datetime) -> float:
    """How often the customer buys: orders per 30 days between the first and the last (one
    month at least)."""
    months = max((last - first).total_seconds() / (30 * 86400), 1.0)
    return round(orders / months, 2)
