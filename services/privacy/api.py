"""The privacy service's HTTP routes: a customer's requests (submit, status with each
participant's progress, the export's download), the staff queue (enter a request that
arrived by e-mail, filter by state and due date, extend, retry a task, record a manual outcome)
and the audit log (admin). Every staff look is an audit entry; what staff do to a request is
recorded, as theirs, by the database's triggers (``store.act_as``).
"""
from __future__ import annotations

import datetime as dt
import hmac
import json
import secrets
import time
import uuid
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from services.accounts.client import contact_details
from services.privacy import archive, audit, domain, fanout, guests, mail, notice, records, retention, schemas, store
from services.privacy.document import data, html
from services.privacy.intake import Intake
from services.privacy.notice_lv import LATVIAN
from shared.auth import Principal
from shared.contracts.privacy import DataInventory, DataSubject
from shared.http import CUSTOMER, Endpoint, HTTPProblem, staff
from shared.messaging import BrokerUnavailable, RpcTimeout

if TYPE_CHECKING:
    from services.privacy.service import PrivacyService

NOT_FOUND = HTTPProblem(404, "No such request", "You have no request with this id.")
WRONG_CODE = HTTPProblem(404, "Wrong or expired code", "Ask for a new code if this one has expired.")
SUPPORT = staff("support", "admin")
ADMIN = staff("admin")
STAFF = staff()
# What staff see of a request (recorded in the audit log, P16).
REQUEST_RECORD = ("data-subject requests", "outcomes of each participant")
AUDIT_RECORD = ("audit log",)
RECORD_FRESH_S = 60.0  # the notice and the record are rebuilt from the participants' declarations this often


def customer_of(caller: Principal) -> uuid.UUID:
    return uuid.UUID(caller.subject)


def notice_language(request: web.Request, query: schemas.NoticeQuery) -> str:
    """``lang`` when asked; otherwise English when the browser prefers it, else Latvian (the original)."""
    return query.lang or ("en" if request.headers.get("Accept-Language", "").lower().startswith("en") else "lv")


def details_of(what) -> dict:
    return what.model_dump(exclude={"kind"}, exclude_none=True)


class PrivacyApi:
    def __init__(self, service: PrivacyService) -> None:
        self.pool = service.pool
        self.rpc = service.rpc
        self.outbox = service.outbox
        self.intake: Intake = service.intake
        self.settings = service.settings
        self.own_inventory = service.privacy_inventory
        self.partners = service.partners
        self._record: tuple[float, records.RecordOfProcessing] | None = None
        self.retention_report = service.retention_report

    async def views(self, conn: asyncpg.Connection, rows: list[asyncpg.Record], *, for_staff: bool = False,
                    joined: bool = False) -> list:
        tasks: dict[uuid.UUID, list[schemas.TaskView]] = {}
        for t in await store.tasks_of(conn, [r["id"] for r in rows]):
            tasks.setdefault(t["request_id"], []).append(schemas.TaskView(
                participant=t["participant"], state=t["state"], attempts=t["attempts"], sent_at=t["sent_at"],
                outcome=json.loads(t["outcome"]) if t["outcome"] else None, remaining=t["remaining"],
                last_error=t["last_error"], updated_at=t["updated_at"]))
        model = schemas.StaffRequestView if for_staff else schemas.RequestView
        out = []
        for r in rows:
            fields = {k: r[k] for k in ("id", "kind", "state", "source", "received_at", "due_at", "extended_by_months",
                                        "extension_reason", "completed_at")}
            fields.update(details=json.loads(r["details"]), tasks=tasks.get(r["id"], []), joined=joined)
            if for_staff:
                fields.update(subject=DataSubject.model_validate_json(r["subject"]), contact_email=r["contact_email"],
                              identification=r["identification"])
            out.append(model.model_validate(fields))
        return out

    # --- the customer's -------------------------------------------------------------------------

    async def submit(self, request: web.Request, caller: Principal, body: schemas.RequestIn) -> web.Response:
        customer_id = customer_of(caller)
        account = await contact_details(self.rpc, customer_id)
        # The account's (verified) address too: orders placed with it as a guest are theirs. Not
        # its phone number, which no one verified and which may be someone else's too.
        subject = DataSubject(customer_id=customer_id, emails=[account["email"]])
        # Our mail about the request in the language asked for, else in the account's.
        language = body.language if "language" in body.model_fields_set else account.get("language", "lv")
        async with self.pool.acquire() as conn, conn.transaction():
            await store.act_as(conn, f"customer:{caller.subject}")
            row, joined = await self.intake.submit(
                conn, body.request.kind, subject, source="customer", details=details_of(body.request),
                customer_id=customer_id, contact_email=account["email"], language=language)
            [view] = await self.views(conn, [row], joined=joined)
        return web.Response(status=202, text=view.model_dump_json(), content_type="application/json")

    async def mine(self, request: web.Request, caller: Principal) -> schemas.RequestList:
        async with self.pool.acquire() as conn:
            return schemas.RequestList(items=await self.views(conn, await store.requests_of(conn, customer_of(caller))))

    async def one_of_mine(self, conn: asyncpg.Connection, caller: Principal, request_id: uuid.UUID) -> asyncpg.Record:
        row = await store.request(conn, request_id)
        if row is None or row["customer_id"] != customer_of(caller):
            raise NOT_FOUND
        return row

    async def read_mine(self, request: web.Request, caller: Principal, params: schemas.IdPath) -> schemas.RequestView:
        async with self.pool.acquire() as conn:
            [view] = await self.views(conn, [await self.one_of_mine(conn, caller, params.id)])
        return view

    async def inventories(self) -> list[DataInventory]:
        found = [DataInventory.model_validate(await self.rpc.call(participant, "privacy_inventory"))
                 for participant in domain.SERVICES]
        return [*found, await self.own_inventory()]

    async def download(self, request: web.Request, caller: Principal, params: schemas.IdPath,
                       query: schemas.LinkQuery) -> web.StreamResponse:
        """The archive, for the signed-in requester holding the mailed link (a forwarded link
        alone opens nothing)."""
        inventories = await self.readable_inventories()  # before a download is counted
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self.one_of_mine(conn, caller, params.id)
            await self.use_link(conn, row, query.token)
        return await self.send_archive(request, row, inventories)

    async def use_link(self, conn: asyncpg.Connection, row: asyncpg.Record, token: str) -> None:
        if row["kind"] != "export" or row["state"] != "completed":
            raise HTTPProblem(409, "Not ready", "The export is not complete yet.")
        if not await store.use_link(conn, domain.token_hash(token), row["id"]):
            raise HTTPProblem(404, "Unknown or expired link", "The link has expired or was used up; ask again.")

    async def readable_inventories(self) -> list[DataInventory]:
        try:
            return await self.inventories()
        except (BrokerUnavailable, RpcTimeout):
            raise HTTPProblem(503, "The export cannot be put together now", "Try again in a moment.",
                              headers={"Retry-After": "5"})

    async def send_archive(self, request: web.Request, row: asyncpg.Record,
                           inventories: list[DataInventory]) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="veikals-export-{row["id"]}.zip"'})
        await response.prepare(request)
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            async for piece in archive.stream(conn, row["id"], inventories):
                if piece:
                    await response.write(piece)
        await response.write_eof()
        return response

    # --- guests -----------------------------------------------------------------------------------

    async def guest_ask(self, request: web.Request, body: schemas.GuestRequestIn) -> web.Response:
        """The same answer for every address: a code goes to it (nothing says whether it has orders)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await guests.send_code(conn, body.email, "request", body.language, asked={
                "kind": body.request.kind, "details": details_of(body.request), "language": body.language})
        return web.Response(status=202, content_type="application/json", text=schemas.Accepted(
            status="code_sent", detail="A code is on its way to the address; confirm with it within 30 minutes."
        ).model_dump_json())

    async def guest_confirm(self, request: web.Request, body: schemas.GuestCode) -> web.Response:
        async with self.pool.acquire() as conn, conn.transaction():
            used = await guests.use_code(conn, body.email, body.code, "request")
            if used is not None:
                asked = json.loads(used["asked"])
                row, joined = await self.intake.submit(
                    conn, asked["kind"], DataSubject(emails=[body.email]), source="guest", details=asked["details"],
                    contact_email=body.email, language=asked["language"])
                status_token = secrets.token_urlsafe(24)
                await store.set_guest_token(conn, row["id"], domain.token_hash(status_token))
                [view] = await self.views(conn, [row], joined=joined)
        if used is None:  # a wrong guess is counted (committed) before the answer
            raise WRONG_CODE
        return web.Response(status=202, content_type="application/json", text=schemas.GuestRequestCreated(
            request=view, status_token=status_token).model_dump_json())

    async def guest_request(self, conn: asyncpg.Connection, request_id: uuid.UUID, token: str) -> asyncpg.Record:
        row = await store.request(conn, request_id)
        if row is None or row["guest_token_hash"] is None or not hmac.compare_digest(
                row["guest_token_hash"], domain.token_hash(token)):
            raise NOT_FOUND
        return row

    async def guest_status(self, request: web.Request, params: schemas.IdPath,
                           query: schemas.LinkQuery) -> schemas.RequestView:
        async with self.pool.acquire() as conn:
            [view] = await self.views(conn, [await self.guest_request(conn, params.id, query.token)])
        return view

    async def guest_download_code(self, request: web.Request, params: schemas.IdPath,
                                  query: schemas.LinkQuery) -> web.Response:
        """A fresh code to the request's address, for the export's link (a forwarded link alone opens nothing)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.request(conn, params.id)
            if row is None or row["customer_id"] is not None or not await store.link_exists(
                    conn, domain.token_hash(query.token), params.id):
                raise HTTPProblem(404, "Unknown or expired link", "The link has expired or was used up; ask again.")
            await guests.send_code(conn, row["contact_email"], "download", row["language"], request_id=row["id"])
        return web.Response(status=202, content_type="application/json", text=schemas.Accepted(
            status="code_sent", detail="A code is on its way to the request's address.").model_dump_json())

    async def guest_download(self, request: web.Request, params: schemas.IdPath,
                             query: schemas.DownloadQuery) -> web.StreamResponse:
        inventories = await self.readable_inventories()  # before the code and a download are used
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.request(conn, params.id)
            used = None if row is None or row["customer_id"] is not None else await guests.use_code(
                conn, row["contact_email"], query.code, "download", row["id"])
            if used is not None:
                await self.use_link(conn, row, query.token)
        if used is None:
            raise WRONG_CODE
        return await self.send_archive(request, row, inventories)

    # --- staff ------------------------------------------------------------------------------------

    async def staff_submit(self, request: web.Request, caller: Principal,
                           body: schemas.StaffRequestIn) -> web.Response:
        async with self.pool.acquire() as conn, conn.transaction():
            await store.act_as(conn, f"staff:{caller.subject}")
            row, joined = await self.intake.submit(
                conn, body.request.kind, body.subject.subject(), source="staff", details=details_of(body.request),
                customer_id=None, contact_email=body.contact_email, language=body.language,
                identification=body.identification, staff_id=customer_of(caller))
            await audit.staff_look(conn, customer_of(caller), action="entered a request", categories=REQUEST_RECORD,
                                   subject_id=row["customer_id"], request_id=row["id"], detail={"joined": joined})
            [view] = await self.views(conn, [row], for_staff=True, joined=joined)
        return web.Response(status=202, text=view.model_dump_json(), content_type="application/json")

    async def staff_queue(self, request: web.Request, caller: Principal,
                          query: schemas.QueueQuery) -> schemas.StaffRequestList:
        within = None if query.due_within_days is None else dt.timedelta(days=query.due_within_days)
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await store.queue(conn, query.state, within, query.limit)
            await audit.staff_look(conn, customer_of(caller), action="read the request queue",
                                   categories=REQUEST_RECORD, detail={"requests": len(rows)})
            return schemas.StaffRequestList(items=await self.views(conn, rows, for_staff=True))

    async def staff_request(self, conn: asyncpg.Connection, request_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record:
        row = await store.request(conn, request_id, lock=lock)
        if row is None:
            raise HTTPProblem(404, "No such request", "No request has this id.")
        return row

    async def staff_read(self, request: web.Request, caller: Principal,
                         params: schemas.IdPath) -> schemas.StaffRequestView:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self.staff_request(conn, params.id)
            await audit.staff_look(conn, customer_of(caller), action="read a request", categories=REQUEST_RECORD,
                                   subject_id=row["customer_id"], request_id=row["id"])
            [view] = await self.views(conn, [row], for_staff=True)
        return view

    async def extend(self, request: web.Request, caller: Principal, params: schemas.IdPath,
                     body: schemas.Extension) -> schemas.StaffRequestView:
        """P27: up to two more months, with a reason the requester is told within the first month."""
        async with self.pool.acquire() as conn, conn.transaction():
            await store.act_as(conn, f"staff:{caller.subject}")
            row = await self.staff_request(conn, params.id, lock=True)
            if row["state"] == "completed":
                raise HTTPProblem(409, "Already completed", "A completed request needs no more time.")
            if dt.datetime.now(dt.timezone.utc) >= domain.due_at(row["received_at"]):
                raise HTTPProblem(409, "Too late to extend",
                                  "An extension must be told to the requester within the first month.")
            months = row["extended_by_months"] + body.months
            if months > domain.MAX_EXTENSION_MONTHS:
                raise HTTPProblem(409, "Too long", "A request can be extended by two months at the most.")
            await store.extend(conn, row["id"], months, domain.due_at(row["received_at"], months), body.reason)
            row = await store.request(conn, row["id"])
            if row["contact_email"]:
                await mail.extended(conn, row)
            await self.outbox.add(conn, "request_changed", schemas.RequestChanged(
                request_id=row["id"], kind=row["kind"], state=row["state"], what="extended",
                at=dt.datetime.now(dt.timezone.utc)).model_dump(mode="json"))
            await audit.staff_look(conn, customer_of(caller), action="extended a request", categories=REQUEST_RECORD,
                                   subject_id=row["customer_id"], request_id=row["id"])
            [view] = await self.views(conn, [row], for_staff=True)
        return view

    async def locked_task(self, conn: asyncpg.Connection, caller: Principal,
                          params: schemas.TaskPath) -> asyncpg.Record:
        await store.act_as(conn, f"staff:{caller.subject}")
        await self.staff_request(conn, params.id, lock=True)
        task = await store.task(conn, params.id, params.participant, lock=True)
        if task is None:
            raise HTTPProblem(404, "No such task", "The request has no task for this participant.")
        return task

    async def retry(self, request: web.Request, caller: Principal, params: schemas.TaskPath) -> schemas.StaffRequestView:
        async with self.pool.acquire() as conn, conn.transaction():
            task = await self.locked_task(conn, caller, params)
            if task["state"] not in ("failed", "waiting", "held"):
                raise HTTPProblem(409, f"The task is {task['state']}", "Only a failed, waiting or held task is retried.")
            # A processor is asked again (a new message); a service runs its step again.
            await store.retry_afresh(conn, params.id, params.participant)
            await fanout.settle(conn, params.id, self.outbox, self.settings)
            row = await store.request(conn, params.id)
            await audit.staff_look(conn, customer_of(caller), action=f"retried the task of {params.participant}",
                                   categories=REQUEST_RECORD, subject_id=row["customer_id"], request_id=row["id"])
            [view] = await self.views(conn, [row], for_staff=True)
        return view

    async def manual(self, request: web.Request, caller: Principal, params: schemas.TaskPath,
                     body: schemas.ManualOutcome) -> schemas.StaffRequestView:
        async with self.pool.acquire() as conn, conn.transaction():
            task = await self.locked_task(conn, caller, params)
            if task["state"] not in ("failed", "waiting", "held"):  # done, or being run now
                raise HTTPProblem(409, f"The task is {task['state']}",
                                  "Only a failed, waiting or held task takes an outcome by hand.")
            await store.set_task(conn, params.id, params.participant, "manual", outcome={
                "manual": body.outcome, "reason": body.reason, "by": caller.subject})
            row = await store.request(conn, params.id)
            await self.outbox.add(conn, "request_changed", schemas.RequestChanged(
                request_id=row["id"], kind=row["kind"], state=row["state"], what="task_manual",
                at=dt.datetime.now(dt.timezone.utc)).model_dump(mode="json"))
            await fanout.settle(conn, params.id, self.outbox, self.settings)
            row = await store.request(conn, params.id)
            await audit.staff_look(conn, customer_of(caller), action=f"recorded the outcome of {params.participant}",
                                   categories=REQUEST_RECORD, subject_id=row["customer_id"], request_id=row["id"])
            [view] = await self.views(conn, [row], for_staff=True)
        return view

    async def audit_log(self, request: web.Request, caller: Principal,
                        query: schemas.AuditQuery) -> schemas.AuditPage:
        """The audit log, newest first, filtered (admin); the read is itself an entry."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await store.audit_entries(
                conn, subject_id=query.subject, actor=query.staff and f"staff:{query.staff}", since=query.since,
                until=query.until, after=query.before, limit=query.limit)
            await audit.staff_look(conn, customer_of(caller), kind="audit", action="read the audit log",
                                   categories=AUDIT_RECORD, subject_id=query.subject,
                                   detail=query.model_dump(mode="json", exclude_none=True))
        entries = [schemas.AuditEntry(**{**dict(r), "detail": json.loads(r["detail"]), "hash": r["hash"].hex()})
                   for r in rows]
        return schemas.AuditPage(entries=entries,
                                 next_before=entries[-1].seq if len(entries) == query.limit else None)

    async def verify_audit(self, request: web.Request, caller: Principal,
                           query: schemas.VerificationQuery) -> schemas.AuditVerification:
        anchor = None if query.anchor is None else audit.parse_anchor(query.anchor)
        async with self.pool.acquire() as conn:
            return schemas.AuditVerification.model_validate(audit.report(await audit.verify(conn, anchor)))

    async def retention(self, request: web.Request, caller: Principal) -> schemas.RetentionReportView:
        return await self.retention_report()

    async def retention_page(self, request: web.Request, caller: Principal) -> web.Response:
        return web.Response(text=html(retention.document(await self.retention_report())), content_type="text/html")

    # --- the record of processing and the notice ------------------------------------------------

    async def record(self) -> records.RecordOfProcessing:
        """Built from what every participant declares over RPC now (kept a minute)."""
        now = time.monotonic()
        if self._record is None or now - self._record[0] > RECORD_FRESH_S:
            try:
                inventories = await self.inventories()
            except (BrokerUnavailable, RpcTimeout):
                raise HTTPProblem(503, "The record cannot be put together now",
                                  "A service did not tell what it holds; try again in a moment.",
                                  headers={"Retry-After": "5"})
            self._record = (now, records.build(inventories, self.partners))
        return self._record[1]

    async def notice_page(self, request: web.Request, query: schemas.NoticeQuery) -> web.Response:
        language = notice_language(request, query)
        return web.Response(text=html(notice.build(await self.record(), language)), content_type="text/html",
                            headers={"Content-Language": language, "Cache-Control": "public, max-age=60"})

    async def notice_data(self, request: web.Request, query: schemas.NoticeQuery) -> web.Response:
        """The same notice as data, which the shop's privacy page lays out beside the customer's own data."""
        language = notice_language(request, query)
        document = schemas.NoticeData.model_validate({**data(notice.build(await self.record(), language)),
                                                      "glossary": LATVIAN if language == "lv" else {}})
        return web.Response(text=document.model_dump_json(), content_type="application/json",
                            headers={"Content-Language": language, "Cache-Control": "public, max-age=60"})

    async def record_json(self, request: web.Request, caller: Principal) -> records.RecordOfProcessing:
        return await self.record()

    async def record_page(self, request: web.Request, caller: Principal) -> web.Response:
        return web.Response(text=html(records.document(await self.record())), content_type="text/html")

    def endpoints(self) -> list[Endpoint]:
        E, me, path, task = Endpoint, ["me"], schemas.IdPath, schemas.TaskPath
        return [
            E("POST", "/v1/me/privacy-requests", self.submit,
              "Ask for a copy of your data, its erasure, or object or withdraw consent (joins an open one of the same kind)",
              body=schemas.RequestIn, response=schemas.RequestView, status=202, auth=CUSTOMER, problems=(404, 503),
              tags=me),
            E("GET", "/v1/me/privacy-requests", self.mine, "Your requests, newest first", response=schemas.RequestList,
              auth=CUSTOMER, tags=me),
            E("GET", "/v1/me/privacy-requests/{id}", self.read_mine, "One of your requests, with each participant's progress",
              params=path, response=schemas.RequestView, auth=CUSTOMER, problems=(404,), tags=me),
            E("GET", "/v1/me/privacy-requests/{id}/export", self.download,
              "Download your export (a ZIP) with the link we mailed", params=path, query=schemas.LinkQuery,
              auth=CUSTOMER, problems=(404, 409, 503), tags=me),
            E("POST", "/v1/guest-privacy-requests", self.guest_ask,
              "A guest's request, by the e-mail address they ordered with: a one-time code goes to it",
              body=schemas.GuestRequestIn, response=schemas.Accepted, status=202, tags=["guests"]),
            E("POST", "/v1/guest-privacy-confirmations", self.guest_confirm,
              "Start the request with the mailed code (the answer carries the token of its status page)",
              body=schemas.GuestCode, response=schemas.GuestRequestCreated, status=202, problems=(404,),
              tags=["guests"]),
            E("GET", "/v1/guest-privacy-requests/{id}", self.guest_status, "A guest's request and its progress",
              params=path, query=schemas.LinkQuery, response=schemas.RequestView, problems=(404,), tags=["guests"]),
            E("POST", "/v1/guest-privacy-requests/{id}/download-code", self.guest_download_code,
              "Mail a fresh code for the export's link (token: the link's)", params=path, query=schemas.LinkQuery,
              response=schemas.Accepted, status=202, problems=(404,), tags=["guests"]),
            E("GET", "/v1/guest-privacy-requests/{id}/export", self.guest_download,
              "Download the export (a ZIP) with the mailed link and a fresh code", params=path,
              query=schemas.DownloadQuery, problems=(404, 409, 503), tags=["guests"]),
            E("GET", "/v1/staff/retention-report", self.retention,
              "Each service's oldest record held against its declared retention, and what is overdue",
              response=schemas.RetentionReportView, auth=SUPPORT, tags=["staff"], audited=()),
            E("GET", "/v1/staff/retention-report/page", self.retention_page, "The retention report as a page",
              auth=SUPPORT, tags=["staff"], audited=()),
            E("POST", "/v1/staff/privacy-requests", self.staff_submit,
              "Enter a request that arrived by e-mail or letter (support)", body=schemas.StaffRequestIn,
              response=schemas.StaffRequestView, status=202, auth=SUPPORT, tags=["staff"], audited=REQUEST_RECORD),
            E("GET", "/v1/staff/privacy-requests", self.staff_queue, "Requests by due date, filtered by state",
              query=schemas.QueueQuery, response=schemas.StaffRequestList, auth=SUPPORT, tags=["staff"],
              audited=REQUEST_RECORD),
            E("GET", "/v1/staff/privacy-requests/{id}", self.staff_read, "One request in full", params=path,
              response=schemas.StaffRequestView, auth=SUPPORT, problems=(404,), tags=["staff"], audited=REQUEST_RECORD),
            E("POST", "/v1/staff/privacy-requests/{id}/extend", self.extend,
              "Extend the deadline by one or two months, with the reason the requester is told", params=path,
              body=schemas.Extension, response=schemas.StaffRequestView, auth=SUPPORT, problems=(404, 409),
              tags=["staff"], audited=REQUEST_RECORD),
            E("POST", "/v1/staff/privacy-requests/{id}/tasks/{participant}/retry", self.retry,
              "Run a failed, waiting or held task again", params=task, response=schemas.StaffRequestView,
              auth=SUPPORT, problems=(404, 409), tags=["staff"], audited=REQUEST_RECORD),
            E("POST", "/v1/staff/privacy-requests/{id}/tasks/{participant}/outcome", self.manual,
              "Record a task's outcome by hand, with the reason", params=task, body=schemas.ManualOutcome,
              response=schemas.StaffRequestView, auth=SUPPORT, problems=(404, 409), tags=["staff"],
              audited=REQUEST_RECORD),
            E("GET", "/v1/privacy-notice", self.notice_page,
              "The privacy notice, generated from what every service declares (an HTML page; Latvian unless asked "
              "otherwise or the browser prefers English)", query=schemas.NoticeQuery, problems=(503,), tags=["notice"]),
            E("GET", "/v1/privacy-notice/data", self.notice_data,
              "The privacy notice as data: its sections, each with its key, clauses, paragraphs, items and table",
              query=schemas.NoticeQuery, response=schemas.NoticeData, problems=(503,), tags=["notice"]),
            E("GET", "/v1/staff/records-of-processing", self.record_json,
              "The record of processing activities (GDPR Art. 30), from every service's declarations",
              response=records.RecordOfProcessing, auth=STAFF, problems=(503,), tags=["notice"], audited=()),
            E("GET", "/v1/staff/records-of-processing/page", self.record_page,
              "The record of processing activities as a page", auth=STAFF, problems=(503,), tags=["notice"],
              audited=()),
            E("GET", "/v1/staff/audit-log", self.audit_log,
              "The audit log, newest first, by customer, staff member and time (admin; the read is logged too)",
              query=schemas.AuditQuery, response=schemas.AuditPage, auth=ADMIN, tags=["audit"], audited=AUDIT_RECORD),
            E("GET", "/v1/staff/audit-log/verification", self.verify_audit,
              "Check the audit log's hash chain: intact, or the first entry changed, removed or moved (admin)",
              query=schemas.VerificationQuery, response=schemas.AuditVerification, auth=ADMIN, tags=["audit"],
              audited=()),
        ]
