"""`postier serve` runs one process for `server.workers = 1`, a supervisor otherwise."""

from __future__ import annotations

import dataclasses
from collections.abc import Coroutine
from typing import Any

import pytest

from postier.config.schema import Settings
from postier.server import app, workers


def test_serve_supervises_workers_unless_one(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: list[str] = []

    def supervise(settings: Settings) -> int:
        chosen.append(f"supervisor of {settings.server.worker_count}")
        return 0

    def run_loop(main: Coroutine[Any, Any, int]) -> int:
        main.close()  # not run: only which path was taken matters
        chosen.append("one process")
        return 0

    monkeypatch.setattr(workers, "supervise", supervise)
    monkeypatch.setattr(app, "run_loop", run_loop)
    monkeypatch.setattr(app.logs, "setup", lambda *a: None)
    for count in (1, 2):
        s = Settings()
        app.run(dataclasses.replace(s, server=dataclasses.replace(s.server, workers=count)))
    assert chosen == ["one process", "supervisor of 2"]
