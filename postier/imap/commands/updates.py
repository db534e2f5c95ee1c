"""Search and sort results kept current (RFC 5267 §4.3, CONTEXT=SEARCH and
CONTEXT=SORT): ``* ESEARCH (TAG "t") ADDTO (...)`` and ``REMOVEFROM (...)``.

Rules:
- SEARCH or SORT with RETURN (UPDATE) makes a context; it lives until CANCELUPDATE
  names its tag or the mailbox is no longer selected (SELECT, EXAMINE, CLOSE,
  UNSELECT). A session holds at most `imap.max_search_contexts`; one more is
  refused with ``* NO [NOUPDATE "tag"]`` while the command's other return options
  are still answered (§4.3.1).
- The context keeps its search program with sequence sets and ``$`` replaced by the
  UIDs they named when the command ran: its members are messages, whose numbers
  move with expunges as every sequence number does.
- Messages that arrived or whose flags changed, by any session including this one,
  are tested again after the untagged updates of `Context.sync`, so an ADDTO of new
  sequence numbers follows their EXISTS (§4.3.3); a member's REMOVEFROM for an
  expunge precedes its EXPUNGE or VANISHED, in the numbers still valid (§4.3.4).
- SEARCH contexts use context position 0 with results in mailbox order (§4.3.3).
  SORT contexts name the position in the sorted result (1 is the first): removals
  from the last position down, then additions from the first position up, so each
  pair holds when the client applies them in order (§4.3.2). A member's sort
  values come from its bytes and internal date and never change: updates only
  insert and remove.
- Re-testing runs off the event loop like SEARCH, within the search budget; a
  context that exceeds it is dropped with ``* NO [NOUPDATE "tag"]``.
- OLDER/YOUNGER are evaluated when a message is tested again, not as time passes.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import TYPE_CHECKING

from postier.imap import parse as p
from postier.imap import responses as r
from postier.imap.matcher import (
    Budget,
    Facts,
    TooComplex,
    compile_program,
    in_search_thread,
    matching,
    numbers,
)
from postier.imap.sequence import SequenceSet
from postier.imap.session import LiveSearch, MailboxView, Session, SortValues
from postier.imap.sortkeys import sort_values
from postier.store.models import Message, Uid

if TYPE_CHECKING:
    from postier.imap.commands.context import Context

#: rows read one by one below this many messages to test again; a UID range above
FEW = 32


def freeze(key: p.SearchKey, view: MailboxView, saved: Sequence[int]) -> p.SearchKey:
    """`key` with every sequence set and ``$`` replaced by the UIDs they name now
    (the parser bounds the nesting, so recursion is shallow)."""
    if isinstance(key, p.SearchSet):
        if key.set.saved:
            uids: Sequence[int] = sorted(set(saved))
        elif key.uid:
            return key
        else:
            uids = [u for _, u in view.resolve(key.set, uid=False)]
        return p.SearchSet(SequenceSet.from_ids(uids), uid=True)
    if isinstance(key, p.SearchAnd):
        return p.SearchAnd(tuple(freeze(k, view, saved) for k in key.keys))
    if isinstance(key, p.SearchOr):
        return p.SearchOr(freeze(key.left, view, saved), freeze(key.right, view, saved))
    if isinstance(key, p.SearchNot):
        return p.SearchNot(freeze(key.key, view, saved))
    return key


class _Order:
    """A member's place in a SORT context: its values, then its UID (RFC 5256 §3)."""

    __slots__ = ("reverse", "uid", "values")

    def __init__(self, values: SortValues, uid: int, reverse: tuple[bool, ...]) -> None:
        self.values = values
        self.uid = uid
        self.reverse = reverse

    def __lt__(self, other: _Order) -> bool:
        for a, b, rev in zip(self.values, other.values, self.reverse, strict=True):
            if a != b:
                return bool(a > b) if rev else bool(a < b)  # type: ignore[operator]
        return self.uid < other.uid


async def start(
    ctx: Context,
    tag: str,
    uid: bool,
    key: p.SearchKey,
    criteria: tuple[p.SortCriterion, ...] | None,
    found: Sequence[Facts],
) -> bytes | None:
    """Keep the result `found` (in result order) current; the untagged refusal to
    send instead when the session holds as many contexts as it may."""
    s = ctx.session
    view = s.view
    assert view is not None
    if len(s.live) >= ctx.settings.imap.max_search_contexts:
        return r.untagged_status("NO", "Too many contexts", r.code_noupdate(tag))
    live = LiveSearch(tag, uid, freeze(key, view, s.saved), criteria)
    live.members = numbers(found, True)
    if criteria is not None:  # SORT: every `Facts.m` is a row with its summary
        live.values = await in_search_thread(_all_values, criteria, [f.m for f in found])
    else:
        live.members.sort()
    s.live[tag] = live
    if view.touched is None:
        view.touched = set()
    return None


def _all_values(
    criteria: Sequence[p.SortCriterion], found: Sequence[Message]
) -> dict[int, SortValues]:
    return {m.uid: sort_values(criteria, m) for m in found}


def cancel(s: Session, tag: str) -> None:
    s.live.pop(tag, None)
    if not s.live and s.view is not None:
        s.view.touched = None


Pairs = list[tuple[int, list[int]]]  # (context position, results)


def _line(live: LiveSearch, removed: Pairs, added: Pairs) -> bytes:
    return r.esearch(live.tag, uid=live.uid, removefrom=removed, addto=added)


def _runs(positions: Sequence[tuple[int, int]]) -> Pairs:
    """(position, id) pairs, ascending by position, as (first position, ids) runs of
    consecutive positions."""
    runs: Pairs = []
    for pos, ident in positions:
        if runs and runs[-1][0] + len(runs[-1][1]) == pos:
            runs[-1][1].append(ident)
        else:
            runs.append((pos, [ident]))
    return runs


def on_expunge(s: Session, expunged: Sequence[tuple[int, int]]) -> list[bytes]:
    """The REMOVEFROM updates owed before announcing `expunged` ((seq, uid) pairs,
    numbered as the client still sees them)."""
    out: list[bytes] = []
    if not s.live or not expunged:
        return out
    seq_of = {u: q for q, u in expunged}
    for live in s.live.values():
        gone = [u for u in live.members if u in seq_of]
        if not gone:
            continue
        ident = (lambda u: u) if live.uid else seq_of.__getitem__
        if live.criteria is None:
            removed = [(0, sorted(ident(u) for u in gone))]
        else:
            positions = [(i, ident(u)) for i, u in enumerate(live.members, 1) if u in seq_of]
            removed = list(reversed(_runs(positions)))  # last position first
            for u in gone:
                live.values.pop(u, None)
        members = set(gone)
        live.members = [u for u in live.members if u not in members]
        out.append(_line(live, removed, []))
    return out


async def refresh(ctx: Context) -> None:
    """Test again the messages that arrived or changed, and send each context's
    ADDTO and REMOVEFROM. Runs after `Context.sync` sent EXISTS and FETCH updates."""
    s = ctx.session
    view = s.view
    if not s.live or view is None or not view.touched:
        return
    uids = sorted(u for u in view.touched if view.has(u) and u not in view.expunged)
    view.touched.clear()
    if not uids:
        return
    rows = await _rows(ctx, view, uids)
    facts = [Facts(view.seq_of(m.uid) or 0, m) for m in rows]
    for live in list(s.live.values()):
        budget = Budget(ctx.settings.imap.search_time_limit)
        try:
            program = compile_program(live.key, view, ())
            found = await matching(ctx.store, program, facts, budget)
            values = await in_search_thread(_new_values, live, found)
        except TooComplex:
            cancel(s, live.tag)
            ctx.send(
                r.untagged_status("NO", "Context too complex to update", r.code_noupdate(live.tag))
            )
            continue
        line = _update(view, live, {f.m.uid for f in found}, uids, values)
        if line:
            ctx.send(line)


def _new_values(live: LiveSearch, found: Sequence[Facts]) -> dict[int, SortValues]:
    """The sort values of the matching messages not yet members (SORT contexts)."""
    if live.criteria is None:
        return {}
    have = live.values
    return {f.m.uid: sort_values(live.criteria, f.m) for f in found if f.m.uid not in have}


def _update(
    view: MailboxView,
    live: LiveSearch,
    matching_now: set[int],
    tested: Sequence[int],
    values: dict[int, SortValues],
) -> bytes:
    """Apply the new membership of the `tested` UIDs to `live`; the ESEARCH line."""

    def ident(u: int) -> int:
        return u if live.uid else view.seq_of(u) or 0

    current = set(live.members)
    leaving = [u for u in tested if u in current and u not in matching_now]
    joining = [u for u in tested if u not in current and u in matching_now]
    if not leaving and not joining:
        return b""
    if live.criteria is None:  # SEARCH: position 0, mailbox order (§4.3.3)
        gone = set(leaving)
        live.members = sorted([u for u in live.members if u not in gone] + joining)
        removed = [(0, [ident(u) for u in leaving])] if leaving else []
        added = [(0, [ident(u) for u in joining])] if joining else []
        return _line(live, removed, added)
    reverse = tuple(c.reverse for c in live.criteria)
    gone = set(leaving)
    positions = [(i, ident(u)) for i, u in enumerate(live.members, 1) if u in gone]
    removed = list(reversed(_runs(positions)))  # last position first
    live.members = [u for u in live.members if u not in gone]
    for u in leaving:
        live.values.pop(u, None)

    def order(u: int) -> _Order:
        return _Order(live.values[u], u, reverse)

    for u in joining:
        live.values[u] = values[u]
        bisect.insort(live.members, u, key=order)
    where = {u: i for i, u in enumerate(live.members, 1)}
    added = _runs(sorted((where[u], ident(u)) for u in joining))  # first position up
    return _line(live, removed, added)


async def _rows(ctx: Context, view: MailboxView, uids: Sequence[int]) -> list[Message]:
    """The rows, with summaries, of `uids` (ascending)."""
    if len(uids) <= FEW:
        found = [await ctx.store.get_message(view.mailbox_id, Uid(u)) for u in uids]
        return [m for m in found if m is not None]
    wanted = set(uids)
    rows = await ctx.store.list_messages(view.mailbox_id, uids[0], uids[-1])
    return [m for m in rows if m.uid in wanted]
