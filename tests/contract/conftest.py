"""The store contract fixtures: every test runs against each backend.

`store` is an open store on a fresh backing store; `store_factory(**kw)` opens one
more instance on the *same* backing store (the same data dir for sqlite: "another
process"), with backend-specific knobs passed through. Adding the postgres backend
is one more entry in `BACKENDS` (marked `postgres`) and one branch in `_make`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from postier.store.api import Store
from postier.store.sqlite import SqliteStore

BACKENDS = [pytest.param("sqlite", id="sqlite")]

StoreFactory = Callable[..., Coroutine[Any, Any, Store]]


def _make(backend: str, where: Path, **kw: Any) -> Store:
    if backend == "sqlite":
        kw.setdefault("poll_interval", 0.05)
        return SqliteStore(where, **kw)
    raise AssertionError(backend)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store_factory(backend: str, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    opened: list[Store] = []

    async def factory(**kw: Any) -> Store:
        s = _make(backend, tmp_path / "data", **kw)
        await s.open()
        opened.append(s)
        return s

    yield factory
    for s in reversed(opened):
        await s.close()


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    return await store_factory()
