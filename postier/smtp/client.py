"""The outbound SMTP client: the asyncio adapter around `postier.smtp.clientcore`.

What it owns: one TCP connection to one remote host, driven by the queue runner and
`ops/verify`: connect (and implicit TLS), timeouts, the TLS handshake after STARTTLS,
moving bytes between the socket and `ClientConnection`. Every protocol rule (reply
parsing and its limits, EHLO/HELO, PIPELINING, CHUNKING, dot-stuffing, the empty
message after all RCPTs were refused, RSET after a failed transaction, 421) lives
in the core; deciding what a reply means for the queue (retry, bounce, next MX) is
the runner's business.

Rules:
- Every read has `command_timeout`; the TCP connect (and implicit TLS handshake)
  has `connect_timeout`. A timeout, a reset or EOF is `ConnectionLost` — a
  temporary failure for whatever was in progress (RFC 5321 §4.5.3.2).
- A `ProtocolViolation` from the core closes the connection and is raised as is.
- After a 421 at any point the connection is unusable (RFC 5321 §3.8): the reply
  is returned and `closed` is set.
- Bytes the core queues are written before the next read, in order.

Why not aiosmtplib: it does not pipeline, reports recipient refusals only as an
exception for the all-refused case, and hides the per-command replies the queue
must record verbatim for DSNs and `postier trace`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping, Sequence

from postier.smtp.clientcore import (
    NEED_DATA,
    AuthDone,
    ClientConnection,
    ConnectionClosed,
    EhloDone,
    Event,
    Greeting,
    ProtocolViolation,
    Recipient,
    RecipientResult,
    Replied,
    ReplyParser,
    ServerReply,
    SmtpClientError,
    TlsReady,
    TlsRefused,
    Transaction,
    TransactionDone,
    dot_stuff,
    xtext,
)

__all__ = [
    "ConnectionLost",
    "ProtocolViolation",
    "Recipient",
    "ReplyParser",
    "ServerReply",
    "SmtpClient",
    "SmtpClientError",
    "TlsFailed",
    "Transaction",
    "dot_stuff",
    "xtext",
]


class ConnectionLost(SmtpClientError):
    """Connect failed, timed out, or the peer closed or reset the connection."""


class TlsFailed(SmtpClientError):
    """The TLS handshake after STARTTLS (or for implicit TLS) failed."""


class SmtpClient:
    """One connection. Create with `connect()`; `closed` once unusable."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer_ip: str,
        command_timeout: float,
        conn: ClientConnection,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.peer_ip = peer_ip
        self.command_timeout = command_timeout
        self.conn = conn
        self.greeting: ServerReply | None = None
        self.ehlo_reply: ServerReply | None = None
        self._closed = False

    @classmethod
    async def connect(
        cls,
        ip: str,
        port: int,
        *,
        connect_timeout: float = 30.0,
        command_timeout: float = 300.0,
        implicit_tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        local_address: str | None = None,
        max_line_length: int = 4096,
        max_lines: int = 200,
    ) -> SmtpClient:
        """Connect and read the greeting (RFC 5321 §3.1). Raises `ConnectionLost`
        or `TlsFailed`; a non-220 greeting is returned in `greeting` for the caller
        to judge (RFC 5321 §3.1: 554 means "no service here")."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    ip,
                    port,
                    ssl=implicit_tls,
                    server_hostname=(server_hostname or ip) if implicit_tls else None,
                    local_addr=(local_address, 0) if local_address else None,
                ),
                connect_timeout,
            )
        except ssl.SSLError as e:
            raise TlsFailed(f"TLS handshake with [{ip}]:{port} failed: {e.reason or e}") from None
        except (OSError, TimeoutError) as e:
            reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
            raise ConnectionLost(f"connect to [{ip}]:{port}: {reason}") from None
        conn = ClientConnection(
            tls=implicit_tls is not None, max_line_length=max_line_length, max_lines=max_lines
        )
        client = cls(reader, writer, ip, command_timeout, conn)
        event = await client._event()
        assert isinstance(event, Greeting)
        client.greeting = event.reply
        return client

    # --- state the callers read ---------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed or self.conn.closed

    @property
    def tls(self) -> bool:
        return self.conn.tls

    @property
    def extensions(self) -> Mapping[str, str]:
        return self.conn.extensions

    @property
    def transactions(self) -> int:
        """Transactions that sent their message on this connection (reuse accounting)."""
        return self.conn.transactions

    def has(self, extension: str) -> bool:
        return self.conn.has(extension)

    @property
    def max_size(self) -> int:
        """RFC 1870: the SIZE the peer announced (0 = no limit or not announced)."""
        return self.conn.max_size

    @property
    def auth_mechanisms(self) -> frozenset[str]:
        return self.conn.auth_mechanisms

    # --- moving bytes -------------------------------------------------------------------
    async def write(self, data: bytes) -> None:
        if not data:
            return
        if self._closed:
            raise ConnectionLost(f"[{self.peer_ip}]: connection already closed")
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), self.command_timeout)
        except TimeoutError:
            self.close()
            raise ConnectionLost(f"[{self.peer_ip}]: write timed out") from None
        except (OSError, ssl.SSLError) as e:
            self.close()
            raise ConnectionLost(f"[{self.peer_ip}]: {e}") from None

    async def _read(self) -> bytes:
        try:
            data = await asyncio.wait_for(self.reader.read(65536), self.command_timeout)
        except TimeoutError:
            self.close()
            raise ConnectionLost(
                f"[{self.peer_ip}]: no reply within {self.command_timeout:g}s"
            ) from None
        except (OSError, ssl.SSLError) as e:
            self.close()
            raise ConnectionLost(f"[{self.peer_ip}]: {e}") from None
        return data

    async def _event(self, first: bytes = b"") -> Event:
        """Write ``first``, then run the core until it has an event for the caller.
        Bytes the core queues on the way (the message after 354, a clean-up RSET) are
        written before the next read. RecipientResult notices are skipped."""
        await self.write(first)
        while True:
            try:
                event = self.conn.next_event()
            except ProtocolViolation:
                self.close()
                raise
            await self.write(self.conn.data_to_send())
            if event is NEED_DATA:
                data = await self._read()
                self.conn.receive_data(data)
                continue
            if isinstance(event, ConnectionClosed):
                self.close()
                raise ConnectionLost(f"[{self.peer_ip}]: {event.reason}")
            if not isinstance(event, RecipientResult):
                return event

    # --- session ------------------------------------------------------------------------
    async def command(self, line: str) -> ServerReply:
        """One command whose reply is returned as is (a probe's MAIL, RCPT, NOOP)."""
        event = await self._event(self.conn.command(line))
        assert isinstance(event, Replied)
        return event.reply

    async def ehlo(self, name: str) -> ServerReply:
        """EHLO, falling back to HELO when EHLO is refused as unknown (RFC 5321
        §3.2). Fills `extensions` (keyword upper-cased → parameters)."""
        event = await self._event(self.conn.ehlo(name))
        assert isinstance(event, EhloDone)
        self.ehlo_reply = event.reply
        return event.reply

    async def starttls(self, context: ssl.SSLContext, server_hostname: str | None) -> ServerReply:
        """STARTTLS (RFC 3207 §4). On 220 the handshake runs; the caller must EHLO
        again (RFC 3207 §4.2: the client discards what it knew). A refusal is
        returned; a failed handshake raises `TlsFailed` (the connection is gone)."""
        event = await self._event(self.conn.starttls())
        if isinstance(event, TlsRefused):
            return event.reply
        assert isinstance(event, TlsReady)
        try:
            await asyncio.wait_for(
                self.writer.start_tls(context, server_hostname=server_hostname),
                self.command_timeout,
            )
        except (ssl.SSLError, OSError, TimeoutError) as e:
            self.close()
            raise TlsFailed(f"[{self.peer_ip}]: TLS handshake failed: {e}") from None
        self.conn.tls_started()
        return event.reply

    async def auth(self, username: str, password: str) -> ServerReply:
        """AUTH PLAIN (RFC 4616) when offered, else LOGIN. Returns the final reply."""
        event = await self._event(self.conn.auth(username, password))
        assert isinstance(event, AuthDone)
        return event.reply

    async def send_transaction(
        self,
        sender: str,
        recipients: Sequence[Recipient],
        data: bytes,
        *,
        mail_params: str = "",
    ) -> Transaction:
        """One mail transaction (RFC 5321 §3.3); `data` is the message, not yet
        dot-stuffed. Pipelined when the peer offers PIPELINING (RFC 2920), as one
        BDAT chunk when it offers CHUNKING (RFC 3030)."""
        out = self.conn.transaction(sender, recipients, data, mail_params=mail_params)
        event = await self._event(out)
        assert isinstance(event, TransactionDone)
        return event.result

    async def rset(self) -> ServerReply:
        event = await self._event(self.conn.rset())
        assert isinstance(event, Replied)
        return event.reply

    async def quit(self) -> None:
        """QUIT politely (RFC 5321 §4.1.1.10), then close; never raises."""
        if not self.closed and self.conn.can_quit:
            with contextlib.suppress(SmtpClientError, TimeoutError):
                await asyncio.wait_for(
                    self._event(self.conn.quit()), min(self.command_timeout, 5.0)
                )
        self.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError, RuntimeError):  # closed, or the loop is ending
            self.writer.close()
