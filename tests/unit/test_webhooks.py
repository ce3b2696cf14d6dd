"""Signing, address policy, Retry-After and the partner registry, without I/O."""
import datetime as dt
import json

import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared.webhooks.outbound import retry_after
from shared.webhooks.policy import DeliveryPolicy, EndpointRefused
from shared.webhooks.registry import MissingSecret, Partner, PartnerRegistry
from shared.webhooks.signing import SignatureError, new_secret, signature_headers, verify

BODY = b'{"type":"shipment.created","data":{"id":1}}'


def test_the_standardwebhooks_package_accepts_what_we_send():
    secret = new_secret()
    headers = signature_headers("msg_1", BODY, [secret])
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    assert headers["webhook-signature"].startswith("v1,")


def test_during_rotation_either_secret_verifies():
    old, new = new_secret(), new_secret()
    headers = signature_headers("msg_1", BODY, [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_tampered_body_old_timestamp_and_wrong_secret_are_rejected():
    secret = new_secret()
    headers = signature_headers("msg_1", BODY, [secret])
    with pytest.raises(SignatureError, match="No matching signature"):
        verify(BODY.replace(b"1", b"2"), headers, [secret])
    stale = signature_headers("msg_1", BODY, [secret],
                              now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=6))
    with pytest.raises(SignatureError, match="too old"):
        verify(BODY, stale, [secret])
    with pytest.raises(SignatureError):
        verify(BODY, headers, [new_secret()])
    with pytest.raises(SignatureError):
        verify(BODY, {**headers, "webhook-signature": "garbage"}, [secret])
    with pytest.raises(SignatureError, match="Missing"):
        verify(BODY, {}, [secret])
    verify(BODY, headers, [new_secret(), secret])  # any current secret of the partner


@pytest.mark.parametrize("url", [
    "http://partner.example/hook",       # not https
    "https://10.1.2.3/hook", "https://192.168.0.10/hook", "https://172.16.5.5/hook",
    "https://127.0.0.1/hook", "https://[::1]/hook", "https://169.254.169.254/latest",
    "https://[fd00::1]/hook", "https://100.64.0.1/hook",
    "https://[::ffff:10.0.0.1]/hook", "https://[64:ff9b::a9fe:a9fe]/hook",  # IPv4 inside IPv6
    "https://[2002:a00:1::]/hook", "https://[::a00:1]/hook",
    "http://127.0.0.1:9201/webhooks",    # the sandbox, when it is not allow-listed
])
def test_production_policy_refuses(url):
    with pytest.raises(EndpointRefused):
        DeliveryPolicy().check_url(url)


def test_refusals_do_not_repeat_credentials_or_query():
    with pytest.raises(EndpointRefused) as info:
        DeliveryPolicy().check_url("http://user:hunter2@partner.example/hook?token=abc")
    assert "hunter2" not in str(info.value) and "abc" not in str(info.value)


def test_public_https_and_allow_listed_sandboxes_pass():
    DeliveryPolicy().check_url("https://partner.example/hook")
    DeliveryPolicy().check_url("https://[2001:4860:4860::8888]/hook")
    DeliveryPolicy().check_url("https://93.184.216.34/hook")
    DeliveryPolicy({"127.0.0.1:9201"}).check_url("http://127.0.0.1:9201/webhooks")
    with pytest.raises(EndpointRefused):  # only that port
        DeliveryPolicy({"127.0.0.1:9201"}).check_url("http://127.0.0.1:9202/webhooks")


async def test_names_resolving_to_private_addresses_are_refused_when_connecting():
    resolver = DeliveryPolicy().resolver()
    with pytest.raises(EndpointRefused, match="no public address"):
        await resolver.resolve("localhost", 443)
    allowed = DeliveryPolicy({"localhost:9201"}).resolver()
    assert await allowed.resolve("localhost", 9201)
    await resolver.close()
    await allowed.close()


def test_retry_after_in_seconds_or_as_a_date_capped_at_a_day():
    now = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.timezone.utc)
    assert retry_after("120", now) == dt.timedelta(seconds=120)
    assert retry_after("Tue, 24 Nov 2026 12:05:00 GMT", now) == dt.timedelta(minutes=5)
    assert retry_after("999999", now) == dt.timedelta(hours=24)
    assert retry_after("soon", now) is None and retry_after(None, now) is None
    assert retry_after("99999999999999999999", now) == dt.timedelta(hours=24)
    assert retry_after("Mon, 01 Jan 2001 00:00:00 GMT", now) == dt.timedelta(0)


def test_registry_loads_partners_and_reads_secrets_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "partners.json"
    path.write_text(json.dumps({"partners": [{
        "name": "dpd-lv", "kind": "carrier", "endpoint": "https://hooks.dpd.example/veikals",
        "secret_env": ["DPD_SECRET", "DPD_SECRET_OLD"], "data_categories": ["name", "phone"]}]}))
    registry = PartnerRegistry.load(path)
    partner = registry.get("dpd-lv")
    with pytest.raises(MissingSecret, match="DPD_SECRET"):
        partner.secrets()
    monkeypatch.setenv("DPD_SECRET_OLD", "whsec_b2xk")
    monkeypatch.setenv("DPD_SECRET", "whsec_bmV3")
    assert partner.secrets() == ["whsec_bmV3", "whsec_b2xk"]
    assert [p.name for p in registry] == ["dpd-lv"]


@pytest.mark.parametrize("bad", [
    {"name": "Bad Name", "kind": "carrier", "endpoint": "https://x.example", "secret_env": ["S"]},
    {"name": "ok-name", "kind": "courier", "endpoint": "https://x.example", "secret_env": ["S"]},
    {"name": "ok-name", "kind": "carrier", "endpoint": "not a url", "secret_env": ["S"]},
    {"name": "ok-name", "kind": "carrier", "endpoint": "https://x.example", "secret_env": []},
    {"name": "ok-name", "kind": "carrier", "endpoint": "https://x.example", "secret_env": ["S"], "secret": "inline"},
])
def test_bad_partner_entries_are_refused(bad):
    with pytest.raises(ValidationError):
        Partner.model_validate(bad)


def test_the_local_partners_file_is_valid():
    registry = PartnerRegistry.load()
    assert {p.kind for p in registry} == {"carrier", "accounting", "hosting", "sms"}
