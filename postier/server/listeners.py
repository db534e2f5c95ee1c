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
- A listener given a `load` (IMAP and POP3: `app.SPREAD`) spreads its
  connections over the workers by their number (`WorkerLoad`): the kernel wakes
  every worker for a waiting connection and the loop's server accepts every
  waiting one, so the worker that happened to wake first took a whole burst (ten
  POP3 clients connecting together all went to one worker while the other
  idled). Such a listener accepts itself, one connection per wake-up; a worker
  with more open connections than the least busy one steps aside for `DEFER`
  seconds and takes the connection only if no other worker did meanwhile (one
  that is busy, stopped or gone). Other listeners use the loop's own server,
  which costs less per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import mmap
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

#: seconds a worker with more connections than another leaves a waiting
#: connection to the others before it takes it itself
DEFER = 0.005
#: errors of accept() that say this process is out of something; asyncio waits
#: this long before it accepts again, and so do we
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
EXHAUSTED_PAUSE = 1.0
#: the count of a worker that is not running: more than any worker has
_ABSENT = 1 << 62
#: how far a StreamReader buffers before it stops reading (asyncio's default)
_STREAM_LIMIT = 64 * 1024


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


class WorkerLoad:
    """The open connections of every worker, in memory they all share: an
    anonymous shared mapping the supervisor makes before it forks them. Each
    worker writes its own slot only (from its event loop), and reads the others'
    without a lock: an aligned 8-byte store is atomic, and a count read a moment
    late only makes a worker step aside once too often or too few."""

    def __init__(self, workers: int) -> None:
        self._map = mmap.mmap(-1, 8 * workers)  # MAP_SHARED: fork keeps it shared
        self._counts = memoryview(self._map).cast("q")

    def clear(self, index: int) -> None:
        """Worker `index` starts: it has no connection yet."""
        self._counts[index] = 0

    def gone(self, index: int) -> None:
        """Worker `index` died (the supervisor reaped it): its connections went
        with it, and until its successor starts (`clear`) nobody steps aside for it."""
        self._counts[index] = _ABSENT

    def slot(self, index: int) -> WorkerSlot:
        return WorkerSlot(self._counts, index)


class WorkerSlot:
    """One worker's view of `WorkerLoad`: its own count and the others'."""

    __slots__ = ("_counts", "_index")

    def __init__(self, counts: memoryview, index: int) -> None:
        self._counts = counts
        self._index = index

    def add(self, n: int) -> None:
        self._counts[self._index] += n

    @property
    def open(self) -> int:
        return int(self._counts[self._index])

    def busier(self) -> bool:
        """True when another worker has clearly fewer connections: fewer by more
        than a sixteenth of this worker's, or by one while it has fewer than
        sixteen (thousands of idle IMAP clients need not be spread to the unit)."""
        counts, me = self._counts, self._index
        mine = counts[me]
        bar = mine - (mine >> 4)
        return any(c < bar for i, c in enumerate(counts) if i != me)


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
        load: WorkerSlot | None = None,
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
        self._tasks: set[asyncio.Task[None]] = set()
        self._per_ip: Counter[str] = Counter()
        self._open = metrics.SESSIONS_OPEN.labels(name)  # every worker's, summed
        self._clients = clients
        self._publishing: dict[str, asyncio.Task[None]] = {}
        #: the loop's own server (asyncio.start_server), when no `load` is given
        self._server: asyncio.base_events.Server | None = None
        #: this worker's place among the others sharing `sock`: given, this
        #: listener accepts itself, to spread connections (else the loop's server)
        self._load = load
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = False  # the socket is in the loop's reader set
        self._patient = True  # False: the next wake-up accepts without stepping aside
        self._resume: asyncio.TimerHandle | None = None

    @property
    def bound_port(self) -> int:
        sock = self._sock if self._server is None else self._server.sockets[0]
        assert sock is not None
        port: int = sock.getsockname()[1]
        return port

    async def start(self) -> None:
        if self._load is not None:  # a socket shared with other workers
            assert self._sock is not None
            with contextlib.suppress(OSError):  # accepted sockets inherit it
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._loop = asyncio.get_running_loop()
            self._listen()
            return
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

    # --- accepting, spread over the workers (see the module rules) ------------
    def _listen(self) -> None:
        self._resume = None
        if self._sock is not None and self._loop is not None and not self._accepting:
            self._loop.add_reader(self._sock.fileno(), self._readable)
            self._accepting = True

    def _pause(self, seconds: float) -> None:
        assert self._loop is not None
        assert self._sock is not None
        self._loop.remove_reader(self._sock.fileno())
        self._accepting = False
        self._patient = False
        self._resume = self._loop.call_later(seconds, self._listen)

    def _readable(self) -> None:
        """A connection waits: take one, unless another worker has clearly fewer."""
        assert self._loop is not None
        assert self._sock is not None
        assert self._load is not None
        if self._patient and self._load.busier():
            self._pause(DEFER)
            return
        self._patient = True
        try:
            sock, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client left
        except OSError as e:
            if e.errno in _EXHAUSTED:
                log.error(
                    "listener %s: cannot accept: %s; trying again in %gs",
                    self.name,
                    e.strerror or e,
                    EXHAUSTED_PAUSE,
                )
                self._pause(EXHAUSTED_PAUSE)
            else:
                log.warning("listener %s: accept failed: %s", self.name, e)
            return
        self._load.add(1)
        task = self._loop.create_task(self._serve(sock))
        self._tasks.add(task)

    async def _serve(self, sock: socket.socket) -> None:
        """A connection `_readable` accepted: its TLS handshake (implicit TLS),
        then its session, in this one task."""
        task = asyncio.current_task()
        assert task is not None
        assert self._loop is not None
        assert self._load is not None
        try:
            reader = asyncio.StreamReader(limit=_STREAM_LIMIT, loop=self._loop)
            writers: list[asyncio.StreamWriter] = []
            # the callback marks the stream as the server's side (StreamWriter.
            # start_tls asks) and hands over the writer; the session runs here
            protocol = asyncio.StreamReaderProtocol(reader, lambda _, w: writers.append(w))
            try:
                await self._loop.connect_accepted_socket(
                    lambda: protocol,
                    sock,
                    ssl=self._ssl,
                    ssl_handshake_timeout=30 if self._ssl else None,
                )
            except (OSError, TimeoutError, EOFError) as e:  # ssl.SSLError is an OSError
                log.debug("listener %s: connection dropped before its session: %r", self.name, e)
                sock.close()  # a no-op once the transport closed it
                return
            except asyncio.CancelledError:  # stopping during a TLS handshake
                sock.close()
                raise
            await self._session(reader, writers[0])
        finally:
            self._tasks.discard(task)
            self._load.add(-1)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A connection the loop's own server accepted (a socket of this process alone)."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._session(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        local = writer.get_extra_info("sockname") or ("?", 0)
        ip = str(peer[0])
        if ip.startswith("::ffff:"):
            ip = ip[7:]
        # the connection's own task is already counted in _tasks
        if len(self._tasks) > self._max or self._per_ip[ip] >= self._max_per_ip:
            await self._refuse(writer, ip)
            return
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
        """Close this process's listening socket (other workers keep theirs)."""
        if self._server is not None:
            self._server.close()
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self._load is not None and self._sock is not None:
            if self._accepting and self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
                self._accepting = False
            self._sock.close()

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
