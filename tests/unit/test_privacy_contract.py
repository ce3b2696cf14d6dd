"""The privacy participant contract survives the wire both ways and refuses bad input."""
import datetime as dt
import uuid

import pytest
from pydantic import ValidationError

from shared.contracts.privacy import (
    DataInventory, DataSubject, Erased, ErasureOutcome, ErasureRequest, ExportChunk,
    ExportRecord, ExportRequest, Held, InventoryEntry, LegalBasis, Retained, Retention,
)
from shared.messaging import wire

REQUEST = uuid.uuid4()


def over_the_wire(model):
    return type(model).model_validate(wire.loads(wire.dumps(model)))


@pytest.mark.parametrize("message", [
    ExportRequest(request_id=REQUEST, subject=DataSubject(customer_id=uuid.uuid4()), cursor="c1"),
    ExportChunk(request_id=REQUEST, participant="orders", next_cursor=None, records=[
        ExportRecord(category="purchase history", data={"order": 1, "total": "19.99"})]),
    ErasureRequest(request_id=REQUEST, subject=DataSubject(emails=["Anna@Example.lv"])),
    ErasureOutcome(
        request_id=REQUEST, participant="orders", completed_at=dt.datetime.now(dt.timezone.utc),
        erased=[Erased(category="delivery address", records=2)],
        retained=[Retained(category="invoices", fields=["name", "total"],
                           legal_basis=LegalBasis.LEGAL_OBLIGATION,
                           reason="accounting law: seven years", until=dt.date(2033, 11, 24))],
        held=[Held(category="complaint", hold="complaint 42")]),
    DataInventory(participant="accounts", entries=[InventoryEntry(
        category="contact details", table="customers", fields=["name", "email", "phone"],
        purpose="manage orders and deliver goods", legal_basis=LegalBasis.CONTRACT,
        retention=Retention(after="account closed", clause="P22"),
        recipients=["support", "carrier"], clauses=["P1", "P13"])]),
])
def test_round_trip(message):
    assert over_the_wire(message) == message


def test_subject_is_normalized():
    subject = DataSubject(emails=[" Anna@Example.LV "], phones=["+371 2912-3456"])
    assert subject.emails == ["anna@example.lv"] and subject.phones == ["+37129123456"]


@pytest.mark.parametrize("bad", [
    {},  # nobody identified
    {"emails": ["not-an-address"]},
    {"phones": ["call me"]},
    {"customer_id": "42"},
    {"customer_id": str(uuid.uuid4()), "nickname": "x"},  # unknown fields are refused
])
def test_bad_subject_is_refused(bad):
    with pytest.raises(ValidationError):
        DataSubject.model_validate(bad)


def test_chunks_are_bounded():
    with pytest.raises(ValidationError):
        ExportRequest(request_id=REQUEST, subject=DataSubject(customer_id=uuid.uuid4()),
                      max_records=10_000)
    record = ExportRecord(category="x", data={})
    with pytest.raises(ValidationError):
        ExportChunk(request_id=REQUEST, participant="orders", records=[record] * 501)


def test_outcome_is_complete_only_when_nothing_remains():
    now = dt.datetime.now(dt.timezone.utc)
    assert ErasureOutcome(request_id=REQUEST, participant="p", completed_at=now).complete
    assert not ErasureOutcome(request_id=REQUEST, participant="p", completed_at=now,
                              remaining=["sessions"]).complete


def test_inventory_lists_declared_columns():
    inventory = over_the_wire(DataInventory(participant="orders", entries=[InventoryEntry(
        category="delivery", table="orders", fields=["address", "phone"], purpose="delivery",
        legal_basis=LegalBasis.CONTRACT, retention=Retention(period_days=1095, after="purchase", clause="P23"))]))
    assert inventory.declared_columns() == {("orders", "address"), ("orders", "phone")}
