"""Card numbers (PANs): how we recognise one, so that none is stored, logged or passed on.

Card numbers go from the customer's browser to the PSP only (P3, P17; PCI DSS scope): our
inputs refuse a value that holds one (``shared.inputs``), our logs redact one
(``shared.logging``), and the test suite scans every table and log for one afterwards.

A candidate is 13 to 19 digits in a row, or in the groups cards are printed in (4-4-4-4 with
an optional short tail, Amex's 4-6-5), standing alone (not touching a letter or digit, so not
a part of an id, a hash or a token), that starts as the cards of
the networks do (2 to 6: Mastercard, Amex, Diners, JCB, Visa, Discover, UnionPay, Maestro),
is not written after a "+" (a phone number), and passes the Luhn check. A UUID's digit groups
(8-4-4-4-12) never read as a card: its 4-4-4 groups touch the hex around them.
"""
from __future__ import annotations

import re

_CANDIDATE = re.compile(
    r"(?<![0-9A-Za-z+])(?=[2-6])(?:[0-9]{13,19}|[0-9]{4}(?:[ -][0-9]{4}){2,3}(?:[ -][0-9]{1,3})?|[0-9]{4}[ -][0-9]{6}[ -][0-9]{5})"
    r"(?![0-9A-Za-z])")
# Cheap pre-check for text that may hold a candidate (13 digits in a row, or card groups).
MAYBE = r"[0-9]{13}|[0-9]{4}[ -][0-9]{4}[ -][0-9]{4}|[0-9]{4}[ -][0-9]{6}[ -][0-9]{5}"
REDACTED = "[card]"


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _is_card(candidate: str) -> bool:
    digits = re.sub(r"[ -]", "", candidate)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def card_numbers(text: str) -> list[str]:
    """The card numbers in ``text`` (for a scan's report; never log what it returns)."""
    return [m.group(0) for m in _CANDIDATE.finditer(text) if _is_card(m.group(0))]


def holds_card_number(value: str | int) -> bool:
    text = str(value)
    return any(_is_card(m.group(0)) for m in _CANDIDATE.finditer(text))


def redact_cards(text: str) -> str:
    return _CANDIDATE.sub(lambda m: REDACTED if _is_card(m.group(0)) else m.group(0), text)
