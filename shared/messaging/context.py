"""nameko's context headers: ``nameko.<key>`` on every message, carried and extended per hop.

Inside a worker (an RPC method or event handler being run) the context holds the caller's data
plus a ``call_id_stack`` ending with this worker's call id; anything the worker publishes
carries it on. Outside a worker every call gets a fresh ``<caller>.call.<uuid>`` id.
"""
from __future__ import annotations

import uuid
from contextvars import ContextVar
from typing import Any, Mapping

HEADER_PREFIX = "nameko."
CALL_ID_STACK = "call_id_stack"
PARENT_CALLS_TRACKED = 10  # nameko's default: the stack keeps this many parents plus the call

_current: ContextVar[dict[str, Any] | None] = ContextVar("veikals_call_context", default=None)


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
