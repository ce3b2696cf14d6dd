"""Field types for request bodies whose OpenAPI schema says exactly what they accept.

Each rule is a length and a regular expression written so that ECMAScript (the JSON Schema a
client or a fuzzer reads), Rust (pydantic's validator) and Python agree on it: explicit
character classes, no ``\\s`` or ``\\d`` (whose meaning differs between them). A value that
matches the published schema is accepted, and one that does not is refused; normalising
(trimming, lower-casing, dropping a phone number's separators) happens only after the check.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, Strict, StringConstraints

# Whitespace trimmed from text: ASCII only, the same set in every engine.
TRIMMED = " \t\n\r\x0b\x0c"
_TRIMMED_CLASS = r" \t\n\r\u000b\u000c"
_NOT_BLANK = rf"^[^\u0000]*[^\u0000{_TRIMMED_CLASS}][^\u0000]*$"  # something besides whitespace, no NUL

# No controls, spaces or line breaks of any kind (an address goes into a mail header), nor the
# characters that separate or quote addresses ("a,b@x.lv" would be two).
_ADDRESS_CHAR = (r"[^@\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
                 r'"(),:;<>\[\\\]]')
EMAIL_PATTERN = rf"^{_ADDRESS_CHAR}{{1,64}}@{_ADDRESS_CHAR}+\.{_ADDRESS_CHAR}{{2,}}$"
EMAIL_MAX = 254
# E.164 with an optional 00 instead of +, and up to two separators between digits.
PHONE_PATTERN = r"^(\+|00)[1-9]([ ().-]{0,2}[0-9]){6,14}$"
_PHONE_SEPARATORS = str.maketrans("", "", " ().-")


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def omittable(**constraints: Any) -> Any:
    """A field that may be left out but is never null (so its schema says no default), with
    ``constraints`` as ``Field`` takes them (``gt=0``)."""
    return Field(default=None, json_schema_extra=_no_default, **constraints)


def _trim(value: str) -> str:
    return value.strip(TRIMMED)


def text(max_length: int, *, min_length: int = 1, trim: bool = True, description: str | None = None) -> Any:
    """Text of ``min_length`` to ``max_length`` characters that is not only whitespace; trimmed
    afterwards when ``trim`` (then ``min_length`` must be 1, or trimming could shorten a value
    the schema accepted below it)."""
    if trim and min_length != 1:
        raise ValueError("trimmed text can only promise a minimum length of 1")
    constraints = StringConstraints(min_length=min_length, max_length=max_length, pattern=_NOT_BLANK)
    if trim:
        return Annotated[str, constraints, AfterValidator(_trim)]
    return Annotated[str, constraints]


def normalize_email(value: str) -> str:
    return value.lower()


def normalize_phone(value: str) -> str:
    phone = value.translate(_PHONE_SEPARATORS)
    return "+" + phone[2:] if phone.startswith("00") else phone


Email = Annotated[str, StringConstraints(max_length=EMAIL_MAX, pattern=EMAIL_PATTERN),
                  AfterValidator(normalize_email)]
Phone = Annotated[str, StringConstraints(max_length=45, pattern=PHONE_PATTERN),
                  AfterValidator(normalize_phone)]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$"), AfterValidator(str.upper)]
PostalCode = Annotated[str, StringConstraints(
    min_length=2, max_length=12, pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]*[A-Za-z0-9]$")]


def _json_integer(value: object) -> object:
    """What JSON Schema calls an integer (18 and 18.0), and nothing else (not true, not "18")."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("an integer")
        return int(value)
    return value


# Body numbers and flags are taken as typed: JSON's true is not a quantity, nor 0 a boolean.
Int = Annotated[int, BeforeValidator(_json_integer)]
Flag = Annotated[bool, Strict()]


def _iso_date(value: object) -> object:
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("a date as YYYY-MM-DD")
    return value


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]


M = TypeVar("M", bound=BaseModel)


def either(model: M, first: str, second: str, message: str) -> M:
    """For a model validator: exactly one of two optional fields is given."""
    if (getattr(model, first) is None) == (getattr(model, second) is None):
        raise ValueError(message)
    return model
