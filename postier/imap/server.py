"""The IMAP asyncio adapter: moves bytes between the socket and the sans-IO
`Receiver`, parses commands, runs them through `commands.dispatch`, and drives
STARTTLS, AUTHENTICATE continuations, IDLE, timeouts and shutdown.

Rules:
- Commands run one at a time in arrival order; pipelined commands are read from the
  receiver's buffer without waiting. Output is flushed whenever the receiver needs
  more input, and during large responses when the socket buffer passes
  `HIGH_WATER` (backpressure).
- Synchronising literals get ``+ Ready`` only when acceptable: before login, a
  literal above `imap.max_unauth_literal` is refused (RFC 9051 §11.3: protect the
  server from unauthenticated clients); above `imap.max_literal_size` the receiver
  refuses it with ``NO [TOOBIG]`` (APPENDLIMIT, RFC 7889). Memory per connection
  and literal bytes per user are bounded as `postier.imap.literals` says: outside
  APPEND a command's literals and text share `imap.max_line_length` (``NO
  [TOOBIG]``); large APPEND literals are spooled to files; a user's APPEND bytes in
  flight stay within `imap.user_literal_budget` (``NO [LIMIT]``). A refused
  non-synchronising literal is answered ``BAD`` at once and thrown away as it
  arrives (RFC 7888 §4).
- STARTTLS: the tagged OK is flushed, then the handshake; bytes the client pipelined
  after STARTTLS are thrown away with the old receiver (RFC 9051 §6.2.1, the
  CVE-2011-0411 class of injection).
- Timers, each ending in ``* BYE`` and close: silent for `imap.idle_timeout` (also
  while idling; RFC 9051 §5.4); not logged in `imap.login_timeout` after connecting
  (idle sockets must not hold the per-address connection limit); one command with
  its literals not received within `imap.command_timeout` of its first byte, plus
  what `imap.min_data_rate` earns (a client trickling a byte a second; see
  `postier.deadline`). On server shutdown every session gets ``* BYE``.
- IDLE waits on the socket and the user's change feed at once; a feed event for the
  selected mailbox is announced at once.
- After NOTIFY SET (RFC 5465) the session waits on the feed too whenever no command
  is partly received, and announces what NOTIFY asked for as it happens
  (`Notifier.between_commands`). The autologout timer keeps counting client
  silence; output the client does not read for that long ends the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import replace
from typing import TYPE_CHECKING

from postier import metrics
from postier.deadline import Deadline
from postier.imap import responses as r
from postier.imap.commands import dispatch
from postier.imap.commands.context import Context, Result, bad, ok
from postier.imap.errors import ParseError
from postier.imap.literals import LiteralBudget, LiteralFile
from postier.imap.parse import parse_command
from postier.imap.receiver import (
    NEED_DATA,
    BadInput,
    ConnectionClosed,
    Event,
    IdleDone,
    LiteralChunk,
    NeedLiteral,
    RawCommand,
    Receiver,
)
from postier.imap.session import RecentClaims, Session, State
from postier.store.errors import StoreError
from postier.store.feed import SubscriptionClosed
from postier.store.models import Change

if TYPE_CHECKING:
    from postier.server.app import App
    from postier.server.listeners import Connection, Handler

log = logging.getLogger("postier.imap")

READ_SIZE = 64 * 1024
#: flush output during a command once this much is queued
HIGH_WATER = 256 * 1024
#: after a feed event in IDLE, wait this long for more before reading the store
IDLE_BATCH = 0.02

# the BYE texts of the timers (Dovecot's wording for the login timeout)
BYE_IDLE = "Autologout: idle for too long"
BYE_LOGIN = "Disconnected for inactivity."
BYE_COMMAND = "Autologout; command too slow"


def make_handler(app: App, name: str) -> Handler:
    recent = app.recent  # one per process (a file every worker shares, with several)
    budget = app.literal_budget  # one per process, shared by imap and imaps

    async def handle(conn: Connection) -> None:
        await ImapConnection(app, conn, recent, budget).run()

    return handle


class ImapConnection(Context):
    def __init__(
        self, app: App, conn: Connection, recent: RecentClaims, budget: LiteralBudget
    ) -> None:
        session = Session(sid=conn.sid, tls=conn.tls)
        plaintext_ok = conn.is_loopback or app.settings.tls.allow_plaintext_auth
        super().__init__(
            app.store,
            app.settings,
            app.auth,
            session,
            recent,
            peer_ip=conn.peer_ip,
            plaintext_ok=plaintext_ok,
        )
        self.app = app
        self.conn = conn
        self.receiver = self._new_receiver()
        self._read_task: asyncio.Task[bytes] | None = None
        self._stop_task: asyncio.Task[bool] | None = None
        s = self.settings.imap
        now = asyncio.get_running_loop().time()
        self._login_by = now + s.login_timeout
        self._command_clock = Deadline(s.command_timeout, s.min_data_rate)
        self._command_mark = 0  # receiver.commands_ended when the clock started
        self._last_read = now
        # the command being received: its spooled literals and its budget charge
        self._budget = budget
        self._spooled: list[LiteralFile] = []
        self._charged = 0

    def _new_receiver(self) -> Receiver:
        s = self.settings.imap
        return Receiver(max_line_length=s.max_line_length, max_literal_size=s.max_literal_size)

    # --- I/O primitives --------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.conn.writer.write(data)

    async def drain(self) -> None:
        await self.conn.writer.drain()

    async def maybe_drain(self) -> None:
        if self.conn.writer.transport.get_write_buffer_size() > HIGH_WATER:
            await self.conn.writer.drain()

    def _reading(self) -> asyncio.Task[bytes]:
        if self._read_task is None:
            self._read_task = asyncio.ensure_future(self.conn.reader.read(READ_SIZE))
        return self._read_task

    def _stopping(self) -> asyncio.Task[bool]:
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self.app.stopping.wait())
        return self._stop_task

    def _on_stopping(self) -> None:
        """The server is stopping: end a plain read at once (IDLE has its own wait)."""
        if self._read_task is None:
            self.conn.reader.feed_eof()

    def _read_limit(self) -> tuple[float, str]:
        """How long the next read may wait, and the BYE text when that runs out."""
        now = asyncio.get_running_loop().time()
        limit, why = self.settings.imap.idle_timeout, BYE_IDLE
        if self.session.state is State.NOT_AUTHENTICATED and self._login_by - now < limit:
            limit, why = self._login_by - now, BYE_LOGIN
        rcv, clock = self.receiver, self._command_clock
        if not rcv.in_command:
            clock.stop()
        elif not clock.running or rcv.commands_ended != self._command_mark:
            # a new command: its first bytes came with the last read
            clock.start(self._last_read)
            self._command_mark = rcv.commands_ended
        if clock.left(now) < limit:
            limit, why = clock.left(now), BYE_COMMAND
        return limit, why

    async def _fill(self, *, notify: bool = False) -> bool:
        """Flush output, then feed the receiver the client's next bytes (announcing
        NOTIFY events meanwhile when `notify`); False when the session ends: a
        timer ran out or the server stops (the BYE is queued), or a notification
        ended it."""
        await self.drain()
        limit, why = self._read_limit()
        if notify and self.notifier is not None and self.receiver.between_commands:
            data = await self._notify_wait(limit)
        else:
            data = await self._read(limit)
        if data is None:
            self._goodbye(why)
            return False
        if self._ended():
            return False  # a notification ended the session (BYE sent)
        self._last_read = asyncio.get_running_loop().time()
        self._command_clock.received(len(data))
        self.receiver.receive_data(data)
        return True

    async def _read(self, limit: float) -> bytes | None:
        """Bytes from the client (b"" at EOF); None on timeout or server shutdown.

        The common case reads directly under a timeout, with no task per read;
        shutdown wakes it through `_on_stopping`. A read left pending by IDLE is
        awaited as it is."""
        if limit <= 0:
            return None
        if self._read_task is None:
            if self.app.stopping.is_set():
                return None
            try:
                async with asyncio.timeout(limit):
                    data = await self.conn.reader.read(READ_SIZE)
            except TimeoutError:
                return None
            if not data and self.app.stopping.is_set():
                return None
            return data
        read = self._reading()
        done, _ = await asyncio.wait(
            {read, self._stopping()}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
        )
        if read in done:
            self._read_task = None
            return read.result()
        return None

    def _goodbye(self, why: str = BYE_IDLE) -> None:
        if self.app.stopping.is_set():
            self.send(r.bye("Server shutting down", r.UNAVAILABLE))
        else:
            log.info("sid=%s %s", self.session.sid, why)
            self.send(r.bye(why))
        self.session.state = State.LOGOUT

    async def next_event(self) -> Event:
        while True:
            ev = self.receiver.next()
            if ev is not NEED_DATA:
                return ev
            if not await self._fill():
                return ConnectionClosed()

    def receiver_expect_continuation(self, tag: str) -> None:
        self.receiver.expect_continuation(tag)

    async def start_tls(self) -> bool:
        try:
            await self.conn.writer.start_tls(self.app.tls_context)
        except (OSError, ConnectionError, ssl.SSLError) as e:
            log.info("sid=%s TLS handshake failed: %s", self.session.sid, e)
            return False
        self.session.tls = True
        self.receiver = self._new_receiver()  # drop anything pipelined in plaintext
        log.info("sid=%s TLS started %s", self.session.sid, self.conn.tls_info())
        return True

    # --- the session loop ------------------------------------------------------------
    async def run(self) -> None:
        log.info(
            "sid=%s connect client=%s listener=%s",
            self.session.sid,
            self.conn.peer_ip,
            self.conn.listener,
        )
        metrics.CONNECTIONS.labels(self.conn.listener).inc()
        self.app.stopping_hooks.add(self._on_stopping)
        try:
            greeting = f"{self.settings.server.hostname} IMAP4rev2 server ready"
            self.send(r.untagged_status("OK", greeting, r.code_capability(self.capabilities())))
            await self._loop()
            with contextlib.suppress(ConnectionError, OSError):
                await self.drain()
        finally:
            self.app.stopping_hooks.discard(self._on_stopping)
            self._command_done()
            self.close()
            for task in (self._read_task, self._stop_task):
                if task is not None:
                    task.cancel()
            log.info("sid=%s disconnect", self.session.sid)
            # close here rather than leave it to the listener, so the transport is
            # gone before a shutdown that follows at once stops the loop
            self.conn.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.conn.writer.wait_closed(), 1)

    async def _loop(self) -> None:
        while self.session.state is not State.LOGOUT:
            ev = self.receiver.next()
            if ev is NEED_DATA:
                if not await self._fill(notify=True):
                    return
            elif isinstance(ev, LiteralChunk):
                self._spooled[-1].write(ev.data)
            elif isinstance(ev, RawCommand):
                try:
                    await self._command(ev)
                finally:
                    self._command_done()
            elif isinstance(ev, NeedLiteral):
                self._literal(ev)
            elif isinstance(ev, BadInput):
                self._command_done()
                self.send(ev.response())
                if ev.fatal:
                    return
                self.count_bad()
            elif isinstance(ev, ConnectionClosed):
                return
            # ContinuationLine / IdleDone only arrive in modes a handler is waiting in

    def _literal(self, ev: NeedLiteral) -> None:
        """Accept (``+ Ready``, or nothing for LITERAL+), spool, or refuse the literal
        just announced; see the module's rules."""
        s, user = self.settings.imap, self.session.user
        if user is None and ev.size > s.max_unauth_literal:  # RFC 9051 §11.3
            self._refuse_literal(ev, "Literal too large before authentication", r.TOOBIG)
            return
        if user is not None and ev.command == "APPEND":
            if not self._budget.charge(user.id, ev.size):
                log.info(
                    "sid=%s literal of %d refused: %d in flight for user=%s",
                    self.session.sid,
                    ev.size,
                    self._budget.held(user.id),
                    user.address,
                )
                text = "Too much APPEND data in transit, try again later"
                self._refuse_literal(ev, text, r.LIMIT, count=False)
                return
            self._charged += ev.size
            if ev.size and ev.held + ev.size > s.spool_threshold:
                self.receiver.stream_literal()
                self._spooled.append(LiteralFile(self.settings.server.data_dir / "spool"))
        elif ev.held + ev.size > s.max_line_length:
            # as Dovecot: outside APPEND, literals count towards the command's length
            self._refuse_literal(ev, "Literal too large", r.TOOBIG)
            return
        if not ev.non_sync:
            self.send(r.continuation("Ready for literal data"))

    def _refuse_literal(self, ev: NeedLiteral, text: str, code: str, count: bool = True) -> None:
        """Synchronising: NO, the client never sends it; non-synchronising: BAD now,
        and the receiver throws the bytes away (RFC 7888 §4). Either way the
        command is over."""
        self.receiver.refuse_literal()
        self._command_done()
        status = "BAD" if ev.non_sync else "NO"
        if ev.tag is None:
            self.send(r.untagged_status("BAD", text, code))
        else:
            self.send(r.tagged(ev.tag, status, text, code))
        if count:  # the client's mistake (a full budget is not)
            self.count_bad()

    def _command_done(self) -> None:
        """The command being received ended (answered, refused or abandoned): its
        spool files go, its budget charge is returned."""
        for f in self._spooled:
            f.discard()
        self._spooled = []
        if self._charged and self.session.user is not None:
            self._budget.release(self.session.user.id, self._charged)
        self._charged = 0

    async def _command(self, raw: RawCommand) -> None:
        if self._spooled:
            files = iter(self._spooled)
            if any(f.failed for f in self._spooled):
                log.error("sid=%s cannot spool a literal (disk full?)", self.session.sid)
                if raw.tag is not None:
                    text = "Cannot receive the message now, try again later"
                    self.send(r.tagged(raw.tag, "NO", text, r.UNAVAILABLE))
                return
            literals = tuple(
                replace(lit, file=next(files).spooled()) if lit.streamed else lit
                for lit in raw.literals
            )
            raw = replace(raw, literals=literals)
        try:
            cmd = parse_command(raw, utf8=self.session.utf8)
        except ParseError as e:
            self.send(e.response())
            if e.fatal:
                self.session.state = State.LOGOUT
            elif e.status == "BAD":
                self.count_bad()
            return
        await dispatch(self, cmd)

    # --- NOTIFY -------------------------------------------------------------------------
    def _ended(self) -> bool:
        """The session went to LOGOUT meanwhile (a method call hides the state
        change from the type checker's narrowing)."""
        return self.session.state is State.LOGOUT

    async def _notify_wait(self, limit: float) -> bytes | None:
        """Client bytes (b"" at EOF) or None (timeout, shutdown), announcing feed
        events meanwhile (RFC 5465 §3.1: "between commands")."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            got = await self._idle_wait(deadline - loop.time())
            if got is None or isinstance(got, bytes):
                return got
            await asyncio.sleep(IDLE_BATCH)  # let a burst of changes arrive together
            notifier = self.notifier
            if notifier is not None:
                try:
                    await notifier.between_commands(self, idle=False)
                except StoreError:
                    log.exception("sid=%s cannot read changes for NOTIFY", self.session.sid)
            if self.session.state is State.LOGOUT:
                return b""
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0)):
                    await self.drain()
            except TimeoutError:
                return None

    # --- IDLE --------------------------------------------------------------------------
    async def idle(self, tag: str) -> Result:
        self.send(r.continuation("idling"))
        self.receiver.start_idle(tag)
        if self.session.view is not None:
            await self.sync(allow_expunge=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.imap.idle_timeout
        while True:
            ev = self.receiver.next()
            if isinstance(ev, IdleDone):
                return ok("IDLE terminated")
            if isinstance(ev, BadInput):
                if ev.fatal:
                    self.send(ev.response())
                    self.session.state = State.LOGOUT
                    return Result("", "")
                return bad(ev.text, ev.code)
            if isinstance(ev, ConnectionClosed):
                self.session.state = State.LOGOUT
                return Result("", "")
            if ev is not NEED_DATA:  # pragma: no cover - IDLE mode yields nothing else
                return bad("Expected DONE")
            await self.drain()
            got = await self._idle_wait(deadline - loop.time())
            if got is None:
                self._goodbye()
                return Result("", "")
            if isinstance(got, bytes):
                self.receiver.receive_data(got)
                continue
            await asyncio.sleep(IDLE_BATCH)  # let a burst of changes arrive together
            if self.notifier is not None:
                await self.notifier.between_commands(self, idle=True)
                if self.session.state is State.LOGOUT:
                    return Result("", "")
            else:
                await self.sync(allow_expunge=True)

    async def _idle_wait(self, limit: float) -> bytes | bool | None:
        """Client bytes, True for a feed event, None for timeout or shutdown."""
        if limit <= 0:
            return None
        read = self._reading()
        stop = self._stopping()
        change: asyncio.Task[Change] | None = None
        waits: set[asyncio.Future[bytes] | asyncio.Future[bool] | asyncio.Future[Change]] = {
            read,
            stop,
        }
        if self.feed is not None:
            change = asyncio.ensure_future(self.feed.get())
            waits.add(change)
        await asyncio.wait(waits, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        noticed = False
        if change is not None:
            if not change.done():
                change.cancel()
                with contextlib.suppress(asyncio.CancelledError, SubscriptionClosed):
                    await change
            if change.done() and not change.cancelled():
                noticed = True
                self._noticed(change)
        if stop.done():
            return None
        if read.done():
            self._read_task = None
            return read.result()
        return True if noticed else None

    def _noticed(self, change: asyncio.Task[Change]) -> None:
        try:
            event = change.result()
        except SubscriptionClosed:  # overflow or store closing: re-check everything
            self.feed_lost()
            return
        self.note(event)
