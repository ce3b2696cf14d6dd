"""The check every service's tests make: each column of its own tables is declared in its
privacy inventory or listed as holding no personal data."""
from __future__ import annotations

import re

import asyncpg

from shared import db
from shared.contracts.privacy import DataInventory


async def undeclared_columns(pool: asyncpg.Pool, inventory: DataInventory,
                             not_personal: set[tuple[str, str]]) -> tuple[set, set[str]]:
    """The service's columns neither declared nor listed, and the tables it has."""
    columns = {(r["table_name"], r["column_name"]) for r in await pool.fetch(
        """SELECT c.table_name, c.column_name FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_schema, table_name)
           WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'""")}
    shared_tables = {m.group(1) for f in db.SHARED_MIGRATIONS.glob("*.sql")
                     for m in re.finditer(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", f.read_text())}
    own = {(t, c) for t, c in columns if t not in shared_tables and t != "schema_migrations"}
    return own - inventory.declared_columns() - not_personal, {t for t, _ in own}
