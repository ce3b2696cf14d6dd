"""Card numbers (PANs): how we recognise one, so that none is stored, logged or passed on.

Card numbers go from the customer's browser to the PSP only (P3, P17; PCI DSS scope): our
inputs refuse a value that holds one (``shared.inputs``), our logs redact one
(``shared.logging``), and the test suite scans every table and log for one afterwards.

A candidate is 13 to 19 digits in a row, or in the groups cards are printed in (4-4-4-4 with
an optional short tail, Amex's 4-6-5, Diners' 4-6-4), standing alone (not touching a letter or
digit, so not a part of an id, a hash or a token), not written after a "+" (a phone number).
It is a card number when it has the prefix and the length of a network's cards (``NETWORKS``)
and passes the Luhn check: so a product's EAN-13 code (13 digits, as no card issued today) or a
UUID (whose 4-4-4 groups touch the hex around them) never reads as one.
"""
from __future__ import annotations

import re

_CANDIDATE = re.compile(
    r"(?<![0-9A-Za-z+])(?=[2-6])(?:[0-9]{13,19}|[0-9]{4}(?:[ -][0-9]{4}){2,3}(?:[ -][0-9]{1,3})?"
    r"|[0-9]{4}[ -][0-9]{6}[ -][0-9]{4,5})(?![0-9A-Za-z])")


def _prefixes(*ranges: tuple[int, int]) -> tuple[str, ...]:
    return tuple(str(n) for low, high in ranges for n in range(low, high + 1))


# The networks' numbers today: (prefixes, lengths). Visa's 13-digit numbers are no longer issued.
NETWORKS: list[tuple[tuple[str, ...], tuple[int, ...]]] = [
    (("4",), (16, 19)),                                           # Visa
    (_prefixes((51, 55), (2221, 2720)), (16,)),                   # Mastercard
    (("34", "37"), (15,)),                                        # American Express
    (_prefixes((300, 305)) + ("36", "38", "39"), (14, 16, 17, 18, 19)),  # Diners Club
    (("6011", "65") + _prefixes((644, 649)), (16, 17, 18, 19)),   # Discover
    (_prefixes((3528, 3589)), (16, 17, 18, 19)),                  # JCB
    (("62",), (16, 17, 18, 19)),                                  # UnionPay
    (("50",) + _prefixes((56, 69)), (16, 17, 18, 19)),            # Maestro
]
# Cheap pre-check for text that may hold a candidate: 13 digits in a row, or groups of 4-4-4 or
# 4-6-4 digits (written from their common start, which a search runs several times faster).
MAYBE = r"[0-9]{4}(?:[0-9]{9}|[ -][0-9]{4}[ -][0-9]{4}|[ -][0-9]{6}[ -][0-9]{4})"
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
    return any(digits.startswith(prefixes) and len(digits) in lengths for prefixes, lengths in NETWORKS) \
        and luhn_ok(digits)


def card_numbers(text: str) -> list[str]:
    """The card numbers in ``text`` (for a scan's report; never log what it returns)."""
    return [m.group(0) for m in _CANDIDATE.finditer(text) if _is_card(m.group(0))]


def holds_card_number(value: str | int) -> bool:
    text = str(value)
    return any(_is_card(m.group(0)) for m in _CANDIDATE.finditer(text))


def redact_cards(text: str) -> str:
    return _CANDIDATE.sub(lambda m: REDACTED if _is_card(m.group(0)) else m.group(0), text)
