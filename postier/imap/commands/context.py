"""What every command handler works with: the session, the store, the settings and
the session's output (`Context`); what handlers return (`Result`, or `Idle` /
`Challenge` for a command that goes on with the client's next lines).

Rules:
- A handler is ``async def handle(ctx, cmd) -> Outcome``. It queues untagged data
  with `ctx.send` (the session core hands the bytes to its adapter; no handler
  touches a socket); the dispatcher (`commands.dispatch`) writes the tagged line
  after `ctx.sync` has announced other sessions' changes (EXPUNGE only where
  allowed). Every command ends in exactly one tagged line, unless the session ends
  first (BYE).
- A handler that needs the client again returns `Idle` (IDLE: the core idles until
  DONE) or `Challenge` (the core sends the continuation request and feeds the
  client's answer to `resume`); `Result.starttls` asks the core for the TLS
  handshake after the tagged OK.
- Large responses call `ctx.maybe_drain` now and then: past `HIGH_WATER` queued
  octets it hands them to the adapter's `flush` hook (backpressure), and every
  `YIELD_EVERY` calls, and after each flush, it gives the event loop one turn (a
  flush to a client that keeps up never waits), so one response per message of
  a large mailbox never holds the loop for all of them.
- A handler refuses with `Refuse` (or returns a NO/BAD `Result`); store errors it does
  not catch become NO with a response code in the dispatcher; anything else is a
  server bug: ``NO [SERVERBUG]`` with the session id, and a traceback in the log.
- Every mailbox is looked up through `ctx.mailbox(name)`, which is scoped by the
  session's user id: no name reaches another user's mailboxes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from postier.imap import responses as r
from postier.imap.commands import updates
from postier.imap.session import MailboxView, RecentClaims, Session, State
from postier.store.api import Store, Subscription
from postier.store.errors import StoreError
from postier.store.feed import SubscriptionClosed
from postier.store.models import SYSTEM_FLAGS, Change, Mailbox, Uid, UserId

if TYPE_CHECKING:
    from postier.auth.service import AuthService
    from postier.config.schema import Settings
    from postier.imap.commands.notify import Notifier

log = logging.getLogger("postier.imap")

#: queued output that makes `Context.maybe_drain` flush (large FETCH, URLFETCH)
HIGH_WATER = 256 * 1024
#: responses (FETCH items: `Context.maybe_drain`'s cost) between two turns given
#: to the event loop: a STORE 1:* +FLAGS on 8,000 messages built its 8,000
#: responses in one 27 ms step, a FETCH 1:* of 256 FLAGS items 106 ms
YIELD_EVERY = 1000
#: output pieces this large are written as they are, not joined (`take_output_parts`)
OWN_PIECE = 4096

#: written back by ID (RFC 2971 §3.3)
SERVER_ID = (("name", "postier"), ("vendor", "postier"), ("version", "0.1.0"))


class Status(enum.Enum):
    """The tagged response's status (RFC 9051 §7.1); the value is its wire form."""

    OK = "OK"
    NO = "NO"
    BAD = "BAD"


@dataclass(frozen=True)
class Result:
    status: Status
    text: str
    code: str | None = None
    #: after this tagged OK the connection switches to TLS (STARTTLS)
    starttls: bool = False


@dataclass(frozen=True)
class Idle:
    """IDLE goes on: ``+ idling``, then updates as they happen until DONE."""


@dataclass(frozen=True)
class Challenge:
    """The command sends ``+ prompt`` and goes on with the client's next line."""

    prompt: str
    #: the client's answer (without CRLF) → the command's result
    resume: Callable[[bytes], Awaitable[Result]]


#: what a handler returns
Outcome = Result | Idle | Challenge

#: (user, source, target, UIDs in target): messages a MOVE put in `target`
LearnMove = Callable[[UserId, Mailbox, Mailbox, Sequence[Uid]], None]


def ok(text: str, code: str | None = None) -> Result:
    return Result(Status.OK, text, code)


def no(text: str, code: str | None = None) -> Result:
    return Result(Status.NO, text, code)


def bad(text: str, code: str | None = None) -> Result:
    return Result(Status.BAD, text, code)


class Refuse(Exception):
    """Raised by a handler to answer NO/BAD at once."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.text)
        self.result = result


class Context:
    """One session as the handlers see it; `postier.imap.core` owns it and takes what
    they queue with `send` (`take_output`)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        auth: AuthService,
        session: Session,
        recent: RecentClaims,
        *,
        peer_ip: str,
        plaintext_ok: bool,
        flush: Callable[[], Awaitable[None]] | None = None,
        learn_move: LearnMove | None = None,
    ) -> None:
        self.store = store
        #: told of every MOVE (`filters.bayes.MoveLearner.moved`); returns at once
        self.learn_move = learn_move
        self.settings = settings
        self.auth = auth
        self.session = session
        self.recent = recent
        self.peer_ip = peer_ip
        self.plaintext_ok = plaintext_ok
        self.feed: Subscription | None = None
        #: what NOTIFY asked for (RFC 5465); None before NOTIFY SET and after NONE
        self.notifier: Notifier | None = None
        #: CONDSTORE was enabled while a mailbox was selected: HIGHESTMODSEQ owed
        self.highestmodseq_owed = False
        self._out: list[bytes] = []  # joined once when taken: one copy of big FETCHes
        self._out_size = 0
        self._flush = flush
        self._since_yield = 0  # `maybe_drain` calls since the loop last had a turn

    # --- output ------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Queue response bytes for the client."""
        self._out.append(data)
        self._out_size += len(data)

    def send_parts(self, parts: Sequence[bytes]) -> None:
        """Queue one response in pieces (`responses.fetch_parts`)."""
        self._out.extend(parts)
        self._out_size += sum(map(len, parts))

    def take_output(self) -> bytes:
        """What was queued since the last call."""
        return b"".join(self.take_output_parts())

    def take_output_parts(self) -> list[bytes]:
        """What was queued since the last call, for one gathered write: runs of small
        pieces joined, pieces of `OWN_PIECE` octets or more (message bodies) as they
        are, so a FETCH of bodies copies none of them in Python."""
        out, self._out, self._out_size = self._out, [], 0
        if len(out) <= 1:
            return out
        pieces: list[bytes] = []
        run: list[bytes] = []
        for data in out:
            if len(data) < OWN_PIECE:
                run.append(data)
                continue
            if run:
                pieces.append(b"".join(run))
                run = []
            pieces.append(data)
        if run:
            pieces.append(b"".join(run))
        return pieces

    async def maybe_drain(self, cost: int = 1) -> None:
        """Let the adapter write (and wait for the client to read) when much output is
        queued: a large FETCH never sits whole in memory. `cost`: the responses (or
        FETCH items) made since the last call, counted towards `YIELD_EVERY`."""
        if self._flush is not None and self._out_size > HIGH_WATER:
            await self._flush()
            self._since_yield = YIELD_EVERY  # 256 KB built: a turn for the others too
        self._since_yield += cost
        if self._since_yield >= YIELD_EVERY:
            self._since_yield = 0
            await _pause()

    def count_bad(self) -> None:
        """One more BAD answer in a row: past the limit, say BYE and log out."""
        s = self.session
        s.bad_commands += 1
        if s.bad_commands >= self.settings.imap.max_bad_commands:
            self.send(r.bye("Too many invalid commands"))
            s.state = State.LOGOUT

    # --- capabilities ------------------------------------------------------------------
    def capabilities(self) -> list[str]:
        s = self.session
        caps = ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE"]
        if s.state is State.NOT_AUTHENTICATED:
            if not s.tls:
                caps.append("STARTTLS")
            if s.tls or self.plaintext_ok:
                caps.append("AUTH=PLAIN")
            else:
                caps.append("LOGINDISABLED")  # RFC 9051 §6.2.3
            return caps
        caps += [
            "IDLE", "NAMESPACE", "UNSELECT", "UIDPLUS", "MOVE", "CHILDREN", "SPECIAL-USE",
            "CREATE-SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS", "STATUS=SIZE",
            "CONDSTORE", "QRESYNC", "ESEARCH", "SEARCHRES", "SORT", "SORT=DISPLAY", "ESORT",
            "CONTEXT=SEARCH", "CONTEXT=SORT",
            "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "WITHIN", "BINARY", "MULTIAPPEND",
            "CATENATE",
            "UTF8=ACCEPT", "QUOTA", "QUOTA=RES-STORAGE",
            "NOTIFY", "URLAUTH",
            f"APPENDLIMIT={self.settings.imap.max_literal_size}",
        ]  # fmt: skip
        return caps

    def enable_condstore(self) -> None:
        """A CONDSTORE-enabling command (RFC 7162 §3.1): FETCH/SEARCH with MODSEQ,
        CHANGEDSINCE, UNCHANGEDSINCE, STATUS HIGHESTMODSEQ, SELECT (CONDSTORE),
        ENABLE. With a mailbox selected, its HIGHESTMODSEQ is owed in the OK."""
        s = self.session
        if not s.condstore:
            s.enabled.add("CONDSTORE")
            self.highestmodseq_owed = s.view is not None

    def announce_keywords(self, view: MailboxView) -> None:
        """FLAGS (and PERMANENTFLAGS) when the client has not seen a keyword the
        next FETCH may show (RFC 9051 §7.3.5, RFC 3501 §7.2.6)."""
        keywords = view.take_new_keywords()
        if keywords is None:
            return
        flags = SYSTEM_FLAGS | keywords
        self.send(r.flags(flags))
        if not view.readonly:
            self.send(r.untagged_status("OK", "Flags permitted", r.code_permanentflags(flags)))

    # --- mailboxes ---------------------------------------------------------------------
    async def mailbox(self, name: str) -> Mailbox | None:
        """The session user's mailbox called `name` (never anyone else's)."""
        user = self.session.user
        assert user is not None
        return await self.store.get_mailbox(user.id, name)

    # --- change feed -------------------------------------------------------------------
    def subscribe(self) -> None:
        user = self.session.user
        assert user is not None
        if self.feed is not None:
            self.feed.close()
        self.feed = self.store.subscribe(user.id)

    def poll_feed(self) -> None:
        """Take what the feed has: news for the selected mailbox marks the view dirty;
        NOTIFY (`notifier`) notes the rest."""
        if self.feed is None:
            return
        while True:
            try:
                change = self.feed.get_nowait()
            except SubscriptionClosed:  # overflow or store closing: re-check everything
                self.feed_lost()
                return
            if change is None:
                return
            self.note(change)

    def note(self, change: Change) -> None:
        """One change from the feed."""
        view = self.session.view
        if view is not None and change.mailbox_id == view.mailbox_id:
            view.dirty = True
        if self.notifier is not None:
            self.notifier.note(change)

    def feed_lost(self) -> None:
        """The feed was cut off (overflow) or closed: subscribe again and re-check
        everything, since changes may have been missed."""
        self.subscribe()
        if self.session.view is not None:
            self.session.view.dirty = True
        if self.notifier is not None:
            self.notifier.lost()

    def quiet(self) -> bool:
        """Take what the feed has; True when `sync` would now do nothing (most
        commands), so the caller need not run it."""
        view = self.session.view
        if view is None:
            return True
        self.poll_feed()
        return not view.dirty and not view.pending and not self.session.live

    async def sync(self, *, allow_expunge: bool, allow_flags: bool = True) -> None:
        """Learn what changed in the selected mailbox and send the untagged updates the
        client may receive now (RFC 9051 §7.4.1, §7.5.1; RFC 7162 §3.2.10)."""
        view = self.session.view
        if view is None:
            return
        self.poll_feed()
        if not view.dirty and not view.pending:
            if self.session.live:
                await updates.refresh(self)
            return  # nothing to announce (most commands): no `take_updates`
        if view.dirty:
            view.dirty = False
            mbox = await self.store.get_mailbox_by_id(view.mailbox_id)
            if mbox is None or mbox.uidvalidity != view.uidvalidity:
                # deleted (or renamed away and recreated) under us
                self.send(r.bye("Selected mailbox was deleted"))
                self.session.state = State.LOGOUT
                return
            changed = await self.store.changed_since(view.mailbox_id, view.baseline)  # type: ignore[arg-type]
            vanished = await self.store.vanished_since(view.mailbox_id, view.baseline)  # type: ignore[arg-type]
            new = view.apply(changed, vanished, mbox.highestmodseq)
            await view.claim_recent(new, self.recent)
        self.emit(view, allow_expunge=allow_expunge, allow_flags=allow_flags)
        if self.session.live:
            await updates.refresh(self)  # RFC 5267 §4.3.3: ADDTO after EXISTS

    def emit(self, view: MailboxView, *, allow_expunge: bool, allow_flags: bool = True) -> None:
        s = self.session
        up = view.take_updates(allow_expunge=allow_expunge, allow_flags=allow_flags)
        if up.expunged:
            for line in updates.on_expunge(s, up.expunged):
                self.send(line)  # RFC 5267 §4.3.4: REMOVEFROM before the EXPUNGE
            if s.qresync:
                self.send(r.vanished(u for _, u in up.expunged))  # RFC 7162 §3.2.10
            else:
                for seq, _ in up.expunged:
                    self.send(r.expunge(seq))
        self.announce_keywords(view)
        if up.exists is not None:
            self.send(r.exists(up.exists))
            if not s.rev2 and up.recent is not None:
                self.send(r.recent(up.recent))
        for seq, uid in up.flags:
            self.send(self.flags_fetch(view, seq, uid))

    def flags_fetch(self, view: MailboxView, seq: int, uid: int) -> bytes:
        """An unsolicited ``* n FETCH (UID u FLAGS (...) [MODSEQ (m)])``; UID always,
        as QRESYNC requires it (RFC 7162 §3.2.4)."""
        items: list[tuple[str, r.FetchValue]] = [
            ("UID", uid),
            ("FLAGS", view.flags_of(uid, with_recent=not self.session.rev2)),
        ]
        if self.session.condstore:
            items.append(("MODSEQ", r.Raw(b"(%d)" % view.modseq(uid))))
        return r.fetch(seq, items)

    def close(self) -> None:
        """The session is over: its feed closes, and its view and the adapter's flush
        hook are let go, so the view's columns (perhaps shared, `Snapshots`) go at
        once rather than when the garbage collector breaks the adapter ↔ core cycle."""
        if self.feed is not None:
            self.feed.close()
            self.feed = None
        self.session.view = None
        self.session.live.clear()
        self._flush = None


def store_error(e: StoreError) -> Result:
    """A store refusal the handler did not map itself."""
    from postier.store.errors import Conflict, Invalid, NotFound, QuotaExceeded

    if isinstance(e, NotFound):
        return no("No such mailbox", r.NONEXISTENT)
    if isinstance(e, Conflict):
        return no(str(e), r.ALREADYEXISTS)
    if isinstance(e, QuotaExceeded):
        return no("Quota exceeded", r.OVERQUOTA)
    if isinstance(e, Invalid):
        return no(str(e), r.CANNOT)
    return no("Temporary storage failure", r.UNAVAILABLE)


async def _pause() -> None:
    """One turn of the event loop for the other sessions."""
    await asyncio.sleep(0)
