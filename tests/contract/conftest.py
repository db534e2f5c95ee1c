"""The store contract fixtures: every test runs against each backend.

`store` is an open store on a fresh backing store; `store_factory(**kw)` opens one
more instance on the *same* backing store (the same data dir for sqlite: "another
process"; the same database for postgres: "another node"), with backend-specific
knobs passed through. The postgres backend gets a fresh schema per test
(`tests.support.postgres`); without a reachable server its tests are skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from postier.store.api import Store
from postier.store.postgres import PostgresStore
from postier.store.sqlite import SqliteStore
from tests.support.postgres import create_schema, drop_schema

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]

StoreFactory = Callable[..., Coroutine[Any, Any, Store]]


def _make(backend: str, where: Path | str, **kw: Any) -> Store:
    if backend == "sqlite":
        kw.setdefault("poll_interval", 0.05)
        return SqliteStore(Path(where), **kw)
    if backend == "postgres":
        return PostgresStore(str(where), **kw)
    raise AssertionError(backend)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store_factory(backend: str, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    opened: list[Store] = []
    where: Path | str = tmp_path / "data"
    if backend == "postgres":
        where = await create_schema()

    async def factory(**kw: Any) -> Store:
        s = _make(backend, where, **kw)
        await s.open()
        opened.append(s)
        return s

    try:
        yield factory
    finally:
        for s in reversed(opened):
            await s.close()
        if backend == "postgres":
            await drop_schema(str(where))


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    return await store_factory()
