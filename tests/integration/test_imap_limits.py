"""IMAP timers against clients that never log in or trickle their bytes: each ends
in one exact ``* BYE`` and a closed connection."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Iterator
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
        if chunk:  # the answer: send no more, read to the end
            _closed_after(c, start)
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


# --- literal memory -------------------------------------------------------------------


def _spool_files(srv: ServerThread) -> list[Path]:
    return sorted((srv.settings.server.data_dir / "spool").glob("imap-*.tmp"))


def _wait_for(condition: Callable[[], bool], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    srv = thread_server(tmp_path, "[imap]\nuser_literal_budget = 100000\n")
    try:
        srv.add_user(ALICE)
        srv.add_user("bob@example.test")
        yield srv
    finally:
        close_clients()
        srv.stop()


def test_unfinished_literals_are_spooled_not_held_in_memory(tmp_path: Path) -> None:
    """Two 20 MB literals announced in one APPEND (MULTIAPPEND), the first sent
    whole, the second half, then nothing: the server process must not hold them."""
    srv = thread_server(tmp_path)
    size = 20_000_000
    tracemalloc.start()
    try:
        srv.add_user(ALICE)
        c = Raw(srv.port("imap"))
        c.login()
        before = tracemalloc.get_traced_memory()[0]
        c.send(b"a APPEND INBOX {%d+}\r\n" % size)
        chunk = b"Subject: big\r\n\r\n" + b"x" * (1024 * 1024 - 16)
        for _ in range(size // len(chunk)):
            c.send(chunk)
        c.send(b"y" * (size % len(chunk)) + b" {%d+}\r\n" % size)
        for _ in range(size // 2 // len(chunk)):
            c.send(chunk)
        sent = size + size // 2 // len(chunk) * len(chunk)

        def spooled() -> int:
            return sum(p.stat().st_size for p in _spool_files(srv))

        _wait_for(lambda: spooled() >= sent)
        grown = tracemalloc.get_traced_memory()[0] - before
        assert spooled() == sent
        assert grown < 2_000_000, f"the server holds {grown} bytes more"
        c.close()
        assert _wait_for(lambda: _spool_files(srv) == [])  # a dropped command's files go
    finally:
        tracemalloc.stop()
        close_clients()
        srv.stop()


def test_large_append_literals_are_stored_from_the_spool(server: ServerThread) -> None:
    small = b"Subject: one\r\n\r\n" + b"1" * 84
    large = b"Subject: two\r\n\r\n" + b"2" * 69984  # over imap.spool_threshold (64 KiB)
    c = Raw(server.port("imap"))
    c.login()
    c.send(b"a APPEND INBOX {%d+}\r\n%s {%d}\r\n" % (len(small), small, len(large)))
    assert c.line() == b"+ Ready for literal data\r\n"
    c.send(large[:1000])
    assert _wait_for(lambda: len(_spool_files(server)) == 1)
    c.send(large[1000:] + b"\r\n")
    assert c.line().startswith(b"a OK [APPENDUID ")
    assert _spool_files(server) == []  # the store took the file
    c.cmd("s SELECT INBOX")
    assert c.cmd("f FETCH 1:2 BODY.PEEK[]") == (
        b"* 1 FETCH (BODY[] {%d}\r\n%s)\r\n* 2 FETCH (BODY[] {%d}\r\n%s)\r\n"
        b"f OK FETCH completed\r\n" % (len(small), small, len(large), large)
    )


def test_literals_outside_append_share_the_command_length_limit(server: ServerThread) -> None:
    c = Raw(server.port("imap"))
    c.login()
    assert c.cmd("a SELECT {70000}") == b"a NO [TOOBIG] Literal too large\r\n"
    c.send(b"b SELECT {70000+}\r\n")
    assert c.line() == b"b BAD [TOOBIG] Literal too large\r\n"
    c.send(b"x" * 70000 + b"\r\n")  # thrown away as it comes
    assert c.cmd("c NOOP") == b"c OK NOOP completed\r\n"
    # a literal within the limit is fine
    c.send(b"d SELECT {5}\r\n")
    assert c.line() == b"+ Ready for literal data\r\n"
    assert c.cmd("INBOX", tag=b"d").endswith(b"d OK [READ-WRITE] SELECT completed\r\n")


def test_a_users_append_bytes_in_flight_are_bounded(server: ServerThread) -> None:
    """imap.user_literal_budget (100000 here) counts every connection of the user."""
    message = b"Subject: budget\r\n\r\n" + b"z" * 79981
    first, second, bob = (Raw(server.port("imap")) for _ in range(3))
    first.login()
    second.login()
    bob.login("bob@example.test")
    first.send(b"a APPEND INBOX {80000}\r\n")
    assert first.line() == b"+ Ready for literal data\r\n"
    limit = b"NO [LIMIT] Too much APPEND data in transit, try again later\r\n"
    assert second.cmd("b APPEND INBOX {80000}") == b"b " + limit
    second.send(b"c APPEND INBOX {80000+}\r\n")
    assert second.line() == b"c BAD [LIMIT] Too much APPEND data in transit, try again later\r\n"
    second.send(message + b"\r\n")
    assert second.cmd("d NOOP") == b"d OK NOOP completed\r\n"
    # another user has a budget of their own
    bob.send(b"e APPEND INBOX {80000}\r\n")
    assert bob.line() == b"+ Ready for literal data\r\n"
    bob.send(message + b"\r\n")
    assert bob.line().startswith(b"e OK [APPENDUID ")
    # once the first APPEND is stored, its bytes are back in the budget
    first.send(message + b"\r\n")
    assert first.line().startswith(b"a OK [APPENDUID ")
    second.send(b"f APPEND INBOX {80000}\r\n")
    assert second.line() == b"+ Ready for literal data\r\n"
    second.send(message + b"\r\n")
    assert second.line().startswith(b"f OK [APPENDUID ")
    # an abandoned APPEND gives its bytes back too
    first.send(b"g APPEND INBOX {80000}\r\n")
    assert first.line() == b"+ Ready for literal data\r\n"
    first.close()
    time.sleep(0.3)
    second.send(b"h APPEND INBOX {80000}\r\n")
    assert second.line() == b"+ Ready for literal data\r\n"


def test_a_spool_that_cannot_be_written_is_a_temporary_no(server: ServerThread) -> None:
    spool = server.settings.server.data_dir / "spool"
    spool.mkdir(exist_ok=True)
    spool.rmdir()
    spool.write_bytes(b"")  # a file where the folder should be: nothing can be spooled
    message = b"Subject: x\r\n\r\n" + b"x" * 69986
    c = Raw(server.port("imap"))
    c.login()
    c.send(b"a APPEND INBOX {70000+}\r\n" + message + b"\r\n")
    assert c.line() == (b"a NO [UNAVAILABLE] Cannot receive the message now, try again later\r\n")
    assert c.cmd("b NOOP") == b"b OK NOOP completed\r\n"
