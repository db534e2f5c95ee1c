"""Mailbox management: LIST (RFC 9051 §6.3.9 with LIST-EXTENDED RFC 5258, SPECIAL-USE
RFC 6154, CHILDREN RFC 3348, LIST-STATUS RFC 5819), LSUB (RFC 3501 §6.3.9), CREATE
(with USE, RFC 6154 §3), DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE.

Rules:
- One personal namespace, no prefix, "/" as the delimiter. Names beginning with
  "#" or "~" are refused by CREATE and RENAME: those prefixes are namespace syntax
  (RFC 9051 §5.1.2, §6.3.10) and must never look like another user's folders;
  so are "." and ".." as hierarchy levels, which clients mirroring folders to disk
  would turn into paths.
- Whatever a client names, lookups go through the store with the session's user id,
  so "../bob", "~bob/INBOX", "/etc/passwd" or their modified UTF-7 spellings are
  (at most) folders of the user's own.
- LIST always gives \\HasChildren / \\HasNoChildren and the special-use attribute;
  \\Subscribed with the SUBSCRIBED selection or return option (RFC 5258 §3.4).
- Subscriptions are names that outlive their mailbox (RFC 9051 §6.3.7): LIST
  (SUBSCRIBED) shows such a name ``(\\Subscribed \\NonExistent)`` (RFC 5258 §3.1),
  LSUB ``(\\Noselect)`` as Dovecot does; with RECURSIVEMATCH an unsubscribed
  parent of subscribed names comes with CHILDINFO, \\NonExistent if it is gone
  (RFC 5258 §3.5). UNSUBSCRIBE of such a name works.
- Patterns: "*" matches anything, "%" anything but the delimiter (RFC 9051
  §6.3.9); the reference is prefixed to the pattern as written. Matching is an
  NFA simulation (`Pattern`), linear in the name for a bounded pattern, never a
  backtracking regex; reference + pattern longer than `MAX_PATTERN` characters is
  ``NO [LIMIT]``.
"""

from __future__ import annotations

from collections.abc import Iterable

from postier.imap import parse as p
from postier.imap import responses as r
from postier.imap.commands.context import Context, Result, no, ok
from postier.imap.commands.status import status_items
from postier.imap.matcher import in_search_thread
from postier.imap.session import State
from postier.store.errors import Conflict, Invalid, NotFound
from postier.store.models import Mailbox

DELIMITER = "/"


#: longest reference + pattern accepted by LIST/LSUB, in characters; longer ones
#: are refused (no mailbox name is longer than the store's limit of 1024 octets)
MAX_PATTERN = 1024
#: patterns one LIST may carry (RFC 5258 sets no limit; clients send one or a
#: few); more is NO [LIMIT]: each is matched against every mailbox name, and
#: 7,000 never-matching "*Qn" against 1,007 names held the loop 12.5 s
MAX_PATTERNS = 64
#: name × pattern matches done on the loop; more go to a search thread (each
#: match is a pass over the name, ~0.35 µs a character)
INLINE_MATCHES = 1024


class Pattern:
    """A list-mailbox pattern (RFC 9051 §6.3.9): "*" matches anything, "%" anything
    but the delimiter, every other character itself.

    Matching simulates the pattern's NFA with a bit set of pattern positions
    (shift-and): O(len(name) × len(pattern) / word size), never backtracking, so
    ``*%*%…x`` costs what ``*x`` costs. Runs of wildcards collapse first ("%*" is
    "*", "%%" is "%"), which keeps each wildcard's ε-closure one shift wide."""

    __slots__ = ("_accept", "_literal", "_percent", "_star", "_start")

    def __init__(self, pattern: str) -> None:
        if pattern[:5].upper() == "INBOX":
            pattern = "INBOX" + pattern[5:]  # RFC 9051 §5.1: INBOX is case-insensitive
        tokens: list[str] = []
        for ch in pattern:
            if ch in "*%" and tokens and tokens[-1] in "*%":
                if ch == "*":
                    tokens[-1] = "*"  # "%*" and "**" match what "*" matches
                continue
            tokens.append(ch)
        self._literal: dict[str, int] = {}
        self._star = self._percent = 0
        for i, ch in enumerate(tokens):
            if ch == "*":
                self._star |= 1 << i
            elif ch == "%":
                self._percent |= 1 << i
            else:
                self._literal[ch] = self._literal.get(ch, 0) | 1 << i
        self._accept = 1 << len(tokens)
        self._start = self._closure(1)

    def _closure(self, states: int) -> int:
        # a wildcard may match nothing: its position also enables the next one
        return states | (states & (self._star | self._percent)) << 1

    def matches(self, name: str) -> bool:
        states = self._start
        for ch in name:
            stay = states & self._star
            if ch != DELIMITER:
                stay |= states & self._percent
            states = self._closure(stay | (states & self._literal.get(ch, 0)) << 1)
            if not states:
                return False
        return bool(states & self._accept)


def _refuse_name(name: str) -> Result | None:
    if name.startswith(("#", "~")):
        return no("Mailbox names may not start with # or ~", r.CANNOT)
    if any(level in (".", "..") for level in name.split(DELIMITER)):
        # never paths here, but clients that mirror folders to disk (mbsync, Maildir)
        # would make them paths
        return no("Mailbox name levels may not be . or ..", r.CANNOT)
    return None


async def list_(ctx: Context, cmd: p.List) -> Result:
    s = ctx.session
    if cmd.patterns == ("",) and not cmd.extended:
        # RFC 9051 §6.3.9: the delimiter and root of the reference
        ctx.send(r.list_response("", ("\\Noselect",), utf8=s.utf8))
        return ok("LIST completed")
    if any(len(cmd.reference) + len(pat) > MAX_PATTERN for pat in cmd.patterns):
        return no("Mailbox pattern too long", r.LIMIT)
    if len(cmd.patterns) > MAX_PATTERNS:
        return no("Too many mailbox patterns", r.LIMIT)
    if "HIGHESTMODSEQ" in cmd.status_items:
        ctx.enable_condstore()  # RFC 7162 §3.1 (via RFC 5819 LIST-STATUS)
    assert s.user is not None
    mailboxes = await ctx.store.list_mailboxes(s.user.id)
    await _send_list(ctx, cmd, mailboxes)
    return ok("LIST completed")


async def _send_list(ctx: Context, cmd: p.List, mailboxes: list[Mailbox]) -> None:
    s = ctx.session
    assert s.user is not None
    by_name = {m.name: m for m in mailboxes}
    parents = _ancestors(by_name)
    patterns = [Pattern(cmd.reference + pat) for pat in cmd.patterns if pat]
    subscribed_sel = "SUBSCRIBED" in cmd.selection
    special_sel = "SPECIAL-USE" in cmd.selection
    recursive = "RECURSIVEMATCH" in cmd.selection
    show_subscribed = subscribed_sel or "SUBSCRIBED" in cmd.returns
    # RFC 6154 §2: attributes are returned unless only selection asked for them
    show_special = True
    subscribed: set[str] = set()
    if show_subscribed:
        subscribed = set(await ctx.store.list_subscriptions(s.user.id))
    subscribed_parents = _ancestors(subscribed) if recursive else set()
    candidates: Iterable[str] = by_name
    if subscribed_sel:
        # RFC 5258 §3.1: subscribed names whose mailbox is gone are listed too
        # (\NonExistent); with RECURSIVEMATCH, so are parents of subscribed names
        candidates = sorted(set(by_name) | subscribed | subscribed_parents)
    names = list(candidates)
    if len(names) * len(patterns) <= INLINE_MATCHES:
        matched = _matching(names, patterns)
    else:
        matched = await in_search_thread(_matching, names, patterns)
    for name in matched:
        m = by_name.get(name)
        childinfo: list[str] = []
        if subscribed_sel and name not in subscribed:
            if name in subscribed_parents:
                childinfo = ["SUBSCRIBED"]  # RFC 5258 §3.5, §4
            else:
                continue
        if special_sel and (m is None or m.special_use is None):
            continue
        attrs: list[str] = []
        if m is None:
            if name in subscribed:
                attrs.append("\\Subscribed")
            attrs.append("\\NonExistent")  # RFC 5258 §3.1, RFC 9051 §7.3.1
            if name in parents:
                attrs.append("\\HasChildren")
            ctx.send(r.list_response(name, attrs, utf8=s.utf8, childinfo=childinfo))
            continue  # RFC 5819 §2: no STATUS for a mailbox that does not exist
        attrs.append("\\HasChildren" if name in parents else "\\HasNoChildren")
        if show_subscribed and name in subscribed:
            attrs.append("\\Subscribed")
        if show_special and m.special_use:
            attrs.append(m.special_use)
        ctx.send(r.list_response(name, attrs, utf8=s.utf8, childinfo=childinfo))
        if "STATUS" in cmd.returns and not childinfo:
            items = await status_items(ctx, m, cmd.status_items)  # RFC 5819 §2
            ctx.send(r.status(name, items, utf8=s.utf8))


def _matching(names: list[str], patterns: list[Pattern]) -> list[str]:
    """The names some pattern matches, in order."""
    return [name for name in names if any(pat.matches(name) for pat in patterns)]


async def lsub(ctx: Context, cmd: p.Lsub) -> Result:
    s = ctx.session
    if cmd.pattern == "":
        ctx.send(r.list_response("", ("\\Noselect",), utf8=s.utf8, kind="LSUB"))
        return ok("LSUB completed")
    if len(cmd.reference) + len(cmd.pattern) > MAX_PATTERN:
        return no("Mailbox pattern too long", r.LIMIT)
    assert s.user is not None
    existing = {m.name for m in await ctx.store.list_mailboxes(s.user.id)}
    subscribed = set(await ctx.store.list_subscriptions(s.user.id))
    pattern = Pattern(cmd.reference + cmd.pattern)
    for name in sorted(_with_parents(subscribed)):
        if not pattern.matches(name):
            continue
        if name in subscribed:
            # a subscribed name whose mailbox is gone stays listed (RFC 3501
            # §6.3.6), \Noselect as Dovecot marks it for LSUB
            attrs = () if name in existing else ("\\Noselect",)
            ctx.send(r.list_response(name, attrs, utf8=s.utf8, kind="LSUB"))
        elif "%" in cmd.pattern:
            # RFC 3501 §6.3.9: an unsubscribed parent matched by "%" is \Noselect
            ctx.send(r.list_response(name, ("\\Noselect",), utf8=s.utf8, kind="LSUB"))
    return ok("LSUB completed")


def _ancestors(names: Iterable[str]) -> set[str]:
    """Every proper parent level of the names: the names that have children."""
    out: set[str] = set()
    for n in names:
        levels = n.split(DELIMITER)
        for i in range(1, len(levels)):
            out.add(DELIMITER.join(levels[:i]))
    return out


def _with_parents(names: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for n in names:
        levels = n.split(DELIMITER)
        for i in range(1, len(levels) + 1):
            out.add(DELIMITER.join(levels[:i]))
    return out


async def create(ctx: Context, cmd: p.Create) -> Result:
    s = ctx.session
    assert s.user is not None
    name = cmd.mailbox.rstrip(DELIMITER)  # RFC 9051 §6.3.4: a trailing delimiter is a hint
    refused = _refuse_name(name)
    if refused is not None:
        return refused
    if name == "INBOX":
        return no("INBOX exists already", r.ALREADYEXISTS)
    if len(cmd.special_use) > 1:
        return no("Only one special-use attribute per mailbox", r.USEATTR)
    use = cmd.special_use[0] if cmd.special_use else None
    try:
        await ctx.store.create_mailbox(s.user.id, name, use)
    except Conflict:
        return no("Mailbox exists already", r.ALREADYEXISTS)
    except Invalid as e:
        if use is not None and "special-use" in str(e):
            return no(f"Unsupported special-use attribute {use}", r.USEATTR)  # RFC 6154 §3
        return no(f"Invalid mailbox name: {e}", r.CANNOT)
    return ok("CREATE completed")


async def delete(ctx: Context, cmd: p.Delete) -> Result:
    s = ctx.session
    assert s.user is not None
    if cmd.mailbox == "INBOX":
        return no("INBOX cannot be deleted", r.CANNOT)  # RFC 9051 §6.3.5
    selected = s.view is not None and s.view.name == cmd.mailbox
    try:
        await ctx.store.delete_mailbox(s.user.id, cmd.mailbox)
    except NotFound:
        return no("No such mailbox", r.NONEXISTENT)
    except Conflict:
        return no("Mailbox has children, delete them first", r.HASCHILDREN)
    except Invalid as e:
        return no(str(e), r.CANNOT)
    if selected:
        s.view = None
        s.state = State.AUTHENTICATED
    return ok("DELETE completed")


async def rename(ctx: Context, cmd: p.Rename) -> Result:
    s = ctx.session
    assert s.user is not None
    new = cmd.new.rstrip(DELIMITER)
    refused = _refuse_name(new)
    if refused is not None:
        return refused
    if new == "INBOX":
        return no("INBOX exists already", r.ALREADYEXISTS)
    try:
        await ctx.store.rename_mailbox(s.user.id, cmd.old, new)
    except NotFound:
        return no("No such mailbox", r.NONEXISTENT)
    except Conflict:
        return no("Target mailbox exists already", r.ALREADYEXISTS)
    except Invalid as e:
        return no(f"Cannot rename: {e}", r.CANNOT)
    if s.view is not None and s.view.name == cmd.old and cmd.old != "INBOX":
        s.view.name = new
    return ok("RENAME completed")


async def subscribe(ctx: Context, cmd: p.Subscribe | p.Unsubscribe) -> Result:
    s = ctx.session
    assert s.user is not None
    try:
        await ctx.store.set_subscribed(s.user.id, cmd.mailbox, isinstance(cmd, p.Subscribe))
    except (NotFound, Invalid):
        return no("No such mailbox", r.NONEXISTENT)
    return ok(f"{cmd.name} completed")
