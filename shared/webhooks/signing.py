"""Standard Webhooks signatures (https://www.standardwebhooks.com), through its own package.

A message is signed as ``v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">``
with each of the partner's current secrets, space-separated: during a rotation the old and the
new secret both sign, so a partner that knows either verifies without downtime.
"""
from __future__ import annotations

import base64
import datetime as dt
import secrets as random_secrets

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class SignatureError(Exception):
    """The request is not signed by this partner, or not within the timestamp window."""


def new_secret() -> str:
    return "whsec_" + base64.b64encode(random_secrets.token_bytes(32)).decode()


def signature_headers(webhook_id: str, body: bytes, secrets: list[str],
                      now: dt.datetime | None = None) -> dict[str, str]:
    if not secrets:
        raise ValueError("no signing secret")
    now = now or dt.datetime.now(dt.timezone.utc)
    text = body.decode("utf-8")
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(Webhook(s).sign(webhook_id, now, text) for s in secrets),
    }


def verify(body: bytes, headers: dict[str, str], secrets: list[str]) -> None:
    """Raise SignatureError unless one of ``secrets`` signed ``body`` within the window."""
    last = "no secret configured"
    for secret in secrets:
        try:
            Webhook(secret).verify(body, headers, json_parse=False)
            return
        except WebhookVerificationError as exc:
            last = str(exc)
        except (ValueError, TypeError):  # a malformed signature header
            last = "Malformed signature header"
    raise SignatureError(last)
