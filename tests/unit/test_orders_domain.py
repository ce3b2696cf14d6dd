"""The orders service's rules: VAT inside a consumer price, an order's moves, pricing."""
import datetime as dt
import uuid

import pytest

from services.orders import domain


@pytest.mark.parametrize("unit, quantity, rate, vat", [
    (121, 1, 21, 21),     # exactly 21 % of the net
    (1380, 1, 21, 240),   # 239.50 rounds half up
    (329, 1, 12, 35),     # 35.25 rounds down
    (1299, 1, 5, 62),     # 61.857...
    (1, 1, 21, 0),
    (690, 2, 21, 240),    # per line, not per unit (2 x 119.75 would be 240 too; 2 x 120 would not)
])
def test_vat_is_inside_the_gross_and_rounded_half_up(unit, quantity, rate, vat):
    amounts = domain.line_amounts(unit, quantity, rate)
    assert (amounts.gross, amounts.vat, amounts.net) == (unit * quantity, vat, unit * quantity - vat)


def test_only_latvian_rates():
    with pytest.raises(ValueError):
        domain.line_amounts(100, 1, 19)


def test_lines_of_one_product_add_up_and_are_priced_from_the_catalogue():
    tea, book = uuid.uuid4(), uuid.uuid4()
    wanted = domain.quantities([(tea, 2), (book, 1), (tea, 3)])
    assert wanted == {tea: 5, book: 1}
    catalogue = {tea: {"sku": "TEA", "name": "Tea", "category": "food", "price_cents": 690, "vat_rate": 21},
                 book: {"sku": "BOOK", "name": "Book", "category": "books", "price_cents": 1299, "vat_rate": 5}}
    lines, total = domain.price(catalogue, wanted)
    assert [(l["sku"], l["quantity"], l["gross_cents"], l["vat_cents"]) for l in lines] == [
        ("TEA", 5, 3450, 599), ("BOOK", 1, 1299, 62)]
    assert (total.gross, total.vat, total.net) == (4749, 661, 4088)


@pytest.mark.parametrize("status, wanted, allowed", [
    ("created", "paid", True), ("created", "cancelled", True), ("created", "shipped", False),
    ("paid", "delivered", True), ("paid", "paid", False), ("shipped", "cancelled", False),
    ("delivered", "refunded", True), ("cancelled", "paid", False), ("refunded", "refunded", False),
])
def test_an_order_moves_only_forward(status, wanted, allowed):
    if allowed:
        domain.check_transition(status, wanted)
    else:
        with pytest.raises(domain.IllegalTransition):
            domain.check_transition(status, wanted)


def test_holds_and_periods():
    resolved = dt.datetime(2026, 1, 10, tzinfo=dt.timezone.utc)
    assert domain.hold_until(None, 730) is None
    assert domain.hold_until(resolved, 730) == dt.date(2028, 1, 10)
    assert domain.fiscal_until(resolved) > dt.date(2033, 1, 9)
    assert domain.invoice_number(2026, 42) == "VK-2026-000042"
