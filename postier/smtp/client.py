"""The outbound SMTP client: one connection to one remote host, driven by the queue.

What it owns: the client side of RFC 5321 as the queue runner needs it —
greeting, EHLO (HELO fallback), STARTTLS (RFC 3207), AUTH PLAIN/LOGIN for a
smarthost (RFC 4954), one transaction at a time with PIPELINING (RFC 2920) when
offered, RSET between transactions on a reused connection, QUIT. It returns every
reply it got, per recipient; deciding what a reply means for the queue (retry,
bounce, next MX) is the runner's business.

Rules:
- `ReplyParser` is sans-IO: bytes in, complete `ServerReply` objects out. A reply
  line longer than `max_line_length` or a reply with more than `max_lines` lines
  is a `ProtocolViolation` (the peer is broken), never unbounded buffering.
- Every read has `command_timeout`; the TCP connect (and implicit TLS handshake)
  has `connect_timeout`. A timeout, a reset or EOF is `ConnectionLost` — a
  temporary failure for whatever was in progress (RFC 5321 §4.5.3.2).
- Pipelining (RFC 2920 §3.1): MAIL, every RCPT and DATA go out in one write and
  the replies are read in order. If every RCPT was refused but DATA got 354 we
  send an empty message (just ``.``), as §3.1 requires, and ignore the reply.
- Message data is dot-stuffed (RFC 5321 §4.5.2) and always ends in CRLF before
  the final ``.``. The caller hands over the exact bytes to send (Return-Path:
  already stripped, DKIM header on top).
- After a 421 at any point the connection is unusable (RFC 5321 §3.8): the reply
  is returned and `closed` is set.

Why hand-written rather than aiosmtplib: aiosmtplib does not pipeline, reports
recipient refusals only as an exception for the all-refused case, and hides the
per-command replies the queue must record verbatim for DSNs and `postier trace`.
The protocol surface needed here is small (about 300 lines) and fully tested
against scripted peers and a real Postfix.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

# RFC 3463 §2: status-code = class "." subject "." detail
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")


class SmtpClientError(Exception):
    """Base of the client's failures; the message is fit for a log, DSN or trace."""


class ConnectionLost(SmtpClientError):
    """Connect failed, timed out, or the peer closed or reset the connection."""


class ProtocolViolation(SmtpClientError):
    """The peer sent something that is not an SMTP reply."""


class TlsFailed(SmtpClientError):
    """The TLS handshake after STARTTLS (or for implicit TLS) failed."""


@dataclass(frozen=True)
class ServerReply:
    """One complete reply from the peer. `lines` are without code and separator."""

    code: int
    lines: tuple[str, ...]

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 status code of the first line, when its class matches `code`."""
        m = _ENHANCED.match(self.lines[0] if self.lines else "")
        if m and m.group(1) == str(self.code)[0]:
            return f"{m.group(1)}.{m.group(2)}.{m.group(3)}"
        return None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 300

    @property
    def is_temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return 500 <= self.code < 600

    def status(self, default: str) -> str:
        """The enhanced status, else `default` with the reply's class put in front
        (RFC 3463 §2: "4.x.x" for a 4yz reply)."""
        if self.enhanced:
            return self.enhanced
        klass = str(self.code)[0] if self.code >= 200 else "4"
        return f"{klass}{default[1:]}"

    def __str__(self) -> str:
        """The reply as one line: "550 5.1.1 <x@y>: unknown; second line"."""
        text = "; ".join(line for line in self.lines if line)
        return f"{self.code} {text}" if text else str(self.code)


class ReplyParser:
    """Sans-IO: `feed(bytes)` returns the replies completed by those bytes.

    RFC 5321 §4.2: ``Reply-line = *( Reply-code "-" [ textstring ] CRLF )
    Reply-code [ SP textstring ] CRLF``. A bare LF ends a line too (robustness);
    every line of a multi-line reply must carry the same code.
    """

    def __init__(self, *, max_line_length: int = 4096, max_lines: int = 200) -> None:
        self.max_line_length = max_line_length
        self.max_lines = max_lines
        self._buf = b""
        self._lines: list[str] = []
        self._code: int | None = None

    def feed(self, data: bytes) -> list[ServerReply]:
        self._buf += data
        out: list[ServerReply] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self.max_line_length:
                    raise ProtocolViolation(f"reply line longer than {self.max_line_length} octets")
                return out
            raw, self._buf = self._buf[:nl], self._buf[nl + 1 :]
            if len(raw) > self.max_line_length:
                raise ProtocolViolation(f"reply line longer than {self.max_line_length} octets")
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3] not in " -"):
                raise ProtocolViolation(f"not an SMTP reply line: {line[:80]!r}")
            code = int(line[:3])
            if not 200 <= code < 600:  # RFC 5321 §4.2.1: 2yz..5yz
                raise ProtocolViolation(f"reply code out of range: {line[:80]!r}")
            if self._code is not None and code != self._code:
                raise ProtocolViolation(
                    f"reply code changed inside a multi-line reply: {self._code} then {code}"
                )
            self._code = code
            self._lines.append(line[4:])
            if len(self._lines) > self.max_lines:
                raise ProtocolViolation(f"reply longer than {self.max_lines} lines")
            if len(line) == 3 or line[3] == " ":
                out.append(ServerReply(code, tuple(self._lines)))
                self._lines = []
                self._code = None


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 §4.5.2: a line starting with "." gets another; the data ends in
    CRLF and is followed by the terminating ".CRLF"."""
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def xtext(value: str) -> str:
    """RFC 3461 §4: xtext encoding of ENVID and ORCPT values ("+" and "=" and
    anything outside "!".."~" become "+XX")."""
    out = []
    for b in value.encode("utf-8"):
        if 33 <= b <= 126 and b not in (ord("+"), ord("=")):
            out.append(chr(b))
        else:
            out.append(f"+{b:02X}")
    return "".join(out)


@dataclass(frozen=True)
class Recipient:
    address: str
    params: str = ""  # already formatted: "NOTIFY=FAILURE ORCPT=rfc822;x@y"


@dataclass(frozen=True)
class Transaction:
    """The replies of one mail transaction. `rcpts` has one entry per recipient
    (None when never sent because MAIL failed); `data` is None when DATA was not
    reached or no recipient was accepted."""

    mail: ServerReply
    rcpts: tuple[ServerReply | None, ...]
    data: ServerReply | None = None
    data_command: ServerReply | None = None  # the reply to DATA itself (354 or not)


@dataclass
class SmtpClient:
    """One connection. Create with `connect()`; `closed` once unusable."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer_ip: str
    command_timeout: float
    parser: ReplyParser
    greeting: ServerReply | None = None
    ehlo_reply: ServerReply | None = None
    extensions: dict[str, str] = field(default_factory=dict)
    tls: bool = False
    closed: bool = False
    transactions: int = 0  # completed on this connection (reuse accounting)
    _pending: list[ServerReply] = field(default_factory=list)

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
        client = cls(
            reader,
            writer,
            ip,
            command_timeout,
            ReplyParser(max_line_length=max_line_length, max_lines=max_lines),
            tls=implicit_tls is not None,
        )
        try:
            client.greeting = await client.read_reply()
        except SmtpClientError:
            client.close()
            raise
        return client

    # --- reading and writing -------------------------------------------------
    async def read_reply(self) -> ServerReply:
        while not self._pending:
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
            if not data:
                self.close()
                raise ConnectionLost(f"[{self.peer_ip}]: connection closed by the peer")
            try:
                self._pending.extend(self.parser.feed(data))
            except ProtocolViolation:
                self.close()
                raise
        reply = self._pending.pop(0)
        if reply.code == 421:  # RFC 5321 §3.8: the server is closing the channel
            self.closed = True
        return reply

    async def write(self, data: bytes) -> None:
        if self.closed:
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

    async def command(self, line: str) -> ServerReply:
        await self.write(line.encode("utf-8") + b"\r\n")
        return await self.read_reply()

    # --- session -------------------------------------------------------------
    async def ehlo(self, name: str) -> ServerReply:
        """EHLO, falling back to HELO when EHLO is refused with 5xx (RFC 5321
        §3.2). Fills `extensions` (keyword upper-cased → parameters)."""
        reply = await self.command(f"EHLO {name}")
        if reply.is_permanent and reply.code in (500, 502, 504, 550):
            reply = await self.command(f"HELO {name}")
            self.extensions = {}
        elif reply.is_success:
            # RFC 5321 §4.1.1.1: first line is the greeting, the rest ehlo-lines
            exts: dict[str, str] = {}
            for line in reply.lines[1:]:
                keyword, _, params = line.strip().partition(" ")
                if keyword:
                    exts[keyword.upper()] = params.strip()
            self.extensions = exts
        self.ehlo_reply = reply
        return reply

    def has(self, extension: str) -> bool:
        return extension.upper() in self.extensions

    @property
    def max_size(self) -> int:
        """RFC 1870: the SIZE the peer announced (0 = no limit or not announced)."""
        value = self.extensions.get("SIZE", "")
        return int(value) if value.isdigit() else 0

    @property
    def auth_mechanisms(self) -> frozenset[str]:
        return frozenset(self.extensions.get("AUTH", "").upper().split())

    async def starttls(self, context: ssl.SSLContext, server_hostname: str | None) -> ServerReply:
        """STARTTLS (RFC 3207 §4). On 220 the handshake runs; the caller must EHLO
        again (RFC 3207 §4.2: the client discards what it knew). A refusal is
        returned; a failed handshake raises `TlsFailed` (the connection is gone)."""
        reply = await self.command("STARTTLS")
        if reply.code != 220:
            return reply
        if self._pending or self.parser._buf:
            # RFC 3207 §5 / CVE-2011-0411 class: nothing may follow the 220 in clear
            self.close()
            raise ProtocolViolation("data after the STARTTLS 220 reply (injection attempt?)")
        try:
            await asyncio.wait_for(
                self.writer.start_tls(context, server_hostname=server_hostname),
                self.command_timeout,
            )
        except (ssl.SSLError, OSError, TimeoutError) as e:
            self.close()
            raise TlsFailed(f"[{self.peer_ip}]: TLS handshake failed: {e}") from None
        self.tls = True
        self.extensions = {}
        return reply

    async def auth(self, username: str, password: str) -> ServerReply:
        """AUTH PLAIN (RFC 4616) when offered, else LOGIN. Returns the final reply."""
        mechs = self.auth_mechanisms
        if "PLAIN" in mechs or not mechs:
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
            return await self.command(f"AUTH PLAIN {token}")  # RFC 4954 §4 initial response
        reply = await self.command("AUTH LOGIN")
        for value in (username, password):
            if reply.code != 334:
                return reply
            reply = await self.command(base64.b64encode(value.encode()).decode())
        return reply

    async def send_transaction(
        self,
        sender: str,
        recipients: Sequence[Recipient],
        data: bytes,
        *,
        mail_params: str = "",
    ) -> Transaction:
        """One mail transaction (RFC 5321 §3.3); `data` is the message, not yet
        dot-stuffed. Pipelined when the peer offers PIPELINING (RFC 2920)."""
        mail = f"MAIL FROM:<{sender}>" + (f" {mail_params}" if mail_params else "")
        rcpt_lines = [
            f"RCPT TO:<{r.address}>" + (f" {r.params}" if r.params else "") for r in recipients
        ]
        if self.has("PIPELINING"):
            # RFC 2920 §3.1: MAIL, RCPTs and DATA may go in one group
            await self.write("".join(f"{c}\r\n" for c in [mail, *rcpt_lines, "DATA"]).encode())
            mail_reply = await self.read_reply()
            rcpt_replies = [await self.read_reply() for _ in rcpt_lines]
            data_cmd = await self.read_reply()
            if not mail_reply.is_success or not any(r.is_success for r in rcpt_replies):
                if data_cmd.code == 354:
                    # RFC 2920 §3.1: DATA was accepted regardless; end it empty
                    await self.write(b".\r\n")
                    await self.read_reply()
                result = Transaction(mail_reply, tuple(rcpt_replies), None, data_cmd)
                return await self._after_failed(result, mail_reply.is_success)
        else:
            mail_reply = await self.command(mail)
            if not mail_reply.is_success:
                return await self._after_failed(
                    Transaction(mail_reply, tuple(None for _ in rcpt_lines)), False
                )
            rcpt_replies = []
            for line in rcpt_lines:
                rcpt_replies.append(await self.command(line))
                if self.closed:
                    break
            while len(rcpt_replies) < len(rcpt_lines):
                rcpt_replies.append(rcpt_replies[-1])  # a 421 applies to the rest
            if not any(r.is_success for r in rcpt_replies):
                return await self._after_failed(Transaction(mail_reply, tuple(rcpt_replies)), True)
            data_cmd = await self.command("DATA")
        if data_cmd.code != 354:
            return await self._after_failed(
                Transaction(mail_reply, tuple(rcpt_replies), None, data_cmd), True
            )
        await self.write(dot_stuff(data))
        final = await self.read_reply()
        self.transactions += 1
        return Transaction(mail_reply, tuple(rcpt_replies), final, data_cmd)

    async def _after_failed(self, result: Transaction, started: bool) -> Transaction:
        """RFC 5321 §4.1.1.5: reset a half-done transaction so the connection
        can be reused; a failure here just closes it."""
        if started and not self.closed:
            try:
                reply = await self.command("RSET")
                if not reply.is_success:
                    self.close()
            except SmtpClientError:
                self.close()
        return result

    async def rset(self) -> ServerReply:
        return await self.command("RSET")

    async def quit(self) -> None:
        """QUIT politely (RFC 5321 §4.1.1.10), then close; never raises."""
        if not self.closed:
            with contextlib.suppress(SmtpClientError, TimeoutError):
                await asyncio.wait_for(self.command("QUIT"), min(self.command_timeout, 5.0))
        self.close()

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError, RuntimeError):  # closed, or the loop is ending
            self.writer.close()
