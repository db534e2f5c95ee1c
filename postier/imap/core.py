"""The IMAP session core without I/O: one `ImapSession` per client connection.

Bytes in (`receive_data`), bytes and events out (`data_to_send`, `next_event`), in
the h11 shape of `postier.pop3.core` and the SMTP server core. The core owns the
receiver (framing, literals, IDLE and continuation modes), the state machine of
RFC 9051 §3 (not authenticated → authenticated → selected → logout; which command
runs where is `commands.TABLE`), the literal policy, and the `Context` the command
handlers work with. The adapter (`postier.imap.server`) moves bytes, runs the
timers, waits on the change feed and does the TLS handshake.

Async on purpose: the store interface is async and SEARCH runs off the event loop
under `imap.search_time_limit` (`postier.imap.matcher`), so `next_event` and
`announce` are coroutines that await the store while commands run. They never touch
a socket, stream, clock or timer; the tests drive whole sessions on bytes with
nothing but a store (`tests/unit/imap/test_core.py`).

After every call, write `data_to_send()` first; then act on the event:

=============  ====================================================================
event          the adapter's part
=============  ====================================================================
`NEED_DATA`    read from the client: `receive_data(data)` (b"" at EOF), or when a
               timer runs out `goodbye(text)`. While `wants_changes` (idling, or a
               NOTIFY SET between commands) also wait on `feed`: `note(change)` or
               `feed_lost()`, then `await announce()`.
`IDLING`       IDLE began: its autologout timer starts now (RFC 9051 §5.4).
`START_TLS`    the tagged OK of STARTTLS is queued: flush it, do the handshake, then
               `tls_started()` or `tls_failed()`.
`CLOSE`        the session is over: flush, then close the connection.
=============  ====================================================================

What the adapter passes in: the store, the auth service and settings; `spool`,
which opens the file a large APPEND literal streams into as it arrives (the
adapter's: a `LiteralFile` in the data directory's spool folder; the core only
writes, hands over and discards it); the process-wide `RecentClaims` and
`LiteralBudget`; and `flush`, awaited during a large response so the adapter
writes what is queued and waits for the client to read it (backpressure).

Rules:
- Commands run one at a time in arrival order; pipelined commands are taken from the
  receiver's buffer without waiting.
- Synchronising literals get ``+ Ready`` only when acceptable: before login, a
  literal above `imap.max_unauth_literal` is refused (RFC 9051 §11.3: protect the
  server from unauthenticated clients); above `imap.max_literal_size` the receiver
  refuses it with ``NO [TOOBIG]`` (APPENDLIMIT, RFC 7889). Outside APPEND a
  command's literals and text share `imap.max_line_length` (``NO [TOOBIG]``);
  APPEND literals past `imap.spool_threshold` are streamed to a spool file; a
  user's APPEND bytes in flight stay within `imap.user_literal_budget` (``NO
  [LIMIT]``; `postier.imap.literals`). A refused non-synchronising literal is
  answered ``BAD`` at once and thrown away as it arrives (RFC 7888 §4).
- STARTTLS: after the handshake a new receiver starts, so bytes the client
  pipelined after STARTTLS are thrown away (RFC 9051 §6.2.1, the CVE-2011-0411
  class of injection).
- IDLE: ``+ idling``, the selected mailbox's updates at once, then whatever
  `announce` finds as the feed speaks; DONE ends it with the tagged OK, anything
  else with BAD.
- AUTHENTICATE without an initial response: the handler's `Challenge` is sent as a
  continuation request and the client's next line goes to its `resume`.
- A fatal framing error, EOF, or `goodbye` ends the session; BYE precedes the end
  unless the client left.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from postier.imap import parse as p
from postier.imap import receiver as rcv
from postier.imap import responses as r
from postier.imap.commands import failure, finish, run, selected_id
from postier.imap.commands.context import (
    Challenge,
    Context,
    Idle,
    LearnMove,
    Result,
    Status,
    bad,
    ok,
)
from postier.imap.errors import ParseError
from postier.imap.literals import LiteralBudget, LiteralFile
from postier.imap.parse import parse_command
from postier.imap.receiver import (
    BadInput,
    ConnectionClosed,
    ContinuationLine,
    IdleDone,
    LiteralChunk,
    NeedLiteral,
    RawCommand,
    Receiver,
)
from postier.imap.session import RecentClaims, Session, State
from postier.store.api import Store, Subscription
from postier.store.errors import StoreError
from postier.store.models import Change, MailboxId

if TYPE_CHECKING:
    from postier.auth.service import AuthService
    from postier.config.schema import Settings

log = logging.getLogger("postier.imap")


class Event(enum.Enum):
    """What `ImapSession.next_event` needs from the adapter (the module's table)."""

    NEED_DATA = "need data"
    IDLING = "idling"
    START_TLS = "start TLS"
    CLOSE = "close"


NEED_DATA = Event.NEED_DATA
_NEED_DATA = rcv.NEED_DATA  # the receiver's
IDLING = Event.IDLING
START_TLS = Event.START_TLS
CLOSE = Event.CLOSE


@dataclass(frozen=True)
class _Suspended:
    """A command waiting for the client: IDLE until DONE, or a SASL answer."""

    cmd: p.Command
    was_selected: MailboxId | None
    wait: Idle | Challenge


class ImapSession:
    """One client's session from greeting to close; see the module for the contract."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        auth: AuthService,
        *,
        sid: str,
        tls: bool,
        peer_ip: str,
        plaintext_ok: bool,
        spool: Callable[[], LiteralFile],
        recent: RecentClaims | None = None,
        budget: LiteralBudget | None = None,
        flush: Callable[[], Awaitable[None]] | None = None,
        learn_move: LearnMove | None = None,
    ) -> None:
        self.settings = settings
        self.session = Session(sid=sid, tls=tls)
        self.ctx = Context(
            store,
            settings,
            auth,
            self.session,
            recent if recent is not None else RecentClaims(),
            peer_ip=peer_ip,
            plaintext_ok=plaintext_ok,
            flush=flush,
            learn_move=learn_move,
        )
        self._receiver = self._new_receiver()
        self._budget = (
            budget if budget is not None else LiteralBudget(settings.imap.user_literal_budget)
        )
        self._spool = spool
        # the command being received: its spooled literals and its budget charge
        self._spooled: list[LiteralFile] = []
        self._charged = 0
        self._suspended: _Suspended | None = None
        self._signal: Event | None = None  # IDLING or START_TLS, reported next
        self._closed = False
        greeting = f"{settings.server.hostname} IMAP4rev2 server ready"
        self.ctx.send(r.untagged_status("OK", greeting, r.code_capability(self.ctx.capabilities())))

    def _new_receiver(self) -> Receiver:
        s = self.settings.imap
        return Receiver(max_line_length=s.max_line_length, max_literal_size=s.max_literal_size)

    # --- what the adapter reads ----------------------------------------------------------
    @property
    def state(self) -> State:
        return self.session.state

    @property
    def ended(self) -> bool:
        return self._closed or self.session.state is State.LOGOUT

    @property
    def idling(self) -> bool:
        return self._suspended is not None and isinstance(self._suspended.wait, Idle)

    @property
    def in_command(self) -> bool:
        """Part of a command (or its literals) has arrived (the command timer runs)."""
        return self._receiver.in_command

    @property
    def commands_ended(self) -> int:
        """Commands framed so far: a change means a new command began."""
        return self._receiver.commands_ended

    @property
    def feed(self) -> Subscription | None:
        """The user's change feed (after login)."""
        return self.ctx.feed

    @property
    def wants_changes(self) -> bool:
        """Feed events are announced now: idling, or NOTIFY set between commands
        (RFC 5465 §3.1)."""
        if self.idling:
            return True
        return self.ctx.notifier is not None and self._receiver.between_commands

    def data_to_send(self) -> bytes:
        return self.ctx.take_output()

    def data_to_send_parts(self) -> list[bytes]:
        """`data_to_send` as pieces for one gathered write (``writelines``)."""
        return self.ctx.take_output_parts()

    # --- what the adapter tells ------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; b"" is EOF."""
        self._receiver.receive_data(data)

    def goodbye(self, text: str, code: str | None = None) -> None:
        """End the session with ``* BYE`` (a timer ran out, the server stops)."""
        self.ctx.send(r.bye(text, code))
        self.session.state = State.LOGOUT

    def tls_started(self) -> None:
        self.session.tls = True
        self._receiver = self._new_receiver()  # drop anything pipelined in plaintext

    def tls_failed(self) -> None:
        self.session.state = State.LOGOUT

    def note(self, change: Change) -> None:
        """One change from the feed, read while `wants_changes`."""
        self.ctx.note(change)

    def feed_lost(self) -> None:
        """The feed was cut off (overflow, store closing): everything is re-checked."""
        self.ctx.feed_lost()

    async def announce(self) -> None:
        """Tell the client what the noted changes mean: IDLE's updates, or what NOTIFY
        asked for between commands."""
        susp = self._suspended
        notifier = self.ctx.notifier
        if susp is not None and isinstance(susp.wait, Idle):
            try:
                if notifier is not None:
                    await notifier.between_commands(self.ctx, idle=True)
                else:
                    await self.ctx.sync(allow_expunge=True)
            except Exception as e:
                await self._finish(failure(self.ctx, susp.cmd, e))  # IDLE ends with NO
        elif notifier is not None:
            try:
                await notifier.between_commands(self.ctx, idle=False)
            except StoreError:
                log.exception("sid=%s cannot read changes for NOTIFY", self.session.sid)

    def close(self) -> None:
        """The connection is gone: spool files removed, budget returned, feed closed."""
        self._command_done()
        self.ctx.close()

    # --- the session loop ------------------------------------------------------------------
    async def next_event(self) -> Event:
        """Run what the received bytes hold until the adapter is needed."""
        session = self.session
        while True:
            if self._signal is not None:
                signal, self._signal = self._signal, None
                return signal
            if self._closed or session.state is State.LOGOUT:  # `ended`
                return CLOSE
            ev = self._receiver.next()
            if ev is _NEED_DATA:
                return NEED_DATA
            if self._suspended is not None:
                await self._resume(self._suspended, ev)
            elif isinstance(ev, RawCommand):
                try:
                    await self._command(ev)
                finally:
                    self._command_done()
                # pipelined commands: their output flushed past HIGH_WATER and the
                # loop given a turn now and then (30,000 NOOPs in one read were
                # answered in one 47 ms step)
                await self.ctx.maybe_drain()
            elif isinstance(ev, LiteralChunk):
                self._spooled[-1].write(ev.data)
            elif isinstance(ev, NeedLiteral):
                self._literal(ev)
            elif isinstance(ev, BadInput):
                self._command_done()
                self.ctx.send(ev.response())
                if ev.fatal:
                    self._closed = True
                else:
                    self.ctx.count_bad()
            elif isinstance(ev, ConnectionClosed):
                self._closed = True
            # ContinuationLine / IdleDone only arrive in the modes of a suspended command

    async def _command(self, raw: RawCommand) -> None:
        if self._spooled:
            files = iter(self._spooled)
            if any(f.failed for f in self._spooled):
                log.error("sid=%s cannot spool a literal (disk full?)", self.session.sid)
                if raw.tag is not None:
                    text = "Cannot receive the message now, try again later"
                    self.ctx.send(r.tagged(raw.tag, "NO", text, r.UNAVAILABLE))
                return
            literals = tuple(
                replace(lit, file=next(files).spooled()) if lit.streamed else lit
                for lit in raw.literals
            )
            raw = replace(raw, literals=literals)
        try:
            cmd = parse_command(raw, utf8=self.session.utf8)
        except ParseError as e:
            self.ctx.send(e.response())
            if e.fatal:
                self.session.state = State.LOGOUT
            elif e.status == "BAD":
                self.ctx.count_bad()
            return
        ctx = self.ctx
        was_selected = selected_id(ctx)
        outcome = await run(ctx, cmd)  # `dispatch`, its two steps here
        if isinstance(outcome, Result):
            await finish(ctx, cmd, outcome, was_selected)
            if outcome.starttls and not self.ended:
                self._signal = START_TLS
            return
        self._suspended = _Suspended(cmd, was_selected, outcome)
        if isinstance(outcome, Challenge):
            self.ctx.send(r.continuation(outcome.prompt))
            self._receiver.expect_continuation(cmd.tag)
            return
        self.ctx.send(r.continuation("idling"))
        self._receiver.start_idle(cmd.tag)
        self._signal = IDLING
        if self.session.view is not None:
            try:
                await self.ctx.sync(allow_expunge=True)
            except Exception as e:
                await self._finish(failure(self.ctx, cmd, e))

    async def _resume(self, susp: _Suspended, ev: object) -> None:
        """The client's next event for a suspended command."""
        if isinstance(susp.wait, Challenge):
            if isinstance(ev, BadInput):
                await self._finish(Result(Status(ev.status), ev.text, ev.code))
            elif isinstance(ev, ContinuationLine):
                try:
                    result = await susp.wait.resume(ev.data)
                except Exception as e:
                    result = failure(self.ctx, susp.cmd, e)
                await self._finish(result)
            else:  # the client left
                self._suspended = None
                self.session.state = State.LOGOUT
            return
        if isinstance(ev, IdleDone):
            await self._finish(ok("IDLE terminated"))
        elif isinstance(ev, BadInput):
            if ev.fatal:
                self._suspended = None
                self.ctx.send(ev.response())
                self.session.state = State.LOGOUT
            else:
                await self._finish(bad(ev.text, ev.code))
        elif isinstance(ev, ConnectionClosed):
            self._suspended = None
            self.session.state = State.LOGOUT
        else:  # pragma: no cover - IDLE mode yields nothing else
            await self._finish(bad("Expected DONE"))

    async def _finish(self, result: Result) -> None:
        """End the suspended command with its tagged response."""
        susp = self._suspended
        assert susp is not None
        self._suspended = None
        await finish(self.ctx, susp.cmd, result, susp.was_selected)

    # --- literals ----------------------------------------------------------------------------
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
                self._receiver.stream_literal()
                self._spooled.append(self._spool())
        elif ev.held + ev.size > s.max_line_length:
            # as Dovecot: outside APPEND, literals count towards the command's length
            self._refuse_literal(ev, "Literal too large", r.TOOBIG)
            return
        if not ev.non_sync:
            self.ctx.send(r.continuation("Ready for literal data"))

    def _refuse_literal(self, ev: NeedLiteral, text: str, code: str, count: bool = True) -> None:
        """Synchronising: NO, the client never sends it; non-synchronising: BAD now,
        and the receiver throws the bytes away (RFC 7888 §4). Either way the
        command is over."""
        self._receiver.refuse_literal()
        self._command_done()
        status = "BAD" if ev.non_sync else "NO"
        if ev.tag is None:
            self.ctx.send(r.untagged_status("BAD", text, code))
        else:
            self.ctx.send(r.tagged(ev.tag, status, text, code))
        if count:  # the client's mistake (a full budget is not)
            self.ctx.count_bad()

    def _command_done(self) -> None:
        """The command being received ended (answered, refused or abandoned): its
        spool files go, its budget charge is returned."""
        if self._spooled:
            for f in self._spooled:
                f.discard()
            self._spooled = []
        if self._charged and self.session.user is not None:
            self._budget.release(self.session.user.id, self._charged)
        self._charged = 0
