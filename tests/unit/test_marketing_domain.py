"""Marketing's rules: the unsubscribe token, the RFC 8058 headers, what a profile reads."""
import datetime as dt
import random
import uuid

import pytest

from services.marketing import domain

KEY = b"a key for the tests"
TODAY = dt.date(2026, 12, 1)


def test_a_token_names_its_person_and_channel_and_nothing_else():
    person = uuid.uuid4()
    for channel in domain.CHANNELS:
        token = domain.unsubscribe_token(KEY, person, channel, TODAY)
        assert domain.read_unsubscribe_token(KEY, token, TODAY, 30) == (person, channel)
        assert "@" not in token and len(token) < 64


def test_a_token_of_another_key_or_altered_in_any_byte_is_refused():
    rng = random.Random(20261201)  # fixed: the same bytes are altered on every run
    token = domain.unsubscribe_token(KEY, uuid.uuid4(), "email", TODAY)
    with pytest.raises(domain.BadToken):
        domain.read_unsubscribe_token(b"another key", token, TODAY, 30)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for _ in range(200):
        at = rng.randrange(len(token))
        altered = token[:at] + rng.choice(alphabet.replace(token[at], "")) + token[at + 1:]
        try:
            found = domain.read_unsubscribe_token(KEY, altered, TODAY, 30)
        except domain.BadToken:
            continue
        # The last character carries only padding bits: changing those alone changes nothing.
        assert at == len(token) - 1 and found == domain.read_unsubscribe_token(KEY, token, TODAY, 30)
    for junk in ("", "x", "A" * 47, "!!!!"):
        with pytest.raises(domain.BadToken):
            domain.read_unsubscribe_token(KEY, junk, TODAY, 30)


def test_a_token_expires():
    token = domain.unsubscribe_token(KEY, uuid.uuid4(), "sms", TODAY - dt.timedelta(days=31))
    with pytest.raises(domain.BadToken, match="expired"):
        domain.read_unsubscribe_token(KEY, token, TODAY, 30)
    assert domain.read_unsubscribe_token(KEY, token, TODAY, 31)[1] == "sms"


def test_the_one_click_headers_name_the_link_and_the_mailbox():
    links = domain.unsubscribe_links("https://shop.example/", "unsubscribe@shop.example", "tok_en")
    headers = domain.email_headers(links)
    assert headers == {
        "List-Unsubscribe": "<https://shop.example/v1/unsubscribe?token=tok_en>, "
                            "<mailto:unsubscribe@shop.example?subject=unsubscribe%20tok_en>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    body = domain.email_body("Sale!", "en", links)
    assert body.endswith("Unsubscribe: https://shop.example/v1/unsubscribe?token=tok_en\n")


def test_suppression_hashes_are_keyed_and_normalised():
    assert domain.keyed(KEY, "email", " Anna@Example.LV ") == domain.keyed(KEY, "email", "anna@example.lv")
    assert domain.keyed(KEY, "email", "anna@example.lv") != domain.keyed(b"other", "email", "anna@example.lv")
    assert domain.keyed(KEY, "email", "123") != domain.keyed(KEY, "phone", "123")


def test_orders_per_month():
    first = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert domain.orders_per_month(1, first, first) == 1.0
    assert domain.orders_per_month(6, first, first + dt.timedelta(days=90)) == 2.0
