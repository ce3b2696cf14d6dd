"""Settings from the environment: one prefix per service (``VEIKALS_<SERVICE>_``).

Every field has a default that works on a developer machine with PostgreSQL and RabbitMQ on
loopback; production sets the variables. Secrets are only ever read from the environment.
"""
from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The port each service's HTTP API listens on by default (local runner, compose).
DEFAULT_HTTP_PORTS = {
    "accounts": 8101,
    "orders": 8102,
    "payments": 8103,
    "marketing": 8104,
    "privacy": 8105,
}


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    service_name: str
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = ""  # empty: postgresql://postgres@127.0.0.1:5432/veikals_<service>
    http_host: str = "127.0.0.1"
    http_port: int | None = None  # None: the service's default port; 0: any free port
    prefetch: int = Field(default=32, ge=1, le=1000)
    # An event handler that fails is retried this many times, then dead-lettered.
    max_retries: int = Field(default=3, ge=0, le=100)
    retry_delay_ms: int = Field(default=2000, ge=0)
    rpc_timeout_s: float = Field(default=30.0, gt=0)
    outbox_poll_s: float = Field(default=1.0, gt=0)
    shutdown_grace_s: float = Field(default=20.0, ge=0)
    log_level: str = "info"
    # Where the accounts service publishes the public keys of its access tokens.
    jwks_url: str = "http://127.0.0.1:8101/.well-known/jwks.json"
    # Outbound webhooks (Standard Webhooks' schedule: a try now, then after each delay, in seconds).
    webhook_retry_schedule_s: list[float] = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    webhook_timeout_s: float = Field(default=15.0, gt=0)
    webhook_concurrency: int = Field(default=16, ge=1, le=256)
    # host:port pairs that may be reached over http or on private addresses (local sandboxes).
    webhook_allowed_hosts: list[str] = []

    @property
    def dsn(self) -> str:
        return self.database_url or f"postgresql://postgres@127.0.0.1:5432/veikals_{self.service_name}"

    @property
    def port(self) -> int:
        if self.http_port is None:
            return DEFAULT_HTTP_PORTS.get(self.service_name, 8100)
        return self.http_port


def load_settings(service_name: str, settings_class: type[ServiceSettings] = ServiceSettings,
                  **overrides) -> ServiceSettings:
    """Read ``VEIKALS_<SERVICE>_*`` variables into ``settings_class`` (a service with settings of
    its own subclasses :class:`ServiceSettings`); ``overrides`` win (tests pass them)."""
    prefix = f"VEIKALS_{service_name.upper()}_"
    return settings_class(_env_prefix=prefix, service_name=service_name, **overrides)
