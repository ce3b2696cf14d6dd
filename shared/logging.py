"""JSON logs (structlog) with personal data redacted before anything is written.

Redaction works on two levels: values under keys that name personal data or secrets are
replaced whole, and every other string is scanned for e-mail addresses, card-like numbers
(13-19 digits passing the Luhn check), phone numbers and the values PostgreSQL quotes in its
error details. Objects (pydantic models, dataclasses) are turned into plain data first, and
standard-library loggers (aio-pika, asyncpg, aiohttp) go through the same JSON pipeline.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import sys
from typing import Any

from pydantic import BaseModel

import structlog

from shared.cards import redact_cards

REDACTED = "[redacted]"

# A key is sensitive when one of its words (``billing_address``, ``customerName``,
# ``nameko.auth_token``) is one of these, unless its first word says it names a thing of ours
# (``queue_name``, ``logger_name``).
SENSITIVE_WORDS = frozenset({
    "email", "mail", "phone", "mobile", "name", "surname", "address", "street", "postcode",
    "zip", "city", "ip", "agent", "password", "passwd", "secret", "token", "authorization",
    "cookie", "card", "pan", "cvc", "cvv", "iban", "birth", "dob",
})
NOT_PERSONAL_QUALIFIERS = frozenset({
    "logger", "queue", "service", "event", "exchange", "method", "table", "column", "consumer",
    "partner", "routing", "file", "host", "database", "db", "category", "field", "type",
})
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![\w.:-])\+?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,5}(?![\w.:-])")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PG_DETAIL = re.compile(r"(Key \([^)]*\)=\()(.*?)(\) (?:already exists|is not present|is still referenced))")


def _redact_phone(match: re.Match[str]) -> str:
    if _ISO_DATE.fullmatch(match.group(0)):
        return match.group(0)
    digits = re.sub(r"\D", "", match.group(0))
    # Eight or more digits with a + or separators reads as a phone number, not a count or id.
    return "[phone]" if len(digits) >= 8 else match.group(0)


def sensitive_key(key: str) -> bool:
    words = [w.lower() for w in _WORDS.findall(key)]
    if not words or words[0] in NOT_PERSONAL_QUALIFIERS and len(words) > 1:
        return False
    return any(w in SENSITIVE_WORDS for w in words)


def redact_text(text: str) -> str:
    text = _PG_DETAIL.sub(r"\1[redacted]\3", text)
    text = _EMAIL.sub("[email]", text)
    text = redact_cards(text)
    return _PHONE.sub(_redact_phone, text)


def redact(value: Any, key: str | None = None) -> Any:
    if key is not None and value not in (None, "") and sensitive_key(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, BaseModel):
        return redact(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return redact(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(v) for v in value]
    return redact_text(str(value))


_OWN_FIELDS = frozenset({"timestamp", "level", "logger", "logger_name", "service"})


def _redact_processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if k in _OWN_FIELDS else redact(v, k)) for k, v in event_dict.items()}


def configure_logging(service: str, level: str = "info", stream: Any = None) -> None:
    """JSON lines to ``stream`` (stderr), one object per event, personal data redacted."""
    stream = stream or sys.stderr
    numeric_level = getattr(logging, level.upper(), logging.INFO)
    shared_processors = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared_processors, structlog.processors.format_exc_info,
                    _redact_processor, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library: render those the same way.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared_processors, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, _redact_processor,
                    structlog.processors.JSONRenderer()],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric_level, logging.INFO))
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(logger_name=name)
