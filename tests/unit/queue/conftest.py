"""Fixtures for queue tests: a real SQLite store, a fake resolver, scripted peers on
127.0.0.x sharing one port (the runner dials one port at every MX host)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from postier.auth.passwords import hash_password
from postier.config.schema import SmtpOutbound
from postier.dns.fake import FakeResolver
from postier.mail.queueid import QueueId
from postier.queue.runner import Runner
from postier.queue.schedule import Schedule
from postier.store.models import NewQueueEntry, QueueRecipient
from postier.store.sqlite import SqliteStore
from tests.support.messages import new_message
from tests.support.smtppeer import Peer

MSG = (
    b"Return-Path: <alice@a.test>\r\n"
    b"Received: from x by mail.a.test\r\n"
    b"From: Alice <alice@a.test>\r\n"
    b"To: bob@b.test\r\n"
    b"Subject: hello\r\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
    b"Message-ID: <m1@a.test>\r\n"
    b"\r\n"
    b"Hi there.\r\n.leading dot\r\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    st = SqliteStore(tmp_path / "data")
    await st.open()
    await st.add_domain("a.test")
    await st.add_user("alice@a.test", hash_password("pw"))
    yield st
    await st.close()


class Net:
    """Peers at 127.0.0.N:port, a zone, and a runner factory."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.port = free_port()
        self.peers: list[Peer] = []
        self.resolver = FakeResolver({})
        self.clock_offset = 0.0
        self.runners: list[Runner] = []

    async def peer(self, ip: str, **kw: Any) -> Peer:
        p = await Peer(host=ip, port=self.port, **kw).start()
        self.peers.append(p)
        return p

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset)

    def runner(self, **kw: Any) -> Runner:
        outbound = kw.pop("outbound", None) or SmtpOutbound(
            port=self.port, connect_timeout=2, command_timeout=5
        )
        r = Runner(
            self.store,
            self.resolver,
            "mail.a.test",
            outbound=outbound,
            schedule=kw.pop("schedule", Schedule(first_retry=60, max_backoff=600, lifetime=3600)),
            now=self.now,
            reuse_idle=kw.pop("reuse_idle", 0.5),
            **kw,
        )
        self.runners.append(r)
        return r

    async def enqueue(
        self,
        rcpts: list[str] | list[QueueRecipient],
        *,
        sender: str = "alice@a.test",
        data: bytes = MSG,
        **kw: Any,
    ) -> QueueId:
        recipients = tuple(r if isinstance(r, QueueRecipient) else QueueRecipient(r) for r in rcpts)
        res = await self.store.deliver(
            new_message(data), [], queue=NewQueueEntry(sender, recipients, **kw)
        )
        assert res.queued is not None
        return res.queued

    async def round(self, runner: Runner, advance: float = 0.0) -> int:
        """Advance the clock and run one delivery round of every due entry."""
        self.clock_offset += advance
        due = await self.store.queue_due(self.now(), 100)
        for e in due:
            await runner.process(e)
        return len(due)

    async def close(self) -> None:
        for r in self.runners:
            await r.stop(1)
        for p in self.peers:
            await p.stop()


@pytest.fixture
async def net(store: SqliteStore) -> AsyncIterator[Net]:
    n = Net(store)
    yield n
    await n.close()


async def inbox(store: SqliteStore, address: str) -> list[bytes]:
    user = await store.get_user(address)
    assert user is not None
    mb = await store.get_mailbox(user.id, "INBOX")
    assert mb is not None
    return [await store.read_blob(m.blob_id) for m in await store.list_messages(mb.id)]


Factory = Callable[..., Any]
