"""What any input must be before it reaches a model or PostgreSQL: HTTP bodies, path and query
values, headers, RPC arguments and event payloads all pass through here.

PostgreSQL refuses a NUL character in text and jsonb, and a lone surrogate cannot be encoded as
UTF-8 at all; both would surface as a server error half-way through a request, so they are
refused at the edge, naming where they were found. JSON is limited in depth (a deeply nested
document exhausts the parser's stack) and in the size of its numbers (nothing we store is wider
than a PostgreSQL bigint, and NaN or Infinity are not JSON).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from shared import cards as card_numbers

MAX_DEPTH = 32
INT_MIN, INT_MAX = -(2 ** 63), 2 ** 63 - 1
# A regular expression (the same in ECMAScript, Python and Rust) for a string without NUL: the
# OpenAPI documents state it on every string a request may carry.
NO_NUL_PATTERN = r"^[^\u0000]*$"

_UNSAFE_CHAR = re.compile("[\x00\ud800-\udfff]")
# In JSON text, a NUL or a surrogate can only come from a \u escape (the decoder refuses raw
# control characters, and UTF-8 cannot hold a surrogate), and an integer beyond a bigint needs
# 19 digits: text without these, and with fewer brackets than MAX_DEPTH, needs no walk.
# A card number (``shared.cards``) is refused wherever it appears, without echoing it.
# An escape can also spell a digit, a space or a dash: a card number written so is no number to
# the text search, but is one once decoded.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|00(?:3[0-9]|2[0dD])|[dD][89a-fA-F])")
_SUSPECT_CARD = re.compile(card_numbers.MAYBE)  # apart: one search of each is faster than of both
CARD_NUMBER = ("looks like a card number: card details go to the payment provider only; "
               "send its payment-method token instead", "card_number")


@dataclass(frozen=True)
class Unsafe:
    """One refused value: where (``body.items.0.name``), why, and a machine-readable type."""

    where: str
    message: str
    type: str


class InputError(ValueError):
    """The input could not be read as JSON within our limits."""


def text_problem(value: str) -> tuple[str, str] | None:
    """Why ``value`` cannot be stored as text (message, type), or None when it can."""
    found = _UNSAFE_CHAR.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "must not contain the NUL character (\\u0000)", "string_nul"
    return "must not contain an unpaired surrogate (not valid Unicode)", "string_surrogate"


def refuse_constant(name: str) -> Any:
    raise InputError(f"{name} is not a JSON number")


def finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise InputError(f"the number {text[:40]} is too large")
    return value


_decoder = json.JSONDecoder(parse_constant=refuse_constant, parse_float=finite_float)


def header_problem(headers: Any) -> str | None:
    """Why a message's headers cannot be carried on (they reach the outbox and the RPC record)."""
    found = unsafe_values(dict(headers or {}), "headers", cards=False)
    return None if not found else "; ".join(f"{u.where} {u.message}" for u in found)


def plainly_safe(text: str) -> bool:
    """True when the JSON ``text`` cannot hold anything ``check_depth`` or ``unsafe_values``
    would refuse, so the walk over its value can be skipped (the common case, in a few µs)."""
    return (text.count("[") + text.count("{") <= MAX_DEPTH and _SUSPECT_ESCAPE.search(text) is None
            and _SUSPECT_CARD.search(text) is None)


def loads(raw: bytes | str) -> Any:
    """Parse JSON text, refusing documents nested deeper than ``MAX_DEPTH``, NaN and Infinity."""
    return read_json(raw)[0]


def read_json(raw: bytes | str) -> tuple[Any, bool]:
    """``loads``, and whether the text was ``plainly_safe`` (then ``unsafe_values`` finds
    nothing in the value: the caller can skip that walk)."""
    try:
        text = bytes(raw).decode("utf-8") if isinstance(raw, (bytes, bytearray, memoryview)) else raw
        value = _decoder.decode(text)
    except RecursionError:
        raise InputError(f"the document is nested deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"the document is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:  # json.JSONDecodeError, int digit limits, finite_float
        raise InputError(str(exc)) from None
    if plainly_safe(text):
        return value, True
    check_depth(value)
    return value, False


def check_depth(value: Any) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise InputError(f"the document is nested deeper than {MAX_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def unsafe_values(value: Any, where: str, *, cards: bool = True) -> list[Unsafe]:
    """Every string (key or value) that cannot be stored, every integer wider than a bigint
    and, with ``cards``, every value holding a card number, found in a JSON-like ``value``
    (iteratively: depth cannot exhaust the stack)."""
    found: list[Unsafe] = []
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack and len(found) < 20:
        item, path = stack.pop()
        if isinstance(item, str):
            if (problem := text_problem(item)) is not None:
                found.append(Unsafe(path, *problem))
            elif cards and card_numbers.holds_card_number(item):
                found.append(Unsafe(path, *CARD_NUMBER))
        elif isinstance(item, bool) or item is None or isinstance(item, float):
            continue
        elif isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                found.append(Unsafe(path, f"must be between {INT_MIN} and {INT_MAX}", "int_range"))
            elif cards and item > 10 ** 12 and card_numbers.holds_card_number(item):
                found.append(Unsafe(path, *CARD_NUMBER))
        elif isinstance(item, dict):
            for key, child in item.items():
                key_text = str(key)
                if isinstance(key, str) and (problem := text_problem(key)) is not None:
                    found.append(Unsafe(f"{path}.{_printable(key_text)}", f"the key {problem[0]}", problem[1]))
                    continue
                stack.append((child, f"{path}.{key_text}"))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, f"{path}.{i}") for i, child in enumerate(item))
    found.reverse()
    return found


def _printable(text: str) -> str:
    return _UNSAFE_CHAR.sub("?", text)


def wide_integers(value: Any, where: str) -> list[Unsafe]:
    """Every integer wider than a bigint in a JSON-like ``value``: what validation made of
    text ("1_000_000_000_000_000_000_000" is an int to a model), which ``unsafe_values`` saw
    as text."""
    found: list[Unsafe] = []
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool):
            if not INT_MIN <= item <= INT_MAX:
                found.append(Unsafe(path, f"must be between {INT_MIN} and {INT_MAX}", "int_range"))
        elif isinstance(item, dict):
            stack.extend((child, f"{path}.{key}") for key, child in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((child, f"{path}.{i}") for i, child in enumerate(item))
    found.reverse()
    return found
