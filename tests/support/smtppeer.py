"""A scripted SMTP server for outbound tests: records every command and transaction.

`Peer` runs in the test's event loop (`await peer.start()`); `ThreadPeer` runs
one in its own thread for tests that drive a `ServerThread`. Behaviour is set by
plain attributes the test may change at any time:

- `extensions`: EHLO keywords (PIPELINING, SIZE n, DSN, SMTPUTF8, 8BITMIME, ...);
  STARTTLS is added when `tls_context` is set, AUTH PLAIN LOGIN when `logins`.
- `greeting`: the 220 line (or a 421/554 to refuse sessions).
- `rcpt_reply(address) -> str | None`: a reply line for RCPT (None = 250).
- `data_reply`: the reply line to the final dot.
- `greylist`: addresses answered "451 4.7.1 ..." the first `greylist_times` times.

Every complete transaction lands in `transactions`; `connections` counts accepted
TCP connections and `commands` keeps every command line in order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Txn:
    helo: str
    mail_from: str
    mail_params: str
    rcpts: list[str]
    rcpt_params: list[str]
    data: bytes
    tls: bool
    auth: str


@dataclass
class Peer:
    host: str = "127.0.0.1"
    port: int = 0
    name: str = "peer.test"
    extensions: list[str] = field(
        default_factory=lambda: [
            "PIPELINING",
            "SIZE 10240000",
            "8BITMIME",
            "DSN",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
        ]
    )
    greeting: str = ""
    tls_context: ssl.SSLContext | None = None
    logins: dict[str, str] = field(default_factory=dict)
    rcpt_reply: Callable[[str], str | None] = lambda _a: None
    data_reply: str = "250 2.0.0 Ok: queued as PEERQID"
    data_delay: float = 0.0  # seconds before answering the final dot
    greylist: set[str] = field(default_factory=set)
    greylist_times: int = 1
    transactions: list[Txn] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    connections: int = 0
    _seen: dict[str, int] = field(default_factory=dict)
    _server: asyncio.Server | None = None

    async def start(self) -> Peer:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self._session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        greeting = self.greeting or f"220 {self.name} ESMTP scripted"
        send(greeting)
        await writer.drain()
        if not greeting.startswith("220"):
            return
        helo, tls, auth = "", False, ""
        mail: tuple[str, str] | None = None
        rcpts: list[str] = []
        rparams: list[str] = []
        while True:
            raw = await reader.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.commands.append(line)
            verb = line.split(" ", 1)[0].upper()
            arg = line[len(verb) + 1 :]
            if verb == "EHLO":
                helo = arg
                exts = list(self.extensions)
                if self.tls_context is not None and not tls:
                    exts.append("STARTTLS")
                if self.logins:
                    exts.append("AUTH PLAIN LOGIN")
                lines = [self.name, *exts]
                for i, x in enumerate(lines):
                    send(f"250{'-' if i < len(lines) - 1 else ' '}{x}")
                mail, rcpts, rparams = None, [], []
            elif verb == "HELO":
                helo = arg
                send(f"250 {self.name}")
            elif verb == "STARTTLS" and self.tls_context is not None and not tls:
                send("220 2.0.0 Ready to start TLS")
                await writer.drain()
                await writer.start_tls(self.tls_context)
                tls = True
                mail, rcpts, rparams = None, [], []
            elif verb == "AUTH":
                parts = arg.split(" ")
                user, pw = "", ""
                if parts[0].upper() == "PLAIN" and len(parts) > 1:
                    _, user, pw = base64.b64decode(parts[1]).decode().split("\0")
                elif parts[0].upper() == "LOGIN":
                    send("334 VXNlcm5hbWU6")
                    await writer.drain()
                    user = base64.b64decode((await reader.readline()).strip()).decode()
                    send("334 UGFzc3dvcmQ6")
                    await writer.drain()
                    pw = base64.b64decode((await reader.readline()).strip()).decode()
                if self.logins.get(user) == pw and user:
                    auth = user
                    send("235 2.7.0 Authentication successful")
                else:
                    send("535 5.7.8 Authentication credentials invalid")
            elif verb == "MAIL":
                addr, _, params = arg[5:].partition(">")
                mail = (addr.lstrip("<"), params.strip())
                rcpts, rparams = [], []
                send("250 2.1.0 Ok")
            elif verb == "RCPT":
                addr, _, params = arg[3:].partition(">")
                addr = addr.lstrip("<")
                reply = self.rcpt_reply(addr)
                if reply is None and addr in self.greylist:
                    n = self._seen.get(addr, 0)
                    self._seen[addr] = n + 1
                    if n < self.greylist_times:
                        reply = "451 4.7.1 Greylisting in action, please come back later"
                if reply is None:
                    rcpts.append(addr)
                    rparams.append(params.strip())
                    reply = "250 2.1.5 Ok"
                send(reply)
                if reply.startswith("421"):
                    await writer.drain()
                    return
            elif verb == "DATA":
                if mail is None or not rcpts:
                    send("554 5.5.1 Error: no valid recipients")
                    continue
                send("354 End data with <CR><LF>.<CR><LF>")
                await writer.drain()
                chunks = []
                while True:
                    dl = await reader.readline()
                    if not dl:
                        return
                    if dl == b".\r\n":
                        break
                    chunks.append(dl[1:] if dl.startswith(b".") else dl)
                if self.data_delay:
                    await asyncio.sleep(self.data_delay)
                self.transactions.append(
                    Txn(helo, mail[0], mail[1], rcpts, rparams, b"".join(chunks), tls, auth)
                )
                send(self.data_reply)
                mail, rcpts, rparams = None, [], []
            elif verb == "RSET":
                mail, rcpts, rparams = None, [], []
                send("250 2.0.0 Ok")
            elif verb == "NOOP":
                send("250 2.0.0 Ok")
            elif verb == "QUIT":
                send("221 2.0.0 Bye")
                await writer.drain()
                return
            else:
                send("502 5.5.2 Error: command not recognized")
            await writer.drain()


class ThreadPeer:
    """A `Peer` in its own thread and loop (for tests driving a ServerThread)."""

    def __init__(self, **kw: object) -> None:
        self.peer = Peer(**kw)  # type: ignore[arg-type]
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> ThreadPeer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.peer.start(), self.loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.peer.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
