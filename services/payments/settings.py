"""The payments service's own settings (``VEIKALS_PAYMENTS_*``), beside the common ones.

The PSP is Stripe or anything that speaks its API (the sandbox under ``deploy/sandbox/psp.py``
locally): moving to a real account is ``PSP_API_BASE``, the keys and the webhook secret.
"""
from __future__ import annotations

from pydantic import Field, SecretStr

from shared.config import ServiceSettings


class PaymentsSettings(ServiceSettings):
    psp_api_base: str = "http://127.0.0.1:9210"
    psp_secret_key: SecretStr = SecretStr("")
    # Given to browsers, which send card details to the PSP with it and get a token back.
    psp_publishable_key: str = ""
    psp_webhook_secret: SecretStr = SecretStr("")
    psp_webhook_tolerance_s: int = Field(default=300, ge=1)
    psp_timeout_s: float = Field(default=20.0, gt=0)
    # Where the PSP sends the customer back after authenticating a payment with their bank.
    shop_url: str = "http://127.0.0.1:8102"
    # A payment the PSP has not settled (no webhook yet) is asked about after this long, and
    # one waiting for the customer's authentication is cancelled after payment_action_timeout_s.
    payment_check_after_s: float = Field(default=60.0, gt=0)
    payment_action_timeout_s: float = Field(default=3600.0, gt=0)
    payments_poll_s: float = Field(default=30.0, gt=0)
    # Memberships: the monthly price, and the dunning schedule: a failed renewal is tried
    # again this many seconds after the first failure of the period (1, 3 and 5 days), then
    # the membership lapses.
    membership_price_cents: int = Field(default=499, ge=1)
    membership_currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    dunning_schedule_s: list[float] = [86400, 3 * 86400, 5 * 86400]
    billing_poll_s: float = Field(default=60.0, gt=0)
    retention_sweep_s: float = Field(default=3600.0, gt=0)
