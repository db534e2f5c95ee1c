"""TCP listeners: bind, accept, count connections, and stop gracefully.

Rules:
- A listener owns its connection tasks. `stop_accepting()` closes the socket;
  `drain(timeout)` waits for the running sessions, then cancels what is left
  (a session cancelled mid-transaction has replied nothing durable-looking:
  the 250 only follows the store's commit).
- Limits on connections in total and per client address are enforced here,
  before any protocol bytes: the refusal text is the protocol's own (`busy`).
  Both count this process's connections; over PostgreSQL the per-address limit
  counts every process of every node too (`clients`: each process publishes
  its own count and adds the others' as it admits a connection; a database
  that does not answer admits, as the login limiter fails open).
- Implicit-TLS listeners (465, 993, 995) hand the session an already-TLS stream.
- With several workers the supervisor binds each listening socket once (`bind`)
  and every worker accepts on it (`Listener(sock=...)`): the kernel hands each
  connection to one of them, and a worker that dies leaves the socket, and the
  connections waiting in its backlog, to the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Protocol

from postier import metrics

log = logging.getLogger("postier.server")

_ids = count(1)


class ListenError(Exception):
    """A listener could not bind; the message is for the operator."""


def _why(e: OSError) -> str:
    return {
        errno.EADDRINUSE: "address already in use",
        errno.EACCES: "permission denied (ports below 1024 need root)",
        errno.EADDRNOTAVAIL: "address not available on this machine",
    }.get(e.errno or 0, e.strerror or str(e))


def bind(name: str, address: str, port: int, backlog: int = 512) -> socket.socket:
    """A listening socket as `Listener.start` would make it (SO_REUSEADDR, IPv6
    only for an IPv6 address), for processes that accept on it later."""
    try:
        family, kind, proto, _, where = socket.getaddrinfo(
            address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise ListenError(
            f"listeners.{name}: cannot listen on {address} port {port}: {_why(e)}"
        ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(where)
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise ListenError(
            f"listeners.{name}: cannot listen on {address} port {port}: {_why(e)}"
        ) from None
    sock.setblocking(False)
    return sock


@dataclass
class Connection:
    """One accepted client, as the protocol adapters see it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    listener: str  # "mx", "submission", "imap", ...
    peer_ip: str
    peer_port: int
    local_ip: str
    local_port: int
    tls: bool  # implicit TLS already negotiated
    sid: str = field(default_factory=lambda: f"{next(_ids):x}")

    @property
    def is_loopback(self) -> bool:
        return self.peer_ip.startswith("127.") or self.peer_ip in ("::1", "::ffff:127.0.0.1")

    def tls_info(self) -> tuple[str, str] | None:
        """(version, cipher) when the stream is TLS."""
        obj = self.writer.get_extra_info("ssl_object")
        if obj is None:
            return None
        cipher = obj.cipher()
        return (obj.version() or "TLS", cipher[0] if cipher else "")


Handler = Callable[[Connection], Awaitable[None]]


class ClientCounts(Protocol):
    """Connections per client address across processes (`store.postgres.shared`)."""

    async def count_clients(self, listener: str, ip: str, mine: int) -> int:
        """Publish `mine`, this process's connections of `ip` on `listener`;
        returns the other processes' number."""
        ...


class Listener:
    def __init__(
        self,
        name: str,
        address: str,
        port: int,
        handler: Handler,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 1000,
        max_per_ip: int = 50,
        busy: bytes = b"",
        sock: socket.socket | None = None,
        clients: ClientCounts | None = None,
    ) -> None:
        self.name = name
        #: a socket bound by the supervisor (`bind`), shared with other workers
        self._sock = sock
        self.address = address
        self.port = port
        self._handler = handler
        self._ssl = ssl_context
        self._max = max_connections
        self._max_per_ip = max_per_ip
        self._busy = busy
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._per_ip: Counter[str] = Counter()
        self._open = metrics.SESSIONS_OPEN.labels(name)  # every worker's, summed
        self._clients = clients
        self._publishing: dict[str, asyncio.Task[None]] = {}

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        try:
            if self._sock is not None:
                self._server = await asyncio.start_server(
                    self._accept,
                    sock=self._sock,
                    ssl=self._ssl,
                    backlog=512,
                    ssl_handshake_timeout=30 if self._ssl else None,
                )
            else:
                self._server = await asyncio.start_server(
                    self._accept,
                    self.address,
                    self.port,
                    ssl=self._ssl,
                    reuse_address=True,
                    backlog=512,
                    ssl_handshake_timeout=30 if self._ssl else None,
                )
        except OSError as e:
            raise ListenError(
                f"listeners.{self.name}: cannot listen on {self.address} port {self.port}: "
                f"{_why(e)}"
            ) from None
        for sock in self._server.sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        local = writer.get_extra_info("sockname") or ("?", 0)
        ip = str(peer[0])
        if ip.startswith("::ffff:"):
            ip = ip[7:]
        if len(self._tasks) >= self._max or self._per_ip[ip] >= self._max_per_ip:
            await self._refuse(writer, ip)
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._per_ip[ip] += 1
        self._open.inc()
        try:
            if self._clients is not None and not await self._admitted(ip):
                await self._refuse(writer, ip)
                return
            conn = Connection(
                reader,
                writer,
                self.name,
                ip,
                int(peer[1]),
                str(local[0]),
                int(local[1]),
                tls=self._ssl is not None,
            )
            await self._handler(conn)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("session crashed listener=%s sid=%s client=%s", self.name, conn.sid, ip)
        finally:
            self._open.dec()
            self._tasks.discard(task)
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]
            if self._clients is not None:
                self._publish(ip)
            with contextlib.suppress(Exception):
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), 5)

    async def _refuse(self, writer: asyncio.StreamWriter, ip: str) -> None:
        log.warning("refused connection listener=%s client=%s: too many connections", self.name, ip)
        with contextlib.suppress(Exception):
            if self._busy:
                writer.write(self._busy)
                await asyncio.wait_for(writer.drain(), 5)
            writer.close()

    async def _admitted(self, ip: str) -> bool:
        """This connection (already counted here) keeps the address within the
        limit of every process together."""
        assert self._clients is not None
        try:
            others = await self._clients.count_clients(self.name, ip, self._per_ip[ip])
        except Exception:
            log.exception("listener %s: cannot count connections across nodes; admitted", self.name)
            return True
        return others + self._per_ip[ip] <= self._max_per_ip

    def _publish(self, ip: str) -> None:
        """This process's count for `ip` after a connection ended, in the
        background: one task per address writes until the count it wrote is
        the current one, so writes of one address never overtake each other."""
        if ip not in self._publishing:
            task = asyncio.get_running_loop().create_task(self._publish_until_current(ip))
            self._publishing[ip] = task

    async def _publish_until_current(self, ip: str) -> None:
        assert self._clients is not None
        sent = -1
        try:
            while (mine := self._per_ip.get(ip, 0)) != sent:
                await self._clients.count_clients(self.name, ip, mine)
                sent = mine
        except Exception:
            log.warning("listener %s: cannot publish the connections of %s", self.name, ip)
        finally:
            # no await since the last look: a later change starts a new task
            del self._publishing[ip]

    @property
    def active(self) -> int:
        return len(self._tasks)

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 - a grace period, not an I/O timeout
        """Let running sessions finish for `timeout` seconds, then cancel them."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
