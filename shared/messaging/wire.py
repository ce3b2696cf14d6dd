"""The JSON body encoding kombu uses, read in both of its forms.

kombu < 5.3 writes dates, decimals and UUIDs as plain strings; kombu >= 5.3 wraps them as
``{"__type__": "datetime", "__value__": "..."}`` (UUIDs as ``{"hex": ...}``). We read both and
write the plain form, which every kombu version reads.
"""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import uuid
from typing import Any

from pydantic import BaseModel

from shared import inputs

CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"

_decoders = {
    "datetime": dt.datetime.fromisoformat,
    "date": lambda v: dt.datetime.fromisoformat(v).date(),
    "time": dt.time.fromisoformat,
    "decimal": decimal.Decimal,
    "uuid": lambda v: uuid.UUID(**v) if isinstance(v, dict) else uuid.UUID(v),
    "bytes": lambda v: v.encode("utf-8"),
    "base64": lambda v: base64.b64decode(v.encode("utf-8")),
}


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, (dt.datetime, dt.date, dt.time)):
        return obj.isoformat()
    if isinstance(obj, (decimal.Decimal, uuid.UUID)):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _object_hook(obj: dict[str, Any]) -> Any:
    if obj.keys() == {"__type__", "__value__"}:
        decoder = _decoders.get(obj["__type__"])
        if decoder is not None:
            return decoder(obj["__value__"])
    return obj


_decoder = json.JSONDecoder(object_hook=_object_hook, parse_constant=inputs.refuse_constant,
                            parse_float=inputs.finite_float)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=_default, separators=(",", ":")).encode(CONTENT_ENCODING)


def loads(body: bytes | str, *, checked: bool = True) -> Any:
    """The message body, or ValueError when it is not JSON, nests deeper than
    ``inputs.MAX_DEPTH`` or holds text PostgreSQL could not store (NUL, lone surrogates).
    ``checked=False`` skips the last two, for what our own services made (RPC replies)."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        body = bytes(body).decode(CONTENT_ENCODING)
    try:
        data = _decoder.decode(body)
    except RecursionError:
        raise ValueError(f"nested deeper than {inputs.MAX_DEPTH} levels") from None
    if not checked or inputs.plainly_safe(body):
        return data
    inputs.check_depth(data)
    found = inputs.unsafe_values(data, "body")
    if found:
        raise ValueError("; ".join(f"{u.where} {u.message}" for u in found))
    return data
