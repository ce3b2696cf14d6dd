"""The privacy service's rules: deadlines (P26, P27), who takes part, when a request is done."""
import datetime as dt

from services.privacy import domain
from shared.contracts.privacy import DataSubject

UTC = dt.timezone.utc


def test_a_request_is_due_a_calendar_month_later_and_an_extension_adds_months():
    received = dt.datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
    assert domain.due_at(received) == dt.datetime(2026, 2, 28, 10, 0, tzinfo=UTC)  # no 31 February
    assert domain.due_at(received, 2) == dt.datetime(2026, 4, 30, 10, 0, tzinfo=UTC)
    assert domain.due_at(dt.datetime(2026, 11, 15, tzinfo=UTC), 2) == dt.datetime(2027, 2, 15, tzinfo=UTC)
    assert domain.due_at(dt.datetime(2028, 1, 30, tzinfo=UTC)) == dt.datetime(2028, 2, 29, tzinfo=UTC)


def test_the_same_subject_and_kind_are_one_request_whatever_the_order_of_addresses():
    one = DataSubject(emails=["a@example.lv", "b@example.lv"])
    other = DataSubject(emails=["B@example.lv", "a@example.lv"])
    assert domain.subject_key(b"k", "erasure", one) == domain.subject_key(b"k", "erasure", other)
    assert domain.subject_key(b"k", "erasure", one) != domain.subject_key(b"k", "export", one)
    assert domain.subject_key(b"k", "erasure", one) != domain.subject_key(b"other", "erasure", one)


def test_who_takes_part():
    processors = [("door", "carrier"), ("texts", "sms"), ("books", "accounting")]
    assert domain.participants("erasure", processors) == [
        "accounts", "orders", "payments", "marketing", "privacy", "partner:door", "partner:texts", "partner:books"]
    assert domain.participants("objection", processors) == ["marketing", "partner:texts"]
    assert domain.participants("rectification", processors) == [
        "accounts", "partner:door", "partner:texts", "partner:books"]


def test_a_request_completes_when_every_task_has_and_needs_staff_when_one_failed():
    assert domain.request_state(["done", "manual"]) == "completed"
    assert domain.request_state(["done", "held"]) == "open"
    assert domain.request_state(["done", "failed", "pending"]) == "attention"
    assert domain.backoff(0) == dt.timedelta(seconds=5) and domain.backoff(20) == dt.timedelta(hours=1)
