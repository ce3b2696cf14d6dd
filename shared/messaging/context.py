"""nameko's context headers: ``nameko.<key>`` on every message, carried and extended per hop.

Inside a worker (an RPC method or event handler being run) the context holds the caller's data
plus a ``call_id_stack`` ending with this worker's call id; anything the worker publishes
carries it on. Outside a worker every call gets a fresh ``<caller>.call.<uuid>`` id.
"""
from __future__ import annotations

import contextlib
import itertools
import uuid
from contextvars import ContextVar
from typing import Any, Iterator, Mapping

HEADER_PREFIX = "nameko."
CALL_ID_STACK = "call_id_stack"
PARENT_CALLS_TRACKED = 10  # nameko's default: the stack keeps this many parents plus the call

_current: ContextVar[dict[str, Any] | None] = ContextVar("veikals_call_context", default=None)
_effects: ContextVar[tuple[str, Iterator[int]] | None] = ContextVar("veikals_effects", default=None)
# The namespace of ids derived from a unit of work's key (uuid5).
EFFECTS_NAMESPACE = uuid.UUID("5f0c6c8e-6e1b-4b8e-9a55-7665696b616c")


@contextlib.contextmanager
def effects_of(key: str) -> Iterator[None]:
    """While this runs, the messages the work emits (events, webhooks) get ids derived from
    ``key`` and their order: the same work run again emits the same ids, which every
    outbox, webhook table and inbox then recognises, instead of "new" messages."""
    token = _effects.set((key, itertools.count()))
    try:
        yield
    finally:
        _effects.reset(token)


def effect_id() -> uuid.UUID:
    """The id of the next message the current work emits: derived inside ``effects_of``,
    random outside it."""
    scope = _effects.get()
    if scope is None:
        return uuid.uuid4()
    key, counter = scope
    return uuid.uuid5(EFFECTS_NAMESPACE, f"{key}/{next(counter)}")


def context_from_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k[len(HEADER_PREFIX):]: v for k, v in (headers or {}).items()
            if k.startswith(HEADER_PREFIX)}


def headers_from_context(context: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{HEADER_PREFIX}{k}": v for k, v in context.items() if v is not None}


def worker_context(parent: Mapping[str, Any], service: str, method: str) -> dict[str, Any]:
    """The context a worker runs in: the parent's data with this call pushed onto the stack."""
    data = dict(parent)
    stack = list(data.pop(CALL_ID_STACK, None) or [])
    stack.append(f"{service}.{method}.{uuid.uuid4()}")
    data[CALL_ID_STACK] = stack[-(PARENT_CALLS_TRACKED + 1):]
    return data


def enter_worker(context: dict[str, Any]):
    return _current.set(context)


def leave_worker(token) -> None:
    _current.reset(token)


def current_context() -> dict[str, Any] | None:
    return _current.get()


def outgoing_headers(caller: str) -> dict[str, Any]:
    """Headers for a message published now: the worker's context, or a new standalone call."""
    context = _current.get()
    if context is None:
        context = {CALL_ID_STACK: [f"{caller}.call.{uuid.uuid4()}"]}
    return headers_from_context(context)
