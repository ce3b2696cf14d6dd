"""Card numbers are recognised (and only card numbers), refused at every input and redacted in logs."""
import random
import uuid

import pytest

from pydantic import BaseModel

from shared import cards, inputs
from shared.http import HTTPProblem, validate_body
from shared.logging import redact_text

VISA, AMEX = "4242424242424242", "378282246310005"


class Note(BaseModel):
    note: str


@pytest.mark.parametrize("text", [VISA, f"card {VISA}.", "4242 4242 4242 4242", "4242-4242-4242-4242",
                                  "3782 822463 10005", "6011111111111117", "4000002760003184",
                                  "3056 930902 5904", "5105105105105100", "2223003122003222"])
def test_card_numbers_are_found(text):
    assert cards.holds_card_number(text)
    assert cards.REDACTED in cards.redact_cards(text) and "4242 4242" not in cards.redact_cards(text)


@pytest.mark.parametrize("text", ["4242424242424241",  # fails Luhn
                                  "424242424242",  # too short
                                  "42424242424242424242",  # too long, and not part of a card
                                  "+371 2000 0000", "2026-11-30T21:28:55Z", "1764538135",
                                  "+4242424242424242",  # after a +: a phone number
                                  "1000000000000009", "0000000000000",  # no network starts so
                                  "4758124158683",  # an EAN-13 product code (13 digits: no card today)
                                  "DE00 2830 0701 1031 1139 15"])  # an IBAN
def test_other_numbers_are_not(text):
    assert not cards.holds_card_number(text)


def test_ids_never_read_as_cards():
    rng = random.Random(11)  # fixed seed: UUIDs and hex ids, many with digit groups like card groups
    for _ in range(20_000):
        digits = "".join(rng.choice("0123456789") for _ in range(32))
        assert not cards.holds_card_number(str(uuid.UUID(digits)))
    for _ in range(200_000):
        assert not cards.holds_card_number(str(uuid.UUID(int=rng.getrandbits(128), version=4)))
    # Seen refused before: the middle groups and the last group's first digit passed Luhn.
    assert not cards.holds_card_number("a642709f-4380-4198-8975-5bfdb255324c")
    assert not cards.holds_card_number("msg_4242424242424242abcdef") and not cards.holds_card_number("x4242424242424242")


def test_inputs_refuse_a_card_number_without_echoing_it():
    found = inputs.unsafe_values({"note": f"my card is {VISA}", "pan": int(VISA), "ok": "fine"}, "body")
    assert sorted(u.where for u in found) == ["body.note", "body.pan"]
    assert all(u.type == "card_number" and VISA not in u.message for u in found)
    assert not inputs.plainly_safe(f'{{"n": "{AMEX}"}}')


@pytest.mark.parametrize("written", [
    "".join(f"\\u{ord(c):04x}" for c in VISA),  # every digit an escape
    "4242\\u00204242\\u00204242\\u00204242", "4242\\u002D4242\\u002d4242\\u002D4242"])  # escaped separators
def test_a_card_number_spelled_with_json_escapes_is_refused_as_well(written):
    """The text search before the walk cannot see these; the walk over the decoded value must run."""
    body = f'{{"note": "{written}"}}'.encode()
    assert not inputs.plainly_safe(body.decode())
    with pytest.raises(HTTPProblem) as refused:
        validate_body(body, Note)
    assert refused.value.problem.status == 422 and refused.value.problem.errors[0].type == "card_number"
    assert validate_body('{"note": "R\\u012bga"}'.encode(), Note).note == "Rīga"  # other escapes are plain


def test_logs_redact_card_numbers():
    assert VISA not in redact_text(f"paid with {VISA} today") and "[card]" in redact_text(VISA)


def test_headers_are_not_refused_for_numbers_like_timestamps():
    assert inputs.header_problem({"x-veikals-version": 4242424242424242}) is None


def test_the_suite_scan_finds_card_numbers_and_cvcs_but_not_uuids():
    from tests.cardscan import findings_in
    assert findings_in(f'{{"pan": "{VISA}"}}', "t") == ["t: a card number ending 4242"]
    assert findings_in('card[cvc]=123 and "cvc": "4567"', "t") == ["t: a CVC", "t: a CVC"]
    assert findings_in(f"{uuid.uuid4()} 2026-11-30 21:28:55.123456+00 cvc_check pass", "t") == []
