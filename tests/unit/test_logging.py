import io
import json

from shared.logging import configure_logging, get_logger, redact, redact_text


def test_contact_details_and_cards_are_redacted_from_text():
    text = "jan@example.lv paid with 4111 1111 1111 1111, call +371 2912 3456 or 29123456"
    assert redact_text(text) == "[email] paid with [card], call [phone] or [phone]"


def test_ids_dates_and_amounts_survive():
    text = "order 3fa85f64-5717-4562-b3fc-2c963f66afa6 on 2026-11-24T10:00:00Z for 1999 cents, 3 items"
    assert redact_text(text) == text


def test_personal_fields_are_redacted_by_name_at_any_depth():
    assert redact({"customer": {"name": "Jānis", "address": {"street": "Brīvības 1"}}, "qty": 2}) == {
        "customer": {"name": "[redacted]", "address": "[redacted]"}, "qty": 2}


def test_log_lines_are_json_without_personal_data():
    out = io.StringIO()
    configure_logging("orders", stream=out)
    get_logger("test").info("guest checkout", email="anna@example.lv", note="ship to +37120000001")
    line = json.loads(out.getvalue().strip().splitlines()[-1])
    assert line["event"] == "guest checkout" and line["service"] == "orders"
    assert line["email"] == "[redacted]" and line["note"] == "ship to [phone]"
    assert "anna@" not in out.getvalue()


def test_keys_are_judged_by_their_words():
    from shared.logging import sensitive_key
    assert all(sensitive_key(k) for k in (
        "customer_name", "billingAddress", "nameko.auth_token", "user_agent", "ip", "card_last4"))
    assert not any(sensitive_key(k) for k in (
        "queue_name", "logger_name", "service", "user_id", "order_id", "category"))


def test_models_are_redacted_as_data_not_printed_whole():
    from shared.contracts.privacy import DataSubject
    subject = DataSubject(emails=["anna@example.lv"], phones=["+37129123456"])
    assert redact({"subject": subject}) == {
        "subject": {"customer_id": None, "emails": ["[email]"], "phones": ["[phone]"]}}


def test_values_in_database_error_details_are_redacted():
    text = 'duplicate key value violates unique constraint "c" DETAIL: Key (full_name)=(Jānis Bērziņš) already exists.'
    assert "Jānis" not in redact_text(text) and "Key (full_name)=([redacted]) already exists" in redact_text(text)


def test_library_logs_are_json_and_redacted_too():
    import logging
    out = io.StringIO()
    configure_logging("orders", stream=out)
    logging.getLogger("aiormq.connection").warning("cannot reach anna@example.lv")
    line = json.loads(out.getvalue().strip().splitlines()[-1])
    assert line["event"] == "cannot reach [email]" and line["logger"] == "aiormq.connection"
