"""A protocol adapter driven over a socket pair as if the client were remote
(192.0.2.50, not loopback): what an Internet client sees, with no network."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from postier.auth.passwords import hash_password
from postier.config.schema import Settings, TlsSettings
from postier.server import tls
from postier.server.listeners import Connection, Handler
from postier.server.root import App, build
from postier.store.sqlite import SqliteStore

ReadReply = Callable[[asyncio.StreamReader, bytes], Awaitable[bytes]]


async def remote_session(
    tmp_path: Path,
    make_handler: Callable[[App, str], Handler | None],
    listener: str,
    script: list[bytes],
    read_reply: ReadReply,
    *,
    allow_plain: bool = False,
) -> list[bytes]:
    """The greeting line, then `read_reply`'s answer to each line of `script`.
    The store holds alice@example.test with password "pw"."""
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
    app = build(settings, store, tls.server_context(settings))
    handler = make_handler(app, listener)
    assert handler is not None
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    conn = Connection(reader, writer, listener, "192.0.2.50", 4242, "192.0.2.1", 587, tls=False)
    task = asyncio.create_task(handler(conn))
    c_reader, c_writer = await asyncio.open_connection(sock=theirs)
    replies = [await c_reader.readline()]
    for line in script:
        c_writer.write(line + b"\r\n")
        await c_writer.drain()
        replies.append(await read_reply(c_reader, line))
    c_writer.close()
    await asyncio.wait_for(task, 10)
    writer.close()  # the listener does this for real connections
    for w in (writer, c_writer):
        with contextlib.suppress(ConnectionError):
            await w.wait_closed()
    await store.close()
    return replies
