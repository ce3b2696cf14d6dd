"""Every column of every service's tables is declared in its inventory or listed as holding no
personal data; a column added by a new migration without a declaration fails the check."""
from __future__ import annotations

import importlib

import pytest

from services.topology import service_classes
from shared import db
from tests.conftest import own_database
from tests.integration.inventory import undeclared_columns


@pytest.mark.parametrize("service", service_classes(), ids=lambda cls: cls.name)
async def test_a_column_a_migration_adds_without_a_declaration_is_caught(service, tmp_path):
    declared = importlib.import_module(f"services.{service.name}.privacy")
    async with own_database() as dsn:
        pool = await db.create_pool(dsn, max_size=2)
        try:
            await db.migrate(pool, service.migration_scopes())
            undeclared, tables = await undeclared_columns(pool, service.inventory, declared.NOT_PERSONAL)
            assert undeclared == set()
            table = sorted(tables)[0]
            (tmp_path / "0001_nickname.sql").write_text(f"ALTER TABLE {table} ADD COLUMN nickname text;\n")
            await db.migrate(pool, {"a-test": tmp_path})
            undeclared, _ = await undeclared_columns(pool, service.inventory, declared.NOT_PERSONAL)
            assert undeclared == {(table, "nickname")}
        finally:
            await pool.close()
