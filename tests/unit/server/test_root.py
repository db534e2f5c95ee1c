"""The composition root builds each shared service once and hands that one
instance to every component using it (no registry, no second copy)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from postier.config.schema import Settings
from postier.dns.cache import CachingResolver
from postier.filters.build import Filters
from postier.imap import server as imap_server
from postier.imap.literals import LiteralBudget
from postier.queue.runner import Runner
from postier.server import root, tls
from postier.server.status import STATUS_FILE, StatusWriter
from postier.smtp import server as smtp_server
from postier.smtp.intake import Intake
from postier.smtp.submission import Submission
from postier.store.sqlite import SqliteStore


def _count(monkeypatch: pytest.MonkeyPatch, cls: type) -> list[Any]:
    """Every instance of `cls` made from now on, whichever module makes it."""
    made: list[Any] = []
    init = cls.__init__

    def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(cls, "__init__", counted)
    return made


async def test_one_of_each_service_shared_by_every_listener(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings()
    settings = dataclasses.replace(
        settings, server=dataclasses.replace(settings.server, data_dir=tmp_path)
    )
    resolvers = _count(monkeypatch, CachingResolver)
    filters = _count(monkeypatch, Filters)
    intakes = _count(monkeypatch, Intake)
    budgets = _count(monkeypatch, LiteralBudget)
    runners = _count(monkeypatch, Runner)
    pipelines = _count(monkeypatch, Submission)
    writers = _count(monkeypatch, StatusWriter)
    store = SqliteStore(tmp_path)
    await store.open()
    try:
        app = root.build(settings, store, tls.server_context(settings))
        for name in ("mx", "submission", "submissions"):
            smtp_server.make_handler(app, name)
        for name in ("imap", "imaps"):
            imap_server.make_handler(app, name)
        made = (resolvers, filters, intakes, budgets, runners, pipelines, writers)
        assert [len(x) for x in made] == [1] * len(made)
        (resolver,) = resolvers
        assert app.queue is runners[0]
        assert app.queue.resolver is resolver  # outbound MX lookups and...
        stages = [s for p in app.intake.filters.pipelines.values() for s in p.stages]
        with_dns = [s for s in stages if hasattr(s, "resolver")]
        assert with_dns  # ...SPF, DKIM, FCrDNS at intake: one cache
        assert all(s.resolver is resolver for s in with_dns)
        assert app.intake is intakes[0]
        assert app.intake.filters is filters[0]
        assert app.intake.queue_wake == app.queue.wake  # intake wakes this runner
        assert app.literal_budget is budgets[0]
        assert app.submission is pipelines[0]
        assert app.status is writers[0]
        app.status.stop()  # built, never started: no server ran, nothing written
        assert not (tmp_path / STATUS_FILE).exists()
    finally:
        await store.close()
