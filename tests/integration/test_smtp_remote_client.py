"""What a client that is *not* on loopback sees: the adapter driven over a socket
pair with a remote peer address (no network needed)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import socket
from pathlib import Path

from postier.auth.passwords import hash_password
from postier.auth.service import AuthService
from postier.config.schema import Settings, TlsSettings
from postier.server import tls
from postier.server.app import App
from postier.server.listeners import Connection
from postier.smtp.server import make_handler
from postier.store.sqlite import SqliteStore


async def _session(
    tmp_path: Path, script: list[bytes], *, allow_plain: bool = False, listener: str = "submission"
) -> list[bytes]:
    settings = Settings()
    settings = dataclasses.replace(
        settings,
        server=dataclasses.replace(settings.server, data_dir=tmp_path),
        tls=TlsSettings(allow_plaintext_auth=allow_plain),
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
    conn = Connection(reader, writer, listener, "192.0.2.50", 4242, "192.0.2.1", 587, tls=False)
    task = asyncio.create_task(make_handler(app, listener)(conn))
    c_reader, c_writer = await asyncio.open_connection(sock=theirs)
    replies = [await c_reader.readline()]
    for line in script:
        c_writer.write(line + b"\r\n")
        await c_writer.drain()
        line = await c_reader.readline()
        reply = line
        while line[3:4] == b"-":
            line = await c_reader.readline()
            reply += line
        replies.append(reply)
    c_writer.close()
    await asyncio.wait_for(task, 10)
    writer.close()  # the listener does this for real connections
    for w in (writer, c_writer):
        with contextlib.suppress(ConnectionError):
            await w.wait_closed()
    await store.close()
    return replies


PLAIN = b"AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0pw")


async def test_auth_not_offered_before_tls_to_remote_client(tmp_path: Path) -> None:
    replies = await _session(tmp_path, [b"EHLO remote.test", PLAIN])
    assert b"AUTH" not in replies[1]
    assert b"STARTTLS" in replies[1]
    assert (
        replies[2] == b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    )


async def test_allow_plaintext_auth_offers_auth(tmp_path: Path) -> None:
    replies = await _session(tmp_path, [b"EHLO remote.test", PLAIN], allow_plain=True)
    assert b"250-AUTH PLAIN LOGIN\r\n" in replies[1]
    assert replies[2] == b"235 2.7.0 Authentication successful\r\n"


async def test_mx_never_offers_auth(tmp_path: Path) -> None:
    replies = await _session(
        tmp_path,
        [b"EHLO remote.test", PLAIN, b"MAIL FROM:<x@far.test>", b"RCPT TO:<y@far.test>"],
        allow_plain=True,
        listener="mx",
    )
    assert b"AUTH" not in replies[1]
    assert replies[2].startswith(b"503 ")
    assert replies[4] == b"554 5.7.1 <y@far.test>: Relay access denied\r\n"
