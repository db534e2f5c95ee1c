"""A fresh PostgreSQL schema per test, on the machine's server (127.0.0.1:5432).

One database per test run (``postier_test_<pid>_<random>``, dropped when the run
ends) and one schema per test in it, selected by ``?search_path=`` in the DSN the
test gets: a schema costs a few catalog rows where CREATE DATABASE copies and
fsyncs a template, and the store keeps a schema's NOTIFY channel apart from
another's. `POSTIER_TEST_PG` overrides the administrative DSN (a role that may
create databases). Unreachable server: the test is skipped with the reason, or
fails under CI (`tests.conftest._missing`), where PostgreSQL is always there.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

ADMIN_DSN = os.environ.get("POSTIER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

_unreachable: str | None = None
_run_database: str | None = None


def dsn_for(database: str, schema: str = "") -> str:
    """The admin DSN with its database replaced (and a search path when given)."""
    base, _, _ = ADMIN_DSN.partition("?")[0].rpartition("/")
    return f"{base}/{database}" + (f"?search_path={schema}" if schema else "")


async def _connect(dsn: str) -> asyncpg.Connection:
    global _unreachable
    from tests.conftest import _missing

    if _unreachable is not None:
        _missing(_unreachable)
    try:
        return await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as e:
        _unreachable = f"PostgreSQL is not reachable at {ADMIN_DSN}: {e}"
        _missing(_unreachable)


async def create_database() -> str:
    """A new empty database; returns its name."""
    name = f"postier_test_{os.getpid()}_{secrets.token_hex(4)}"
    conn = await _connect(ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_database(name: str) -> None:
    conn = await _connect(ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _drop_run_database() -> None:
    if _run_database is not None:
        asyncio.run(drop_database(_run_database))


async def create_schema() -> str:
    """A DSN on a new empty schema of this run's database."""
    global _run_database
    if _run_database is None:
        _run_database = await create_database()
        atexit.register(_drop_run_database)
    schema = f"t_{secrets.token_hex(6)}"
    conn = await _connect(dsn_for(_run_database))
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    return dsn_for(_run_database, schema)


async def drop_schema(dsn: str) -> None:
    database, _, schema = dsn.rpartition("/")[2].partition("?search_path=")
    conn = await _connect(dsn_for(database))
    try:
        # sessions a killed node left behind would hold locks on the tables
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    """The DSN of a fresh schema, dropped after the test."""
    dsn = await create_schema()
    try:
        yield dsn
    finally:
        await drop_schema(dsn)
