"""The asyncio adapter `SmtpClient` on loopback: against a server driven by the server
core (real STARTTLS handshake, AUTH, BDAT and DATA), and against scripted peers for
timeouts, EOF and protocol violations."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from postier.mail.replies import R220_READY
from postier.smtp import events as sev
from postier.smtp.client import (
    ConnectionLost,
    ProtocolViolation,
    Recipient,
    SmtpClient,
)
from postier.smtp.clientcore import ServerReply
from postier.smtp.core import ServerConnection
from tests.unit.smtp.test_smtp_core import HOST, policy_default

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def listening(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


class CoreServer:
    """A loopback server that is the server core plus the unit tests' policy."""

    def __init__(self, tls: ssl.SSLContext | None = None, **options: object) -> None:
        self.tls = tls
        self.options = options
        self.events: list[sev.Event] = []
        self.messages: list[bytes] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ServerConnection(hostname=HOST, tls_available=self.tls is not None, **self.options)  # type: ignore[arg-type]
        conn.greet(R220_READY(HOST))
        chunks: list[bytes] = []
        try:
            while True:
                ev = conn.next_event()
                if ev is sev.NEED_DATA:
                    writer.write(conn.data_to_send())
                    await writer.drain()
                    conn.receive_data(await reader.read(65536))
                    continue
                self.events.append(ev)
                if isinstance(ev, sev.DataChunk):
                    chunks.append(ev.data)
                elif isinstance(ev, sev.DataEnd):
                    self.messages.append(b"".join(chunks))
                    chunks = []
                if isinstance(ev, sev.DECISIONS):
                    reply = policy_default(ev)
                    conn.accept(reply) if reply is None or reply.is_positive else conn.reject(reply)
                elif isinstance(ev, sev.StartTls):
                    assert self.tls is not None
                    writer.write(conn.data_to_send())
                    await writer.drain()
                    await writer.start_tls(self.tls)
                    conn.tls_started()
                elif isinstance(ev, (sev.Quit, sev.Disconnect, sev.ConnectionClosed)):
                    writer.write(conn.data_to_send())
                    await writer.drain()
                    return
        finally:
            writer.close()


def scripted(*replies: bytes) -> Handler:
    """Greets with replies[0], then answers each line read with the next one; after
    the last, reads and says nothing (a stuck peer); b"EOF" closes instead."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for reply in replies:
                if reply == b"EOF":
                    return
                writer.write(reply)
                await writer.drain()
                await reader.readline()
            await reader.read()
        finally:
            writer.close()

    return handle


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture
def server_tls(tmp_path: Path) -> ssl.SSLContext:
    from postier.server.tls import ensure_self_signed

    cert, key = ensure_self_signed(tmp_path / "tls", HOST)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


MSG = b"Subject: t\r\n\r\n.leading dot\r\n..two\r\n"


async def test_starttls_auth_and_bdat_against_the_server_core(server_tls: ssl.SSLContext) -> None:
    peer = CoreServer(server_tls, auth_mechanisms=("PLAIN", "LOGIN"))
    async with listening(peer) as port:
        c = await SmtpClient.connect("127.0.0.1", port, command_timeout=10)
        assert c.greeting == ServerReply(220, (f"{HOST} ESMTP postier",))
        assert (await c.ehlo("client.test")).code == 250
        assert c.has("STARTTLS") and not c.auth_mechanisms  # AUTH only under TLS
        assert (await c.starttls(client_tls(), HOST)).code == 220
        assert c.tls and not c.has("PIPELINING")  # RFC 3207 §4.2: forgotten
        await c.ehlo("client.test")
        assert c.has("CHUNKING") and c.auth_mechanisms == {"PLAIN", "LOGIN"}
        assert await c.auth("alice", "secret") == ServerReply(
            235, ("2.7.0 Authentication successful",)
        )
        tx = await c.send_transaction(
            "a@b.test", [Recipient("c@d.test"), Recipient("nobody@d.test")], MSG
        )
        assert tx.data == ServerReply(250, ("2.0.0 Ok: queued as Q1",))
        assert [r.code if r else None for r in tx.rcpts] == [250, 550]
        assert c.transactions == 1
        assert (await c.rset()).code == 250
        await c.quit()
        assert c.closed
    assert sev.DataStart(chunking=True) in peer.events  # RFC 3030: one BDAT LAST
    assert peer.messages == [MSG]
    assert isinstance(peer.events[-1], sev.Quit)


async def test_data_with_dot_stuffing_when_chunking_is_not_offered() -> None:
    peer = CoreServer(chunking=False)
    async with listening(peer) as port:
        c = await SmtpClient.connect("127.0.0.1", port, command_timeout=10)
        await c.ehlo("client.test")
        tx = await c.send_transaction("a@b.test", [Recipient("c@d.test")], MSG)
        assert tx.data_command == ServerReply(354, ("End data with <CR><LF>.<CR><LF>",))
        assert tx.data == ServerReply(250, ("2.0.0 Ok: queued as Q1",))
        await c.quit()
    assert sev.DataStart(chunking=False) in peer.events
    assert peer.messages == [MSG]


async def test_no_reply_is_connection_lost_after_the_command_timeout() -> None:
    async with listening(scripted(b"220 x\r\n")) as port:
        c = await SmtpClient.connect("127.0.0.1", port, command_timeout=0.2)
        with pytest.raises(ConnectionLost, match=r"^\[127.0.0.1\]: no reply within 0.2s$"):
            await c.ehlo("client.test")
        assert c.closed
        await c.quit()  # never raises


async def test_eof_is_connection_lost() -> None:
    async with listening(scripted(b"220 x\r\n", b"EOF")) as port:
        c = await SmtpClient.connect("127.0.0.1", port, command_timeout=5)
        with pytest.raises(ConnectionLost, match=r"^\[127.0.0.1\]: connection closed by the peer$"):
            await c.ehlo("client.test")
        assert c.closed


async def test_garbage_is_a_protocol_violation_and_closes() -> None:
    async with listening(scripted(b"220 x\r\n", b"HTTP/1.1 400 Bad Request\r\n")) as port:
        c = await SmtpClient.connect("127.0.0.1", port, command_timeout=5)
        with pytest.raises(ProtocolViolation, match="not an SMTP reply line"):
            await c.ehlo("client.test")
        assert c.closed


async def test_reply_injected_after_starttls_220_is_refused() -> None:
    # RFC 3207 §5, CVE-2011-0411 class: plaintext behind the 220 must not be believed
    peer = scripted(b"220 x\r\n", b"250-x\r\n250 STARTTLS\r\n", b"220 go\r\n250 injected\r\n")
    async with listening(peer) as port:
        c = await SmtpClient.connect("127.0.0.1", port, command_timeout=5)
        await c.ehlo("client.test")
        with pytest.raises(ProtocolViolation, match="after the STARTTLS 220"):
            await c.starttls(client_tls(), "x")
        assert c.closed and not c.tls


async def test_421_greeting_leaves_the_client_closed() -> None:
    async with listening(scripted(b"421 4.3.2 busy\r\n", b"EOF")) as port:
        c = await SmtpClient.connect("127.0.0.1", port, command_timeout=5)
        assert c.greeting == ServerReply(421, ("4.3.2 busy",))
        assert c.closed  # RFC 5321 §3.8
        await c.quit()
