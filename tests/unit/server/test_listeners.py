"""Workers sharing a listening socket spread its connections by their number
(`listeners.WorkerLoad`): a busier worker steps aside, and takes the connection
itself when nobody else does."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postier.config.schema import Settings
from postier.server import listeners, workers
from postier.server.listeners import Connection, Listener, WorkerLoad, bind


def test_busier_means_another_worker_has_clearly_fewer() -> None:
    load = WorkerLoad(3)
    a, b, c = load.slot(0), load.slot(1), load.slot(2)
    assert not a.busier()  # all at 0
    a.add(1)
    assert a.busier()
    assert not b.busier()
    b.add(1)
    c.add(1)
    assert not a.busier()  # all equal
    a.add(31)  # 32 against 1: far more
    assert a.busier()
    b.add(29)
    c.add(29)  # 32 against 30: within a sixteenth
    assert not a.busier()
    load.clear(0)
    assert a.open == 0
    assert not a.busier()


def test_the_counts_are_shared_with_forked_workers() -> None:
    load = WorkerLoad(2)
    pid = os.fork()
    if pid == 0:
        load.slot(1).add(7)
        os._exit(0)
    os.waitpid(pid, 0)
    assert load.slot(1).open == 7
    assert load.slot(0).busier() is False
    assert load.slot(1).busier() is True


@pytest.fixture
def shared_socket() -> Iterator[socket.socket]:
    sock = bind("test", "127.0.0.1", 0)
    try:
        yield sock
    finally:
        sock.close()


class _Held:
    """A handler keeping each session open until `release`."""

    def __init__(self) -> None:
        self.sessions: list[Connection] = []
        self.done = asyncio.Event()

    async def __call__(self, conn: Connection) -> None:
        self.sessions.append(conn)
        await self.done.wait()


async def _until(check: object, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.001)


async def test_the_busier_worker_leaves_new_connections_to_the_other(
    shared_socket: socket.socket,
) -> None:
    # two workers in one loop, each with its own descriptor of the one socket
    # (as fork gives them); worker A already holds 3 connections elsewhere
    load = WorkerLoad(2)
    load.slot(0).add(3)
    port = shared_socket.getsockname()[1]
    a_held, b_held = _Held(), _Held()
    a = Listener("a", "127.0.0.1", port, a_held, sock=shared_socket.dup(), load=load.slot(0))
    b = Listener("b", "127.0.0.1", port, b_held, sock=shared_socket.dup(), load=load.slot(1))
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        await a.start()  # A looks first at every wake-up
        await b.start()
        await _until(lambda: len(a_held.sessions) + len(b_held.sessions) == 3)
        assert (len(a_held.sessions), len(b_held.sessions)) == (0, 3)
        assert (load.slot(0).open, load.slot(1).open) == (3, 3)
    finally:
        for c in clients:
            c.close()
        a_held.done.set()
        b_held.done.set()
        for li in (a, b):
            li.stop_accepting()
            await li.drain(1)
    assert (load.slot(0).open, load.slot(1).open) == (3, 0)  # sessions ended, counts back


async def test_a_busier_worker_still_accepts_when_no_other_does(
    shared_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # worker B has fewer connections but does not accept (stopped, busy or gone)
    monkeypatch.setattr(listeners, "DEFER", 0.05)
    load = WorkerLoad(2)
    load.slot(0).add(5)
    port = shared_socket.getsockname()[1]
    held = _Held()
    a = Listener("a", "127.0.0.1", port, held, sock=shared_socket.dup(), load=load.slot(0))
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    try:
        await a.start()
        t0 = time.monotonic()
        await _until(lambda: len(held.sessions) == 2)
        waited = time.monotonic() - t0
        assert waited >= 0.1  # it stepped aside first, once per connection
        assert waited < 1.0
    finally:
        for c in clients:
            c.close()
        held.done.set()
        a.stop_accepting()
        await a.drain(1)


def test_nobody_steps_aside_for_a_dead_worker_until_its_successor_starts(
    tmp_path: Path,
) -> None:
    settings = Settings()
    settings = dataclasses.replace(
        settings, server=dataclasses.replace(settings.server, data_dir=tmp_path, workers=2)
    )
    supervisor = workers.Supervisor(settings, {})
    try:
        slot = supervisor.load.slot(1)
        pid = os.fork()
        if pid == 0:
            slot.add(2)  # worker 1's connections, then it dies
            os._exit(1)
        supervisor.children[pid] = workers._Child(1, pid, time.monotonic())
        deadline = time.monotonic() + 5
        while supervisor.children and time.monotonic() < deadline:
            supervisor._reap()
            time.sleep(0.01)
        assert not supervisor.children
        worker0 = supervisor.load.slot(0)
        worker0.add(6)
        assert not worker0.busier()  # worker 1 is gone: nobody to leave connections to
        supervisor.load.clear(1)  # its successor starts (app.start)
        assert slot.open == 0
        assert worker0.busier()
    finally:
        for sock in supervisor.queue_wake:
            sock.close()


class _OutOfDescriptors(socket.socket):
    """A listening socket whose first accept() fails as a process out of file
    descriptors does."""

    failed = 0

    def accept(self) -> tuple[socket.socket, object]:
        if not self.failed:
            self.failed += 1
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


async def test_out_of_descriptors_pauses_accepting_then_takes_the_connection(
    shared_socket: socket.socket, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(listeners, "EXHAUSTED_PAUSE", 0.2)
    load = WorkerLoad(1)
    port = shared_socket.getsockname()[1]
    sock = _OutOfDescriptors(fileno=shared_socket.dup().detach())
    sock.setblocking(False)
    held = _Held()
    a = Listener("a", "127.0.0.1", port, held, sock=sock, load=load.slot(0))
    client = socket.create_connection(("127.0.0.1", port))
    try:
        await a.start()
        t0 = time.monotonic()
        await _until(lambda: len(held.sessions) == 1)
        assert time.monotonic() - t0 >= 0.2  # paused, not spinning on the error
        assert sock.failed == 1
        assert "listener a: cannot accept: Too many open files; trying again in 0.2s" in caplog.text
    finally:
        client.close()
        held.done.set()
        a.stop_accepting()
        await a.drain(1)
