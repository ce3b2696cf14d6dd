"""Outbound webhooks to a sandbox partner, its callbacks, and the staff view of it all."""
import asyncio
import datetime as dt
import json
import uuid
from typing import ClassVar

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from deploy.sandbox.partner import SandboxPartner
from shared.config import load_settings
from shared.contracts.privacy import DataSubject
from shared.contracts.webhooks import DOCS, ErasureRequested, WebhookEvent
from shared.service import ServiceRuntime
from shared.webhooks.outbound import PayloadTooLarge, enqueue
from shared.webhooks.signing import new_secret
from tests.conftest import eventually
from tests.integration.conftest import received
from tests.integration.probe import ProbeService
from tests.tokens import TokenIssuer

SECRET_ENV = "VEIKALS_PARTNER_TEST_CARRIER_SECRET"


class Sandbox:
    """The sandbox carrier, served on a port of its own that outlives its restarts."""

    def __init__(self, port: int, callback_url: str, secret: str) -> None:
        self.port = port
        self.partner = SandboxPartner("sandbox-carrier", "carrier", secret, callback_url, None)
        self._runner: web.AppRunner | None = None

    async def start(self, secret: str) -> None:
        self.partner.webhook = Webhook(secret)
        self._runner = web.AppRunner(self.partner.app())
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        await self._runner.cleanup()


def _port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def tokens():
    issuer = TokenIssuer()
    await issuer.start()
    yield issuer
    await issuer.stop()


@pytest.fixture
def partner_setup(tmp_path, monkeypatch):
    """A partners file naming the sandbox carrier, and its secret in the environment."""
    secret = new_secret()
    port = _port()
    partners = tmp_path / "partners.json"
    partners.write_text(json.dumps({"partners": [
        {"name": "sandbox-carrier", "kind": "carrier", "endpoint": f"http://127.0.0.1:{port}/webhooks",
         "secret_env": [SECRET_ENV, SECRET_ENV + "_PREVIOUS"], "data_categories": ["name", "e-mail"]},
        {"name": "private-partner", "kind": "hosting", "endpoint": "https://10.20.30.40/hooks",
         "secret_env": [SECRET_ENV]},
    ]}))
    monkeypatch.setenv("VEIKALS_PARTNERS_FILE", str(partners))
    monkeypatch.setenv(SECRET_ENV, secret)
    return {"secret": secret, "port": port, "partners": partners}


def settings_for(amqp_url, database, http_port, partner_setup, tokens, **overrides):
    return load_settings("probe", **{
        "amqp_url": amqp_url, "database_url": database, "http_port": http_port,
        "outbox_poll_s": 0.1, "jwks_url": tokens.url,
        "webhook_allowed_hosts": [f"127.0.0.1:{partner_setup['port']}"],
        "webhook_retry_schedule_s": [0.3, 0.3, 0.3, 0.3], "webhook_timeout_s": 2, **overrides})


@pytest.fixture
async def sender(amqp_url, database, free_port, partner_setup, tokens):
    runtime = ServiceRuntime(ProbeService, settings_for(
        amqp_url, database, free_port, partner_setup, tokens))
    await runtime.start()
    yield runtime
    await runtime.stop()


@pytest.fixture
async def sandbox(partner_setup, free_port):
    box = Sandbox(partner_setup["port"],
                  f"http://127.0.0.1:{free_port}/v1/partners/sandbox-carrier/callbacks",
                  partner_setup["secret"])
    await box.start(partner_setup["secret"])
    yield box
    await box.stop()


async def delivery(runtime, webhook_id):
    return await runtime.service.pool.fetchrow("SELECT * FROM webhook_deliveries WHERE id = $1", webhook_id)


async def delivered(runtime, webhook_id):
    row = await delivery(runtime, webhook_id)
    return row if row["status"] == "delivered" else None



async def ship(runtime, email: str) -> str:
    """The probe's state-changing ``ship``, called in a transaction as its RPC server would."""
    async with runtime.service.pool.acquire() as conn, conn.transaction():
        return await runtime.service.ship(conn, email)

async def test_deliveries_verify_with_standardwebhooks_and_arrive_as_sent(sender, sandbox):
    ids = [await ship(sender, f"anna{n}@example.lv") for n in range(3)]
    for webhook_id in ids:
        await eventually(lambda: delivered(sender, webhook_id))
    got = {r["webhook_id"]: r["message"] for r in sandbox.partner.received}
    assert set(got) == set(ids)
    for webhook_id in ids:
        stored = json.loads((await delivery(sender, webhook_id))["body"])
        assert got[webhook_id] == stored and stored["type"] == "shipment.created"
    assert all(a["status"] == 200 for a in sandbox.partner.attempts)


async def test_rotation_signs_with_both_secrets(sender, sandbox, partner_setup, monkeypatch):
    new = new_secret()
    monkeypatch.setenv(SECRET_ENV, new)
    monkeypatch.setenv(SECRET_ENV + "_PREVIOUS", partner_setup["secret"])
    # The partner still knows only the old secret: it verifies during the overlap.
    webhook_id = await ship(sender, "rot@example.lv")
    await eventually(lambda: delivered(sender, webhook_id))
    # Then it switches to the new one.
    sandbox.partner.webhook = Webhook(new)
    webhook_id = await ship(sender, "rot@example.lv")
    await eventually(lambda: delivered(sender, webhook_id))


async def test_partner_down_for_a_while_and_sender_restarted_loses_nothing(
        amqp_url, database, free_port, partner_setup, tokens, sandbox):
    settings = settings_for(amqp_url, database, free_port, partner_setup, tokens)
    await sandbox.stop()  # the partner is down
    runtime = ServiceRuntime(ProbeService, settings)
    await runtime.start()
    ids = [await ship(runtime, f"down{n}@example.lv") for n in range(5)]

    async def tried_twice():
        rows = [await delivery(runtime, i) for i in ids]
        return all(r["attempts"] >= 2 for r in rows)
    await eventually(tried_twice)
    await runtime.stop()  # the sender restarts while they wait
    await sandbox.start(partner_setup["secret"])
    sandbox.partner.behaviour.fail_next = 2  # and the partner stumbles once it is back
    sandbox.partner.behaviour.status = 503
    runtime = ServiceRuntime(ProbeService, settings)
    await runtime.start()
    try:
        for webhook_id in ids:
            await eventually(lambda: delivered(runtime, webhook_id))
        accepted = [a["webhook_id"] for a in sandbox.partner.attempts if a["status"] == 200]
        assert sorted(accepted) == sorted(ids)  # each sent until accepted, then never again
        for webhook_id in ids:
            log = await runtime.service.pool.fetch(
                "SELECT attempt, status_code, error FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt",
                webhook_id)
            assert log[0]["status_code"] is None and "ClientConnectorError" in log[0]["error"]
            assert log[-1]["status_code"] == 200
    finally:
        await runtime.stop()


async def test_gone_disables_the_endpoint_until_staff_enable_it(sender, sandbox, tokens):
    sandbox.partner.behaviour.gone = True
    first = await ship(sender, "gone@example.lv")

    async def disabled():
        return await sender.service.pool.fetchval(
            "SELECT reason FROM webhook_disabled_endpoints WHERE partner = 'sandbox-carrier'")
    assert "410" in await eventually(disabled)
    second = await ship(sender, "gone@example.lv")
    await asyncio.sleep(1)
    assert len(sandbox.partner.attempts) == 1  # nothing more was sent to a gone endpoint
    assert (await delivery(sender, second))["status"] == "pending"

    sandbox.partner.behaviour.gone = False
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {tokens.token()}"}) as http:
        base = f"http://127.0.0.1:{sender.http_port}"
        async with http.get(f"{base}/v1/staff/partners") as response:
            partner = (await response.json())["partners"][0]
            assert partner["name"] == "sandbox-carrier" and partner["disabled_at"]
        async with http.post(f"{base}/v1/staff/partners/sandbox-carrier/enable") as response:
            assert response.status == 200
    for webhook_id in (first, second):
        await eventually(lambda: delivered(sender, webhook_id))


async def test_too_many_requests_waits_for_retry_after(sender, sandbox):
    sandbox.partner.behaviour.fail_next = 1
    sandbox.partner.behaviour.status = 429
    sandbox.partner.behaviour.retry_after = "2"
    webhook_id = await ship(sender, "slow@example.lv")
    await eventually(lambda: delivered(sender, webhook_id))
    log = await sender.service.pool.fetch(
        "SELECT started_at, status_code FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt",
        webhook_id)
    assert [a["status_code"] for a in log] == [429, 200]
    assert (log[1]["started_at"] - log[0]["started_at"]) >= dt.timedelta(seconds=1.9)  # not 0.3 s


async def test_redirect_is_not_followed(sender, sandbox):
    sandbox.partner.behaviour.redirect_to = f"http://127.0.0.1:{sandbox.port}/elsewhere"
    webhook_id = await ship(sender, "redirect@example.lv")

    async def failed_once():
        row = await delivery(sender, webhook_id)
        return row if row["attempts"] >= 1 else None
    row = await eventually(failed_once)
    assert row["last_status"] == 302 and "redirect not followed" in row["last_error"]
    assert row["status"] == "pending"  # retried on the schedule, never sent to the new place
    assert sandbox.partner.received == []


async def test_private_address_is_refused_and_fails_at_once(sender):
    partner = sender.service.partners.get("private-partner")
    async with sender.service.pool.acquire() as conn, conn.transaction():
        webhook_id = await enqueue(conn, partner, ErasureRequested(
            request_id=uuid.uuid4(), subject=DataSubject(emails=["anna@example.lv"]),
            due_on=dt.date(2026, 12, 24)))

    async def failed():
        row = await delivery(sender, webhook_id)
        return row if row["status"] == "failed" else None
    row = await eventually(failed)
    assert row["attempts"] == 1 and "not public" in row["last_error"]


class Bulky(WebhookEvent):
    event_type: ClassVar[str] = "test.bulky"
    blob: str


async def test_oversized_payload_is_refused_and_changes_nothing(sender):
    partner = sender.service.partners.get("sandbox-carrier")
    with pytest.raises(PayloadTooLarge):
        async with sender.service.pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO received (source, event_type, data) VALUES ('self', 'big', '{}')")
            await enqueue(conn, partner, Bulky(blob="x" * 300_000))
    assert await sender.service.pool.fetchval("SELECT count(*) FROM received") == 0
    assert await sender.service.pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 0


async def test_partner_calls_back_once_and_replays_are_refused(sender, sandbox):
    webhook_id = await ship(sender, "cb@example.lv")
    await eventually(lambda: delivered(sender, webhook_id))

    async def accepted():
        return await received(sender, "sandbox-carrier", "shipment.accepted")
    (callback,) = await eventually(accepted)
    assert callback["in_reply_to"] == webhook_id and callback["tracking_number"].startswith("SBX")
    sent = sandbox.partner.callbacks_sent[0]
    assert sent["status"] == 202

    # The same signed callback again (a replay): refused, and not applied twice.
    now = dt.datetime.now(dt.timezone.utc)
    data = {"shipment_id": str(uuid.uuid4()), "tracking_number": "T1", "in_reply_to": webhook_id}
    body = json.dumps({"type": "shipment.accepted", "timestamp": now.isoformat(), "data": data})
    url = sandbox.partner.callback_url

    def signed(webhook_id, at, text, webhook=sandbox.partner.webhook):
        return {"webhook-id": webhook_id, "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": webhook.sign(webhook_id, at, text),
                "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=body, headers=signed(sent["webhook_id"], now, body)) as r:
            assert r.status == 409 and r.content_type == "application/problem+json"
        fresh = f"msg_{uuid.uuid4().hex}"
        async with http.post(url, data=body.replace('"T1"', '"T2"'),
                             headers=signed(fresh, now, body)) as r:
            assert r.status == 401  # tampered body
        old = now - dt.timedelta(minutes=10)
        async with http.post(url, data=body, headers=signed(fresh, old, body)) as r:
            assert r.status == 401 and "too old" in (await r.json())["detail"]
        stranger = Webhook(new_secret())
        async with http.post(url, data=body, headers=signed(fresh, now, body, stranger)) as r:
            assert r.status == 401
        for bad_body in ('{"type": "not a type", "timestamp": "x", "data": {}}',
                         body.replace("shipment.accepted", "parcel.teleported"),
                         body.replace('"T1"', '123'),
                         body.replace(webhook_id, f"msg_{uuid.uuid4().hex}")):  # not ours
            async with http.post(url, data=bad_body, headers=signed(fresh, now, bad_body)) as r:
                assert r.status == 422, await r.text()
        async with http.post(url, data=body, headers=signed(fresh, now, body)) as r:
            assert r.status == 202  # the same content under a new webhook-id is a new callback
    assert len(await received(sender, "sandbox-carrier", "shipment.accepted")) == 2


async def test_staff_read_the_delivery_log_and_redeliver(sender, sandbox, tokens):
    webhook_id = await ship(sender, "log@example.lv")
    await eventually(lambda: delivered(sender, webhook_id))
    base = f"http://127.0.0.1:{sender.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/v1/staff/webhooks/deliveries") as r:
            assert r.status == 401
        customer = {"Authorization": f"Bearer {tokens.token(kind='customer', roles=())}"}
        async with http.get(f"{base}/v1/staff/webhooks/deliveries", headers=customer) as r:
            assert r.status == 403
        support = {"Authorization": f"Bearer {tokens.token(roles=('support',))}"}
        async with http.get(f"{base}/v1/staff/webhooks/deliveries?partner=sandbox-carrier",
                            headers=support) as r:
            assert [d["id"] for d in (await r.json())["deliveries"]] == [webhook_id]
        async with http.get(f"{base}/v1/staff/webhooks/deliveries/{webhook_id}", headers=support) as r:
            detail = await r.json()
            assert detail["status"] == "delivered" and detail["attempts_log"][0]["status_code"] == 200
        async with http.post(f"{base}/v1/staff/webhooks/deliveries/{webhook_id}/redeliver",
                             headers=support) as r:
            assert r.status == 403  # redelivery is an admin's call
        admin = {"Authorization": f"Bearer {tokens.token(roles=('admin',))}"}
        async with http.post(f"{base}/v1/staff/webhooks/deliveries/{webhook_id}/redeliver",
                             headers=admin) as r:
            assert r.status == 202

    async def sent_twice():
        return len([a for a in sandbox.partner.attempts if a["webhook_id"] == webhook_id]) == 2
    await eventually(sent_twice)
    assert [r["webhook_id"] for r in sandbox.partner.received] == [webhook_id]  # processed once
    async with aiohttp.ClientSession() as http:
        expired = {"Authorization": f"Bearer {tokens.token(expires_in=-10)}"}
        async with http.get(f"{base}/v1/staff/partners", headers=expired) as r:
            assert r.status == 401


async def test_after_the_last_attempt_it_fails_and_staff_can_send_it_again(sender, sandbox, tokens):
    sandbox.partner.behaviour.fail_next = 5  # one more than the four tries of the test schedule
    webhook_id = await ship(sender, "last@example.lv")

    async def failed():
        row = await delivery(sender, webhook_id)
        return row if row["status"] == "failed" else None
    row = await eventually(failed)
    assert row["attempts"] == 5 and row["last_status"] == 500
    base = f"http://127.0.0.1:{sender.http_port}"
    admin = {"Authorization": f"Bearer {tokens.token(roles=('admin',))}"}
    async with aiohttp.ClientSession(headers=admin) as http:
        async with http.post(f"{base}/v1/staff/webhooks/deliveries/{webhook_id}/redeliver") as r:
            assert r.status == 202
    row = await eventually(lambda: delivered(sender, webhook_id))
    assert row["attempts"] == 1  # a fresh schedule, the same webhook-id
    async with aiohttp.ClientSession(headers=admin) as http:
        async with http.get(f"{base}/v1/staff/webhooks/deliveries/{webhook_id}") as r:
            log = (await r.json())["attempts_log"]
    assert [a["status_code"] for a in log] == [500] * 5 + [200]


async def test_redelivery_of_a_delivery_under_way_is_refused(sender, sandbox, tokens):
    sandbox.partner.behaviour.delay_s = 1.5
    webhook_id = await ship(sender, "busy@example.lv")
    await asyncio.sleep(0.5)  # it is being sent now
    admin = {"Authorization": f"Bearer {tokens.token(roles=('admin',))}"}
    async with aiohttp.ClientSession(headers=admin) as http:
        async with http.post(f"http://127.0.0.1:{sender.http_port}/v1/staff/webhooks/deliveries/"
                             f"{webhook_id}/redeliver") as r:
            assert r.status == 409
        async with http.post(f"http://127.0.0.1:{sender.http_port}/v1/staff/webhooks/deliveries/"
                             "msg_00000000000000000000000000000000/redeliver") as r:
            assert r.status == 404
    await eventually(lambda: delivered(sender, webhook_id))
    assert len(sandbox.partner.attempts) == 1


async def test_a_slow_partner_does_not_hold_up_the_others(
        amqp_url, database, free_port, partner_setup, tokens, sandbox, tmp_path, monkeypatch):
    fast = Sandbox(_port(), "http://127.0.0.1:1/unused", partner_setup["secret"])
    await fast.start(partner_setup["secret"])
    partners = json.loads(partner_setup["partners"].read_text())
    partners["partners"].append({
        "name": "fast-carrier", "kind": "carrier", "endpoint": f"http://127.0.0.1:{fast.port}/webhooks",
        "secret_env": [SECRET_ENV]})
    partner_setup["partners"].write_text(json.dumps(partners))
    sandbox.partner.behaviour.delay_s = 4  # the first carrier answers, but slowly
    settings = settings_for(amqp_url, database, free_port, partner_setup, tokens,
                            webhook_concurrency=4, webhook_timeout_s=10)
    runtime = ServiceRuntime(ProbeService, settings.model_copy(update={
        "webhook_allowed_hosts": [f"127.0.0.1:{partner_setup['port']}", f"127.0.0.1:{fast.port}"]}))
    await runtime.start()
    try:
        slow_ids = [await ship(runtime, f"slow{n}@example.lv") for n in range(2)]
        await asyncio.sleep(0.3)
        partner = runtime.service.partners.get("fast-carrier")
        started = asyncio.get_running_loop().time()
        async with runtime.service.pool.acquire() as conn, conn.transaction():
            fast_ids = [await enqueue(conn, partner, ErasureRequested(
                request_id=uuid.uuid4(), subject=DataSubject(emails=[f"f{n}@example.lv"]),
                due_on=dt.date(2026, 12, 24))) for n in range(6)]
        for webhook_id in fast_ids:
            await eventually(lambda: delivered(runtime, webhook_id))
        assert asyncio.get_running_loop().time() - started < 3  # not behind the 4 s partner
        for webhook_id in slow_ids:
            await eventually(lambda: delivered(runtime, webhook_id))
    finally:
        await runtime.stop()
        await fast.stop()


async def test_enqueue_belongs_in_the_transaction_of_the_change(sender):
    partner = sender.service.partners.get("sandbox-carrier")
    async with sender.service.pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="inside the transaction"):
            await enqueue(conn, partner, ErasureRequested(
                request_id=uuid.uuid4(), subject=DataSubject(emails=["x@example.lv"]),
                due_on=dt.date(2026, 12, 24)))


async def test_a_partner_whose_secret_is_missing_waits_and_its_callbacks_get_503(
        sender, sandbox, monkeypatch):
    monkeypatch.delenv(SECRET_ENV)
    webhook_id = await ship(sender, "nosecret@example.lv")

    async def tried():
        row = await delivery(sender, webhook_id)
        return row if row["attempts"] >= 2 else None
    row = await eventually(tried)
    assert row["status"] == "pending" and SECRET_ENV in row["last_error"]
    assert sandbox.partner.attempts == []
    async with aiohttp.ClientSession() as http:
        async with http.post(sandbox.partner.callback_url, data="{}",
                             headers={"Content-Type": "application/json"}) as r:
            assert r.status == 401  # unsigned: refused before anything else
        signed_somehow = {"Content-Type": "application/json", "webhook-id": "msg_1",
                          "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"}
        async with http.post(sandbox.partner.callback_url, data="{}", headers=signed_somehow) as r:
            assert r.status == 503 and SECRET_ENV not in await r.text()


async def test_what_is_sent_and_called_back_matches_the_published_schemas(sender, sandbox):
    def schema(name):
        return json.loads((DOCS / name).read_text())
    webhook_id = await ship(sender, "schema@example.lv")
    await eventually(lambda: delivered(sender, webhook_id))
    body = json.loads((await delivery(sender, webhook_id))["body"])
    jsonschema.validate(body, schema("shipment.created.v1.schema.json"),
                        format_checker=jsonschema.FormatChecker())

    async def callback_sent():
        return sandbox.partner.callbacks_sent and sandbox.partner.callbacks_sent[0]["status"] == 202
    await eventually(callback_sent)
    (row,) = await sender.service.pool.fetch("SELECT data FROM webhook_callbacks")
    reply = {"type": "shipment.accepted", "timestamp": "2026-11-24T10:00:00Z",
             "data": json.loads(row["data"])}
    jsonschema.validate(reply, schema("shipment.accepted.v1.schema.json"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**body, "data": {**body["data"], "parcels": []}},
                            schema("shipment.created.v1.schema.json"))
