"""The marketing service's own settings (``VEIKALS_MARKETING_*``), beside the common ones."""
from __future__ import annotations

from pydantic import Field, SecretStr

from shared.config import ServiceSettings
from shared.mail import SmtpSettings


class MarketingSettings(ServiceSettings, SmtpSettings):
    # Where marketing's public routes are reached from a mail client or browser: the
    # unsubscribe and confirmation links point there.
    public_url: str = "http://127.0.0.1:8104"
    # The mailbox named in List-Unsubscribe beside the link (RFC 8058 keeps both).
    unsubscribe_mailbox: str = "unsubscribe@veikals.example"
    mail_from: str = "Veikals <offers@veikals.example>"
    # Signs the unsubscribe and confirmation tokens; keys the suppression hashes of erased
    # addresses. Secrets: set both in production.
    link_key: SecretStr = SecretStr("")
    suppression_key: SecretStr = SecretStr("")
    unsubscribe_token_days: int = Field(default=400, ge=1, le=3650)
    confirmation_ttl_s: int = Field(default=7 * 86400, ge=300)
    # The SMS gateway (a registered partner of kind sms); empty: the only one registered.
    sms_gateway: str = ""
    # Campaign sending: messages per second in all (0: no limit), and how many go at once.
    campaign_rate_per_s: float = Field(default=50.0, ge=0)
    campaign_concurrency: int = Field(default=2, ge=1, le=32)
    campaign_poll_s: float = Field(default=5.0, gt=0)
    # A message claimed by a sender that died goes again after this lease.
    campaign_lease_s: float = Field(default=120.0, gt=0)
    # A message the relay refused for now is tried again, up to this many times.
    campaign_max_attempts: int = Field(default=5, ge=1)
    # How long deliveries (who received which campaign) are kept, and a withdrawn consent's
    # ledger after its holder's last entry (to show the consent was given and withdrawn).
    delivery_retention_days: int = Field(default=730, ge=1)
    ledger_retention_days: int = Field(default=3 * 365, ge=1)
    retention_sweep_s: float = Field(default=3600.0, gt=0)
