"""A request's tasks, carried out: one per participant, each state stored, retried with backoff.

A service is asked over RPC (the participant contract). Each state-changing call carries a
key derived from the request and the participant, so a call repeated after a crash (of this
service, the participant or RabbitMQ) gets the participant's first reply instead of running
again. An erasure is then verified: the participant re-reads the subject's identifiers
(``verify_only``) and anything left beyond what it declared retained fails the task. A part
held back (a complaint, a chargeback) waits for the participant's ``held_erasure_completed``,
then is verified. A processor gets a signed webhook (queued in the transaction that marks the
task waiting) and answers by a signed callback. An export's parts go to ``export_records`` a
chunk at a time: no process holds a whole history.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import uuid
from typing import Any

import asyncpg
from prometheus_client import Counter

from services.privacy import domain, mail, schemas, store
from services.privacy.privacy import AUDIT_RETENTION
from services.privacy.settings import PrivacySettings
from shared.contracts.privacy import (
    DataSubject, ErasureOutcome, ErasureRequest, ExportChunk, ExportRequest, LegalBasis, Retained,
)
from shared.contracts.webhooks import (
    Corrections, ErasureRequested, ExportRequested, ObjectionReceived, RectificationRequested,
)
from shared.logging import get_logger, redact_text
from shared.messaging import RpcClient
from shared.outbox import Outbox
from shared.poller import NotifiedPoller
from shared.webhooks.outbound import enqueue
from shared.webhooks.registry import PartnerRegistry

log = get_logger(__name__)

NOTIFY_CHANNEL = "veikals_privacy_tasks"
TASKS_FAILED = Counter("veikals_privacy_tasks_failed_total",
                       "Request tasks that failed (given up, or a re-read found data left)", ["participant", "why"])
OWN_RECORDS = dt.timedelta(days=3 * 365)  # how long the requests themselves are kept (accountability)


def details_of(request: asyncpg.Record) -> dict[str, Any]:
    return json.loads(request["details"])


class TaskRunner(NotifiedPoller):
    def __init__(self, pool: asyncpg.Pool, rpc: RpcClient, partners: PartnerRegistry, outbox: Outbox,
                 settings: PrivacySettings) -> None:
        super().__init__(pool, NOTIFY_CHANNEL, "privacy-tasks", settings.tasks_poll_s)
        self.rpc, self.partners, self.outbox, self.settings = rpc, partners, outbox, settings
        self.lease = dt.timedelta(seconds=settings.task_lease_s)

    async def work(self) -> None:
        while not self.stopping:
            async with self.pool.acquire() as conn:
                claimed = await store.claim_tasks(conn, self.settings.task_concurrency, self.lease)
            if not claimed:
                return
            await asyncio.gather(*(self.run(task) for task in claimed))  # each catches its own failure

    async def run(self, task: asyncpg.Record) -> None:
        request_id, participant = task["request_id"], task["participant"]
        async with self.pool.acquire() as conn:
            request = await store.request(conn, request_id)
        if request is None:
            return
        try:
            if participant.startswith("partner:"):
                await self.processor(request, participant)
            elif participant == domain.OWN:
                await self.own(request)
            else:
                await self.service(request, task)
        except Exception as exc:  # a participant unreachable, slow or failing: later, with backoff
            give_up = task["attempts"] >= domain.MAX_ATTEMPTS
            error = redact_text(f"{type(exc).__name__}: {exc}")[:500]
            async with self.pool.acquire() as conn, conn.transaction():  # attempts counts this one: 5 s first
                await store.request(conn, request_id, lock=True)
                await store.retry_later(conn, request_id, participant, domain.backoff(task["attempts"] - 1), error,
                                        give_up)
                if give_up:
                    TASKS_FAILED.labels(participant, "gave_up").inc()
                    await self.settle(conn, request_id)
            log.warning("privacy task failed; will retry" if not give_up else "privacy task given up",
                        participant=participant, attempt=task["attempts"], error=error)

    # --- services -------------------------------------------------------------------------

    async def service(self, request: asyncpg.Record, task: asyncpg.Record) -> None:
        request_id, participant, kind = request["id"], task["participant"], request["kind"]
        subject = DataSubject.model_validate_json(request["subject"])
        key = f"{request_id}:{participant}"
        if kind == "export":
            records = await self.export_from(participant, request_id, subject)
            await self.finish(request_id, participant, "done", outcome={"records": records})
        elif kind == "rectification":
            corrected = [] if subject.customer_id is None else await self.rpc.call(
                participant, "rectify", str(subject.customer_id), details_of(request), request_id=f"{key}:rectify")
            await self.finish(request_id, participant, "done", outcome={"corrected": corrected})
        elif kind == "objection":
            found = await self.rpc.call(participant, "apply_objection", subject.model_dump(mode="json"),
                                        details_of(request)["purpose"], request_id=f"{key}:object")
            await self.finish(request_id, participant, "done", outcome={"records": found})
        elif kind == "withdrawal":
            details = details_of(request)
            found = await self.rpc.call(participant, "withdraw_consent", subject.model_dump(mode="json"),
                                        details.get("purpose"), details.get("channel"), request_id=f"{key}:withdraw")
            await self.finish(request_id, participant, "done", outcome={"withdrawn": found})
        elif task["stage"] == "run":
            outcome = ErasureOutcome.model_validate(await self.rpc.call(
                participant, "privacy_erase", ErasureRequest(request_id=request_id, subject=subject).model_dump(
                    mode="json"), request_id=f"{key}:erase"))
            if outcome.held:  # the participant completes it when the hold ends, and tells us
                await self.finish(request_id, participant, "held", outcome=outcome.model_dump(mode="json"))
                return
            async with self.pool.acquire() as conn:  # a verification that fails is retried alone
                await store.to_verify(conn, request_id, participant, outcome.model_dump_json())
            await self.verify(request_id, participant, subject, task["attempts"])
        else:
            await self.verify(request_id, participant, subject, task["attempts"])

    async def verify(self, request_id: uuid.UUID, participant: str, subject: DataSubject, attempt: int) -> None:
        """The participant re-reads the subject's identifiers; anything found beyond what it
        declared retained fails the task (staff are alerted)."""
        check = ErasureOutcome.model_validate(await self.rpc.call(
            participant, "privacy_erase", ErasureRequest(request_id=request_id, subject=subject,
                                                         verify_only=True).model_dump(mode="json"),
            request_id=f"{request_id}:{participant}:verify:{attempt}"))
        if check.remaining:
            TASKS_FAILED.labels(participant, "data_left").inc()
            log.error("an erasure left personal data behind", participant=participant, request=str(request_id),
                      remaining=check.remaining)
            await self.finish(request_id, participant, "failed", remaining=check.remaining,
                              error="the re-read found data beyond what is declared retained")
        else:
            await self.finish(request_id, participant, "done", remaining=[])

    async def export_from(self, participant: str, request_id: uuid.UUID, subject: DataSubject) -> int:
        """Every chunk of the participant's export into ``export_records``; an attempt starts
        over, so a part cut short by a crash is never doubled."""
        async with self.pool.acquire() as conn:
            await store.clear_export(conn, request_id, participant)
        cursor, records = None, 0
        while True:
            chunk = ExportChunk.model_validate(await self.rpc.call(participant, "privacy_export", ExportRequest(
                request_id=request_id, subject=subject, cursor=cursor).model_dump(mode="json")))
            async with self.pool.acquire() as conn, conn.transaction():
                await store.add_export_records(conn, request_id, participant,
                                               [(r.category, r.data) for r in chunk.records])
                await store.renew_lease(conn, request_id, participant, self.lease)  # a long history is not claimed twice
            records += len(chunk.records)
            if chunk.next_cursor is None:
                return records
            cursor = chunk.next_cursor

    # --- the privacy service's own records, and processors ------------------------------------

    async def own(self, request: asyncpg.Record) -> None:
        subject = DataSubject.model_validate_json(request["subject"])
        if request["kind"] == "export":
            async with self.pool.acquire() as conn:
                rows = await store.requests_about(conn, subject.customer_id, subject.emails)
                looks = await store.audit_about(conn, subject.customer_id) if subject.customer_id else []
                await store.clear_export(conn, request["id"], domain.OWN)
                await store.add_export_records(conn, request["id"], domain.OWN, [
                    *((category, {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in r.items()})
                      for category, found in (("data-subject requests", rows), ("audit log", looks))
                      for r in found)])
            await self.finish(request["id"], domain.OWN, "done", outcome={"records": len(rows) + len(looks)})
            return
        kept = Retained(category="records of data-subject requests", fields=["kind", "subject", "dates", "outcomes"],
                        legal_basis=LegalBasis.LEGAL_OBLIGATION,
                        reason="to show how each request was handled (Art. 5(2), P26)",
                        until=(request["received_at"] + OWN_RECORDS).date())
        audit = Retained(category="audit log", fields=["subject_id", "action", "categories", "reason"],
                         legal_basis=LegalBasis.LEGAL_OBLIGATION,
                         reason="to account for every staff look at your data and every step of your requests "
                                "(P16, P17); by id only, never by name or address",
                         until=(dt.datetime.now(dt.timezone.utc) + AUDIT_RETENTION).date())
        await self.finish(request["id"], domain.OWN, "done", outcome=ErasureOutcome(
            request_id=request["id"], participant=domain.OWN, retained=[kept, audit],
            completed_at=dt.datetime.now(dt.timezone.utc)).model_dump(mode="json"), remaining=[])

    async def processor(self, request: asyncpg.Record, participant: str) -> None:
        partner = self.partners.get(participant.removeprefix("partner:"))
        if partner is None:
            raise LookupError(f"{participant} is no longer registered")
        common = {"request_id": request["id"], "subject": DataSubject.model_validate_json(request["subject"]),
                  "due_on": request["due_at"].date()}
        if request["kind"] == "rectification":
            message = RectificationRequested(**common, corrections=Corrections(**details_of(request)))
        elif request["kind"] in ("objection", "withdrawal"):
            message = ObjectionReceived(**common, reason=request["kind"], **details_of(request))
        else:
            message = (ExportRequested if request["kind"] == "export" else ErasureRequested)(**common)
        async with self.pool.acquire() as conn, conn.transaction():
            await store.request(conn, request["id"], lock=True)
            task = await store.task(conn, request["id"], participant, lock=True)
            if task is None or task["state"] != "pending":
                return
            webhook_id = await enqueue(conn, partner, message)
            await store.set_task(conn, request["id"], participant, "waiting", webhook_id=webhook_id)

    # --- after each step ----------------------------------------------------------------------

    async def finish(self, request_id: uuid.UUID, participant: str, state: str, **changes: Any) -> None:
        """Record the step, unless staff took the task over meanwhile (it is no longer pending)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await store.request(conn, request_id, lock=True)  # request, then task: the order everywhere
            task = await store.task(conn, request_id, participant, lock=True)
            if task is None or task["state"] != "pending":
                return
            await store.set_task(conn, request_id, participant, state, **changes)
            await self.settle(conn, request_id)

    async def settle(self, conn: asyncpg.Connection, request_id: uuid.UUID) -> None:
        await settle(conn, request_id, self.outbox, self.settings)


async def settle(conn: asyncpg.Connection, request_id: uuid.UUID, outbox: Outbox, settings: PrivacySettings) -> None:
    """The request's state from its tasks': completed (the requester is told, an export's link
    sent), or needing staff."""
    request = await store.request(conn, request_id, lock=True)
    state = domain.request_state(t["state"] for t in await store.tasks_of(conn, [request_id]))
    if request is None or state == request["state"]:
        return
    await store.set_state(conn, request_id, state)
    await outbox.add(conn, "request_changed", schemas.RequestChanged(
        request_id=request_id, kind=request["kind"], state=state,
        what="completed" if state == "completed" else "attention",
        at=dt.datetime.now(dt.timezone.utc)).model_dump(mode="json"))
    if state == "completed" and request["contact_email"]:
        link = None
        if request["kind"] == "export":
            token = secrets.token_urlsafe(32)
            await store.add_link(conn, domain.token_hash(token), request_id,
                                 dt.timedelta(seconds=settings.export_link_ttl_s), settings.export_downloads)
            link = mail.export_link(settings.public_url, request, token)
        await mail.completed(conn, request, link)
