"""POP3 as a remote (non-loopback) client and an idle client see it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from postier.pop3.server import make_handler
from tests.integration.smtp_helpers import Raw
from tests.support.remote import remote_session
from tests.support.server import thread_server


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
