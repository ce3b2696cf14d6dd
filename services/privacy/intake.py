"""Taking a request in, from whichever door it comes (a customer, support, a closed account):
an open request of the same kind for the same subject is joined, not run twice."""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.privacy import domain, mail, schemas, store
from shared.contracts.privacy import DataSubject
from shared.outbox import Outbox
from shared.subjects import Subject
from shared.webhooks.registry import PartnerRegistry


@dataclass
class Intake:
    outbox: Outbox
    partners: PartnerRegistry
    subject_secret: bytes

    def processors(self) -> list[tuple[str, str]]:
        """(name, kind) of every registered processor."""
        return [(p.name, p.kind.value) for p in self.partners if p.kind in domain.PROCESSOR_KINDS]

    async def submit(self, conn: asyncpg.Connection, kind: str, subject: DataSubject, *, source: str,
                     details: dict[str, Any] | None = None, customer_id: uuid.UUID | None = None,
                     contact_email: str | None = None, language: str = "lv", identification: str | None = None,
                     staff_id: uuid.UUID | None = None) -> tuple[asyncpg.Record, bool]:
        """The request (new, or the open one it joins) and whether it was joined."""
        if details and details.get("purpose") == "profiling":
            details = {k: v for k, v in details.items() if k != "channel"}  # profiling has no channel
        key = domain.subject_key(self.subject_secret, kind, subject, details)
        now = dt.datetime.now(dt.timezone.utc)
        for _ in range(3):  # the open request it would join may complete meanwhile: then it is new
            row = await store.add_request(conn, {
                "id": uuid.uuid4(), "kind": kind, "subject": subject.model_dump(mode="json"), "subject_key": key,
                "customer_id": customer_id, "contact_email": contact_email, "language": language,
                "details": details, "source": source, "identification": identification, "staff_id": staff_id,
                "received_at": now, "due_at": domain.due_at(now)}, domain.participants(kind, self.processors()))
            if row is not None:
                break
            if (joined := await store.open_request(conn, kind, key)) is not None:
                return joined, True
        else:
            raise RuntimeError("the request neither joined an open one nor could be added")
        await self.outbox.add(conn, "request_changed", schemas.RequestChanged(
            request_id=row["id"], kind=kind, state=row["state"], what="received", at=now).model_dump(mode="json"),
            subject=Subject.customer(customer_id) if customer_id else None)
        if contact_email:
            await mail.received(conn, row)
        return row, False
