"""The retention report: for every participant and every category of data it keeps for a declared
period, the oldest record still held against that period, so an operator sees at a glance that
the sweeps run (``n.rpc.privacy.retention_report()``, ``GET /v1/staff/retention-report``).

Every participant is asked at once (``privacy_retention``, the participant contract), each
within the same timeout; one that does not answer in time is shown as unreachable and the rest
of the report stands.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import Awaitable, Callable

from services.privacy import domain, schemas
from services.privacy.document import Document, Section
from shared.contracts.privacy import RetentionReport
from shared.logging import get_logger, redact_text
from shared.messaging import BrokerUnavailable, RpcClient, RpcTimeout, UnknownService

log = get_logger(__name__)

# Not answering: the participant is down, its queue is missing, or the broker is away.
UNREACHABLE = (RpcTimeout, TimeoutError, BrokerUnavailable, UnknownService)


async def gather(rpc: RpcClient, own: Callable[[], Awaitable[RetentionReport]],
                 timeout: float) -> schemas.RetentionReportView:
    """Every service's report, and ``own`` (the privacy service's, read here), side by side."""
    async def ask(participant: str) -> RetentionReport:
        if participant == domain.OWN:
            async with asyncio.timeout(timeout):
                return await own()
        return RetentionReport.model_validate(await rpc.call(participant, "privacy_retention", timeout=timeout))

    everyone = [*domain.SERVICES, domain.OWN]
    answers = await asyncio.gather(*(ask(p) for p in everyone), return_exceptions=True)
    participants, rows = [], []
    for participant, answer in zip(everyone, answers):
        if isinstance(answer, RetentionReport):
            participants.append(schemas.ParticipantRetention(
                participant=participant, state="answered", error=None, at=answer.at))
            rows += [schemas.RetentionRow(participant=participant, **entry.model_dump()) for entry in answer.entries]
            continue
        if not isinstance(answer, Exception):  # a cancellation: not ours to swallow
            raise answer
        state = "unreachable" if isinstance(answer, UNREACHABLE) else "failed"
        log.warning("a participant's retention figures are missing from the report", participant=participant,
                    state=state, error=type(answer).__name__)
        participants.append(schemas.ParticipantRetention(
            participant=participant, state=state, error=why(answer, timeout), at=None))
    return schemas.RetentionReportView(at=dt.datetime.now(dt.timezone.utc), summary=summary(participants, rows),
                                       participants=participants, rows=rows)


def why(error: Exception, timeout: float) -> str:
    if isinstance(error, (RpcTimeout, TimeoutError)):
        return f"no answer within {timeout:g} s"
    return redact_text(f"{type(error).__name__}: {error}")[:300]


def summary(participants: list[schemas.ParticipantRetention],
            rows: list[schemas.RetentionRow]) -> schemas.RetentionSummary:
    unreachable = [p.participant for p in participants if p.state == "unreachable"]
    failed = [p.participant for p in participants if p.state == "failed"]
    overdue = sum(r.overdue for r in rows)
    unreadable = sum(r.error is not None for r in rows)
    return schemas.RetentionSummary(
        ok=not (unreachable or failed or overdue or unreadable), participants=len(participants),
        unreachable=unreachable, failed=failed, rows=len(rows), overdue=overdue, unreadable=unreadable)


def document(report: schemas.RetentionReportView) -> Document:
    """The report as a page staff read at a glance: what is overdue first."""
    s = report.summary
    state = "Every sweep keeps its period." if s.ok else (
        f"{s.overdue} overdue, {s.unreadable} unreadable; not answering: "
        f"{', '.join(s.unreachable + s.failed) or 'none'}.")
    rows = sorted(report.rows, key=lambda r: (not r.overdue, r.error is None, r.participant, r.category))
    return Document(language="en", title="Retention report", sections=[
        Section((), f"As of {report.at:%Y-%m-%d %H:%M} UTC", [state], items=[
            f"{p.participant}: {p.state}" + (f" ({p.error})" if p.error else "") for p in report.participants]),
        Section((), "Categories", table=(
            ["Service", "Category", "Kept (days)", "Oldest held since", "Due", "Held", "Past due", "State"],
            [[r.participant, r.category, str(r.period_days), _when(r.oldest), _when(r.due), str(r.records),
              str(r.past_due), "OVERDUE" if r.overdue else (f"unreadable: {r.error}" if r.error else "ok")]
             for r in rows])),
    ])


def _when(moment: dt.datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M}"
