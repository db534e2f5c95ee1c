"""The POP3 asyncio adapter: moves bytes to and from `core.ServerConnection` and
answers its hooks from the store.

Rules:
- The maildrop is the user's INBOX, listed once at login (RFC 1939 §4). Each
  size is `pop3_size` of the stored bytes, the very bytes RETR sends later.
- UIDL is Dovecot's default form, ``%08x%08x`` of UID and UIDVALIDITY, so it is
  stable across sessions and the same message has the same id however it is
  reached; it never depends on message numbers.
- One session per maildrop, in every worker process (`locks.MaildropLocks`) and
  over PostgreSQL on every node (`App.maildrops`): a second login gets ``-ERR
  [IN-USE]`` until the first ends (disconnect, idle timeout, or the death of its
  process).
- QUIT in TRANSACTION removes the marked messages in one store transaction;
  EOF, timeouts and errors delete nothing. Retrieved messages get \\Seen, as
  Dovecot does, so IMAP clients see them read.
- Plaintext logins (USER/PASS, AUTH PLAIN) need TLS unless the client is on
  loopback or `tls.allow_plaintext_auth` is set. Failed logins are slowed by the
  shared `AuthService` limiter.
- Idle clients are disconnected after `pop3.idle_timeout` without a reply
  (RFC 1939 §3 "autologout"). A client not logged in `pop3.login_timeout` after
  connecting gets ``-ERR Disconnected for inactivity.``, and one whose command
  line takes longer than `pop3.command_timeout` from its first byte gets ``-ERR
  Autologout; command too slow``, then the connection closes: neither an idle
  socket nor a trickle of bytes keeps a place in the per-address limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from postier import metrics
from postier.auth.service import AuthOutcome
from postier.deadline import Deadline, ReadTimer
from postier.pop3.commands import (
    ERR_COMMAND_TIMEOUT,
    ERR_LOGIN_TIMEOUT,
    SLICE,
    Response,
    format_message_parts,
    pop3_size,
)
from postier.pop3.core import (
    Authenticate,
    Close,
    MaildropEntry,
    NeedData,
    Quit,
    Reply,
    Retrieve,
    ServerConnection,
    StartTls,
    Top,
)
from postier.pop3.locks import MaildropHold, Maildrops
from postier.store.models import MaildropItem, Uid, UserId

if TYPE_CHECKING:
    from postier.server.app import App
    from postier.server.listeners import Connection, Handler

log = logging.getLogger("postier.pop3")

READ_SIZE = 64 * 1024
#: events the session answers before it gives the event loop a turn: pipelined
#: commands (240 KB of NOOP: 40,000) were answered in steps of up to 89 ms, the
#: writes and drains never waiting for a client that keeps up
EVENTS_PER_TURN = 500
#: RETR/TOP read the next messages' bytes with the one asked for, in one store
#: round trip, up to this many messages and octets (clients download in order)
READ_AHEAD = 64
READ_AHEAD_OCTETS = 256 * 1024
R_LOCKED = Response(False, "Too many failed logins, try again later", "SYS/TEMP")


def uidl(uid: int, uidvalidity: int) -> str:
    return f"{uid:08x}{uidvalidity:08x}"


class _SizeCache:
    """pop3_size per blob: computing it reads the blob, and blobs never change."""

    def __init__(self, limit: int = 100_000) -> None:
        self._d: OrderedDict[str, int] = OrderedDict()
        self._limit = limit

    def get(self, key: str) -> int | None:
        v = self._d.get(key)
        if v is not None:
            self._d.move_to_end(key)
        return v

    def put(self, key: str, value: int) -> None:
        self._d[key] = value
        if len(self._d) > self._limit:
            self._d.popitem(last=False)


def make_handler(app: App, name: str) -> Handler:
    locks = app.maildrops
    sizes = _SizeCache()

    async def handle(conn: Connection) -> None:
        await Pop3Session(app, conn, locks, sizes).run()

    return handle


class Pop3Session:
    def __init__(self, app: App, conn: Connection, locks: Maildrops, sizes: _SizeCache) -> None:
        self.app = app
        self.conn = conn
        self.locks = locks
        self.lock: MaildropHold | None = None
        self.sizes = sizes
        self.user_id: UserId | None = None
        self.mailbox_id: int | None = None
        self.messages: list[MaildropItem] = []
        self.octets: list[int] = []  # the maildrop's sizes, as announced
        self.ahead: dict[int, bytes] = {}  # message number → bytes read ahead
        self.seen: set[int] = set()  # UIDs retrieved, to mark \\Seen at the end
        self.login_by = time.monotonic() + app.settings.pop3.login_timeout
        self.command_clock = Deadline(app.settings.pop3.command_timeout)
        self.last_read = time.monotonic()
        self.answered = True  # a command line was answered since the last read
        plain = conn.tls or conn.is_loopback or app.settings.tls.allow_plaintext_auth
        self.core = ServerConnection(
            plaintext_allowed=plain,
            tls_available=not conn.tls,
            tls_active=conn.tls,
            greeting=f"{app.settings.server.hostname} POP3 server ready",
        )

    async def run(self) -> None:
        log.info(
            "sid=%s connect client=%s listener=%s",
            self.conn.sid,
            self.conn.peer_ip,
            self.conn.listener,
        )
        metrics.CONNECTIONS.labels(self.conn.listener).inc()
        self.timer = ReadTimer()
        try:
            await self._loop()
        finally:
            self.timer.close()
            await self._flush_seen()
            await self._unlock()
            log.info("sid=%s disconnect", self.conn.sid)

    async def _read(self) -> bytes | None:
        """The client's next bytes (b"" at EOF); None when a timer ran out, after
        writing its -ERR (the idle timer closes silently: RFC 1939 §3)."""
        core, clock, s = self.core, self.command_clock, self.app.settings.pop3
        if not core.mid_line:
            clock.stop()
        elif self.answered or not clock.running:
            clock.start(self.last_read)  # the pending line began in the last read
        self.answered = False
        now = time.monotonic()
        limit, why = s.idle_timeout, None
        if self.user_id is None and self.login_by - now < limit:
            limit, why = self.login_by - now, ERR_LOGIN_TIMEOUT
        if clock.left(now) < limit:
            limit, why = clock.left(now), ERR_COMMAND_TIMEOUT
        try:
            data = await self.timer.read(self.conn.reader, READ_SIZE, limit)
        except TimeoutError:
            log.info("sid=%s timeout: %s", self.conn.sid, why.text if why else "idle")
            if why is not None:
                self.conn.writer.write(why.to_bytes())
            return None
        self.last_read = time.monotonic()
        return data

    async def _loop(self) -> None:
        core, writer = self.core, self.conn.writer
        events = 0
        while True:
            ev = core.next_event()
            events += 1
            if events >= EVENTS_PER_TURN:
                events = 0
                await asyncio.sleep(0)
            if isinstance(ev, NeedData):
                await writer.drain()
                data = await self._read()
                if data is None:
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()
                    return  # delete nothing (RFC 1939 §6)
                core.receive_data(data)
                continue
            self.answered = True  # every event answers a command line
            if isinstance(ev, Reply):
                writer.write(ev.data)
            elif isinstance(ev, Authenticate):
                writer.write(await self._login(ev))
            elif isinstance(ev, Retrieve | Top):
                writer.writelines(await self._message(ev))  # one writev
            elif isinstance(ev, StartTls):
                await writer.drain()
                try:
                    await writer.start_tls(self.app.tls_context)
                except (OSError, ConnectionError):
                    return
                core.tls_started(plaintext_allowed=True)
            elif isinstance(ev, Quit):
                writer.write(await self._update(ev))
            elif isinstance(ev, Close):
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                return

    async def _unlock(self) -> None:
        lock, self.lock = self.lock, None
        if lock is not None:
            try:
                await lock.release()
            except Exception:
                log.exception("sid=%s could not release the maildrop lock", self.conn.sid)

    def _fail(self, what: str) -> bytes:
        log.exception("sid=%s %s failed", self.conn.sid, what)
        return self.core.fail(
            Response(False, f"Internal error, session {self.conn.sid}", "SYS/TEMP")
        )

    async def _login(self, ev: Authenticate) -> bytes:
        result = await self.app.auth.authenticate(
            ev.username, ev.password, self.conn.peer_ip, "pop3"
        )
        if result.outcome is AuthOutcome.LOCKED:
            return self.core.fail(R_LOCKED)
        if not result.ok or result.user is None:
            return self.core.auth_failed()
        user = result.user
        try:
            self.lock = await self.locks.acquire(user.id)
        except Exception:
            return self._fail("maildrop lock")
        if self.lock is None:
            return self.core.auth_in_use()
        self.user_id = user.id
        try:
            mailbox = await self.app.store.get_mailbox(user.id, "INBOX")
            assert mailbox is not None
            self.mailbox_id = mailbox.id
            # uid, blob, size and \\Seen only: plain rows, no Message built per message
            self.messages = await self.app.store.maildrop(mailbox.id)
            entries = []
            for m in self.messages:
                # cached at delivery; older blobs are read once and remembered
                size = m.crlf_size if m.crlf_size >= 0 else self.sizes.get(m.blob_id)
                if size is None:
                    size = pop3_size(await self.app.store.read_blob(m.blob_id))
                    self.sizes.put(m.blob_id, size)
                entries.append(MaildropEntry(size, uidl(m.uid, mailbox.uidvalidity)))
            self.octets = [e.size for e in entries]
        except Exception:
            await self._unlock()
            self.user_id = None
            return self._fail("maildrop")
        log.info("sid=%s login user=%s messages=%d", self.conn.sid, user.address, len(entries))
        return self.core.auth_ok(entries)

    async def _message(self, ev: Retrieve | Top) -> list[bytes]:
        number = ev.number
        m = self.messages[number - 1]
        data = self.ahead.pop(number, None)
        if data is None:
            try:
                data = await self._read_ahead(number)
            except Exception:
                return [self._fail("read")]
        if not m.seen:
            self.seen.add(m.uid)
        # the size cached at delivery says whether the bytes need normalising
        if len(data) <= SLICE:
            return self.core.send_message_parts(data, m.crlf_size)
        # a slice at a time in a thread: 40 MB took 23-145 ms of C calls
        lines = ev.lines if isinstance(ev, Top) else None
        formatted = await asyncio.to_thread(
            format_message_parts, data, lines, crlf_size=m.crlf_size
        )
        return self.core.send_formatted(formatted)

    async def _read_ahead(self, number: int) -> bytes:
        """Message `number`'s bytes; the next ones (within `READ_AHEAD` and
        `READ_AHEAD_OCTETS`) are read in the same round trip and kept in `ahead`."""
        last, octets = number, self.octets[number - 1]
        while last < min(len(self.messages), number + READ_AHEAD - 1):
            octets += self.octets[last]
            if octets > READ_AHEAD_OCTETS:
                break
            last += 1
        if last == number:
            return await self.app.store.read_blob(self.messages[number - 1].blob_id)
        batch = range(number, last + 1)
        blobs = await self.app.store.read_blobs([self.messages[n - 1].blob_id for n in batch])
        self.ahead = {n: blobs[b] for n in batch if (b := self.messages[n - 1].blob_id) in blobs}
        data = self.ahead.pop(number, None)
        if data is None:  # gone from the store: the same error as a single read
            return await self.app.store.read_blob(self.messages[number - 1].blob_id)
        return data

    async def _flush_seen(self) -> None:
        """\\Seen for what was retrieved, in one commit when the session ends
        (QUIT or not), as Dovecot does: a RETR never waits for a flag write."""
        if not self.seen or self.mailbox_id is None:
            return
        uids, self.seen = sorted(self.seen), set()
        try:
            await self.app.store.store_flags(
                self.mailbox_id,  # type: ignore[arg-type]
                [Uid(u) for u in uids],
                frozenset({"\\Seen"}),
                "add",
            )
        except Exception:
            log.exception("sid=%s could not mark retrieved messages seen", self.conn.sid)

    async def _update(self, ev: Quit) -> bytes:
        ok = True
        await self._flush_seen()
        if ev.deletions and self.mailbox_id is not None:
            uids = [Uid(self.messages[n - 1].uid) for n in ev.deletions]
            try:
                await self.app.store.expunge(
                    self.mailbox_id,  # type: ignore[arg-type]
                    uids,
                    flagged_only=False,
                )
            except Exception:
                log.exception("sid=%s expunge failed", self.conn.sid)
                ok = False
        await self._unlock()
        return self.core.update_done(ok)
