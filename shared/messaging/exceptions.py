"""Remote errors on the wire, serialized exactly as nameko does.

An error crosses the wire as ``{"exc_type", "exc_path", "exc_args", "value"}``. The caller
raises the class registered for ``exc_path`` (with ``exc_args``), else a :class:`RemoteError`.
The dotted paths are a public contract: keep exception classes where they are.

The request-level errors below travel under nameko's own paths (``nameko.exceptions.*``), so a
stock nameko caller raises its own ``MethodNotFound`` for our service and we raise ours for its.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

_registry: dict[str, type[BaseException]] = {}


def exception_path(exc_type: type[BaseException]) -> str:
    explicit = exc_type.__dict__.get("wire_path")
    if explicit:
        return explicit
    module = inspect.getmodule(exc_type)
    return f"{module.__name__ if module else exc_type.__module__}.{exc_type.__name__}"


def remote_exception(exc_type: type[BaseException]) -> type[BaseException]:
    """Register ``exc_type`` so that callers re-raise it rather than a RemoteError."""
    _registry[exception_path(exc_type)] = exc_type
    return exc_type


class RemoteError(Exception):
    """An error raised by the remote method whose class the caller does not know."""

    def __init__(self, exc_type: str | None = None, value: str = "") -> None:
        self.exc_type = exc_type
        self.value = value
        super().__init__(f"{exc_type} {value}")


class BadRequest(Exception):
    wire_path = "nameko.exceptions.BadRequest"


@remote_exception
class MalformedRequest(BadRequest):
    wire_path = "nameko.exceptions.MalformedRequest"


@remote_exception
class MethodNotFound(BadRequest):
    wire_path = "nameko.exceptions.MethodNotFound"


@remote_exception
class IncorrectSignature(BadRequest):
    wire_path = "nameko.exceptions.IncorrectSignature"


class UnserializableValueError(Exception):
    wire_path = "nameko.exceptions.UnserializableValueError"

    def __init__(self, value: Any) -> None:
        try:
            self.repr_value = repr(value)
        except Exception:
            self.repr_value = "[__repr__ failed]"
        super().__init__()

    def __str__(self) -> str:
        return f"Unserializable value: `{self.repr_value}`"


class UnknownService(Exception):
    """No queue is bound for the service: the request was returned unroutable."""

    def __init__(self, service_name: str) -> None:
        self.service_name = service_name
        super().__init__(service_name)

    def __str__(self) -> str:
        return f"Unknown service `{self.service_name}`"


class RpcTimeout(Exception):
    """No reply arrived within the caller's timeout."""


def _safe(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return {_safe(k): _safe(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [_safe(v) for v in value]
    try:
        return str(value)
    except Exception:
        return "[__unicode__ failed]"


def serialize_exception(exc: BaseException) -> dict[str, Any]:
    return {
        "exc_type": type(exc).__name__,
        "exc_path": exception_path(type(exc)),
        "exc_args": [_safe(a) for a in exc.args],
        "value": _safe(exc),
    }


def deserialize_exception(data: dict[str, Any]) -> BaseException:
    exc_type = _registry.get(data.get("exc_path") or "")
    if exc_type is not None:
        try:
            return exc_type(*data.get("exc_args", ()))
        except TypeError:
            pass  # the registered class no longer takes these arguments
    return RemoteError(exc_type=data.get("exc_type"), value=data.get("value", ""))
