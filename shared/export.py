"""A participant's export, one bounded chunk at a time (the privacy participant contract).

A participant lists its data as named sections, each a query over the subject's keys; a chunk
reads on from the cursor (``<section>:<offset>``) until it holds ``max_records``, so a long
history is streamed and never held whole.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.contracts.privacy import ExportChunk, ExportRecord, ExportRequest


@dataclass(frozen=True)
class Section:
    category: str
    query: str  # selects by the first ``uses`` of the participant's keys ($1, $2, ...), in a stable order
    uses: int = 1

    async def read(self, conn: asyncpg.Connection, keys: tuple[Any, ...], offset: int, limit: int) -> list[ExportRecord]:
        n = self.uses
        rows = await conn.fetch(f"{self.query} OFFSET ${n + 1} LIMIT ${n + 2}", *keys[:n], offset, limit)
        return [ExportRecord(category=self.category, data={k: _plain(v) for k, v in r.items()}) for r in rows]


def _plain(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value) if isinstance(value, uuid.UUID) else value


async def export_chunk(conn: asyncpg.Connection, request: ExportRequest, participant: str,
                       sections: dict[str, Section], keys: tuple[Any, ...]) -> ExportChunk:
    """The chunk of ``sections`` that starts at ``request.cursor``."""
    names = list(sections)
    section, _, offset = (request.cursor or f"{names[0]}:0").partition(":")
    if section not in sections or not offset.isdigit():
        raise ValueError(f"not a cursor of this participant: {request.cursor!r}")
    index, position, records = names.index(section), int(offset), []
    while index < len(names) and len(records) < request.max_records:
        room = request.max_records - len(records)
        found = await sections[names[index]].read(conn, keys, position, room + 1)
        records += found[:room]
        if len(found) > room:
            position += room
            break
        index, position = index + 1, 0
    cursor = f"{names[index]}:{position}" if index < len(names) else None
    return ExportChunk(request_id=request.request_id, participant=participant, records=records,
                       next_cursor=cursor)
