"""The IMAP asyncio adapter: moves bytes between the socket and the session core
(`postier.imap.core.ImapSession`, which parses and runs the commands), and runs
what the core leaves to I/O: the timers, waiting on the change feed, the TLS
handshake, shutdown. Large APPEND literals are spooled to files under the data
directory (the core's `spool`).

Rules:
- Output is written after every step of the core and flushed whenever the core
  needs more input, and during large responses once `HIGH_WATER` octets are queued
  (backpressure: the core awaits `_flush`).
- STARTTLS: the tagged OK is flushed, then the handshake; the core then starts a
  new receiver (RFC 9051 §6.2.1).
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
from typing import TYPE_CHECKING

from postier import metrics
from postier.deadline import Deadline, ReadTimer
from postier.imap import responses as r
from postier.imap.core import CLOSE, IDLING, NEED_DATA, START_TLS, ImapSession
from postier.imap.literals import LiteralBudget, LiteralFile
from postier.imap.session import RecentClaims, State
from postier.store.api import Subscription
from postier.store.feed import SubscriptionClosed

if TYPE_CHECKING:
    from postier.server.app import App
    from postier.server.listeners import Connection, Handler

log = logging.getLogger("postier.imap")

READ_SIZE = 64 * 1024
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


class ImapConnection:
    def __init__(
        self, app: App, conn: Connection, recent: RecentClaims, budget: LiteralBudget
    ) -> None:
        self.app = app
        self.conn = conn
        self.settings = app.settings
        spool_dir = app.settings.server.data_dir / "spool"
        self.core = ImapSession(
            app.store,
            app.settings,
            app.auth,
            sid=conn.sid,
            tls=conn.tls,
            peer_ip=conn.peer_ip,
            plaintext_ok=conn.is_loopback or app.settings.tls.allow_plaintext_auth,
            spool=lambda: LiteralFile(spool_dir),
            recent=recent,
            budget=budget,
            flush=self._flush,
            learn_move=app.move_learner.moved,
        )
        self.sid = conn.sid
        self._ev = asyncio.get_running_loop()  # the event loop, looked up once
        #: one timer for every read of the session, moved only when a deadline
        #: comes earlier (`ReadTimer`: asyncio.timeout made a timer per command)
        self._timer = ReadTimer()
        s = self.settings.imap
        self._idle_timeout = s.idle_timeout  # settings are immutable: read once
        now = self._ev.time()
        self._login_by = now + s.login_timeout
        self._command_clock = Deadline(s.command_timeout, s.min_data_rate)
        self._command_mark = 0  # core.commands_ended when the clock started
        self._last_read = now
        self._idle_until = now  # the autologout time of the current IDLE

    # --- I/O primitives --------------------------------------------------------------
    def _write(self) -> None:
        parts = self.core.data_to_send_parts()
        if parts:
            self.conn.writer.writelines(parts)  # one writev; bodies are not copied

    async def _flush(self) -> None:
        self._write()
        await self.conn.writer.drain()

    def _on_stopping(self) -> None:
        """The server is stopping: end a wait on the socket at once (the read sees
        EOF and the session says BYE)."""
        self.conn.reader.feed_eof()

    def _read_limit(self) -> tuple[float, str]:
        """How long the next read may wait, and the BYE text when that runs out."""
        now = self._ev.time()
        limit, why = self._idle_timeout, BYE_IDLE
        core, clock = self.core, self._command_clock
        if core.state is State.NOT_AUTHENTICATED and self._login_by - now < limit:
            limit, why = self._login_by - now, BYE_LOGIN
        if not core.in_command:
            clock.stop()
            return limit, why  # no command timer (`clock.left` is infinite)
        if not clock.running or core.commands_ended != self._command_mark:
            # a new command: its first bytes came with the last read
            clock.start(self._last_read)
            self._command_mark = core.commands_ended
        left = clock.left(now)
        if left < limit:
            limit, why = left, BYE_COMMAND
        return limit, why

    async def _fill(self) -> bool:
        """Flush output, then feed the core the client's next bytes (announcing NOTIFY
        events meanwhile); False when the session ends: a timer ran out or the
        server stops (the BYE is queued), or a notification ended it."""
        writer = self.conn.writer
        if writer.transport.get_write_buffer_size():
            await writer.drain()  # else nothing to wait for (a lost connection reads EOF)
        core = self.core
        limit, why = self._read_limit()
        if core.wants_changes:
            data = await self._notify_wait(limit)
            if data is not None and core.ended:
                return False  # a notification ended the session (BYE sent)
        elif limit <= 0 or self.app.stopping.is_set():
            data = None
        else:
            # b"" at EOF. A read under the session's `ReadTimer`, with no task (nor
            # coroutine) of its own; shutdown wakes it through `_on_stopping`. The
            # core is not over (else no NEED_DATA) and a read does not end it
            try:
                data = await self._timer.read(self.conn.reader, READ_SIZE, limit)
            except TimeoutError:
                data = None
            else:
                if not data and self.app.stopping.is_set():
                    data = None
        if data is None:
            self._goodbye(why)
            return False
        self._last_read = self._ev.time()
        self._command_clock.received(len(data))
        core.receive_data(data)
        return True

    def _goodbye(self, why: str = BYE_IDLE) -> None:
        if self.app.stopping.is_set():
            self.core.goodbye("Server shutting down", r.UNAVAILABLE)
        else:
            log.info("sid=%s %s", self.sid, why)
            self.core.goodbye(why)

    async def _start_tls(self) -> None:
        await self.conn.writer.drain()
        try:
            await self.conn.writer.start_tls(self.app.tls_context)
        except (OSError, ConnectionError, ssl.SSLError) as e:
            log.info("sid=%s TLS handshake failed: %s", self.sid, e)
            self.core.tls_failed()
            return
        self.core.tls_started()
        log.info("sid=%s TLS started %s", self.sid, self.conn.tls_info())

    # --- the session loop ------------------------------------------------------------
    async def run(self) -> None:
        log.info(
            "sid=%s connect client=%s listener=%s",
            self.sid,
            self.conn.peer_ip,
            self.conn.listener,
        )
        metrics.CONNECTIONS.labels(self.conn.listener).inc()
        self.app.stopping_hooks.add(self._on_stopping)
        try:
            await self._loop()
            with contextlib.suppress(ConnectionError, OSError):
                await self._flush()
        finally:
            self.app.stopping_hooks.discard(self._on_stopping)
            self._timer.close()
            self.core.close()
            log.info("sid=%s disconnect", self.sid)
            # close here rather than leave it to the listener, so the transport is
            # gone before a shutdown that follows at once stops the loop
            self.conn.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.conn.writer.wait_closed(), 1)

    async def _loop(self) -> None:
        core = self.core
        while True:
            ev = await core.next_event()
            self._write()
            if ev is NEED_DATA:  # the commonest, tested first
                if core.idling:
                    await self._idle_fill()
                else:
                    await self._fill()  # when it fails, the core is over: CLOSE next
            elif ev is CLOSE:
                return
            elif ev is IDLING:
                self._idle_until = self._ev.time()
                self._idle_until += self._idle_timeout
            elif ev is START_TLS:
                await self._start_tls()

    # --- NOTIFY -------------------------------------------------------------------------
    async def _notify_wait(self, limit: float) -> bytes | None:
        """Client bytes (b"" at EOF) or None (timeout, shutdown), announcing feed
        events meanwhile (RFC 5465 §3.1: "between commands")."""
        loop = self._ev
        deadline = loop.time() + limit
        while True:
            got = await self._idle_wait(deadline - loop.time())
            if got is None or isinstance(got, bytes):
                return got
            await asyncio.sleep(IDLE_BATCH)  # let a burst of changes arrive together
            await self.core.announce()
            if self.core.ended:
                return b""
            self._write()
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0)):
                    await self.conn.writer.drain()
            except TimeoutError:
                return None

    # --- IDLE --------------------------------------------------------------------------
    async def _idle_fill(self) -> None:
        """Flush, then wait for the client (DONE) or the feed; changes are announced
        by the core. Silence until `imap.idle_timeout` after IDLE began ends the
        session."""
        await self.conn.writer.drain()
        got = await self._idle_wait(self._idle_until - self._ev.time())
        if got is None:
            self._goodbye()
        elif isinstance(got, bytes):
            self.core.receive_data(got)
        else:
            await asyncio.sleep(IDLE_BATCH)  # let a burst of changes arrive together
            await self.core.announce()

    async def _idle_wait(self, limit: float) -> bytes | bool | None:
        """Client bytes, True for a feed event, None for timeout or shutdown.

        One read on the socket under a timer, and nothing else waiting: a feed
        event moves the timer to now (`Subscription.on_change`), which ends the
        read early with its bytes left in the reader's buffer. An idle session
        costs its own task and no other."""
        if limit <= 0 or self.app.stopping.is_set():
            return None
        feed = self.core.feed
        if feed is not None and self._take_change(feed):
            return True
        loop = self._ev
        data: bytes | None = None
        try:
            async with asyncio.timeout(limit) as timer:

                def wake() -> None:
                    if not timer.expired():
                        timer.reschedule(loop.time())

                if feed is not None:
                    feed.on_change(wake)
                try:
                    data = await self.conn.reader.read(READ_SIZE)
                finally:
                    if feed is not None:
                        feed.on_change(None)
        except TimeoutError:
            pass
        if data is not None:  # a change that came too stays pending for the next wait
            return None if not data and self.app.stopping.is_set() else data
        if self.app.stopping.is_set():
            return None
        return True if feed is not None and self._take_change(feed) else None

    def _take_change(self, feed: Subscription) -> bool:
        """Note one pending change (or the feed's loss); False when none is."""
        try:
            change = feed.get_nowait()
        except SubscriptionClosed:  # overflow or store closing: re-check everything
            self.core.feed_lost()
            return True
        if change is None:
            return False
        self.core.note(change)
        return True
