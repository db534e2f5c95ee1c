"""The asyncio adapter: moves bytes between a socket and `core.ServerConnection`,
runs timers and STARTTLS, and asks `intake.Intake` for every policy decision
(the submission listeners through `submission.Submission`, the pipeline that
`postier send` and the webmail use too).

Rules:
- Thin: no SMTP syntax here. Replies are written in the order the core queued
  them, once per read (PIPELINING answers a whole batch in one write).
- Roles: the ``mx`` listener offers no AUTH; ``submission`` and ``submissions``
  offer AUTH PLAIN/LOGIN, only after TLS unless the client is on loopback or
  `tls.allow_plaintext_auth` is set.
- Timeouts: `smtp.limits.idle_timeout` waiting for a command; a command line must
  arrive whole within `smtp.limits.command_timeout` of its first byte; a message's
  data (DATA, or every BDAT chunk) within `smtp.limits.data_timeout` plus what
  `smtp.limits.min_data_rate` earns (`postier.deadline`), so a client trickling a
  byte a second cannot hold a connection. Any of them: ``421 4.4.2 <hostname>
  Error: timeout exceeded`` and close. One timer per session enforces them
  (`postier.deadline.ReadTimer`): a timer per read, as ``asyncio.timeout``
  makes, was 5% of intake's time on the loop.
- The end-of-data decision waits for `Intake.finish`, which returns only when
  the message is durable; it is shielded from cancellation (`shielded`), so a
  shutdown never leaves a committed message unanswered half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from postier import metrics
from postier.auth.service import AuthOutcome
from postier.deadline import Deadline, ReadTimer
from postier.mail.queueid import QueueId
from postier.mail.replies import (
    R220_READY,
    R421_SHUTTING_DOWN,
    R421_TIMEOUT_EXCEEDED,
    R454_AUTH_LOCKED,
    R503_AUTH_NOT_ENABLED,
    R535_AUTH_FAILED,
)
from postier.mail.role import IntakeRole
from postier.smtp import burl
from postier.smtp.core import ServerConnection
from postier.smtp.events import (
    NEED_DATA,
    Authenticate,
    Burl,
    ConnectionClosed,
    DataChunk,
    DataEnd,
    DataRejected,
    DataStart,
    Disconnect,
    Hello,
    MailFrom,
    Quit,
    RcptTo,
    Reset,
    StartTls,
)
from postier.smtp.intake import Envelope, Intake, SessionInfo, Spool
from postier.smtp.submission import Submission

if TYPE_CHECKING:
    from postier.server.app import App
    from postier.server.listeners import Connection, Handler

log = logging.getLogger("postier.smtp")

READ_SIZE = 256 * 1024
#: events the session answers before it gives the event loop a turn: a read of
#: pipelined commands (256 KB of RSET: 40,000) was answered in one 47 ms step,
#: the writes and drains never waiting for a client that keeps up
EVENTS_PER_TURN = 500

T = TypeVar("T")

#: the shielded tasks running, held as the asyncio documentation asks of every
#: task made and not awaited: the event loop keeps only weak references, and the
#: work of a cancelled session is awaited by nobody (no test can force the
#: collection: CPython's cycles keep such a task alive today)
_SHIELDED: set[asyncio.Task[Any]] = set()


async def shielded(coro: Coroutine[Any, Any, T]) -> T:
    """``await asyncio.shield(coro)`` with less machinery (once per message):
    `coro` runs in a task of its own, which a cancellation of the caller does
    not reach. The caller gets CancelledError at once; the task runs to its end
    and its outcome is dropped, as with shield."""
    loop = asyncio.get_running_loop()
    task = loop.create_task(coro)
    _SHIELDED.add(task)
    done: asyncio.Future[None] = loop.create_future()

    def wake(t: asyncio.Task[T]) -> None:
        _SHIELDED.discard(t)
        if not done.done():
            done.set_result(None)
        elif not t.cancelled():  # the caller was cancelled: nobody waits; its error
            t.exception()  # is marked retrieved, as shield does (no "never retrieved" log)

    task.add_done_callback(wake)
    await done  # a cancellation cancels `done`, never `task`
    return task.result()


def make_handler(app: App, name: str) -> Handler:
    role = IntakeRole.MX if name == "mx" else IntakeRole.SUBMISSION
    # an authenticated user's mail goes through the one submission pipeline
    intake = app.submission if role is IntakeRole.SUBMISSION else app.intake

    async def handle(conn: Connection) -> None:
        await SmtpSession(app, intake, conn, role).run()

    return handle


class SmtpSession:
    def __init__(
        self, app: App, intake: Intake | Submission, conn: Connection, role: IntakeRole
    ) -> None:
        self.app = app
        self.intake = intake
        self.conn = conn
        s = app.settings
        lim = s.smtp.limits
        self.limits = lim
        plain_ok = conn.is_loopback or s.tls.allow_plaintext_auth
        self.core = ServerConnection(
            hostname=s.server.hostname,
            max_line_length=lim.max_line_length,
            max_message_size=lim.max_message_size,
            max_recipients=lim.max_recipients,
            max_errors=lim.max_errors,
            bare_lf="normalize" if lim.bare_lf == "normalize" else "reject",
            tls=conn.tls,
            tls_available=not conn.tls,
            auth_mechanisms=("PLAIN", "LOGIN") if role is IntakeRole.SUBMISSION else (),
            auth_requires_tls=not plain_ok,
            burl=role is IntakeRole.SUBMISSION,  # RFC 4468 §3.1: never on the MX port
        )
        self.info = SessionInfo(sid=conn.sid, role=role, peer_ip=conn.peer_ip, tls=conn.tls_info())
        self.env: Envelope | None = None
        self.spool: Spool | None = None
        #: one command line, from its first byte; one message's data, from DataStart
        self.command_clock = Deadline(lim.command_timeout)
        self.data_clock = Deadline(lim.data_timeout, lim.min_data_rate)
        self.last_read = time.monotonic()
        self.answered = False  # a command was answered since the last read
        self.timer: ReadTimer | None = None

    async def run(self) -> None:
        conn, core = self.conn, self.core
        log.info(
            "sid=%s connect client=%s:%d listener=%s",
            conn.sid,
            conn.peer_ip,
            conn.peer_port,
            conn.listener,
        )
        metrics.labelled(metrics.CONNECTIONS, conn.listener).inc()
        if self.app.stopping.is_set():
            core.greet(R421_SHUTTING_DOWN)
        else:
            await self.intake.on_connect(self.info)  # a refusal is answered at MAIL
            core.greet(R220_READY(self.app.settings.server.hostname))
        self.timer = ReadTimer()
        try:
            await self._loop()
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                conn.writer.write(R421_SHUTTING_DOWN.to_bytes())
            raise
        finally:
            self.timer.close()
            if self.spool is not None:
                self.spool.discard()
            log.info("sid=%s disconnect client=%s", conn.sid, conn.peer_ip)

    def _write(self) -> bool:
        """Write the replies the core queued. True when bytes wait in the
        transport, where backpressure may apply: then the caller drains. A reply
        nearly always leaves at once, so no coroutine is made per reply."""
        out = self.core.data_to_send()
        if not out:
            return False
        self.answered = True  # every command line gets a reply
        writer = self.conn.writer
        writer.write(out)
        return writer.transport.get_write_buffer_size() > 0

    async def _flush(self) -> None:
        if self._write():
            await self.conn.writer.drain()

    async def _read(self) -> bytes | None:
        """Bytes from the client; b"" on EOF; None on timeout (idle, or a deadline)."""
        now = time.monotonic()
        core, clock = self.core, self.command_clock
        if not core.mid_line:
            clock.stop()
        elif self.answered or not clock.running:
            # the pending part of a line came with the last read: earlier lines
            # were all answered before this one could start
            clock.start(self.last_read)
        self.answered = False
        timeout = min(self.limits.idle_timeout, clock.left(now), self.data_clock.left(now))
        if timeout <= 0:
            return None
        assert self.timer is not None
        try:
            data = await self.timer.read(self.conn.reader, READ_SIZE, timeout)
        except TimeoutError:
            return None
        self.last_read = time.monotonic()
        self.data_clock.received(len(data))
        return data

    async def _loop(self) -> None:
        core, info = self.core, self.info
        events = 0
        while True:
            ev = core.next_event()
            events += 1
            if events >= EVENTS_PER_TURN:
                events = 0
                await asyncio.sleep(0)
            if ev is NEED_DATA:
                if self._write():
                    await self.conn.writer.drain()
                data = await self._read()
                if data is None:
                    self._log_timeout()
                    core.abort(R421_TIMEOUT_EXCEEDED(self.app.settings.server.hostname))
                    await self._flush()
                    return
                core.receive_data(data)
                # the core copied it: not held on while the events it makes are
                # answered (a whole message's chunk, through the store's commit)
                del data
            elif isinstance(ev, DataChunk):
                if self.spool is not None:
                    self.spool.write(ev.data)
            elif isinstance(ev, Hello):
                info.helo = ev.name
                info.esmtp = ev.extended
                self._reset()
                await self.intake.on_helo(info)
                core.accept()
            elif isinstance(ev, MailFrom):
                reply = await self.intake.check_sender(info, ev.address)
                if reply.is_positive:
                    # the QID check_sender traced the MAIL verdicts under
                    ctx = info.filters
                    if ctx is not None and ctx.qid:
                        self.env = Envelope(ev.address, ev.params, qid=QueueId(ctx.qid))
                    else:
                        self.env = Envelope(ev.address, ev.params)
                    core.accept(reply)
                else:
                    metrics.count_rejection(
                        self.conn.listener,
                        "mail",
                        reply.code,
                        reply.enhanced,
                        text=reply.text,
                        client=self.conn.peer_ip,
                    )
                    core.reject(reply)
            elif isinstance(ev, RcptTo):
                assert self.env is not None
                reply = await self.intake.check_recipient(info, self.env, ev.address, ev.params)
                if reply.is_positive:
                    core.accept(reply)
                else:
                    metrics.count_rejection(
                        self.conn.listener,
                        "rcpt",
                        reply.code,
                        reply.enhanced,
                        text=reply.text,
                        client=self.conn.peer_ip,
                    )
                    core.reject(reply)
            elif isinstance(ev, DataStart):
                assert self.env is not None
                self.spool = self.intake.open_spool(info, self.env, crlf_only=not ev.chunking)
                self.data_clock.start(time.monotonic())
            elif isinstance(ev, DataEnd):
                await self._data_end()
            elif isinstance(ev, Burl):
                await self._burl(ev)
            elif isinstance(ev, DataRejected):
                self._reset()
            elif isinstance(ev, Authenticate):
                await self._authenticate(ev)
            elif isinstance(ev, StartTls):
                await self._flush()
                try:
                    await self.conn.writer.start_tls(self.app.tls_context)
                except (OSError, ConnectionError) as e:
                    log.info("sid=%s TLS handshake failed: %s", self.conn.sid, e)
                    return
                core.tls_started()
                info.tls = self.conn.tls_info()
                info.user = None
                self._reset()
            elif isinstance(ev, Reset):
                self._reset()
            elif isinstance(ev, Quit | Disconnect | ConnectionClosed):
                with contextlib.suppress(ConnectionError):
                    await self._flush()
                return

    def _reset(self) -> None:
        if self.spool is not None:
            self.spool.discard()
        self.spool = None
        self.env = None
        self.data_clock.stop()

    def _log_timeout(self) -> None:
        now = time.monotonic()
        if self.data_clock.left(now) <= 0:
            what = "message data"
        elif self.command_clock.left(now) <= 0:
            what = "command line"
        else:
            what = "idle"
        log.info("sid=%s timeout (%s) client=%s", self.conn.sid, what, self.conn.peer_ip)

    async def _data_end(self) -> None:
        env, spool = self.env, self.spool
        assert env is not None
        assert spool is not None
        self.spool = None  # finish() owns it now
        # shielded: once the store commits, the 250 must go out
        reply = await shielded(self.intake.finish(self.info, env, spool))
        self.env = None
        self.data_clock.stop()
        metrics.count_transaction(self.conn.listener, reply.code)
        if reply.is_positive:
            self.core.accept(reply)
        else:
            if reply.code >= 500:  # refused for good (4xx: our failure, logged)
                metrics.note_refusal(
                    self.conn.listener,
                    "data",
                    reply.code,
                    reply.enhanced,
                    text=reply.text,
                    client=self.conn.peer_ip,
                )
            self.core.reject(reply)

    async def _burl(self, ev: Burl) -> None:
        got = await burl.resolve(
            self.app.store, self.app.settings, self.info.user, ev.url, sid=self.conn.sid
        )
        if isinstance(got, bytes):
            self.core.accept_burl(got)
            return
        metrics.count_transaction(self.conn.listener, got.code)  # the transaction failed
        self.core.reject(got)
        self._reset()

    async def _authenticate(self, ev: Authenticate) -> None:
        if self.info.role is not IntakeRole.SUBMISSION:
            self.core.reject(R503_AUTH_NOT_ENABLED)
            return
        if ev.authzid and ev.authzid.lower() != ev.username.lower():
            # no proxy authorisation: acting as someone else is not offered
            self.core.reject(R535_AUTH_FAILED)
            return
        result = await self.app.auth.authenticate(
            ev.username, ev.password, self.conn.peer_ip, "smtp"
        )
        if result.ok:
            self.info.user = result.user
            self.core.accept()
        elif result.outcome is AuthOutcome.LOCKED:
            self.core.reject(R454_AUTH_LOCKED)
        else:
            self.core.reject(R535_AUTH_FAILED)
