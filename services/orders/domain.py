"""The orders service's rules, without I/O: money, VAT, an order's life, invoice numbers,
history cursors and how long what is kept."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from shared.contracts.privacy import ACCOUNTING_PERIOD

# Latvian VAT: 21 % standard, 12 % and 5 % reduced (whole percent).
VAT_RATES = (21, 12, 5)
CURRENCY = "EUR"

# P23: a guest's purchase history (P25's accounting period is in shared.contracts.privacy).
GUEST_HISTORY = dt.timedelta(days=3 * 365)
CHECKOUT_KEY_TTL = dt.timedelta(hours=24)  # as Stripe keeps idempotency keys


class IllegalTransition(Exception):
    def __init__(self, status: str, wanted: str) -> None:
        super().__init__(f"an order that is {status} cannot become {wanted}")
        self.status, self.wanted = status, wanted


# What each state may become. A paid order can be cancelled (payments refunds it); a carrier
# may report a delivery without having reported the pick-up.
TRANSITIONS: dict[str, frozenset[str]] = {
    "created": frozenset({"paid", "cancelled"}),
    "paid": frozenset({"shipped", "delivered", "cancelled", "refunded"}),
    "shipped": frozenset({"delivered", "refunded"}),
    "delivered": frozenset({"refunded"}),
    "cancelled": frozenset(),
    "refunded": frozenset(),
}


def check_transition(status: str, wanted: str) -> None:
    if wanted not in TRANSITIONS[status]:
        raise IllegalTransition(status, wanted)


@dataclass(frozen=True)
class LineAmounts:
    net: int
    vat: int
    gross: int


def line_amounts(unit_price_cents: int, quantity: int, vat_rate: int) -> LineAmounts:
    """A line's amounts from a VAT-inclusive unit price: the VAT in the gross, rounded half up
    to the cent (per line, as the invoice shows it)."""
    if vat_rate not in VAT_RATES:
        raise ValueError(f"not a Latvian VAT rate: {vat_rate}")
    gross = unit_price_cents * quantity
    vat = (2 * gross * vat_rate + 100 + vat_rate) // (2 * (100 + vat_rate))
    return LineAmounts(net=gross - vat, vat=vat, gross=gross)


def totals(lines: list[LineAmounts]) -> LineAmounts:
    return LineAmounts(net=sum(l.net for l in lines), vat=sum(l.vat for l in lines),
                       gross=sum(l.gross for l in lines))


def quantities(lines: Iterable[tuple[uuid.UUID, int]]) -> dict[uuid.UUID, int]:
    """How many of each product: the lines of one product added up, in first-seen order."""
    wanted: dict[uuid.UUID, int] = {}
    for product_id, quantity in lines:
        wanted[product_id] = wanted.get(product_id, 0) + quantity
    return wanted


def price(products: Mapping[uuid.UUID, Mapping[str, Any]], wanted: dict[uuid.UUID, int]) -> tuple[list[dict[str, Any]], LineAmounts]:
    """The order's lines at the catalogue's prices, and their totals."""
    lines = []
    for product_id, quantity in wanted.items():
        p = products[product_id]
        amounts = line_amounts(p["price_cents"], quantity, p["vat_rate"])
        lines.append({"product_id": product_id, "sku": p["sku"], "name": p["name"], "category": p["category"],
                      "quantity": quantity, "unit_price_cents": p["price_cents"], "vat_rate": p["vat_rate"],
                      "net_cents": amounts.net, "vat_cents": amounts.vat, "gross_cents": amounts.gross})
    return lines, totals([LineAmounts(l["net_cents"], l["vat_cents"], l["gross_cents"]) for l in lines])


def invoice_number(year: int, seq: int) -> str:
    return f"VK-{year}-{seq:06d}"


def request_hash(body: dict[str, Any]) -> bytes:
    """What an Idempotency-Key is bound to: the request as the server understood it."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
                          .encode()).digest()


def hold_until(resolved_at: dt.datetime | None, hold_days: int) -> dt.date | None:
    """A complaint holds the customer's order data while it is open (None: until it is
    resolved) and for the limitation period after it is resolved (P24)."""
    return None if resolved_at is None else (resolved_at + dt.timedelta(days=hold_days)).date()


def fiscal_until(paid_at: dt.datetime) -> dt.date:
    """The end of the accounting period of a paid order (P25)."""
    return (paid_at + ACCOUNTING_PERIOD).date()
