"""POP3 as a remote (non-loopback) client and an idle client see it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from pathlib import Path

from postier.auth.passwords import hash_password
from postier.auth.service import AuthService
from postier.config.schema import Settings, TlsSettings
from postier.pop3.server import make_handler
from postier.server import tls
from postier.server.app import App
from postier.server.listeners import Connection
from postier.store.sqlite import SqliteStore
from tests.integration.smtp_helpers import Raw
from tests.support.server import thread_server


async def _remote_session(tmp_path: Path, script: list[bytes]) -> list[bytes]:
    settings = Settings()
    settings = dataclasses.replace(
        settings,
        server=dataclasses.replace(settings.server, data_dir=tmp_path),
        tls=TlsSettings(),
    )
    store = SqliteStore(tmp_path)
    await store.open()
    await store.add_domain("example.test")
    await store.add_user("alice@example.test", hash_password("pw"))
    app = App(
        settings=settings,
        store=store,
        auth=AuthService(store, settings.auth),
        tls_context=tls.server_context(settings),
    )
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    conn = Connection(reader, writer, "pop3", "192.0.2.50", 4242, "192.0.2.1", 110, tls=False)
    task = asyncio.create_task(make_handler(app, "pop3")(conn))
    c_reader, c_writer = await asyncio.open_connection(sock=theirs)
    replies = [await c_reader.readline()]
    for line in script:
        c_writer.write(line + b"\r\n")
        await c_writer.drain()
        reply = await c_reader.readline()
        if line == b"CAPA":
            while not reply.endswith(b"\r\n.\r\n"):
                reply += await c_reader.readline()
        replies.append(reply)
    c_writer.close()
    await asyncio.wait_for(task, 10)
    writer.close()
    for w in (writer, c_writer):
        with contextlib.suppress(ConnectionError):
            await w.wait_closed()
    await store.close()
    return replies


async def test_plaintext_login_refused_before_tls_for_remote_clients(tmp_path: Path) -> None:
    replies = await _remote_session(tmp_path, [b"CAPA", b"USER alice@example.test", b"QUIT"])
    assert replies[0].startswith(b"+OK ")
    capa = replies[1]
    assert b"\r\nSTLS\r\n" in capa
    assert b"\r\nUSER\r\n" not in capa
    assert b"SASL PLAIN" not in capa
    assert replies[2].startswith(b"-ERR [AUTH] ")
    assert b"TLS" in replies[2] or b"secure" in replies[2].lower()


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
