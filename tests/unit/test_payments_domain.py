"""The payments rules: what a PSP answer means, refunds never above what is left, membership
months and the dunning schedule."""
import datetime as dt
import uuid

import pytest

from services.payments import domain

UTC = dt.timezone.utc


@pytest.mark.parametrize("psp, failed, ours", [
    ("succeeded", False, "succeeded"), ("requires_action", False, "requires_action"),
    ("processing", False, "processing"), ("canceled", False, "canceled"),
    ("requires_payment_method", False, "failed"),  # back to the start after a confirmation: declined
    ("requires_confirmation", True, "failed"), ("requires_capture", False, "processing")])
def test_psp_states(psp, failed, ours):
    assert domain.status_of(psp, failed=failed) == ours


def test_refunds_take_what_is_left_and_never_more():
    assert domain.refund_amount(1000, 0, None) == 1000
    assert domain.refund_amount(1000, 300, 200) == 200
    assert domain.refund_amount(1000, 300, None) == 700
    for wanted in (701, 0, -5):
        with pytest.raises(domain.RefundTooLarge) as refused:
            domain.refund_amount(1000, 300, wanted)
        assert refused.value.left == 700
    with pytest.raises(domain.RefundTooLarge):
        domain.refund_amount(1000, 1000, None)  # all refunded already


@pytest.mark.parametrize("start, end", [
    ((2026, 1, 31), (2026, 2, 28)), ((2028, 1, 31), (2028, 2, 29)), ((2026, 12, 15), (2027, 1, 15)),
    ((2026, 3, 31), (2026, 4, 30))])
def test_a_month_later(start, end):
    moment = dt.datetime(*start, 10, 30, tzinfo=UTC)
    assert domain.add_month(moment) == dt.datetime(*end, 10, 30, tzinfo=UTC)


def test_dunning_counts_from_the_first_failure_then_lapses():
    first = dt.datetime(2026, 11, 1, tzinfo=UTC)
    schedule = [86400, 3 * 86400, 5 * 86400]
    assert [domain.next_retry(first, n, schedule) for n in (1, 2, 3, 4)] == [
        first + dt.timedelta(days=1), first + dt.timedelta(days=3), first + dt.timedelta(days=5), None]


def test_keys_name_what_they_pay_for():
    order, membership = uuid.uuid4(), uuid.uuid4()
    assert domain.order_key(order, 0) != domain.order_key(order, 1)
    assert domain.period_key(membership, 2, 0) == domain.period_key(membership, 2, 0) != domain.period_key(membership, 3, 0)
