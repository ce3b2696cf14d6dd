"""Migrations: applied once under concurrent start-up; a failing file leaves nothing behind."""
import asyncio

import asyncpg
import pytest

from shared import db


async def test_concurrent_starts_apply_each_migration_once(database, tmp_path):
    (tmp_path / "0001_items.sql").write_text("CREATE TABLE items (id int PRIMARY KEY);")
    (tmp_path / "0002_seed.sql").write_text("INSERT INTO items VALUES (1);")
    pools = [await db.create_pool(database) for _ in range(4)]
    results = await asyncio.gather(*(
        db.migrate(pool, {"shared": db.SHARED_MIGRATIONS, "svc": tmp_path}) for pool in pools))
    expected = len(list(db.SHARED_MIGRATIONS.glob("*.sql"))) + 2
    assert sorted(len(r) for r in results) == [0, 0, 0, expected]
    assert await pools[0].fetchval("SELECT count(*) FROM items") == 1
    assert await db.migrate(pools[0], {"shared": db.SHARED_MIGRATIONS, "svc": tmp_path}) == []
    for pool in pools:
        await pool.close()


async def test_failing_migration_is_rolled_back_whole(database, tmp_path):
    (tmp_path / "0001_half.sql").write_text(
        "CREATE TABLE half (id int); INSERT INTO half VALUES ('not a number');")
    pool = await db.create_pool(database)
    with pytest.raises(asyncpg.InvalidTextRepresentationError):
        await db.migrate(pool, {"svc": tmp_path})
    assert await pool.fetchval("SELECT to_regclass('half')") is None
    assert await pool.fetchval("SELECT count(*) FROM schema_migrations") == 0
    await pool.close()


def test_misnamed_migration_is_refused(tmp_path):
    (tmp_path / "add_things.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="NNNN_description.sql"):
        db._migration_files(tmp_path)
