"""JSON logs (structlog) with personal data redacted before anything is written.

Redaction works on two levels: values under keys that name personal data or secrets are
replaced whole, and every other string is scanned for e-mail addresses, card-like numbers
(13-19 digits passing the Luhn check) and phone numbers.
"""
from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

REDACTED = "[redacted]"

# Keys whose values are personal data or secrets, whatever they look like.
SENSITIVE_KEYS = frozenset({
    "email", "e_mail", "phone", "phone_number", "name", "full_name", "first_name", "last_name",
    "address", "street", "address_line", "address_line1", "address_line2", "postcode",
    "postal_code", "zip", "city", "ip", "ip_address", "user_agent", "password", "secret",
    "token", "access_token", "refresh_token", "authorization", "card_number", "pan", "cvc",
    "cvv", "iban",
})

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_CARD_CANDIDATE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_PHONE = re.compile(r"(?<![\w.:-])\+?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,5}(?![\w.:-])")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _redact_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[card]" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else match.group(0)


def _redact_phone(match: re.Match[str]) -> str:
    if _ISO_DATE.fullmatch(match.group(0)):
        return match.group(0)
    digits = re.sub(r"\D", "", match.group(0))
    # Eight or more digits with a + or separators reads as a phone number, not a count or id.
    return "[phone]" if len(digits) >= 8 else match.group(0)


def redact_text(text: str) -> str:
    text = _EMAIL.sub("[email]", text)
    text = _CARD_CANDIDATE.sub(_redact_card, text)
    return _PHONE.sub(_redact_phone, text)


def redact(value: Any, key: str | None = None) -> Any:
    if key is not None and key.lower() in SENSITIVE_KEYS and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [redact(v) for v in value]
    return value


def _redact_processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if k in ("timestamp", "level", "logger_name", "service") else redact(v, k))
            for k, v in event_dict.items()}


def configure_logging(service: str, level: str = "info", stream: Any = None) -> None:
    """JSON lines to ``stream`` (stderr), one object per event, personal data redacted."""
    logging.basicConfig(
        format="%(message)s", stream=stream or sys.stderr,
        level=getattr(logging, level.upper(), logging.INFO), force=True,
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_processor,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(logger_name=name)
