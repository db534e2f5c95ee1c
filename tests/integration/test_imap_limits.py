"""IMAP timers against clients that never log in or trickle their bytes: each ends
in one exact ``* BYE`` and a closed connection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_imap import ALICE, Raw, close_clients
from tests.support.server import ServerThread, thread_server


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[ServerThread]:
    srv = thread_server(
        tmp_path, '[imap]\nlogin_timeout = "1s"\ncommand_timeout = "1s"\nmax_bad_commands = 100\n'
    )
    try:
        srv.add_user(ALICE)
        yield srv
    finally:
        close_clients()
        srv.stop()


def _closed_after(c: Raw, started: float) -> float:
    """Read to EOF; the seconds since `started` when it came."""
    c.sock.settimeout(6)
    while True:
        chunk = c.sock.recv(65536)
        if not chunk:
            return time.monotonic() - started
        c.buf += chunk


def _trickle(c: Raw, data: bytes, interval: float, limit: float = 6.0) -> float:
    """Send `data` a byte every `interval` seconds until the server closes; the
    seconds that took. What the server said collects in `c.buf`."""
    start = time.monotonic()
    for i in range(len(data)):
        if time.monotonic() - start > limit:
            break
        try:
            c.send(data[i : i + 1])
        except OSError:
            break
        c.sock.settimeout(interval)
        try:
            chunk = c.sock.recv(65536)
        except TimeoutError:
            continue
        c.buf += chunk
        if not chunk:
            break
    return time.monotonic() - start


def test_client_that_never_logs_in_is_dropped(slow: ServerThread) -> None:
    c = Raw(slow.port("imap"))
    start = time.monotonic()
    for _ in range(3):  # busy, but never logging in: the login timer is total
        assert c.cmd("n NOOP") == b"n OK NOOP completed\r\n"
        time.sleep(0.2)
    assert c.line() == b"* BYE Disconnected for inactivity.\r\n"
    assert 0.9 < _closed_after(c, start) < 4
    assert c.buf == b""


def test_logged_in_client_has_no_login_timer(slow: ServerThread) -> None:
    c = Raw(slow.port("imap"))
    c.login()
    time.sleep(1.5)
    assert c.cmd("n NOOP") == b"n OK NOOP completed\r\n"


def test_command_line_trickled_a_byte_at_a_time_is_cut_off(slow: ServerThread) -> None:
    c = Raw(slow.port("imap"))
    c.login()
    took = _trickle(c, b"a NOOP" * 10, 0.3)
    assert c.buf == b"* BYE Autologout; command too slow\r\n"
    assert 0.9 < took < 4


def test_literal_trickled_a_byte_at_a_time_is_cut_off(slow: ServerThread) -> None:
    c = Raw(slow.port("imap"))
    c.login()
    c.send(b"a APPEND INBOX {100}\r\n")
    assert c.line() == b"+ Ready for literal data\r\n"
    took = _trickle(c, b"x" * 100, 0.3)
    assert c.buf == b"* BYE Autologout; command too slow\r\n"
    assert 0.9 < took < 4


def test_large_literal_at_a_fair_rate_outlives_command_timeout(slow: ServerThread) -> None:
    """imap.min_data_rate (1024 B/s by default) earns time: 3000 B/s for 2 s."""
    c = Raw(slow.port("imap"))
    c.login()
    message = b"Subject: slow\r\n\r\n" + b"y" * 5983
    c.send(b"a APPEND INBOX {%d}\r\n" % len(message))
    assert c.line() == b"+ Ready for literal data\r\n"
    for i in range(0, len(message), 600):
        c.send(message[i : i + 600])
        time.sleep(0.2)
    c.send(b"\r\n")
    assert c.line().startswith(b"a OK [APPENDUID ")


def test_commands_sent_slowly_but_whole_are_not_cut_off(slow: ServerThread) -> None:
    c = Raw(slow.port("imap"))
    c.login()
    for _ in range(4):
        assert c.cmd("n NOOP") == b"n OK NOOP completed\r\n"
        time.sleep(0.4)
    c.send(b"n NO")  # one line in two parts, within command_timeout
    time.sleep(0.4)
    assert c.cmd("OP", tag=b"n") == b"n OK NOOP completed\r\n"
