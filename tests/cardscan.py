"""After the whole suite: no card number and no CVC in any table of any database the tests
made, nor in any log file they wrote (P3, P17). The tests' own card numbers travel only to
the sandbox PSP, which keeps none of them.

Every database is scanned just before it is dropped (``own_database``, the e2e suite); the
log files at the end of the session (``tests/conftest.py``): the in-process services' logs
go to a file of the session's own, and the e2e processes' logs are files under the session's
temporary folder. A finding names where, never the number itself.
"""
from __future__ import annotations

import re
from pathlib import Path

import asyncpg

from shared.cards import card_numbers

# A CVC only means something beside its name: "cvc": "123", card[cvc]=123, cvv=1234.
CVC = re.compile(r"(?i)\b(?:card\[)?cv[cv]2?\]?[\"']?\s*[:=]\s*[\"']?[0-9]{3,4}\b")
LOG_SUFFIXES = {".log", ".jsonl"}


def findings_in(text: str, where: str) -> list[str]:
    found = [f"{where}: a card number ending {number[-4:]}" for number in card_numbers(text)]
    found += [f"{where}: a CVC" for _ in CVC.finditer(text)]
    return found


async def scan_database(dsn: str) -> list[str]:
    """Every row of every table of the database at ``dsn``, as text."""
    found: list[str] = []
    conn = await asyncpg.connect(dsn)
    try:
        columns = await conn.fetch(
            """SELECT c.table_schema, c.table_name, c.column_name, c.data_type FROM information_schema.columns c
               JOIN information_schema.tables t USING (table_schema, table_name)
               WHERE t.table_type = 'BASE TABLE' AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
               ORDER BY c.table_schema, c.table_name, c.ordinal_position""")
        tables: dict[tuple[str, str], list[str]] = {}
        for c in columns:
            # Bytes as text with escapes (JSON bodies read as JSON), not as hex, whose digit runs
            # would read as card numbers.
            value = f'"{c["column_name"]}"'
            tables.setdefault((c["table_schema"], c["table_name"]), []).append(
                f"encode({value}, 'escape')" if c["data_type"] == "bytea" else f"{value}::text")
        for (schema, table), selected in tables.items():
            query = f"SELECT concat_ws(' | ', {', '.join(selected)}) FROM \"{schema}\".\"{table}\""
            async for row in _rows(conn, query):
                found += findings_in(row or "", f"{dsn.rsplit('/', 1)[-1]}.{table}")
    finally:
        await conn.close()
    return found


async def _rows(conn: asyncpg.Connection, query: str):
    async with conn.transaction():
        async for row in conn.cursor(query):
            yield row[0]


def scan_files(folder: Path) -> list[str]:
    found: list[str] = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in LOG_SUFFIXES:
            found += findings_in(path.read_text(errors="replace"), str(path))
    return found
