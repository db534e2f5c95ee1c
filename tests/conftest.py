"""Shared fixtures: a real server in a thread, with a temp data dir, on loopback."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerThread, thread_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    """A running server (all listeners on 127.0.0.1, port 0), domain example.test
    with users alice and bob (password tests.support.server.PASSWORD)."""
    srv = thread_server(tmp_path)
    try:
        srv.add_user("alice@example.test")
        srv.add_user("bob@example.test")
        yield srv
    finally:
        srv.stop()


def need_tool(name: str) -> str:
    """The path of a Debian tool the test drives; .ci/run installs them all, so a
    missing one fails loudly instead of skipping silently."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (see .ci/run)")
    return path
