"""NOTIFY (RFC 5465): which events the client hears of, for which mailboxes, and when.

NOTIFY SET replaces the session's `Notifier`; NOTIFY NONE removes it. While one is
set, the adapter (`postier.imap.server`) also listens to the change feed between
commands and calls `Notifier.between_commands`, and IDLE reports through it.

Rules:
- SELECTED / SELECTED-DELAYED govern the selected mailbox between commands (and
  in IDLE): EXISTS (then a FETCH of the MessageNew fetch-atts for each new message),
  FETCH FLAGS when FlagChange was asked for, EXPUNGE or VANISHED only under
  SELECTED (RFC 5465 §6.1.1); under SELECTED-DELAYED expunges wait for a command
  that may announce them (§6.1.2). The end of every command still announces what
  RFC 9051 §7.4.1 owes there, NOTIFY or not, with expunges held back during FETCH,
  STORE, SEARCH, SORT and THREAD as always (RFC 9051 §7.5.1); IDLE reports the
  selected mailbox as it does without NOTIFY (as Dovecot does).
- Other mailboxes: PERSONAL and INBOXES (treated alike, RFC 5465 §6.3) cover every
  mailbox of the user, SUBSCRIBED the subscribed ones (re-evaluated as
  subscriptions change, §6.4), SUBTREE a name and everything below it, MAILBOXES
  exactly the names given, without wildcards (§6.6). Message events there become
  STATUS responses (§5.1-§5.3): after new or expunged messages ``MESSAGES UIDNEXT
  UNSEEN`` (and HIGHESTMODSEQ with CONDSTORE/QRESYNC); after flag changes
  ``UIDVALIDITY HIGHESTMODSEQ`` with CONDSTORE, ``UNSEEN`` when the count moved,
  nothing otherwise. MailboxName and SubscriptionChange become LIST responses
  (§5.4, §5.5): ``\\NonExistent`` for a deleted name, ``OLDNAME`` for a renamed one
  (its children are not announced again), the direct parent of a created or
  deleted mailbox is listed too, attributes as LIST gives them.
- What is announced is a difference between what the session last told (or
  learnt itself) and the store, not a replay of the feed: duplicated or merged
  feed events cost nothing, and a feed overflow means "compare everything"
  instead of lost events.
- Changes this session made itself (APPEND, COPY, MOVE into another mailbox,
  CREATE, DELETE, RENAME, [UN]SUBSCRIBE) are not announced back (RFC 5465 §5),
  nor is a FETCH sent for messages it added to the selected mailbox (§5.2).
- Unsupported events (AnnotationChange, MailboxMetadataChange,
  ServerMetadataChange, extensions) are ``NO [BADEVENT (...)]`` listing the
  supported ones (§3.1); too many mailbox names are ``NO [NOTIFICATIONOVERFLOW]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from postier.imap import parse as p
from postier.imap import responses as r
from postier.imap.commands import fetch as fetch_cmd
from postier.imap.commands.context import Context, Result, no, ok
from postier.imap.sequence import SequenceSet
from postier.imap.session import State
from postier.store.models import Change, ChangeKind, Mailbox, MailboxId

#: events postier reports, in the order BADEVENT lists them (RFC 5465 §3.1)
SUPPORTED_EVENTS = (
    "MessageNew",
    "MessageExpunge",
    "FlagChange",
    "MailboxName",
    "SubscriptionChange",
)
#: mailbox names one NOTIFY may name (SUBTREE and MAILBOXES together)
MAX_NAMES = 1000
_MESSAGE_EVENTS = frozenset({"MessageNew", "MessageExpunge", "FlagChange"})
_LIST_EVENTS = frozenset({"MailboxName", "SubscriptionChange"})
#: commands whose own changes to other mailboxes are not announced back (§5)
_OWN_TARGET = (p.Append, p.Copy, p.Move)
_OWN_LIST = (p.Create, p.Delete, p.Rename, p.Subscribe, p.Unsubscribe)


@dataclasses.dataclass(frozen=True)
class Watch:
    """One event group for mailboxes other than the selected one."""

    filter: str
    events: frozenset[str]
    names: tuple[str, ...] = ()

    def covers(self, name: str, subscribed: bool) -> bool:
        if self.filter in ("PERSONAL", "INBOXES"):
            return True
        if self.filter == "SUBSCRIBED":
            return subscribed
        if self.filter == "MAILBOXES":
            return name in self.names  # RFC 5465 §6.6: no wildcards
        return any(name == n or name.startswith(n + "/") for n in self.names)  # SUBTREE


async def notify(ctx: Context, cmd: p.Notify) -> Result:
    if cmd.groups is None:
        ctx.notifier = None
        return ok("NOTIFY completed")
    asked = {e for g in cmd.groups for e in g.events}
    if asked - set(SUPPORTED_EVENTS):
        code = "BADEVENT (" + " ".join(SUPPORTED_EVENTS) + ")"
        return no("Unsupported NOTIFY event", code)  # RFC 5465 §3.1
    if sum(len(g.mailboxes) for g in cmd.groups) > MAX_NAMES:
        return no("Too many mailbox names", "NOTIFICATIONOVERFLOW")
    notifier = Notifier(cmd.groups)
    await notifier.start(ctx, send_status=cmd.status)
    ctx.notifier = notifier
    return ok("NOTIFY completed")


class Notifier:
    """One session's NOTIFY: the event groups, and the state of every mailbox as the
    client was last told of it (to announce differences)."""

    def __init__(self, groups: Iterable[p.NotifyGroup]) -> None:
        self.selected: p.NotifyGroup | None = None
        self.watches: list[Watch] = []
        for g in groups:
            if g.filter.startswith("SELECTED"):
                self.selected = g
            elif g.events:
                self.watches.append(Watch(g.filter, frozenset(g.events), g.mailboxes))
        #: mailbox id → the mailbox as last announced or learnt
        self.known: dict[MailboxId, Mailbox] = {}
        self._pending: set[MailboxId] = set()  # message changes to compare
        self._names_changed = False  # a mailbox was created, deleted, renamed, (un)subscribed
        self._lost = False  # the feed overflowed: compare everything
        self._wants_names = any(w.events & _LIST_EVENTS for w in self.watches)

    # --- the selected mailbox --------------------------------------------------------
    @property
    def watches_selected(self) -> bool:
        """Selected-mailbox events are sent between commands (not SELECTED NONE)."""
        return self.selected is not None and bool(self.selected.events)

    # --- feed ---------------------------------------------------------------------------
    def note(self, change: Change) -> None:
        if change.kind is ChangeKind.MAILBOX:
            self._names_changed = True
        else:
            self._pending.add(change.mailbox_id)

    def lost(self) -> None:
        self._lost = True

    # --- NOTIFY SET ---------------------------------------------------------------------
    async def start(self, ctx: Context, *, send_status: bool) -> None:
        """Take the state of every mailbox; with the STATUS indicator, send STATUS for
        each one message events are asked for (RFC 5465 §3.1)."""
        user = ctx.session.user
        assert user is not None
        boxes = await ctx.store.list_mailboxes(user.id)
        self.known = {m.id: m for m in boxes}
        if not send_status:
            return
        selected = _selected_id(ctx)
        for m in boxes:
            if m.id != selected and self._events(m.name, m.subscribed) & _MESSAGE_EVENTS:
                items = [
                    ("MESSAGES", m.messages),
                    ("UIDNEXT", m.uidnext),
                    ("UIDVALIDITY", m.uidvalidity),
                    ("UNSEEN", m.unseen),
                ]
                if ctx.session.condstore:
                    items.append(("HIGHESTMODSEQ", m.highestmodseq))
                ctx.send(r.status(m.name, items, utf8=ctx.session.utf8))

    def _events(self, name: str, subscribed: bool) -> frozenset[str]:
        out: set[str] = set()
        for w in self.watches:
            if w.covers(name, subscribed):
                out |= w.events
        return frozenset(out)

    # --- when to announce -----------------------------------------------------------------
    async def after_command(
        self, ctx: Context, cmd: p.Command, was_selected: MailboxId | None, *, allow_expunge: bool
    ) -> None:
        """End of a command: forget this session's own changes, announce the selected
        mailbox's updates (RFC 9051 §7.4.1) and other mailboxes' events."""
        ctx.poll_feed()
        if isinstance(cmd, _OWN_TARGET):
            await self._absorb(ctx, cmd.mailbox)
        if isinstance(cmd, _OWN_LIST):
            await self._absorb_names(ctx)
        if was_selected is not None and was_selected != _selected_id(ctx):
            await self._refresh(ctx, was_selected)  # its changes were announced as selected
        if ctx.session.state is State.SELECTED:
            await self._sync_selected(
                ctx,
                allow_expunge=allow_expunge,
                allow_flags=True,
                fetch_new=not isinstance(cmd, _OWN_TARGET),  # RFC 5465 §5.2
            )
        await self.flush(ctx)

    async def between_commands(self, ctx: Context, *, idle: bool) -> None:
        """The feed spoke while no command runs (or in IDLE): announce what NOTIFY asked
        for."""
        ctx.poll_feed()
        if ctx.session.state is State.SELECTED and (idle or self.watches_selected):
            sel = self.selected
            immediate = sel is not None and sel.filter == "SELECTED"
            await self._sync_selected(
                ctx,
                allow_expunge=idle or immediate,  # RFC 5465 §6.1.2: SELECTED-DELAYED waits
                allow_flags=idle or (sel is not None and "FlagChange" in sel.events),
                fetch_new=True,
            )
        if ctx.session.state is not State.LOGOUT:
            await self.flush(ctx)

    async def _sync_selected(
        self, ctx: Context, *, allow_expunge: bool, allow_flags: bool, fetch_new: bool
    ) -> None:
        view = ctx.session.view
        assert view is not None
        first_new = view.uidnext
        await ctx.sync(allow_expunge=allow_expunge, allow_flags=allow_flags)
        sel = self.selected
        if not fetch_new or sel is None or not sel.fetch or ctx.session.view is not view:
            return
        new: list[int] = []
        for u in reversed(view.uids):
            if u < first_new:
                break
            new.append(u)
        if new:
            # RFC 5465 §5.2: EXISTS, then FETCH of the asked attributes
            await fetch_cmd.fetch(ctx, p.Fetch("*", SequenceSet.from_ids(new), sel.fetch, uid=True))

    # --- other mailboxes ---------------------------------------------------------------------
    async def flush(self, ctx: Context) -> None:
        """Announce the differences between `known` and the store for the mailboxes
        the feed named (all of them after an overflow)."""
        user = ctx.session.user
        assert user is not None
        selected = _selected_id(ctx)
        if self._names_changed or self._lost:
            fresh = {m.id: m for m in await ctx.store.list_mailboxes(user.id)}
            if self._wants_names:
                self._announce_names(ctx, fresh)
            compare = set(fresh) if self._lost else self._pending & set(fresh)
            for mid, m in fresh.items():
                old = self.known.get(mid)
                if mid in compare or old is None:
                    continue
                # counts stay as last told: their change may still be on its way
                self.known[mid] = dataclasses.replace(
                    old, name=m.name, subscribed=m.subscribed, special_use=m.special_use
                )
            for mid in [k for k in self.known if k not in fresh]:
                del self.known[mid]
            for mid, m in fresh.items():
                if mid not in self.known:
                    # new here: announce its first messages in full when they come
                    self.known[mid] = dataclasses.replace(
                        m, messages=0, unseen=0, size=0, uidnext=1, highestmodseq=0
                    )
            rows = [fresh[mid] for mid in sorted(compare)]
            self._names_changed = self._lost = False
        else:
            rows = []
            for mid in sorted(self._pending):
                row = await ctx.store.get_mailbox_by_id(mid)
                if row is not None and row.user_id == user.id:
                    rows.append(row)
        self._pending.clear()
        for m in rows:
            if m.id != selected:
                self._announce_status(ctx, m)
            else:
                self.known[m.id] = m

    def _announce_status(self, ctx: Context, m: Mailbox) -> None:
        old = self.known.get(m.id)
        self.known[m.id] = m
        if old is None:
            return
        events = self._events(m.name, m.subscribed)
        s = ctx.session
        items: list[tuple[str, int]] = []
        if m.messages != old.messages or m.uidnext != old.uidnext:
            if "MessageNew" in events:  # MessageExpunge comes with it (RFC 5465 §5)
                items = [("MESSAGES", m.messages), ("UIDNEXT", m.uidnext), ("UNSEEN", m.unseen)]
                if s.condstore:
                    items.append(("HIGHESTMODSEQ", m.highestmodseq))  # RFC 5465 §5.2, §5.3
        elif m.highestmodseq != old.highestmodseq and "FlagChange" in events:
            if s.condstore:  # RFC 5465 §5.1
                items = [("UIDVALIDITY", m.uidvalidity), ("HIGHESTMODSEQ", m.highestmodseq)]
            if m.unseen != old.unseen:
                items.append(("UNSEEN", m.unseen))
        if items:
            ctx.send(r.status(m.name, items, utf8=s.utf8))

    def _announce_names(self, ctx: Context, fresh: dict[MailboxId, Mailbox]) -> None:
        """LIST responses for created, deleted, renamed and (un)subscribed mailboxes
        (RFC 5465 §5.4, §5.5)."""
        utf8 = ctx.session.utf8
        old = self.known
        names = {m.name for m in fresh.values()}
        by_name = {m.name: m for m in fresh.values()}
        sent: set[str] = set()

        def attrs(m: Mailbox) -> list[str]:
            prefix = m.name + "/"
            out = [
                "\\HasChildren" if any(n.startswith(prefix) for n in names) else "\\HasNoChildren"
            ]
            if m.subscribed:
                out.append("\\Subscribed")
            if m.special_use:
                out.append(m.special_use)
            return out

        def wanted(event: str, *views: tuple[str, bool]) -> bool:
            return any(
                event in w.events and w.covers(n, sub) for w in self.watches for n, sub in views
            )

        renamed = {
            mid: (old[mid].name, m.name)
            for mid, m in fresh.items()
            if mid in old and old[mid].name != m.name
        }
        moved_from = {o for o, _ in renamed.values()}
        affected: list[str] = []
        for mid, (was, now) in sorted(renamed.items(), key=lambda kv: kv[1][1]):
            parent = was.rsplit("/", 1)[0] if "/" in was else None
            if parent in moved_from:
                continue  # renamed with its parent: not announced again (§5.4)
            m = fresh[mid]
            if wanted("MailboxName", (now, m.subscribed), (was, old[mid].subscribed)):
                ctx.send(r.list_response(now, attrs(m), utf8=utf8, oldname=was))
                sent.add(now)
        for mid in sorted((k for k in fresh if k not in old), key=lambda k: fresh[k].name):
            m = fresh[mid]
            affected.append(m.name)
            if wanted("MailboxName", (m.name, m.subscribed)):
                ctx.send(r.list_response(m.name, attrs(m), utf8=utf8))
                sent.add(m.name)
        for mid in sorted((k for k in old if k not in fresh), key=lambda k: old[k].name):
            gone = old[mid]
            affected.append(gone.name)
            if gone.name not in names and wanted("MailboxName", (gone.name, gone.subscribed)):
                ctx.send(r.list_response(gone.name, ("\\NonExistent",), utf8=utf8))
                sent.add(gone.name)
        for name in affected:  # §5.4: the direct parent is affected too
            parent = name.rsplit("/", 1)[0] if "/" in name else None
            pm = by_name.get(parent) if parent is not None else None
            if (
                pm is not None
                and pm.name not in sent
                and wanted("MailboxName", (pm.name, pm.subscribed))
            ):
                ctx.send(r.list_response(pm.name, attrs(pm), utf8=utf8))
                sent.add(pm.name)
        for mid, m in sorted(fresh.items(), key=lambda kv: kv[1].name):
            was_m = old.get(mid)
            if was_m is None or was_m.subscribed == m.subscribed or m.name in sent:
                continue
            if wanted("SubscriptionChange", (m.name, True), (was_m.name, True)):
                ctx.send(r.list_response(m.name, attrs(m), utf8=utf8))  # §5.5
                sent.add(m.name)

    # --- this session's own changes ---------------------------------------------------------
    async def _absorb(self, ctx: Context, name: str) -> None:
        user = ctx.session.user
        assert user is not None
        m = await ctx.store.get_mailbox(user.id, name)
        if m is not None:
            self.known[m.id] = m
            self._pending.discard(m.id)

    async def _refresh(self, ctx: Context, mid: MailboxId) -> None:
        m = await ctx.store.get_mailbox_by_id(mid)
        if m is not None and m.id in self.known:
            self.known[m.id] = m
            self._pending.discard(m.id)

    async def _absorb_names(self, ctx: Context) -> None:
        if not self._names_changed:
            return
        user = ctx.session.user
        assert user is not None
        fresh = {m.id: m for m in await ctx.store.list_mailboxes(user.id)}
        for mid, m in fresh.items():
            old = self.known.get(mid)
            self.known[mid] = (
                m
                if old is None
                else dataclasses.replace(
                    old, name=m.name, subscribed=m.subscribed, special_use=m.special_use
                )
            )
        for mid in [k for k in self.known if k not in fresh]:
            del self.known[mid]
        self._names_changed = False


def _selected_id(ctx: Context) -> MailboxId | None:
    view = ctx.session.view
    return view.mailbox_id if view is not None else None
