"""The payments service's rules, without I/O: what a PSP answer means for a payment, what is
left to refund, membership periods and the dunning schedule, and how long what is kept."""
from __future__ import annotations

import calendar
import datetime as dt
import uuid

from shared.contracts.privacy import ACCOUNTING_PERIOD

# A failed or abandoned attempt is no accounting record: it goes after this long.
FAILED_ATTEMPTS = dt.timedelta(days=90)
# A card request answered "try again" by the PSP is retried with the same key this long
# (the PSP keeps idempotency keys 24 hours); after that the attempt is given up.
IDEMPOTENCY_WINDOW = dt.timedelta(hours=23)

SETTLED = frozenset({"succeeded", "failed", "canceled"})
IN_FLIGHT = frozenset({"creating", "requires_action", "processing"})


def status_of(psp_status: str, *, failed: bool = False) -> str:
    """Our payment status for a PaymentIntent's status. An intent back in
    ``requires_payment_method`` after a confirmation is a failed attempt (Stripe's shape of a
    decline); the customer pays again with a new attempt."""
    if psp_status in ("succeeded", "canceled"):
        return psp_status
    if failed or psp_status == "requires_payment_method":
        return "failed"
    return "requires_action" if psp_status == "requires_action" else "processing"


def as_uuid(text: str) -> uuid.UUID | None:
    """Our id in a PSP's metadata or another service's event (None when it is not one)."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def order_key(order_id: uuid.UUID, attempt: int) -> str:
    return f"veikals-order-{order_id}-{attempt}"


def period_key(membership_id: uuid.UUID, period: int, attempt: int) -> str:
    return f"veikals-membership-{membership_id}-{period}-{attempt}"


def refund_key(refund_id: uuid.UUID) -> str:
    return f"veikals-refund-{refund_id}"


def customer_key(customer_id: uuid.UUID) -> str:
    return f"veikals-customer-{customer_id}"


class RefundTooLarge(ValueError):
    def __init__(self, left: int) -> None:
        super().__init__(f"only {left} cents are left to refund")
        self.left = left


def refund_amount(captured: int, refunded_or_pending: int, wanted: int | None) -> int:
    """What a refund may take: ``wanted`` (everything left when None), never more than is left."""
    left = captured - refunded_or_pending
    amount = left if wanted is None else wanted
    if amount <= 0 or amount > left:
        raise RefundTooLarge(max(left, 0))
    return amount


def add_month(moment: dt.datetime) -> dt.datetime:
    """The same day and time a calendar month later (the 31st becomes the month's last day)."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def next_retry(first_failed_at: dt.datetime, failed_attempts: int, schedule: list[float]) -> dt.datetime | None:
    """When a membership whose charge failed ``failed_attempts`` times this period is charged
    again (``schedule`` counts from the first failure), or None: it lapses."""
    if failed_attempts > len(schedule):
        return None
    return first_failed_at + dt.timedelta(seconds=schedule[failed_attempts - 1])


def fiscal_until(paid_at: dt.datetime) -> dt.date:
    return (paid_at + ACCOUNTING_PERIOD).date()
