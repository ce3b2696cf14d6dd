"""A sandbox payment service provider that speaks the part of Stripe's HTTP API the shop uses.

The official ``stripe`` package talks to it unchanged: point ``base_addresses={"api": ...}`` here.
It answers in Stripe's wire format (form-encoded requests, JSON answers, Stripe's error bodies and
status codes, ``Request-Id``, ``Idempotency-Key`` replays with ``Idempotent-Replayed: true``) for
customers, payment methods, payment intents, charges, refunds, disputes and events, and sends
signed webhooks (``Stripe-Signature``) that ``stripe.Webhook.construct_event`` accepts. Events
sent: charge.succeeded, payment_intent.succeeded, payment_intent.payment_failed,
payment_intent.requires_action, payment_intent.canceled, refund.created, charge.refunded,
charge.dispute.created, charge.dispute.closed.

Stripe's test cards decide what a confirmation does:

    4242424242424242, 5555555555554444   succeed
    4000000000009995                     card_declined / insufficient_funds
    4000000000000069                     expired_card
    4000000000000002, 4000000000000341   card_declined / generic_decline (0341 attaches fine)
    4000002760003184                     always needs authentication (off session: declined)
    4000002500003155                     needs authentication on session only

Every /v1 call needs the secret key (``Authorization: Bearer``, or ``curl -u key:``); the
publishable key may only create payment methods, as a customer's browser does. ``expand[]``
works on top-level ids. Not offered: lists, updates, manual capture, setup intents.

A card number and CVC are never stored, logged or echoed: a payment method keeps the brand,
last4, expiry, a keyed fingerprint and the behaviour derived from the number. All state lives in
memory: a restart forgets every object, event and idempotency key.

The customer's bank page (3-D Secure) and the sandbox's steering are not Stripe's API:

    POST /_test/authenticate/{pi}  {"result": "succeed" | "fail"}   (or GET ?result=succeed)
    POST /_control/behaviour  {"drop_webhooks": 1, "delay_s": 0.5, "fail_next": 2,
                               "fail_status": 500, "decline_next": 1, "webhook_url": "http://..."}
    GET  /_control/events     every event, with delivered / dropped / attempts
    POST /_control/events/{id}/resend
    GET  /_control/requests   every /v1 request (method, path, idempotency key, status; no params)
    POST /_control/disputes   {"payment_intent": "pi_...", "reason": "fraudulent"}
    POST /_control/disputes/{id}/close  {"status": "won" | "lost"}
    POST /_control/reset

    python -m deploy.sandbox.psp --port 9210 \\
        --secret-key-env VEIKALS_PAYMENTS_PSP_SECRET_KEY \\
        --publishable-key-env VEIKALS_PAYMENTS_PSP_PUBLISHABLE_KEY \\
        --webhook-secret-env VEIKALS_PAYMENTS_PSP_WEBHOOK_SECRET \\
        --webhook-url http://127.0.0.1:8103/v1/psp/webhooks
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web
from stripe._api_version import _ApiVersion

API_VERSION = _ApiVersion.CURRENT
IDEMPOTENCY_TTL_S = 24 * 3600
WEBHOOK_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
ID_ALPHABET = string.ascii_letters + string.digits


class Decline(NamedTuple):
    code: str
    decline_code: str
    message: str


GENERIC_DECLINE = Decline("card_declined", "generic_decline", "Your card was declined.")
AUTHENTICATION_REQUIRED = Decline("authentication_required", "authentication_required",
                                  "Your card was declined. This transaction requires authentication.")
# What a confirmation does with each of Stripe's test numbers; any other valid number succeeds.
TEST_CARDS: dict[str, Decline | str] = {
    "4000000000009995": Decline("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    "4000000000000069": Decline("expired_card", "expired_card", "Your card has expired."),
    "4000000000000002": GENERIC_DECLINE,
    "4000000000000341": GENERIC_DECLINE,
    "4000002760003184": "authenticate_always",
    "4000002500003155": "authenticate_on_session",
}
CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELLATION_REASONS = {"duplicate", "fraudulent", "requested_by_customer", "abandoned"}
REFUND_REASONS = {"duplicate", "fraudulent", "requested_by_customer"}
# Which top-level fields ``expand[]`` may turn from an id into the object, and where it lives.
EXPANDABLE = {"customer": "customers", "payment_method": "payment_methods",
              "latest_charge": "charges", "charge": "charges", "payment_intent": "payment_intents"}

# The parameters each route accepts: a kind ("str", "int", "bool", "metadata", "list") or a
# nested spec. Anything else is Stripe's ``parameter_unknown``.
CUSTOMER_CREATE = {"email": "str", "name": "str", "description": "str", "metadata": "metadata"}
PAYMENT_METHOD_CREATE = {"type": "str", "metadata": "metadata",
                         "card": {"number": "str", "exp_month": "int", "exp_year": "int", "cvc": "str"}}
PAYMENT_INTENT_CREATE = {
    "amount": "int", "currency": "str", "customer": "str", "payment_method": "str",
    "confirm": "bool", "off_session": "bool", "return_url": "str", "metadata": "metadata",
    "description": "str", "payment_method_types": "list", "setup_future_usage": "str",
}
PAYMENT_INTENT_CONFIRM = {"payment_method": "str", "off_session": "bool", "return_url": "str"}
REFUND_CREATE = {"payment_intent": "str", "charge": "str", "amount": "int", "reason": "str",
                 "metadata": "metadata"}


class ApiError(Exception):
    """An answer in Stripe's error format; ``remember`` is False when nothing began executing."""

    def __init__(self, status: int, type_: str, message: str, *, code: str | None = None,
                 param: str | None = None, decline_code: str | None = None,
                 payment_intent: dict | None = None, payment_method: dict | None = None,
                 remember: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.remember = remember
        self.error = {"type": type_, "message": message, "code": code, "param": param,
                      "decline_code": decline_code, "payment_intent": payment_intent,
                      "payment_method": payment_method}

    def body(self) -> dict[str, Any]:
        return {"error": {k: v for k, v in self.error.items() if v is not None}}


def invalid(message: str, *, param: str | None = None, code: str | None = None,
            status: int = 400, remember: bool = True, **extra: Any) -> ApiError:
    return ApiError(status, "invalid_request_error", message, param=param, code=code,
                    remember=remember, **extra)


def bad_param(message: str, param: str, code: str | None = None) -> ApiError:
    return invalid(message, param=param, code=code, remember=False)  # validation: no result kept


def no_such(kind: str, object_id: str, param: str = "id") -> ApiError:
    return invalid(f"No such {kind}: '{object_id}'", param=param, code="resource_missing", status=404)


def card_error(decline: Decline, param: str | None = None, **extra: Any) -> ApiError:
    decline_code = decline.decline_code if decline.code in ("card_declined", "expired_card",
                                                            "authentication_required") else None
    return ApiError(402, "card_error", decline.message, code=decline.code, param=param,
                    decline_code=decline_code, **extra)


def random_part(length: int = 24) -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(length))


def new_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{random_part(length)}"


def now() -> int:
    return int(time.time())


def mask_key(key: str) -> str:
    """Stripe shows a wrong key with everything but its last four characters hidden."""
    return "*" * max(len(key) - 4, 0) + key[-4:] if len(key) > 8 else "*" * len(key)


def luhn_ok(number: str) -> bool:
    total = 0
    for i, digit in enumerate(reversed(number)):
        d = int(digit) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def card_brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if 51 <= int(number[:2]) <= 55 or 2221 <= int(number[:4]) <= 2720:
        return "mastercard"
    return "amex" if number[:2] in ("34", "37") else "unknown"


def full_year(year: int) -> int:
    return year + 2000 if year < 100 else year


def card_problem(number: str, exp_month: int, exp_year: int, cvc: str | None) -> tuple[str, ...] | None:
    """What Stripe refuses when a card is tokenised, as (code, field, message); never the number."""
    today, year = dt.date.today(), full_year(exp_year)
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return "invalid_number", "number", "Your card number is not a valid card number."
    if not luhn_ok(number):
        return "incorrect_number", "number", "Your card number is incorrect."
    if not 1 <= exp_month <= 12 or (year == today.year and exp_month < today.month):
        return "invalid_expiry_month", "exp_month", "Your card's expiration month is invalid."
    if not today.year <= year <= today.year + 50:
        return "invalid_expiry_year", "exp_year", "Your card's expiration year is invalid."
    if cvc is not None and not re.fullmatch(r"\d{3,4}", cvc):
        return "invalid_cvc", "cvc", "Your card's security code is invalid."
    return None


def parse_form(text: str) -> dict[str, Any]:
    """``card[number]=..&expand[]=..&types[0]=..`` into nested dicts (lists come from the spec)."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        match = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
        if not match:
            raise bad_param(f"Invalid parameter name: {key}", key, "parameter_unknown")
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise bad_param(f"Invalid hash: {key}", key)
        last = parts[-1] if parts[-1] != "" else str(len(node))  # ``expand[]=`` appends
        if isinstance(node.get(last), dict):
            raise bad_param(f"Invalid hash: {key}", key)
        node[last] = value
    return root


def clean(params: dict[str, Any], spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Check every parameter against the route's spec and convert it to its type."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else key
        if key not in spec:
            raise bad_param(f"Received unknown parameter: {name}", name, "parameter_unknown")
        kind = spec[key]
        if isinstance(kind, dict):
            if not isinstance(value, dict):
                raise bad_param(f"Invalid object: {name}", name)
            out[key] = clean(value, kind, name)
        else:
            out[key] = convert(value, kind, name)
    return out


def convert(value: Any, kind: str, name: str) -> Any:
    if kind == "list":
        items = value.items() if isinstance(value, dict) else None
        if items is None or not all(k.isdigit() and isinstance(v, str) for k, v in items):
            raise bad_param(f"Invalid array: {name}", name)
        return [v for _, v in sorted(items, key=lambda kv: int(kv[0]))]
    if kind == "metadata":
        if value == "":  # Stripe's way of saying "no metadata"
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise bad_param(f"Invalid hash: {name}", name)
        if len(value) > 50 or any(len(k) > 40 or len(v) > 500 for k, v in value.items()):
            raise bad_param("Metadata allows 50 keys of 40 characters, values of 500.", name)
        return {k: v for k, v in value.items() if v != ""}
    if not isinstance(value, str):
        raise bad_param(f"Invalid {kind}: {name} must not be a hash", name)
    if kind == "int":
        if not re.fullmatch(r"-?\d{1,15}", value):
            raise bad_param(f"Invalid integer for {name}", name, "parameter_invalid_integer")
        return int(value)
    if kind == "bool":
        if value not in ("true", "false"):
            raise bad_param(f"Invalid boolean for {name}: expected true or false", name)
        return value == "true"
    return value


def one_of(params: dict[str, Any], name: str, allowed: set[str]) -> str | None:
    value = params.get(name)
    if value is not None and value not in allowed:
        raise bad_param(f"Invalid {name}: must be one of {', '.join(sorted(allowed))}", name)
    return value


def require(params: dict[str, Any], *names: str, prefix: str = "") -> None:
    for name in names:
        if name not in params or params[name] == "":
            full = f"{prefix}[{name}]" if prefix else name
            raise bad_param(f"Missing required param: {full}.", full, "parameter_missing")


@dataclass
class Call:
    """One API request as the handlers see it: its parameters, ids, and the events it made."""
    params: dict[str, Any]
    request_id: str | None
    idempotency_key: str | None
    base_url: str
    events: list[dict[str, Any]] = field(default_factory=list)


class Remembered(NamedTuple):
    digest: str
    status: int
    text: str
    at: float


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


BEHAVIOUR_CHECKS: dict[str, Callable[[Any], bool]] = {
    "drop_webhooks": _count, "fail_next": _count, "decline_next": _count,
    "delay_s": lambda v: type(v) in (int, float) and v >= 0,
    "fail_status": lambda v: type(v) is int and 400 <= v <= 599,
    "webhook_url": lambda v: v is None or isinstance(v, str),
}


class Behaviour:
    def __init__(self, webhook_url: str | None) -> None:
        self.drop_webhooks = 0
        self.delay_s = 0.0
        self.fail_next = 0
        self.fail_status = 500
        self.decline_next = 0
        self.webhook_url = webhook_url

    def update(self, wanted: dict[str, Any]) -> str | None:
        """Apply the wanted settings; say what is wrong instead when one is not valid."""
        for key, value in wanted.items():
            if key not in BEHAVIOUR_CHECKS:
                return f"unknown behaviour {key!r}"
            if not BEHAVIOUR_CHECKS[key](value):
                return f"{key} cannot be {value!r}"
        vars(self).update(wanted)
        return None


class SandboxPSP:
    def __init__(self, secret_key: str, publishable_key: str, webhook_secret: str,
                 webhook_url: str | None, *, webhook_retry_s=(0.5, 2, 10, 60)) -> None:
        self.secret_key = secret_key
        self.publishable_key = publishable_key
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.webhook_retry_s = tuple(webhook_retry_s)
        # Keyed hashes: a fingerprint stays stable per key; parameter digests die with the process.
        self._fingerprint_key = hashlib.sha256(b"fingerprint:" + secret_key.encode()).digest()
        self._digest_key = secrets.token_bytes(32)
        self._tasks: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None
        self._forget_everything()

    def _forget_everything(self) -> None:
        self.behaviour = Behaviour(self.webhook_url)
        self.customers: dict[str, dict] = {}
        self.payment_methods: dict[str, dict] = {}
        self.payment_intents: dict[str, dict] = {}
        self.charges: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.disputes: dict[str, dict] = {}
        self.events: dict[str, dict] = {}
        self.requests: list[dict[str, Any]] = []
        self._card_behaviour: dict[str, Decline | str] = {}
        self._return_urls: dict[str, str | None] = {}
        self._idempotency: dict[str, Remembered] = {}

    def app(self) -> web.Application:
        app = web.Application()
        api = self._api
        app.router.add_post("/v1/customers", api(self.create_customer, CUSTOMER_CREATE))
        app.router.add_get("/v1/customers/{id}", api(self.get_customer, {}))
        app.router.add_delete("/v1/customers/{id}", api(self.delete_customer, {}))
        app.router.add_post("/v1/payment_methods",
                            api(self.create_payment_method, PAYMENT_METHOD_CREATE, publishable_ok=True))
        app.router.add_get("/v1/payment_methods/{id}", api(self.get_payment_method, {}))
        app.router.add_post("/v1/payment_methods/{id}/attach",
                            api(self.attach_payment_method, {"customer": "str"}))
        app.router.add_post("/v1/payment_methods/{id}/detach", api(self.detach_payment_method, {}))
        app.router.add_post("/v1/payment_intents", api(self.create_payment_intent, PAYMENT_INTENT_CREATE))
        app.router.add_get("/v1/payment_intents/{id}", api(self.get_payment_intent, {}))
        app.router.add_post("/v1/payment_intents/{id}/confirm",
                            api(self.confirm_payment_intent, PAYMENT_INTENT_CONFIRM))
        app.router.add_post("/v1/payment_intents/{id}/cancel",
                            api(self.cancel_payment_intent, {"cancellation_reason": "str"}))
        app.router.add_get("/v1/charges/{id}", api(self.get_charge, {}))
        app.router.add_post("/v1/refunds", api(self.create_refund, REFUND_CREATE))
        app.router.add_get("/v1/refunds/{id}", api(self.get_refund, {}))
        app.router.add_get("/v1/disputes/{id}", api(self.get_dispute, {}))
        app.router.add_get("/v1/events/{id}", api(self.get_event, {}))
        app.router.add_route("*", "/v1/{tail:.*}", api(self.unknown_url, None))
        app.router.add_post("/_test/authenticate/{id}", self.authenticate)
        app.router.add_get("/_test/authenticate/{id}", self.authenticate)
        app.router.add_post("/_control/behaviour", self.set_behaviour)
        app.router.add_get("/_control/events", self.list_events)
        app.router.add_post("/_control/events/{id}/resend", self.resend_event)
        app.router.add_get("/_control/requests", self.list_requests)
        app.router.add_post("/_control/disputes", self.open_dispute)
        app.router.add_post("/_control/disputes/{id}/close", self.close_dispute)
        app.router.add_post("/_control/reset", self.reset)
        app.router.add_get("/healthz", self.healthz)
        app.on_cleanup.append(self._stop_deliveries)
        return app

    # ---- the API pipeline: delay, injected failure, key, idempotency, handler, expand ----

    def _api(self, handler: Callable[..., dict], spec: dict[str, Any] | None, *,
             publishable_ok: bool = False) -> Callable:
        async def endpoint(request: web.Request) -> web.Response:
            key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
            call = Call({}, new_id("req", 14), key, str(request.url.origin()))
            status, text, replayed = await self._answer(request, call, handler, spec, publishable_ok)
            headers = {"Request-Id": call.request_id,
                       "Stripe-Version": request.headers.get("Stripe-Version", API_VERSION)}
            if key:
                headers["Idempotency-Key"] = key
            if replayed:
                headers["Idempotent-Replayed"] = "true"
            self.requests.append({"request_id": call.request_id, "method": request.method,
                                  "path": request.path, "idempotency_key": key, "status": status,
                                  "replayed": replayed, "at": time.time()})
            self._deliver_later(call.events)
            return web.Response(text=text, status=status, content_type="application/json",
                                headers=headers)
        return endpoint

    async def _answer(self, request: web.Request, call: Call, handler: Callable,
                      spec: dict[str, Any] | None, publishable_ok: bool) -> tuple[int, str, bool]:
        raw = await request.text() if request.method == "POST" else request.query_string
        if self.behaviour.delay_s:
            await asyncio.sleep(self.behaviour.delay_s)
        if self.behaviour.fail_next > 0:  # a simulated outage: nothing happens, nothing is kept
            self.behaviour.fail_next -= 1
            error = ApiError(self.behaviour.fail_status, "api_error",
                             "An unknown error occurred (the sandbox was told to fail).")
            return error.status, dump(error.body()), False
        try:
            self._authenticate(request, publishable_ok)
            digest = self._digest(request, raw)
            remembered = self._recall(call.idempotency_key, digest)
            if remembered is not None:
                return remembered.status, remembered.text, True
            try:
                call.params = clean(parse_form(raw), {**spec, "expand": "list"}) if spec is not None else {}
                expand = call.params.pop("expand", [])
                unknown = [path for path in expand if path not in EXPANDABLE]
                if unknown:
                    raise bad_param(f"This property cannot be expanded ({unknown[0]}).", "expand")
                status, body = 200, self._expand(handler(call, **request.match_info), expand)
            except ApiError as exc:
                if not exc.remember:
                    raise
                status, body = exc.status, exc.body()
            text = dump(body)
            if call.idempotency_key:
                self._idempotency[call.idempotency_key] = Remembered(digest, status, text, time.time())
            return status, text, False
        except ApiError as exc:
            return exc.status, dump(exc.body()), False

    def _authenticate(self, request: web.Request, publishable_ok: bool) -> None:
        header = request.headers.get("Authorization", "")
        key = header[7:].strip() if header.startswith("Bearer ") else ""
        if header.startswith("Basic "):  # ``curl -u sk_...:`` as in Stripe's documentation
            try:
                key = base64.b64decode(header[6:] + "==").decode().partition(":")[0]
            except ValueError:
                key = ""
        if not key:
            raise invalid("You did not provide an API key. You need to provide your API key in the "
                          "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                          "YOUR_SECRET_KEY').", status=401)
        if hmac.compare_digest(key.encode(), self.secret_key.encode()):
            return
        if hmac.compare_digest(key.encode(), self.publishable_key.encode()):
            if publishable_ok:
                return
            raise invalid("This API call cannot be made with a publishable API key. "
                          "Please use a secret API key.", status=401)
        raise invalid(f"Invalid API Key provided: {mask_key(key)}", status=401)

    def _digest(self, request: web.Request, raw: str) -> str:
        """A keyed hash of what was asked, so that no parameter (no card number) is kept."""
        canonical = json.dumps([request.method, request.path, sorted(parse_qsl(raw, keep_blank_values=True))])
        return hmac.new(self._digest_key, canonical.encode(), hashlib.sha256).hexdigest()

    def _recall(self, key: str | None, digest: str) -> Remembered | None:
        cutoff = time.time() - IDEMPOTENCY_TTL_S
        for stale in [k for k, r in self._idempotency.items() if r.at < cutoff]:
            del self._idempotency[stale]
        remembered = self._idempotency.get(key) if key else None
        if remembered is None or remembered.digest == digest:
            return remembered
        raise ApiError(400, "idempotency_error",
                       "Keys for idempotent requests can only be used with the same parameters they "
                       "were first used with. Try using a key other than "
                       f"'{key}' if you meant to execute a different request.", remember=False)

    def _expand(self, obj: dict[str, Any], paths: list[str]) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        for path in paths:
            value = out.get(path)
            if isinstance(value, str):
                out[path] = copy.deepcopy(getattr(self, EXPANDABLE[path]).get(value, value))
        return out

    def unknown_url(self, call: Call, tail: str) -> dict:
        raise invalid(f"Unrecognized request URL (/v1/{tail}).", status=404)

    # ---- lookups ----

    def _find(self, store: dict[str, dict], kind: str, object_id: str, param: str = "id") -> dict:
        obj = store.get(object_id)
        if obj is None or obj.get("deleted"):
            raise no_such(kind, object_id, param)
        return obj

    def _base(self, prefix: str, object_name: str) -> dict[str, Any]:
        return {"id": new_id(prefix), "object": object_name, "livemode": False, "created": now()}

    # ---- customers ----

    def create_customer(self, call: Call) -> dict:
        p = call.params
        customer = {**self._base("cus", "customer"), "email": p.get("email"), "name": p.get("name"),
                    "description": p.get("description"), "metadata": p.get("metadata", {})}
        self.customers[customer["id"]] = customer
        return customer

    def get_customer(self, call: Call, id: str) -> dict:
        customer = self.customers.get(id)
        if customer is None:
            raise no_such("customer", id)
        return customer  # a deleted one answers its stub, as Stripe does

    def delete_customer(self, call: Call, id: str) -> dict:
        self._find(self.customers, "customer", id)
        for pm in self.payment_methods.values():
            if pm["customer"] == id:
                pm["customer"] = None
        self.customers[id] = {"id": id, "object": "customer", "deleted": True}
        return self.customers[id]

    # ---- payment methods ----

    def create_payment_method(self, call: Call) -> dict:
        p = call.params
        require(p, "type")
        if p["type"] != "card":
            raise bad_param("The sandbox only knows payment methods of type card.", "type")
        if "card" not in p:
            raise bad_param("Missing required param: card.", "card", "parameter_missing")
        card = p["card"]
        require(card, "number", "exp_month", "exp_year", prefix="card")
        number = re.sub(r"[ -]", "", card["number"])
        problem = card_problem(number, card["exp_month"], card["exp_year"], card.get("cvc"))
        if problem:
            code, field_name, message = problem
            raise card_error(Decline(code, "", message), f"card[{field_name}]")
        pm = {**self._base("pm", "payment_method"), "type": "card", "customer": None,
              "metadata": p.get("metadata", {}),
              "billing_details": {"address": None, "email": None, "name": None, "phone": None},
              "card": {"brand": card_brand(number), "last4": number[-4:],
                       "exp_month": card["exp_month"], "exp_year": full_year(card["exp_year"]),
                       "funding": "credit", "country": "US",
                       "fingerprint": hmac.new(self._fingerprint_key, number.encode(),
                                               hashlib.sha256).hexdigest()[:16]}}
        self.payment_methods[pm["id"]] = pm
        self._card_behaviour[pm["id"]] = TEST_CARDS.get(number, "succeed")
        return pm

    def get_payment_method(self, call: Call, id: str) -> dict:
        return self._find(self.payment_methods, "payment_method", id)

    def attach_payment_method(self, call: Call, id: str) -> dict:
        require(call.params, "customer")
        pm = self._find(self.payment_methods, "payment_method", id)
        customer = self._find(self.customers, "customer", call.params["customer"], "customer")
        if pm["customer"] not in (None, customer["id"]):
            raise invalid("The payment method you provided has already been attached to a customer.",
                          param="customer", code="payment_method_unexpected_state")
        pm["customer"] = customer["id"]
        return pm

    def detach_payment_method(self, call: Call, id: str) -> dict:
        pm = self._find(self.payment_methods, "payment_method", id)
        if pm["customer"] is None:
            raise invalid("The payment method you provided is not attached to a customer so "
                          "detachment is impossible.", code="payment_method_unexpected_state")
        pm["customer"] = None
        return pm

    # ---- payment intents ----

    def create_payment_intent(self, call: Call) -> dict:
        p = call.params
        require(p, "amount", "currency")
        amount = self._valid_amount(p["amount"])
        if not re.fullmatch(r"[A-Za-z]{3}", p["currency"]):
            raise bad_param(f"Invalid currency: {p['currency'].lower()}.", "currency")
        if p.get("customer"):
            self._find(self.customers, "customer", p["customer"], "customer")
        if any(t != "card" for t in p.get("payment_method_types", ["card"])):
            raise bad_param("The sandbox only knows the payment method type card.", "payment_method_types")
        if p.get("off_session") and not p.get("confirm"):
            raise bad_param("off_session can only be used with confirm=true.", "off_session")
        if p.get("payment_method"):
            self._usable_payment_method(p["payment_method"], p.get("customer"))
        pi_id = new_id("pi")
        pi = {"id": pi_id, "object": "payment_intent", "livemode": False, "created": now(),
              "amount": amount, "amount_received": 0, "amount_capturable": 0,
              "currency": p["currency"].lower(), "customer": p.get("customer"),
              "payment_method": p.get("payment_method"),
              "status": "requires_confirmation" if p.get("payment_method") else "requires_payment_method",
              "last_payment_error": None, "next_action": None, "latest_charge": None,
              "metadata": p.get("metadata", {}), "description": p.get("description"),
              "confirmation_method": "automatic", "capture_method": "automatic",
              "client_secret": f"{pi_id}_secret_{random_part()}",
              "cancellation_reason": None, "canceled_at": None,
              "payment_method_types": list(p.get("payment_method_types", ["card"]))}
        self.payment_intents[pi_id] = pi
        if p.get("confirm"):
            return self._confirm(pi, call, off_session=p.get("off_session", False),
                                 return_url=p.get("return_url"))
        return pi

    @staticmethod
    def _valid_amount(amount: int) -> int:
        if amount < 1:
            raise bad_param("Amount must be at least 1.", "amount", "amount_too_small")
        if amount > 99_999_999:
            raise bad_param("Amount must be no more than 99999999.", "amount", "amount_too_large")
        return amount

    def _usable_payment_method(self, pm_id: str, customer_id: str | None) -> dict:
        pm = self._find(self.payment_methods, "payment_method", pm_id, "payment_method")
        if pm["customer"] is not None and pm["customer"] != customer_id:
            raise bad_param("The provided PaymentMethod is attached to another Customer; it can be "
                            "used only with that Customer.", "payment_method")
        return pm

    def get_payment_intent(self, call: Call, id: str) -> dict:
        return self._find(self.payment_intents, "payment_intent", id)

    def confirm_payment_intent(self, call: Call, id: str) -> dict:
        pi = self._find(self.payment_intents, "payment_intent", id)
        p = call.params
        if p.get("payment_method"):
            self._usable_payment_method(p["payment_method"], pi["customer"])
        return self._confirm(pi, call, payment_method=p.get("payment_method"),
                             off_session=p.get("off_session", False), return_url=p.get("return_url"))

    def _confirm(self, pi: dict, call: Call, *, payment_method: str | None = None,
                 off_session: bool = False, return_url: str | None = None) -> dict:
        if pi["status"] not in CONFIRMABLE:
            raise self._unexpected_state(pi, "confirm")
        if payment_method:
            pi["payment_method"] = payment_method
        if not pi["payment_method"]:
            raise invalid("You cannot confirm this PaymentIntent because it's missing a payment "
                          "method.", param="payment_method", code="payment_intent_unexpected_state",
                          payment_intent=copy.deepcopy(pi))
        self._return_urls[pi["id"]] = return_url
        outcome = self._outcome(pi["payment_method"], off_session)
        if outcome == "succeed":
            self._succeed(pi, call)
        elif outcome == "authenticate":
            self._require_action(pi, call, return_url)
        else:
            pm = copy.deepcopy(self.payment_methods[pi["payment_method"]])
            error = card_error(outcome, payment_method=pm)
            self._fail(pi, call, error.body()["error"])
            error.error["payment_intent"] = copy.deepcopy(pi)
            raise error
        return pi

    def _outcome(self, pm_id: str, off_session: bool) -> Decline | str:
        """What the bank does with this confirmation: succeed, ask to authenticate, or decline."""
        if self.behaviour.decline_next > 0:
            self.behaviour.decline_next -= 1
            return GENERIC_DECLINE
        behaviour = self._card_behaviour.get(pm_id, "succeed")
        if isinstance(behaviour, Decline):
            return behaviour
        if behaviour == "authenticate_always":
            return AUTHENTICATION_REQUIRED if off_session else "authenticate"
        if behaviour == "authenticate_on_session" and not off_session:
            return "authenticate"
        return "succeed"

    def _succeed(self, pi: dict, call: Call) -> None:
        pm = self.payment_methods[pi["payment_method"]]
        charge = {**self._base("ch", "charge"), "amount": pi["amount"], "amount_captured": pi["amount"],
                  "amount_refunded": 0, "refunded": False, "captured": True, "paid": True,
                  "status": "succeeded", "payment_intent": pi["id"], "payment_method": pm["id"],
                  "customer": pi["customer"], "currency": pi["currency"], "disputed": False,
                  "description": pi["description"], "metadata": dict(pi["metadata"]),
                  "payment_method_details": {"type": "card", "card": {
                      k: pm["card"][k] for k in ("brand", "last4", "exp_month", "exp_year", "funding")}}}
        self.charges[charge["id"]] = charge
        pi.update(status="succeeded", amount_received=pi["amount"], latest_charge=charge["id"],
                  last_payment_error=None, next_action=None)
        self._emit(call, "charge.succeeded", charge)
        self._emit(call, "payment_intent.succeeded", pi)

    def _require_action(self, pi: dict, call: Call, return_url: str | None) -> None:
        pi.update(status="requires_action", last_payment_error=None, next_action={
            "type": "redirect_to_url",
            "redirect_to_url": {"url": f"{call.base_url}/_test/authenticate/{pi['id']}",
                                "return_url": return_url}})
        self._emit(call, "payment_intent.requires_action", pi)

    def _fail(self, pi: dict, call: Call, error: dict[str, Any]) -> None:
        pi.update(status="requires_payment_method", last_payment_error=error,
                  payment_method=None, next_action=None)
        self._emit(call, "payment_intent.payment_failed", pi)

    @staticmethod
    def _unexpected_state(pi: dict, action: str) -> ApiError:
        return invalid(f"You cannot {action} this PaymentIntent because it has a status of "
                       f"{pi['status']}.", code="payment_intent_unexpected_state",
                       payment_intent=copy.deepcopy(pi))

    def cancel_payment_intent(self, call: Call, id: str) -> dict:
        pi = self._find(self.payment_intents, "payment_intent", id)
        reason = one_of(call.params, "cancellation_reason", CANCELLATION_REASONS)
        if pi["status"] not in CONFIRMABLE:
            raise self._unexpected_state(pi, "cancel")
        pi.update(status="canceled", cancellation_reason=reason, canceled_at=now(), next_action=None)
        self._emit(call, "payment_intent.canceled", pi)
        return pi

    # ---- charges, refunds, disputes, events ----

    def get_charge(self, call: Call, id: str) -> dict:
        return self._find(self.charges, "charge", id)

    def create_refund(self, call: Call) -> dict:
        p = call.params
        if not p.get("payment_intent") and not p.get("charge"):
            raise bad_param("One of the following params should be provided for this request: "
                            "payment_intent or charge.", "payment_intent", "parameter_missing")
        charge = self._refundable_charge(p.get("payment_intent"), p.get("charge"))
        reason = one_of(p, "reason", REFUND_REASONS)
        left = charge["amount"] - charge["amount_refunded"]
        if left == 0:
            raise invalid(f"Charge {charge['id']} has already been refunded.",
                          code="charge_already_refunded")
        amount = p.get("amount", left)
        if amount < 1:
            raise bad_param("Amount must be at least 1.", "amount", "amount_too_small")
        if amount > left:
            raise invalid(f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                          f"({left})", param="amount", code="amount_too_large")
        refund = {**self._base("re", "refund"), "amount": amount, "currency": charge["currency"],
                  "payment_intent": charge["payment_intent"], "charge": charge["id"],
                  "status": "succeeded", "reason": reason, "metadata": p.get("metadata", {})}
        self.refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self._emit(call, "refund.created", refund)
        self._emit(call, "charge.refunded", charge)
        return refund

    def _refundable_charge(self, pi_id: str | None, charge_id: str | None) -> dict:
        if pi_id:
            pi = self._find(self.payment_intents, "payment_intent", pi_id, "payment_intent")
            if pi["status"] != "succeeded":
                raise invalid("This PaymentIntent does not have a successful charge to refund.",
                              param="payment_intent", code="payment_intent_unexpected_state")
            if charge_id and charge_id != pi["latest_charge"]:
                raise bad_param("The charge does not belong to this PaymentIntent.", "charge")
            charge_id = pi["latest_charge"]
        charge = self._find(self.charges, "charge", charge_id, "charge")
        if any(d["charge"] == charge["id"] and d["status"] == "needs_response"
               for d in self.disputes.values()):
            raise invalid(f"Charge {charge['id']} has been charged back; cannot issue a refund.",
                          code="charge_disputed")
        return charge

    def get_refund(self, call: Call, id: str) -> dict:
        return self._find(self.refunds, "refund", id)

    def get_dispute(self, call: Call, id: str) -> dict:
        return self._find(self.disputes, "dispute", id)

    def get_event(self, call: Call, id: str) -> dict:
        record = self.events.get(id)
        if record is None:
            raise no_such("event", id)
        return record["event"]

    # ---- webhooks out ----

    def _emit(self, call: Call, event_type: str, obj: dict) -> None:
        event = {"id": new_id("evt"), "object": "event", "api_version": API_VERSION,
                 "created": now(), "data": {"object": copy.deepcopy(obj)}, "livemode": False,
                 "pending_webhooks": 1, "type": event_type,
                 "request": {"id": call.request_id, "idempotency_key": call.idempotency_key}}
        dropped = self.behaviour.drop_webhooks > 0  # a lost webhook: recorded, never sent
        if dropped:
            self.behaviour.drop_webhooks -= 1
        record = {"id": event["id"], "type": event_type, "object_id": obj["id"],
                  "delivered": False, "dropped": dropped, "attempts": [], "event": event}
        self.events[event["id"]] = record
        if not dropped:
            call.events.append(record)

    def _emit_from_outside(self, request: web.Request, event_type: str, obj: dict) -> None:
        """An event the bank or a cardholder caused, not an API request: it has no request id."""
        call = Call({}, None, None, str(request.url.origin()))
        self._emit(call, event_type, obj)
        self._deliver_later(call.events)

    def _deliver_later(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            task = asyncio.get_running_loop().create_task(self._deliver(record))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, record: dict[str, Any]) -> None:
        await asyncio.sleep(0)  # let the API answer go out first
        for delay in (0, *self.webhook_retry_s):
            if delay:
                await asyncio.sleep(delay)
            if await self._post_once(record):
                record["delivered"] = True
                return

    async def _post_once(self, record: dict[str, Any]) -> bool:
        url = self.behaviour.webhook_url
        attempt: dict[str, Any] = {"at": time.time(), "status": None, "error": None}
        if not url:
            attempt["error"] = "no webhook_url"
            record["attempts"].append(attempt)
            return False
        payload = json.dumps(record["event"])
        stamp = now()
        signature = hmac.new(self.webhook_secret.encode(), f"{stamp}.{payload}".encode(),
                             hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": WEBHOOK_USER_AGENT,
                   "Stripe-Signature": f"t={stamp},v1={signature}"}
        try:
            if self._session is None or self._session.closed:
                self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
            async with self._session.post(url, data=payload, headers=headers) as response:
                attempt["status"] = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            attempt["error"] = type(exc).__name__
        record["attempts"].append(attempt)
        return attempt["status"] is not None and 200 <= attempt["status"] < 300

    async def _stop_deliveries(self, _: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # ---- the customer at the bank's authentication page ----

    async def authenticate(self, request: web.Request) -> web.Response:
        wanted = await json_object(request) if request.method == "POST" else dict(request.query)
        result = (wanted or {}).get("result")
        pi = self.payment_intents.get(request.match_info["id"])
        if pi is None:
            return web.json_response({"error": "no such payment intent"}, status=404)
        if result not in ("succeed", "fail"):
            return web.json_response({"error": "result must be succeed or fail"}, status=400)
        if pi["status"] != "requires_action":
            return web.json_response({"error": f"payment intent is {pi['status']}"}, status=400)
        call = Call({}, None, None, str(request.url.origin()))
        if result == "succeed":
            self._succeed(pi, call)
        else:
            pm = copy.deepcopy(self.payment_methods[pi["payment_method"]])
            self._fail(pi, call, {"type": "invalid_request_error", "payment_method": pm,
                                  "code": "payment_intent_authentication_failure",
                                  "message": "The provided PaymentMethod has failed authentication."})
        self._deliver_later(call.events)
        return_url = self._return_urls.get(pi["id"])
        if request.method == "GET" and return_url:
            query = urlencode({"payment_intent": pi["id"], "payment_intent_client_secret": pi["client_secret"],
                               "redirect_status": "succeeded" if result == "succeed" else "failed"})
            raise web.HTTPFound(f"{return_url}{'&' if '?' in return_url else '?'}{query}")
        return web.json_response(pi)

    # ---- control ----

    async def set_behaviour(self, request: web.Request) -> web.Response:
        wanted = await json_object(request)
        problem = self.behaviour.update(wanted) if wanted is not None else "send a JSON object"
        if problem:
            return web.json_response({"error": problem}, status=400)
        return web.json_response(vars(self.behaviour))

    async def list_events(self, _: web.Request) -> web.Response:
        return web.json_response(list(self.events.values()))

    async def resend_event(self, request: web.Request) -> web.Response:
        record = self.events.get(request.match_info["id"])
        if record is None:
            return web.json_response({"error": "no such event"}, status=404)
        self._deliver_later([record])
        return web.json_response({"id": record["id"], "status": "resending"}, status=202)

    async def list_requests(self, _: web.Request) -> web.Response:
        return web.json_response(self.requests)

    async def open_dispute(self, request: web.Request) -> web.Response:
        wanted = await json_object(request) or {}
        pi = self.payment_intents.get(str(wanted.get("payment_intent")))
        if pi is None or pi["status"] != "succeeded":
            return web.json_response({"error": "payment_intent must name a succeeded intent"}, status=400)
        charge = self.charges[pi["latest_charge"]]
        dispute = {**self._base("dp", "dispute"), "amount": charge["amount"] - charge["amount_refunded"],
                   "currency": charge["currency"], "charge": charge["id"], "payment_intent": pi["id"],
                   "reason": str(wanted.get("reason", "fraudulent")), "status": "needs_response",
                   "is_charge_refundable": False, "metadata": {}}
        self.disputes[dispute["id"]] = dispute
        charge["disputed"] = True
        self._emit_from_outside(request, "charge.dispute.created", dispute)
        return web.json_response(dispute)

    async def close_dispute(self, request: web.Request) -> web.Response:
        dispute = self.disputes.get(request.match_info["id"])
        status = (await json_object(request) or {}).get("status")
        if dispute is None:
            return web.json_response({"error": "no such dispute"}, status=404)
        if status not in ("won", "lost") or dispute["status"] != "needs_response":
            return web.json_response({"error": "status must be won or lost, of an open dispute"}, status=400)
        dispute["status"] = status
        self._emit_from_outside(request, "charge.dispute.closed", dispute)
        return web.json_response(dispute)

    async def reset(self, _: web.Request) -> web.Response:
        for task in list(self._tasks):
            task.cancel()
        self._forget_everything()
        return web.json_response({"status": "reset"})

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


def dump(body: dict[str, Any]) -> str:
    return json.dumps(body, indent=2)


async def json_object(request: web.Request) -> dict[str, Any] | None:
    """The request's JSON object, or None when it sent something else."""
    try:
        wanted = await request.json()
    except ValueError:
        return None
    return wanted if isinstance(wanted, dict) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9210)
    parser.add_argument("--secret-key-env", default="VEIKALS_PAYMENTS_PSP_SECRET_KEY")
    parser.add_argument("--publishable-key-env", default="VEIKALS_PAYMENTS_PSP_PUBLISHABLE_KEY")
    parser.add_argument("--webhook-secret-env", default="VEIKALS_PAYMENTS_PSP_WEBHOOK_SECRET")
    parser.add_argument("--webhook-url")
    args = parser.parse_args()
    variables = (args.secret_key_env, args.publishable_key_env, args.webhook_secret_env)
    for variable in variables:
        if not os.environ.get(variable):
            parser.error(f"{variable} is not set")
    psp = SandboxPSP(*(os.environ[v] for v in variables), args.webhook_url)
    web.run_app(psp.app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
