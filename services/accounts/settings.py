"""The accounts service's own settings (``VEIKALS_ACCOUNTS_*``), beside the common ones."""
from __future__ import annotations

from pydantic import Field, SecretStr

from shared.config import ServiceSettings
from shared.mail import SmtpSettings


class AccountsSettings(ServiceSettings, SmtpSettings):
    # Ed25519 private key (PEM) that signs access tokens: `python -m services.accounts.tokens`
    # makes one. Public keys of earlier signing keys stay in the JWKS while their tokens live.
    jwt_signing_key: SecretStr = SecretStr("")
    jwt_previous_public_keys: list[str] = []
    access_token_ttl_s: int = Field(default=900, ge=30, le=3600)
    refresh_token_ttl_s: int = Field(default=30 * 86400, ge=300)
    # P9: a session's IP address and user agent are deleted this long after it ends.
    session_log_days: int = Field(default=30, ge=1, le=365)
    verification_ttl_s: int = Field(default=86400, ge=300)
    password_reset_ttl_s: int = Field(default=3600, ge=300, le=86400)
    # Where the shop's web pages live: links in e-mails point there.
    shop_url: str = "http://127.0.0.1:8100"  # the pages (the edge: web/edge.py)
    # argon2id cost (argon2-cffi's defaults, RFC 9106's second recommended profile).
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)
    hash_concurrency: int = Field(default=2, ge=1, le=64)  # hashes computed at once (memory)
    # Failed logins for one address within the window lock it for the rest of the window.
    login_max_failures: int = Field(default=5, ge=1)
    login_window_s: int = Field(default=900, ge=1)
    # Failed logins and registrations from one network (/24, /48) within the window.
    network_max_failures: int = Field(default=100, ge=1)
    register_max_per_network: int = Field(default=20, ge=1)
    # Password reset mails asked for one address, and from one network, within an hour.
    reset_max_per_address: int = Field(default=3, ge=1)
    reset_max_per_network: int = Field(default=20, ge=1)
    # Keys the hashes of addresses and networks in the throttle table.
    throttle_key: SecretStr = SecretStr("")
    # Behind a proxy that sets X-Forwarded-For, take the client address from it.
    trust_forwarded_for: bool = False
    retention_sweep_s: float = Field(default=3600.0, gt=0)
