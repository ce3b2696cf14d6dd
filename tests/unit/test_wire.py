import datetime as dt
import decimal
import uuid

import pytest
from pydantic import BaseModel

from shared.messaging import wire
from shared.messaging.exceptions import (
    IncorrectSignature, MethodNotFound, RemoteError, UnserializableValueError,
    deserialize_exception, remote_exception, serialize_exception,
)

U = uuid.UUID("3fa85f64-5717-4562-b3fc-2c963f66afa6")


def test_reads_kombu_5_typed_values():
    body = (b'{"at":{"__type__":"datetime","__value__":"2026-11-24T10:00:00+00:00"},'
            b'"day":{"__type__":"date","__value__":"2026-11-24"},'
            b'"amount":{"__type__":"decimal","__value__":"19.99"},'
            b'"id":{"__type__":"uuid","__value__":{"hex":"3fa85f6457174562b3fc2c963f66afa6"}}}')
    assert wire.loads(body) == {
        "at": dt.datetime(2026, 11, 24, 10, tzinfo=dt.timezone.utc),
        "day": dt.date(2026, 11, 24), "amount": decimal.Decimal("19.99"), "id": U}


def test_reads_kombu_4_plain_values_as_strings():
    assert wire.loads(b'{"at":"2026-11-24T10:00:00","amount":"19.99","id":"' + str(U).encode() + b'"}') == {
        "at": "2026-11-24T10:00:00", "amount": "19.99", "id": str(U)}


def test_writes_the_plain_form_every_kombu_reads():
    class Line(BaseModel):
        price: decimal.Decimal
    body = wire.dumps({"at": dt.datetime(2026, 1, 2, 3, 4, 5), "id": U,
                       "line": Line(price=decimal.Decimal("1.50")), "tags": ("a", "b")})
    assert wire.loads(body) == {"at": "2026-01-02T03:04:05", "id": str(U),
                                "line": {"price": "1.50"}, "tags": ["a", "b"]}


def test_unknown_type_is_refused():
    with pytest.raises(TypeError):
        wire.dumps({"x": object()})


def test_request_errors_travel_under_nameko_paths():
    assert serialize_exception(MethodNotFound("nope")) == {
        "exc_type": "MethodNotFound", "exc_path": "nameko.exceptions.MethodNotFound",
        "exc_args": ["nope"], "value": "nope"}
    again = deserialize_exception(serialize_exception(IncorrectSignature("too many")))
    assert isinstance(again, IncorrectSignature) and again.args == ("too many",)


def test_unregistered_error_becomes_remote_error():
    error = deserialize_exception(serialize_exception(KeyError("order 7")))
    assert isinstance(error, RemoteError)
    assert error.exc_type == "KeyError" and error.value == "'order 7'"


def test_registered_error_keeps_its_class():
    @remote_exception
    class OutOfStock(Exception):
        pass
    data = serialize_exception(OutOfStock("sku-1", 3))
    assert data["exc_path"] == f"{__name__}.OutOfStock"
    again = deserialize_exception(data)
    assert type(again) is OutOfStock and again.args == ("sku-1", "3")  # nameko stringifies args


def test_unserializable_value_message_matches_nameko():
    assert str(UnserializableValueError(object)) == "Unserializable value: `<class 'object'>`"


@pytest.mark.parametrize("body", [b"NaN", b"[Infinity]", b"[1e400]", b'{"a": "\\u0000"}', b"[" * 40 + b"]" * 40])
def test_what_postgresql_or_json_cannot_hold_is_refused(body):
    with pytest.raises(ValueError):
        wire.loads(body)
