"""The record of processing (Art. 30) and the privacy notice are what the code declares: every
recipient is a staff role or a processor we have, every clause of the policy is traced to code
that exists and covered by the notice, and the committed copies under docs/ are the generated
ones."""
from __future__ import annotations

from html import escape

import pytest

from services.privacy import notice, records
from services.privacy.document import html
from services.privacy.notice_lv import LATVIAN, needed
from shared.contracts.privacy import DataInventory, InventoryEntry, LegalBasis, Retention
from shared.webhooks.registry import DEFAULT_FILE, PartnerRegistry


@pytest.fixture(scope="module")
def registry() -> PartnerRegistry:
    return PartnerRegistry.load(DEFAULT_FILE)


@pytest.fixture(scope="module")
def record(registry) -> records.RecordOfProcessing:
    return records.build(records.code_inventories(), registry)


def test_the_declarations_are_true(registry):
    assert records.problems(records.code_inventories(), registry) == []


def test_a_recipient_kind_without_a_registered_partner_is_a_problem(registry):
    no_carriers = PartnerRegistry([p for p in registry if p.kind != "carrier"])
    found = records.problems(records.code_inventories(), no_carriers)
    assert found and all("'carrier'" in problem for problem in found)
    odd = DataInventory(participant="shop", entries=[InventoryEntry(
        category="notes", table="notes", fields=["text"], purpose="p", legal_basis=LegalBasis.CONTRACT,
        retention=Retention(after="ever"), recipients=["the whole internet"])])
    assert records.problems([odd], registry) == [
        "shop: notes: recipient 'the whole internet' is no staff role and no processor of that kind is registered "
        "or configured"]


def test_every_clause_is_traced_to_code_that_exists():
    assert [t.clause for t in records.TRACE] == list(records.CLAUSES)
    for item in (*records.TRACE, *records.SECURITY_MEASURES):
        for mechanism in getattr(item, "mechanisms", None) or [item.mechanism]:
            records.resolve(mechanism)
    with pytest.raises(records.Unresolved):
        records.resolve("services.privacy.audit:no_such_thing")


def test_every_clause_is_covered_by_the_notice_in_both_languages(record):
    for language in ("lv", "en"):
        built = notice.build(record, language)
        assert built.clauses == set(records.CLAUSES)
        page = html(built)
        assert f'<html lang="{language}">' in page and "<script" not in page


def test_every_declared_string_has_its_latvian():
    assert [text for text in needed() if text not in LATVIAN] == []


def test_a_string_without_latvian_stops_the_notice(record):
    entry = record.activities[0].model_copy(update={"category": "a category nobody translated"})
    with pytest.raises(notice.MissingTranslation, match="nobody translated"):
        notice.build(record.model_copy(update={"activities": [entry]}), "lv")


def test_the_committed_copies_are_the_generated_ones(registry):
    for name, content in records.documents(records.code_inventories(), registry).items():
        assert (records.DOCS / name).read_text() == content, f"run: python -m services.privacy.records ({name})"


def test_every_category_and_processor_is_in_the_notice(record):
    page = html(notice.build(record, "en"))
    for activity in record.activities:
        assert escape(activity.category) in page
    for processor in record.processors:
        assert escape(processor.name) in page
