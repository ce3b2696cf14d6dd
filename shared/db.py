"""PostgreSQL for one service: its own database, an asyncpg pool, numbered SQL migrations.

Migrations are ``NNNN_description.sql`` files, applied in order at start-up, each in its own
transaction with a ``lock_timeout`` (a migration waiting behind a long query gives up and the
start fails clearly, instead of queueing every other query behind its lock), under a
PostgreSQL advisory lock so that replicas starting together apply each file once.
``shared/migrations`` (outbox, inbox) runs first in every service's database, then the
service's own ``migrations/``. Applied files are recorded in ``schema_migrations``.
(The migration libraries we looked at drive synchronous drivers; this is forty lines.)

The pool bounds every wait: taking a connection (``acquire_timeout``) and each statement
(``statement_timeout``, enforced by the server), so a stuck database becomes an error a
caller can retry rather than a request that hangs.
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shared.logging import get_logger

log = get_logger(__name__)

SHARED_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_FILE = re.compile(r"^(\d{4})_[\w-]+\.sql$")
_ADVISORY_LOCK_KEY = 0x7665696B616C73  # "veikals"
MIGRATION_LOCK_TIMEOUT = "10s"


def count(status: str) -> int:
    """The number of rows an INSERT/UPDATE/DELETE status line ("DELETE 3") reports."""
    return int(status.split()[-1])


def maintenance_dsn(dsn: str) -> tuple[str, str]:
    """The DSN of the server's ``postgres`` database (query string kept) and the database name."""
    parts = urlsplit(dsn)
    name = parts.path.lstrip("/")
    if not name:
        raise ValueError(f"database URL has no database name: {parts._replace(netloc=parts.hostname or '').geturl()}")
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise ValueError(f"refusing to create or drop a database named {name!r}")
    return urlunsplit(parts._replace(path="/postgres")), name


async def ensure_database(dsn: str) -> bool:
    """Create the database named in ``dsn`` if it does not exist; True when created."""
    maintenance, name = maintenance_dsn(dsn)
    conn = await asyncpg.connect(maintenance)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            return False  # another replica's first start created it a moment ago
        log.info("database created", database=name)
        return True
    finally:
        await conn.close()


async def drop_database(dsn: str) -> None:
    maintenance, name = maintenance_dsn(dsn)
    conn = await asyncpg.connect(maintenance)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class Pool(asyncpg.Pool):
    """An asyncpg pool whose ``acquire()`` waits at most ``acquire_timeout`` seconds."""

    def __init__(self, *args, acquire_timeout: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None):
        return super().acquire(timeout=timeout if timeout is not None else self.acquire_timeout)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection given back to the pool needs beyond asyncpg's own rollback of an open
    transaction: nothing. Our code leaves no session state behind (settings are SET LOCAL or
    undone, as ``migrate`` does; a LISTEN is unlistened by its poller), so asyncpg's default
    reset (RESET ALL, UNLISTEN *, CLOSE ALL, unlock all) would be one more round trip on every
    release for nothing."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, acquire_timeout: float = 10.0,
                      statement_timeout: float = 30.0) -> Pool:
    pool = Pool(dsn, min_size=min_size, max_size=max_size, acquire_timeout=acquire_timeout,
                max_queries=50000, max_inactive_connection_lifetime=300.0, connect=None, setup=None,
                init=None, reset=_keep_session, loop=None, connection_class=asyncpg.Connection,
                record_class=asyncpg.Record,
                server_settings={"statement_timeout": str(int(statement_timeout * 1000))})
    return await pool


def _migration_files(directory: Path) -> list[tuple[int, Path]]:
    files = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if not match:
            raise ValueError(f"migration file not named NNNN_description.sql: {path}")
        files.append((int(match.group(1)), path))
    versions = [v for v, _ in files]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a number in {directory}")
    return files


async def migrate(pool: asyncpg.Pool, directories: dict[str, Path]) -> list[str]:
    """Apply every pending migration; ``directories`` maps a scope name to its folder."""
    applied: list[str] = []
    async with pool.acquire() as conn:
        # Waiting for another replica's migrations, or one long migration, is not a stuck query.
        await conn.execute("SET statement_timeout = 0")
        await conn.execute("SELECT pg_advisory_lock($1)", _ADVISORY_LOCK_KEY)
        try:
            await conn.execute("""
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    scope text NOT NULL, version integer NOT NULL, name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (scope, version))""")
            done = {(r["scope"], r["version"])
                    for r in await conn.fetch("SELECT scope, version FROM schema_migrations")}
            for scope, directory in directories.items():
                for version, path in _migration_files(directory):
                    if (scope, version) in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(f"SET LOCAL lock_timeout = '{MIGRATION_LOCK_TIMEOUT}'")
                        await conn.execute(path.read_text())
                        await conn.execute(
                            "INSERT INTO schema_migrations (scope, version, name) VALUES ($1, $2, $3)",
                            scope, version, path.name)
                    applied.append(f"{scope}/{path.name}")
                    log.info("migration applied", scope=scope, migration=path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _ADVISORY_LOCK_KEY)
            await conn.execute("RESET statement_timeout")
    return applied
