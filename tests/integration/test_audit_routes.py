"""Every staff route of every service, walked from the OpenAPI documents (P16): each declares the
personal data it reads (``x-veikals-audited``), and each that reads some, called as a staff
member with the role it needs, leaves an entry in the privacy service's audit log, with that
member as its actor, the route's service and the declared categories.

``CALLS`` says how to call each audited route with data the test makes first; a route that is
audited but not in it (or in it but no longer audited) fails the test, so a new one cannot be
left out of the walk.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import jwt

from tests.conftest import eventually
from tests.integration.test_accounts import mailsink  # noqa: F401 (a fixture)
from tests.integration.test_marketing import PROFILING, PROFILING_WORDING, market  # noqa: F401 (a fixture)
from tests.integration.test_orders import shop  # noqa: F401 (a fixture)
from tests.integration.test_payments import payments  # noqa: F401 (a fixture)
from tests.integration.test_privacy import Privacy, privacy  # noqa: F401 (a fixture)

SERVICES = ("accounts", "orders", "payments", "marketing", "privacy")
REASON = "the customer asked about it by e-mail"
PARTNER = "door-carrier"  # registered in every service


class World:
    """What the test made for the calls to act on, and what the calls answered."""

    def __init__(self, privacy: Privacy) -> None:
        shop = privacy.shop
        self.privacy = privacy
        self.bases = {"accounts": f"http://127.0.0.1:{shop.accounts.http_port}", "orders": shop.base,
                      "payments": privacy.payments.base, "marketing": privacy.market.base, "privacy": privacy.base}
        self.pools = {"accounts": shop.accounts.service.pool, "orders": shop.pool,
                      "payments": privacy.payments.pool, "marketing": privacy.market.pool, "privacy": privacy.pool}
        self.customer_id = self.paid_order_id = self.held_order_id = self.open_order_id = ""
        self.guest_email = "held.guest@example.lv"
        self.deliveries: dict[str, str] = {}
        self.staff_ids: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.answers: dict[tuple[str, str, str], Any] = {}

    def answer(self, service: str, method: str, path: str) -> Any:
        return self.answers[(service, method, path)]

    def request_id(self) -> str:
        return self.answer("privacy", "POST", "/v1/staff/privacy-requests")["id"]

    async def task_is(self, participant: str, state: str) -> None:
        async def there():
            return await self.privacy.pool.fetchval(
                "SELECT state FROM tasks WHERE request_id = $1 AND participant = $2",
                uuid.UUID(self.request_id()), participant) == state
        await eventually(there, timeout=30)

    async def delivery_settled(self, service: str) -> None:
        async def settled():
            status = await self.pools[service].fetchval(
                "SELECT status FROM webhook_deliveries WHERE id = $1", self.deliveries[service])
            return status in ("delivered", "failed")
        await eventually(settled, timeout=30)


@dataclass(frozen=True)
class Call:
    """How to call one route successfully: its path parameters, query and body from the World,
    and what to wait for first (a state the route needs)."""
    params: Callable[[World], dict] = lambda w: {}
    query: Callable[[World], dict] | None = None
    body: Callable[[World], dict] | None = None
    ready: Callable[[World], Awaitable[None]] | None = None


def webhook_calls(service: str) -> dict[tuple[str, str, str], Call]:
    """The shared routes of the delivery log and partners' callbacks (shared/webhooks/staff.py)."""
    one = Call(params=lambda w: {"id": w.deliveries[service]})
    return {
        (service, "GET", "/v1/staff/webhooks/deliveries"): Call(query=lambda w: {"partner": PARTNER}),
        (service, "GET", "/v1/staff/webhooks/deliveries/{id}"): one,
        (service, "POST", "/v1/staff/webhooks/deliveries/{id}/redeliver"): Call(
            params=one.params, ready=lambda w: w.delivery_settled(service)),
        (service, "GET", "/v1/staff/partners/{name}/callbacks"): Call(params=lambda w: {"name": PARTNER}),
    }


REQUEST = "/v1/staff/privacy-requests/{id}"
AUDIT_LOG = "/v1/staff/audit-log"
TASK = {"params": lambda w: {"id": w.request_id(), "participant": "orders"},
        "ready": lambda w: w.task_is("orders", "held")}  # held by the complaint on the guest's order

# In the order they are called: later calls act on what earlier ones made.
CALLS: dict[tuple[str, str, str], Call] = {
    ("accounts", "POST", "/v1/staff/customer-lookups"): Call(
        body=lambda w: {"customer_id": w.customer_id, "reason": REASON}),
    ("orders", "POST", "/v1/staff/order-lookups"): Call(
        body=lambda w: {"customer_id": w.customer_id, "reason": REASON}),
    ("orders", "POST", "/v1/staff/complaints"): Call(
        body=lambda w: {"order_id": w.held_order_id, "description": "The parcel arrived wet.", "reason": REASON}),
    ("orders", "POST", "/v1/staff/complaints/{id}/resolve"): Call(
        params=lambda w: {"id": w.answer("orders", "POST", "/v1/staff/complaints")["id"]},
        body=lambda w: {"resolution": "A new parcel was sent.", "reason": REASON}),
    ("orders", "POST", "/v1/staff/orders/{id}/cancel"): Call(
        params=lambda w: {"id": w.open_order_id}, body=lambda w: {"reason": REASON}),
    ("payments", "POST", "/v1/staff/refunds"): Call(
        body=lambda w: {"order_id": w.paid_order_id, "amount_cents": 100, "reason": REASON}),
    ("marketing", "POST", "/v1/staff/consents/grant"): Call(
        body=lambda w: {"customer_id": w.customer_id, "consent": PROFILING, "wording_version": PROFILING_WORDING,
                        "reason": REASON}),
    ("marketing", "POST", "/v1/staff/consent-lookups"): Call(
        body=lambda w: {"customer_id": w.customer_id, "reason": REASON}),
    ("marketing", "POST", "/v1/staff/consents/withdraw"): Call(
        body=lambda w: {"customer_id": w.customer_id, "consent": PROFILING, "reason": REASON}),
    ("privacy", "POST", "/v1/staff/privacy-requests"): Call(
        body=lambda w: {"request": {"kind": "erasure"}, "subject": {"emails": [w.guest_email]},
                        "contact_email": w.guest_email, "identification": "replied from the order's address",
                        "language": "en"}),
    ("privacy", "GET", "/v1/staff/privacy-requests"): Call(query=lambda w: {"state": "open"}),
    ("privacy", "GET", REQUEST): Call(params=lambda w: {"id": w.request_id()}),
    ("privacy", "POST", f"{REQUEST}/extend"): Call(
        params=lambda w: {"id": w.request_id()}, body=lambda w: {"months": 1, "reason": REASON}),
    ("privacy", "POST", f"{REQUEST}/tasks/{{participant}}/retry"): Call(**TASK),
    ("privacy", "POST", f"{REQUEST}/tasks/{{participant}}/outcome"): Call(
        **TASK, body=lambda w: {"outcome": "erased by hand after the complaint", "reason": REASON}),
    **{key: call for service in SERVICES for key, call in webhook_calls(service).items()},
    # Last: what support did above, as an admin reads it.
    ("privacy", "GET", AUDIT_LOG): Call(query=lambda w: {"staff": w.staff_ids["support"], "limit": 500}),
}


async def documents(world: World) -> dict[str, dict]:
    found = {}
    for service, base in world.bases.items():
        async with world.privacy.shop.http.get(f"{base}/openapi.json") as response:
            assert response.status == 200
            found[service] = await response.json()
    return found


def staff_operations(docs: dict[str, dict]) -> dict[tuple[str, str, str], dict]:
    return {(service, method.upper(), path): op
            for service, doc in docs.items() for path, ops in doc["paths"].items() for method, op in ops.items()
            if (op.get("x-veikals-access") or {}).get("kind") == "staff"}


async def make_the_world(world: World) -> None:
    """A customer with a paid order, a guest order to complain about, one to cancel, and a
    webhook delivery in every service."""
    privacy, payments, shop = world.privacy, world.privacy.payments, world.privacy.shop
    customer = await shop.client.customer("audited.customer@example.lv")
    order = await payments.order(customer)
    _, paid = await payments.call("POST", "/v1/payments", customer["access_token"], payments.paying(
        order, payment_method=await payments.tokenise()), expect=201)
    await payments.settles(paid["id"], "succeeded")
    world.customer_id, world.paid_order_id = customer["id"], order["id"]
    world.held_order_id = (await shop.guest_order(guest={
        "name": "Held Guest", "email": world.guest_email, "phone": "+37129000301"}))["id"]
    world.open_order_id = (await shop.guest_order(guest={
        "name": "Open Guest", "email": "open.guest@example.lv", "phone": "+37129000302"}))["id"]
    for service in SERVICES:
        world.deliveries[service] = await privacy.runtime.service.rpc.call(service, "ping_partner", PARTNER)
    for role in ("support", "accounting", "admin"):
        token = await shop.staff_token(role)
        world.staff_ids[role] = jwt.decode(token, options={"verify_signature": False})["sub"]
        world.tokens[role] = token


async def entry_of_call(world: World, key: tuple[str, str, str], since: int, actor: str, categories: list[str],
                        kind: str) -> dict:
    """The audit entry a call of ``key`` left: after ``since``, by ``actor``, in the route's service,
    of ``kind``, with the declared ``categories``."""
    async def entries():
        return [dict(r) for r in await world.privacy.pool.fetch(
            "SELECT seq, kind, categories, action FROM audit_log WHERE seq > $1 AND actor = $2 AND service = $3",
            since, actor, key[0])]

    async def found():
        return next((e for e in await entries() if set(e["categories"]) == set(categories) and e["kind"] == kind),
                    None)
    try:
        return await eventually(found, timeout=20)
    except AssertionError:
        raise AssertionError(f"{key} left no {kind} entry by {actor} with {categories}; "
                             f"its entries: {await entries()}") from None


async def test_every_staff_route_that_reads_personal_data_leaves_an_audit_entry(privacy):  # noqa: F811
    world = World(privacy)
    docs = await documents(world)
    operations = staff_operations(docs)
    assert {service for service, _, _ in operations} == set(SERVICES)  # the shared webhook routes at least
    undeclared = sorted(key for key, op in operations.items() if "x-veikals-audited" not in op)
    assert undeclared == [], f"staff routes that do not declare what they read: {undeclared}"
    audited = {key: op["x-veikals-audited"] for key, op in operations.items() if op["x-veikals-audited"]}
    assert set(CALLS) == set(audited), (
        f"audited routes the walk does not call: {sorted(set(audited) - set(CALLS))}; "
        f"calls of routes no longer audited: {sorted(set(CALLS) - set(audited))}")

    await make_the_world(world)
    for key, call in CALLS.items():
        service, method, path = key
        roles = operations[key]["x-veikals-access"]["roles"]
        role = next((r for r in roles if r != "admin"), "admin")  # the narrowest role that may call it
        if call.ready is not None:
            await call.ready(world)
        since = await privacy.pool.fetchval("SELECT coalesce(max(seq), 0) FROM audit_log")
        url = world.bases[service] + path.format(**call.params(world))
        async with privacy.shop.http.request(
                method, url, params=call.query and call.query(world), json=call.body and call.body(world),
                headers={"Authorization": f"Bearer {world.tokens[role]}"}) as response:
            answer = await response.json()
            assert 200 <= response.status < 300, (key, response.status, answer)
        world.answers[key] = answer
        kind = "audit" if key == ("privacy", "GET", AUDIT_LOG) else "staff_access"
        entry = await entry_of_call(world, key, since, f"staff:{world.staff_ids[role]}", audited[key], kind)
        assert entry["action"], key

    support_saw = world.answer("privacy", "GET", AUDIT_LOG)["entries"]
    assert {e["service"] for e in support_saw if e["kind"] == "staff_access"} == set(SERVICES)
    assert {e["actor"] for e in support_saw} == {f"staff:{world.staff_ids['support']}"}
    assert (await privacy.runtime.service.rpc.call("privacy", "verify_audit_log"))["intact"]
