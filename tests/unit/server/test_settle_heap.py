"""A started process freezes what its start left (`app.settle_heap`): full
collections then scan only what it allocates while serving."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from postier.config.schema import Settings
from postier.server import app
from postier.server.root import Worker


@pytest.fixture
def unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()


class _Cycle:
    me: Any


def test_settle_heap_collects_then_freezes(unfreeze: None) -> None:
    garbage = _Cycle()
    garbage.me = garbage
    dead = weakref.ref(garbage)
    del garbage
    kept: list[object] = [[], {}]
    frozen_before = gc.get_freeze_count()
    app.settle_heap()
    assert dead() is None  # the start's cyclic garbage is not frozen with the rest
    assert gc.get_freeze_count() > frozen_before
    assert not any(o is kept for o in gc.get_objects())  # no generation holds it now


class _Ready(Exception):
    pass


def _stub_start(monkeypatch: pytest.MonkeyPatch, order: list[str]) -> None:
    class Store:
        pass

    class App:
        store = Store()

    async def start(settings: Settings, worker: Worker | None = None) -> Any:
        order.append("start")
        return App()

    async def demo_login(store: Any, data_dir: Any) -> None:
        return None

    monkeypatch.setattr(app, "start", start)
    monkeypatch.setattr(app, "demo_login", demo_login)
    monkeypatch.setattr(app, "banner", lambda a, d: "")
    monkeypatch.setattr(app, "settle_heap", lambda: order.append("settle"))


def ready(order: list[str]) -> Any:
    def ready(*a: Any) -> None:
        order.append("ready")
        raise _Ready

    return ready


@pytest.mark.parametrize("mode", ["one process", "worker"])
def test_serving_settles_the_heap_once_started(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    order: list[str] = []
    _stub_start(monkeypatch, order)
    if mode == "worker":
        worker = Worker(1, 2, 0, {}, None, None)
        main = app.serve_worker(Settings(), worker, ready(order))
    else:
        main = app.serve(Settings(), ready=ready(order))
    with pytest.raises(_Ready):
        asyncio.run(main)
    assert order == ["start", "settle", "ready"]
