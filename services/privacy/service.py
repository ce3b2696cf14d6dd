"""The privacy service: data-subject requests (export, erasure, objection, consent
withdrawal) fanned out to every service and every processor, with deadlines, per-participant
progress, verification of every erasure, and the export as a streamed ZIP.

HTTP routes are in ``api.py``, intake in ``intake.py``, the tasks in ``fanout.py``, the archive
in ``archive.py``, the audit log in ``audit.py``. Here: what it offers over RPC and AMQP. It
publishes ``request_changed`` on ``privacy.events``; it starts an erasure when an account
closes, completes held erasures when orders or payments report them done, and writes every
service's ``staff_accessed`` into the audit log.
"""
from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from prometheus_client import Gauge

from services.accounts.schemas import AccountClosed
from services.privacy import audit, fanout, privacy, retention, schemas, store
from services.privacy.api import PrivacyApi
from services.privacy.intake import Intake
from services.privacy.mail import MAIL_CHANNEL
from services.privacy.settings import PrivacySettings
from shared import mail
from shared.contracts import webhooks as contracts
from shared.contracts.audit import StaffAccessed
from shared.contracts.privacy import DataSubject, HeldErasureCompleted
from shared.http import Endpoint, HTTPProblem
from shared.logging import get_logger
from shared.poller import NotifiedPoller
from shared.service import Dependencies, Service, event_handler, rpc
from shared.webhooks.registry import Partner

log = get_logger(__name__)

REQUESTS = Gauge("veikals_privacy_requests", "Data-subject requests not completed, by how they stand "
                 "(open, attention: a task failed, due_soon, overdue)", ["state"])


PROCESSORS_LATE = Gauge("veikals_privacy_processor_tasks_late",
                        "Requests sent to a processor that has not confirmed within PROCESSOR_ANSWER_S")


class DeadlineWatch(NotifiedPoller):
    """Counts the open requests by how close they are to their deadline (P26), for alerts."""

    def __init__(self, pool: asyncpg.Pool, settings: PrivacySettings) -> None:
        super().__init__(pool, "veikals_privacy_deadlines", "privacy-deadlines", settings.deadlines_poll_s)
        self.settings = settings

    async def work(self) -> None:
        async with self.pool.acquire() as conn:
            row = await store.deadline_counts(conn, dt.timedelta(days=self.settings.due_soon_days))
            late = await store.late_processor_tasks(conn, dt.timedelta(seconds=self.settings.processor_answer_s))
        for state in ("open", "attention", "overdue", "due_soon"):
            REQUESTS.labels(state).set(row[state])
        PROCESSORS_LATE.set(late)
        if late:
            log.warning("processors have not answered privacy requests in time", tasks=late)
        if row["overdue"]:
            log.error("data-subject requests are overdue", overdue=row["overdue"])


class PrivacyService(Service):
    name = "privacy"
    migrations = Path(__file__).parent / "migrations"
    inventory = privacy.INVENTORY
    retention_clocks = privacy.CLOCKS
    settings_class = PrivacySettings

    def __init__(self, deps: Dependencies) -> None:
        super().__init__(deps)
        self.settings = deps.settings
        assert isinstance(self.settings, PrivacySettings)
        self.intake = Intake(self.outbox, self.partners, self.settings.subject_key.get_secret_value().encode())
        self.runner = fanout.TaskRunner(self.pool, self.rpc, self.partners, self.outbox, self.settings)

    def endpoints(self) -> list[Endpoint]:
        return PrivacyApi(self).endpoints()

    def background(self) -> list[NotifiedPoller]:
        return [self.runner, DeadlineWatch(self.pool, self.settings), audit.Chainer(self.pool, self.settings.audit_chain_s),
                mail.MailSender(self.pool, self.settings, MAIL_CHANNEL, "privacy-mail", self.settings.outbox_poll_s)]

    # --- what others tell us ----------------------------------------------------------------------

    @event_handler("accounts", "account_closed")
    async def on_account_closed(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        """P22: closing an account starts its erasure."""
        closed = AccountClosed.model_validate(data)
        subject = DataSubject(customer_id=closed.customer_id, emails=[closed.email])  # not an unverified phone
        await self.intake.submit(conn, "erasure", subject, source="account_closed", customer_id=closed.customer_id,
                                 contact_email=closed.email)

    async def held_released(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        done = HeldErasureCompleted.model_validate(data)
        await store.request(conn, done.request_id, lock=True)
        task = await store.task(conn, done.request_id, done.participant, lock=True)
        if task is not None and task["state"] == "held":  # now verify what it erased
            await store.set_task(conn, done.request_id, done.participant, "pending", stage="verify")

    @event_handler("orders", "held_erasure_completed")
    async def on_orders_erasure_released(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        await self.held_released(conn, data)

    @event_handler("payments", "held_erasure_completed")
    async def on_payments_erasure_released(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        await self.held_released(conn, data)

    async def on_partner_callback(self, conn: asyncpg.Connection, partner: Partner,
                                  reply: contracts.PartnerReply) -> None:
        """A processor confirms an erasure, a correction or an objection, or sends what it holds
        for an export."""
        if not isinstance(reply, (contracts.ErasureCompleted, contracts.ExportCompleted,
                                  contracts.RectificationCompleted, contracts.ObjectionApplied)):
            return
        task = await store.task_by_webhook(conn, reply.in_reply_to)
        if task is None or task["request_id"] != reply.request_id or task["participant"] != f"partner:{partner.name}":
            raise HTTPProblem(422, "Unknown request", "No request of ours to you has this id.")
        if task["state"] != "waiting":
            return  # answered before
        if isinstance(reply, contracts.ExportCompleted):
            await store.clear_export(conn, reply.request_id, task["participant"])
            await store.add_export_records(conn, reply.request_id, task["participant"],
                                           [("records held by the processor", r) for r in reply.records])
            outcome = {"records": len(reply.records)}
        elif isinstance(reply, contracts.RectificationCompleted):
            outcome = {"records_rectified": reply.records_rectified}
        elif isinstance(reply, contracts.ObjectionApplied):
            outcome = {"applied": True}
        else:
            outcome = {"records_erased": reply.records_erased}
        await store.set_task(conn, reply.request_id, task["participant"], "done", outcome=outcome)
        await fanout.settle(conn, reply.request_id, self.outbox, self.settings)

    # --- the audit log ---------------------------------------------------------------------------

    async def staff_accessed(self, conn: asyncpg.Connection, access: StaffAccessed, service: str = "privacy") -> None:
        """A staff look at personal data, here or (by its event) in another service, into the log."""
        await store.add_audit(
            conn, kind="staff_access", service=service, actor=f"staff:{access.staff_id}",
            action=access.about or "looked at a customer's data", source=f"{service}:access:{access.access_id}",
            at=access.at, subject_id=access.customer_id, categories=access.categories, reason=access.reason)

    @event_handler("accounts", "staff_accessed")
    async def on_accounts_staff_accessed(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        await self.staff_accessed(conn, StaffAccessed.model_validate(data), "accounts")

    @event_handler("orders", "staff_accessed")
    async def on_orders_staff_accessed(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        await self.staff_accessed(conn, StaffAccessed.model_validate(data), "orders")

    @event_handler("payments", "staff_accessed")
    async def on_payments_staff_accessed(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        await self.staff_accessed(conn, StaffAccessed.model_validate(data), "payments")

    @event_handler("marketing", "staff_accessed")
    async def on_marketing_staff_accessed(self, conn: asyncpg.Connection, data: dict[str, Any]) -> None:
        await self.staff_accessed(conn, StaffAccessed.model_validate(data), "marketing")

    @rpc(changes_state=False)
    async def verify_audit_log(self, anchor_seq: int | None = None, anchor_hash: str | None = None) -> dict[str, Any]:
        """Walk the audit log's hash chain: intact, or the first entry changed, removed or moved
        (``n.rpc.privacy.verify_audit_log(seq, hash)`` with a checkpoint kept elsewhere)."""
        anchor = None if anchor_seq is None or anchor_hash is None else (int(anchor_seq), bytes.fromhex(anchor_hash))
        async with self.pool.acquire() as conn:
            return audit.report(await audit.verify(conn, anchor))

    @rpc(changes_state=True)
    async def audit_checkpoint(self, conn: asyncpg.Connection) -> dict[str, Any]:
        """The audit log's chain end now, recorded: copy it somewhere the database's admins cannot write."""
        seq, digest = await audit.checkpoint(conn)
        return {"seq": seq, "hash": digest.hex()}

    # --- for operators ---------------------------------------------------------------------------

    @rpc(changes_state=False)
    async def request_status(self, request_id: str) -> dict[str, Any] | None:
        """A request with each participant's progress (``n.rpc.privacy.request_status(id)``)."""
        try:
            wanted = uuid.UUID(request_id)
        except ValueError:
            return None
        async with self.pool.acquire() as conn:
            row = await store.request(conn, wanted)
            if row is None:
                return None
            tasks = await store.tasks_of(conn, [wanted])
        return {"id": str(row["id"]), "kind": row["kind"], "state": row["state"],
                "received_at": row["received_at"].isoformat(), "due_at": row["due_at"].isoformat(),
                "tasks": {t["participant"]: t["state"] for t in tasks}}

    @rpc(changes_state=False)
    async def retention_report(self) -> schemas.RetentionReportView:
        """Each participant's oldest record held against its declared retention, and what is
        overdue (``n.rpc.privacy.retention_report()``; staff: ``GET /v1/staff/retention-report``)."""
        return await retention.gather(self.rpc, self.privacy_retention, self.settings.retention_report_timeout_s)

    @rpc(changes_state=True)
    async def run_retention_sweep(self, conn: asyncpg.Connection) -> dict[str, int]:
        """Delete delivered exports, expired links and requests past their period (the CronJob)."""
        return await privacy.sweep(conn, self.settings)
