"""An export as a ZIP, streamed: rows are read from ``export_records`` with a cursor and
written into the archive as they come, and the archive goes out as it is made; neither the
export nor the archive is ever held whole.

Inside: ``summary.en.txt`` and ``summary.lv.txt`` (for each participant, each category of data
it holds: purpose, legal basis, recipients, retention, source: Art. 15(1)), and for each
participant and category a JSON file (machine-readable, Art. 20) and a CSV file.
"""
from __future__ import annotations

import csv
import io
import json
import re
import uuid
import zipfile
from typing import AsyncIterator

import asyncpg

from services.privacy import store
from shared.contracts.privacy import DataInventory

FLUSH_AT = 64 * 1024


class _Pieces(io.RawIOBase):
    """Where zipfile writes: the bytes wait here until the response takes them."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.pieces.append(bytes(data))
        self.size += len(data)
        return len(data)

    def take(self) -> bytes:
        data, self.pieces, self.size = b"".join(self.pieces), [], 0
        return data


def file_name(participant: str, category: str) -> str:
    return f"{participant.replace(':', '-')}/{re.sub(r'[^a-z0-9]+', '-', category.lower()).strip('-')}"


HEADINGS = {
    "en": ("What Veikals holds about you", "Category", "Purpose", "Legal basis", "Recipients", "Kept",
           "Source", "held by"),
    "lv": ("Kas par jums ir Veikala rīcībā", "Kategorija", "Nolūks", "Tiesiskais pamats", "Saņēmēji", "Glabā",
           "Avots", "glabā"),
}


def summary(language: str, inventories: list[DataInventory], files: list[asyncpg.Record]) -> str:
    """The readable part: every category each participant declares, with what Art. 15(1) asks."""
    title, category, purpose, basis, recipients, kept, source, held_by = HEADINGS[language]
    lines = [title, "=" * len(title), ""]
    for inventory in inventories:
        lines += [f"## {inventory.participant}", ""]
        for entry in inventory.entries:
            retention = entry.retention.after + (f" ({entry.retention.period_days} days)"
                                                 if entry.retention.period_days else "")
            lines += [f"{category}: {entry.category}", f"  {purpose}: {entry.purpose}",
                      f"  {basis}: {entry.legal_basis.value}",
                      f"  {recipients}: {', '.join(entry.recipients) or '-'}", f"  {kept}: {retention}",
                      f"  {source}: {inventory.participant} ({'you, and your use of the shop' if language == 'en' else 'jūs un jūsu iepirkšanās veikalā'})",
                      ""]
    lines += ["Files" if language == "en" else "Faili", ""]
    lines += [f"{file_name(f['participant'], f['category'])}.json / .csv: {f['records']}" for f in files]
    return "\n".join(lines) + "\n"


async def stream(conn: asyncpg.Connection, request_id: uuid.UUID,
                 inventories: list[DataInventory]) -> AsyncIterator[bytes]:
    """The archive's bytes, a piece at a time (``conn`` inside a read-only transaction)."""
    out = _Pieces()
    archive = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED)
    files = await store.export_files(conn, request_id)
    for language in ("en", "lv"):
        archive.writestr(f"summary.{language}.txt", summary(language, inventories, files))
    yield out.take()
    for f in files:
        participant, category = f["participant"], f["category"]
        name = file_name(participant, category)
        columns = await store.export_columns(conn, request_id, participant, category)
        rows = conn.cursor("""SELECT data FROM export_records WHERE request_id = $1 AND participant = $2
                              AND category = $3 ORDER BY seq""", request_id, participant, category)
        with archive.open(f"{name}.json", "w", force_zip64=True) as json_file:
            json_file.write(b"[")
            first = True
            async for row in rows:
                json_file.write((b"" if first else b",\n") + row["data"].encode())
                first = False
                if out.size >= FLUSH_AT:
                    yield out.take()
            json_file.write(b"]\n")
        yield out.take()
        with archive.open(f"{name}.csv", "w", force_zip64=True) as csv_file:
            text = io.TextIOWrapper(csv_file, encoding="utf-8", newline="")
            writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            async for row in conn.cursor("""SELECT data FROM export_records WHERE request_id = $1 AND participant = $2
                                            AND category = $3 ORDER BY seq""", request_id, participant, category):
                data = json.loads(row["data"])
                writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
                                 for k, v in data.items()})
                if out.size >= FLUSH_AT:
                    text.flush()
                    yield out.take()
            text.flush()
            text.detach()
        yield out.take()
    archive.close()
    yield out.take()
