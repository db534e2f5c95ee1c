"""POP3 as a remote (non-loopback) client and an idle client see it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from postier.pop3.server import make_handler
from tests.integration.smtp_helpers import Raw
from tests.support.remote import remote_session
from tests.support.server import PASSWORD, thread_server


async def _pop3_reply(reader: asyncio.StreamReader, line: bytes) -> bytes:
    reply = await reader.readline()
    if line == b"CAPA":  # multi-line, up to the lone dot
        while not reply.endswith(b"\r\n.\r\n"):
            reply += await reader.readline()
    return reply


async def _remote_session(tmp_path: Path, script: list[bytes]) -> list[bytes]:
    return await remote_session(tmp_path, make_handler, "pop3", script, _pop3_reply)


async def test_plaintext_login_refused_before_tls_for_remote_clients(tmp_path: Path) -> None:
    replies = await _remote_session(tmp_path, [b"CAPA", b"USER alice@example.test", b"QUIT"])
    assert replies[0].startswith(b"+OK ")
    capa = replies[1]
    assert b"\r\nSTLS\r\n" in capa
    assert b"\r\nUSER\r\n" not in capa
    assert b"SASL PLAIN" not in capa
    assert replies[2] == (
        b"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections\r\n"
    )


def test_idle_client_is_disconnected_without_a_reply(tmp_path: Path) -> None:
    srv = thread_server(tmp_path, '[pop3]\nidle_timeout = "1s"\n')
    try:
        srv.add_user("alice@example.test")
        with Raw(srv.port("pop3")) as r:
            assert r.reply().startswith(b"+OK")
            r.send(b"USER alice@example.test\r\n")
            assert r.reply().startswith(b"+OK")
            start = time.monotonic()
            assert r.closed(timeout=5)
            assert time.monotonic() - start < 4
            assert r.buf == b""  # RFC 1939 §3: autologout closes without a response
    finally:
        srv.stop()


def _line(r: Raw) -> bytes:
    while b"\r\n" not in r.buf:
        r.buf += r.sock.recv(4096)
    line, _, r.buf = r.buf.partition(b"\r\n")
    return line + b"\r\n"


def _trickle_until_closed(r: Raw, data: bytes, interval: float, limit: float = 6.0) -> float:
    """Send `data` a byte every `interval` seconds until the server closes; the
    seconds that took (`limit` if it never did). Replies collect in `r.buf`."""
    start = time.monotonic()
    for i in range(len(data)):
        if time.monotonic() - start > limit:
            break
        try:
            r.send(data[i : i + 1])
        except OSError:
            break
        if r.closed(timeout=interval):
            break
    return time.monotonic() - start


def test_client_that_never_logs_in_is_dropped_after_login_timeout(tmp_path: Path) -> None:
    srv = thread_server(tmp_path, '[pop3]\nlogin_timeout = "1s"\n')
    try:
        srv.add_user("alice@example.test")
        with Raw(srv.port("pop3")) as r:
            assert r.reply().startswith(b"+OK")
            start = time.monotonic()
            # busy but never logging in: the login timer is total, not per read
            for _ in range(3):
                r.send(b"NOOP\r\n")
                assert _line(r) == b"-ERR NOOP not allowed in AUTHORIZATION state, log in first\r\n"
                time.sleep(0.2)
            assert r.closed(timeout=5)
            assert 0.9 < time.monotonic() - start < 4
            assert r.buf == b"-ERR Disconnected for inactivity.\r\n"
        # once logged in, the login timer no longer applies
        with Raw(srv.port("pop3")) as r:
            assert r.reply().startswith(b"+OK")
            assert r.cmd(b"USER alice@example.test").startswith(b"+OK")
            assert r.cmd(b"PASS " + PASSWORD.encode()).startswith(b"+OK")
            time.sleep(1.5)
            assert r.cmd(b"NOOP") == b"+OK\r\n"
    finally:
        srv.stop()


def test_command_line_trickled_a_byte_at_a_time_is_cut_off(tmp_path: Path) -> None:
    srv = thread_server(tmp_path, '[pop3]\nidle_timeout = "1s"\ncommand_timeout = "1s"\n')
    try:
        with Raw(srv.port("pop3")) as r:
            assert r.reply().startswith(b"+OK")
            took = _trickle_until_closed(r, b"CAPA CAPA CAPA CAPA CAPA", 0.3)
            assert r.buf == b"-ERR Autologout; command too slow\r\n"
            assert 0.9 < took < 4
    finally:
        srv.stop()
