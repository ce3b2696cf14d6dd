"""The privacy service's own settings (``VEIKALS_PRIVACY_*``), beside the common ones."""
from __future__ import annotations

from pydantic import Field

from shared.config import ServiceSettings
from shared.mail import SmtpSettings


class PrivacySettings(ServiceSettings, SmtpSettings):
    # The shop's pages (web/edge.py), which the links in our mail open (the export's download).
    public_url: str = "http://127.0.0.1:8100"
    mail_from: str = "Veikals <privacy@veikals.example>"
    # An export's link works this long and this many times (and needs the requester's sign-in).
    export_link_ttl_s: int = Field(default=7 * 86400, ge=300)
    export_downloads: int = Field(default=3, ge=1, le=20)
    tasks_poll_s: float = Field(default=5.0, gt=0)
    task_lease_s: float = Field(default=300.0, gt=0)  # one RPC call, or one export, at the most
    # Tasks run at once by one instance (each one RPC call, or one export, at a time).
    task_concurrency: int = Field(default=16, ge=1, le=200)
    deadlines_poll_s: float = Field(default=60.0, gt=0)
    # A processor that has not confirmed a request this long after it was sent is shown as late.
    processor_answer_s: int = Field(default=3 * 86400, ge=60)
    due_soon_days: int = Field(default=7, ge=1)
    # How long the retention report waits for each participant; one that takes longer is shown unreachable.
    retention_report_timeout_s: float = Field(default=10.0, gt=0, le=60)
    # How often the audit log's chainer takes the entries written meanwhile.
    audit_chain_s: float = Field(default=0.5, gt=0, le=60)
