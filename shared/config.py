"""Settings from the environment: one prefix per service (``VEIKALS_<SERVICE>_``).

Every field has a default that works on a developer machine with PostgreSQL and RabbitMQ on
loopback; production sets the variables. Secrets are only ever read from the environment.
"""
from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
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
    # Deliveries one consumer (the RPC server, each event handler) takes at once; at most the
    # database pool's size, so one consumer alone never waits for a connection. All of them
    # together may, up to db_acquire_timeout_s, after which the delivery is retried.
    prefetch: int = Field(default=16, ge=1, le=1000)
    db_pool_size: int = Field(default=20, ge=1, le=500)
    db_acquire_timeout_s: float = Field(default=10.0, gt=0)
    db_statement_timeout_s: float = Field(default=30.0, gt=0)
    # An event handler that fails is retried this many times (after retry_delay_ms, doubling,
    # with jitter), then dead-lettered. A transient failure (the database unreachable, a
    # deadlock, a serialization failure, a timeout) is retried for transient_retry_s instead.
    max_retries: int = Field(default=3, ge=0, le=100)
    retry_delay_ms: int = Field(default=2000, ge=0)
    transient_retry_s: float = Field(default=600.0, ge=0)
    rpc_timeout_s: float = Field(default=30.0, gt=0)
    # Keys the hashes under which this service keeps erased subjects (tombstones) and the
    # subjects of its events: no identifier is stored in the clear. Set it in production.
    subject_key: SecretStr = SecretStr("")
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

    @model_validator(mode="after")
    def _prefetch_fits_the_pool(self) -> "ServiceSettings":
        if self.prefetch > self.db_pool_size:
            raise ValueError(f"prefetch ({self.prefetch}) must not exceed db_pool_size ({self.db_pool_size}): "
                             "a delivery in hand would wait for a database connection")
        return self

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
