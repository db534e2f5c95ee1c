"""A fresh PostgreSQL database per test, on the machine's server (127.0.0.1:5432).

`POSTIER_TEST_PG` overrides the administrative DSN (a role that may create
databases). Unreachable server: the test is skipped with the reason, or fails
under CI (`tests.conftest._missing`), where PostgreSQL is always there.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

ADMIN_DSN = os.environ.get("POSTIER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

_unreachable: str | None = None


def dsn_for(database: str) -> str:
    """The admin DSN with its database replaced."""
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


async def _admin() -> asyncpg.Connection:
    global _unreachable
    if _unreachable is not None:
        from tests.conftest import _missing

        _missing(_unreachable)
    try:
        return await asyncpg.connect(ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as e:
        from tests.conftest import _missing

        _unreachable = f"PostgreSQL is not reachable at {ADMIN_DSN}: {e}"
        _missing(_unreachable)


async def create_database() -> str:
    """A new empty database; returns its name."""
    name = f"postier_test_{os.getpid()}_{secrets.token_hex(4)}"
    conn = await _admin()
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_database(name: str) -> None:
    conn = await _admin()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    """The DSN of a fresh database, dropped after the test."""
    name = await create_database()
    try:
        yield dsn_for(name)
    finally:
        await drop_database(name)
