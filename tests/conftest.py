"""Shared fixtures: a real server in a thread, with a temp data dir, on loopback."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support.server import ServerThread, alice_and_bob


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    """A running server (all listeners on 127.0.0.1, port 0), domain example.test
    with users alice and bob (password tests.support.server.PASSWORD)."""
    with alice_and_bob(tmp_path) as srv:
        yield srv


#: set by .ci/run: a missing tool fails the test instead of skipping it
REQUIRE_TOOLS = "POSTIER_REQUIRE_TOOLS"

#: command → the Debian package that has it (scripts/install-deps installs them all)
PACKAGES = {
    "swaks": "swaks",
    "msmtp": "msmtp",
    "fetchmail": "fetchmail",
    "getmail": "getmail6",
    "mbsync": "isync",
    "mutt": "mutt",
    "postfix": "postfix",
    "clamd": "clamav-daemon",
    "chromium": "chromium",
}


def _missing(reason: str) -> NoReturn:
    """Skip with `reason` on a developer's machine; fail under CI, where
    scripts/install-deps has installed everything, so nothing is skipped silently."""
    if os.environ.get(REQUIRE_TOOLS) or os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(f"{reason} (as root: scripts/install-deps)")


def need_tool(name: str) -> str:
    """The path of a Debian tool the test drives."""
    path = shutil.which(name)
    if path is None:
        _missing(f"{name} is not installed (Debian package {PACKAGES.get(name, name)})")
    return path


def need_root(why: str) -> None:
    if os.geteuid() != 0:
        _missing(f"needs root: {why}")
