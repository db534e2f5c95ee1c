"""IMAP session state: the connection state, enabled extensions, and the view a
session has of its selected mailbox (message sequence numbers ↔ UIDs, flags, pending
expunges and flag changes, \\Recent).

Rules:
- States follow RFC 9051 §3: not authenticated → authenticated → selected → logout.
  Every command lists the states it may run in (`postier.imap.commands.TABLE`).
- A `MailboxView` is the client's picture of the selected mailbox. Message sequence
  numbers are positions in `uids` (ascending); they change only when this session
  announces an EXPUNGE (or VANISHED) and grow only when it announces EXISTS, so the
  client's numbering and ours never drift (RFC 9051 §7.5.1).
- Other sessions' changes (and our own, echoed by the feed) are learnt by `sync`,
  which is driven by MODSEQ, not by the feed's contents: the feed only says "this
  mailbox changed"; `changed_since(baseline)` and `vanished_since(baseline)` say
  what. Duplicated or reordered feed events are therefore harmless, and a feed
  overflow just means "re-check".
- A message expunged elsewhere stays in `uids` (in `expunged`) until the session may
  announce it: never during FETCH, STORE or SEARCH (RFC 9051 §7.5.1); its sequence
  number stays valid until then.
- \\Recent (IMAP4rev1 only; RFC 3501 §2.3.2) is claimed per mailbox by the first
  session of this process that sees a message (`RecentClaims`): per process, like
  most servers' in-memory notion of "new since the last session"; the variants
  of `imap.recent` share it with every worker, or every node over PostgreSQL, so
  claims are coroutines (`MailboxView.claim_recent` after `apply`).
- Every mailbox a session touches was looked up with the session's user id; the
  view only ever holds ids from those lookups (cross-user isolation).
- The view remembers which keywords the client was told of (FLAGS at SELECT and
  since); a keyword seen first in a change is owed a FLAGS response before the
  FETCH or EXISTS that shows it (RFC 9051 §7.3.5).
- Views of one mailbox in one state share their columns, copying them before their
  first change (`Snapshots`); the state is named by (mailbox id, HIGHESTMODSEQ,
  UIDNEXT), which is unique within one store only, so each store has its own
  `Snapshots`.
"""

from __future__ import annotations

import bisect
import enum
import weakref
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import compress

from postier.imap.parse import SearchKey, SortCriterion
from postier.imap.sequence import SequenceSet
from postier.store.models import Mailbox, MailboxId, Message, User


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"

    # members are singletons equal only to themselves: hashed by identity too, in C
    # (Enum's hash is a Python call; every command's state is looked up in a set)
    __hash__ = object.__hash__


class BadSequence(ValueError):
    """A message sequence number beyond the mailbox (RFC 9051 §9 seq-number: BAD)."""


def newer(uids: Sequence[int], last: int) -> set[int]:
    """The UIDs above `last` of an ascending sequence (a bisection, not a scan:
    re-selecting a large mailbox finds nothing new in microseconds)."""
    return set(uids[bisect.bisect_right(uids, last) :])


class RecentClaims:
    """mailbox id → the highest UID some session of this process has seen as \\Recent.

    RFC 3501 §2.3.2: a message is \\Recent for exactly one session, the first to be
    notified of it."""

    def __init__(self) -> None:
        self._claimed: dict[MailboxId, int] = {}

    async def claim(self, mailbox_id: MailboxId, uids: Sequence[int]) -> set[int]:
        """Claim the `uids` (ascending) not claimed yet; returns those now recent
        for the caller."""
        last = self._claimed.get(mailbox_id, 0)
        mine = newer(uids, last)
        if mine:
            self._claimed[mailbox_id] = uids[-1]
        return mine

    async def last(self, mailbox_id: MailboxId) -> int:
        """The highest UID claimed (messages above it are \\Recent for whoever
        claims them next)."""
        return self._claimed.get(mailbox_id, 0)


@dataclass
class Updates:
    """Untagged data owed to the client, in the order it must be sent."""

    expunged: list[tuple[int, int]] = field(default_factory=list)  # (seq, uid), descending
    exists: int | None = None
    recent: int | None = None
    flags: list[tuple[int, int]] = field(default_factory=list)  # (seq, uid), ascending

    def __bool__(self) -> bool:
        return bool(self.expunged or self.exists is not None or self.flags)


#: distinct flag sets are few: share one frozenset per distinct set (memory)
_FLAGSETS: dict[frozenset[str], frozenset[str]] = {}
_FLAGSETS_MAX = 10_000


def _intern(flags: frozenset[str]) -> frozenset[str]:
    shared = _FLAGSETS.get(flags)
    if shared is None:
        if len(_FLAGSETS) >= _FLAGSETS_MAX:
            _FLAGSETS.clear()
        _FLAGSETS[flags] = shared = flags
    return shared


#: removals `Columns.remove` does one by one (each a move of what follows)
_DEL_ONE_BY_ONE = 16


class Columns:
    """Parallel arrays of UIDs (the sequence order), MODSEQs and shared flag sets:
    about 20 octets a message."""

    __slots__ = ("__weakref__", "flags", "keywords", "modseqs", "uids")

    def __init__(self) -> None:
        self.uids = array("I")  # nz-number: UIDs are 32-bit (RFC 9051 §9)
        self.modseqs = array("Q")
        self.flags: list[frozenset[str]] = []
        #: the keywords in `flags`, once asked for (None: not known, or changed)
        self.keywords: frozenset[str] | None = None

    def copy(self) -> Columns:
        c = Columns()
        c.uids, c.modseqs, c.flags = (
            array("I", self.uids),
            array("Q", self.modseqs),
            list(self.flags),
        )
        return c

    def remove(self, indexes: Sequence[int]) -> None:
        """Remove the messages at these positions (descending, distinct). A few
        go one by one; more in one pass over the columns: a ``del`` moves every
        message after it, and an EXPUNGE of every other message of 40,000 held
        the loop 62 ms that way (quadratic in the mailbox)."""
        if len(indexes) <= _DEL_ONE_BY_ONE:
            for i in indexes:
                del self.uids[i]
                del self.modseqs[i]
                del self.flags[i]
            return
        keep = bytearray(b"\x01") * len(self.uids)
        for i in indexes:
            keep[i] = 0
        # in place, as ``del`` is: a caller may hold the arrays
        self.uids[:] = array("I", compress(self.uids, keep))
        self.modseqs[:] = array("Q", compress(self.modseqs, keep))
        self.flags[:] = list(compress(self.flags, keep))

    def extend(self, rows: Sequence[tuple[int, int, frozenset[str]]]) -> None:
        """Append (UID, MODSEQ, flags) rows, ascending and above every UID held
        (`Store.list_flags`)."""
        if rows and self.uids and rows[0][0] <= self.uids[-1]:
            rows = [r for r in rows if r[0] > self.uids[-1]]
        self.uids.extend([r[0] for r in rows])
        self.modseqs.extend([r[1] for r in rows])
        self.flags.extend([_intern(r[2]) for r in rows])


class Snapshots:
    """(mailbox id, HIGHESTMODSEQ, UIDNEXT) → the columns of a view built from a full
    listing in that state. Sessions selecting a mailbox in the same state share one
    copy (and skip the store), copying only when their own view changes: a thousand
    idle clients on one 10,000-message INBOX hold one set of arrays, not a thousand.

    The latest state listed of the most recently selected mailboxes is kept after
    its last view is gone (at most `KEEP_MAILBOXES` mailboxes and `KEEP_MESSAGES`
    messages, about 20 octets each), so a client that logs in again and selects
    an unchanged mailbox reads nothing but the mailbox row. Any change to a
    mailbox takes a new MODSEQ (or UID), so a kept state is never mistaken for a
    later one, also when another worker made the change.

    The key names a state only within one store (mailbox ids never come back and
    HIGHESTMODSEQ only grows there), so there is one `Snapshots` per store object
    (`snapshots`): the INBOX of another store in the process (a second server in a
    test run) can be mailbox 1 at MODSEQ 7 with UIDNEXT 4 too, and its sessions
    must not be handed this store's messages."""

    KEEP_MAILBOXES = 64
    KEEP_MESSAGES = 250_000

    def __init__(self) -> None:
        self._by_state: weakref.WeakValueDictionary[tuple[int, int, int], Columns] = (
            weakref.WeakValueDictionary()
        )
        #: mailbox id → (state, columns), least recently selected first
        self._kept: OrderedDict[int, tuple[tuple[int, int, int], Columns]] = OrderedDict()
        self._kept_messages = 0

    def get(self, mailbox: Mailbox) -> Columns | None:
        """The columns of `mailbox` in this very state, if a view has them or they
        were kept."""
        key = (mailbox.id, mailbox.highestmodseq, mailbox.uidnext)
        found = self._by_state.get(key)
        kept = self._kept.get(mailbox.id)
        if kept is not None and kept[0] == key:
            self._kept.move_to_end(mailbox.id)
            if found is None:
                found = kept[1]
        return found

    def keep(self, mailbox: Mailbox, view: MailboxView) -> None:
        """Offer `view`, just built from a listing of `mailbox`, to later sessions."""
        key = (mailbox.id, mailbox.highestmodseq, mailbox.uidnext)
        if key in self._by_state:
            return
        columns = self._by_state[key] = view.share()
        old = self._kept.pop(mailbox.id, None)
        if old is not None:
            self._kept_messages -= len(old[1].uids)
        if len(columns.uids) > self.KEEP_MESSAGES:
            return
        self._kept[mailbox.id] = (key, columns)
        self._kept_messages += len(columns.uids)
        while len(self._kept) > self.KEEP_MAILBOXES or self._kept_messages > self.KEEP_MESSAGES:
            _, (_, dropped) = self._kept.popitem(last=False)
            self._kept_messages -= len(dropped.uids)


#: store object → its snapshots (gone with the store)
_PER_STORE: weakref.WeakKeyDictionary[object, Snapshots] = weakref.WeakKeyDictionary()


def snapshots(store: object) -> Snapshots:
    """The snapshots of the mailboxes of `store` (see `Snapshots`)."""
    found = _PER_STORE.get(store)
    if found is None:
        _PER_STORE[store] = found = Snapshots()
    return found


class MailboxView:
    """One session's picture of its selected mailbox.

    Kept compact, since every idle client holds one: `Columns`, shared with other
    views of the same mailbox state until this view changes (copy on write)."""

    def __init__(
        self,
        mailbox: Mailbox,
        messages: Iterable[Message] = (),
        *,
        readonly: bool,
        recent: set[int] | None = None,
        columns: Columns | None = None,
        shared: bool = True,
    ) -> None:
        self.mailbox_id = mailbox.id
        self.name = mailbox.name
        self.uidvalidity = mailbox.uidvalidity
        self.readonly = readonly
        #: keywords the client was told of by FLAGS; and ones it was not, yet
        self.announced: set[str] = set()
        self.new_keywords: set[str] = set()
        if columns is not None:
            self._cols, self._shared = columns, shared
        else:
            self._cols, self._shared = Columns(), False
            for m in sorted(messages, key=lambda m: m.uid):
                self._add(m)
        #: UIDs below this are known or gone: only a higher unknown UID is new
        self.uidnext = max(mailbox.uidnext, self.uids[-1] + 1 if self.uids else 1)
        #: every change with a MODSEQ up to this one is reflected (or queued) here
        self.baseline = mailbox.highestmodseq
        self.expunged: set[int] = set()  # expunged in the store, not yet announced
        self.flag_changes: set[int] = set()  # flags changed, not yet announced
        self.new_exists = False  # EXISTS owed
        self.recent: set[int] = set(recent or ())
        self.dirty = False  # the feed reported a change: `sync` before answering
        #: UIDs that arrived or whose flags changed, kept only while a search is
        #: kept current (RFC 5267 UPDATE: `commands.updates` tests them again)
        self.touched: set[int] | None = None

    @property
    def uids(self) -> array[int]:
        return self._cols.uids

    @property
    def _modseqs(self) -> array[int]:
        return self._cols.modseqs

    @property
    def _flags(self) -> list[frozenset[str]]:
        return self._cols.flags

    def share(self) -> Columns:
        """The columns, lent to other views of the same state (`Snapshots`): from now
        on this view copies them before its first change."""
        self._shared = True
        return self._cols

    def columns_copy(self) -> tuple[array[int], array[int], list[frozenset[str]]]:
        """UIDs, MODSEQs and flag sets as they are now, for a search thread to read
        while the session goes on (copies of arrays: a memcpy each)."""
        return array("I", self.uids), array("Q", self._modseqs), list(self._flags)

    def _own(self) -> None:
        """Copy the shared columns before the first change (copy on write); called
        before every change to them."""
        if self._shared:
            self._cols, self._shared = self._cols.copy(), False
        self._cols.keywords = None

    def _note(self, flags: Iterable[str]) -> None:
        """Remember keywords the client has not been told of (RFC 9051 §7.3.5)."""
        for f in flags:
            if not f.startswith("\\") and f not in self.announced:
                self.new_keywords.add(f)

    def take_new_keywords(self) -> set[str] | None:
        """Every keyword of the mailbox when some are new to the client (the
        caller sends FLAGS), else None."""
        if not self.new_keywords:
            return None
        self.announced |= self.new_keywords
        self.new_keywords.clear()
        return set(self.announced)

    def highest_modseq(self) -> int:
        """HIGHESTMODSEQ as this view knows it (RFC 7162 §3.1.2.1)."""
        return max(self.baseline, max(self._modseqs, default=0))

    def _add(self, m: Message) -> None:
        """Append a message with a UID above all known ones (UIDs only ascend)."""
        if self.uids and m.uid <= self.uids[-1]:
            return
        self._note(m.flags)
        self._own()
        self.uids.append(m.uid)
        self._modseqs.append(m.modseq)
        self._flags.append(_intern(m.flags))

    def _index(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i
        return None

    # --- numbering -------------------------------------------------------------------
    @property
    def exists(self) -> int:
        return len(self.uids)

    def has(self, uid: int) -> bool:
        return self._index(uid) is not None

    def seq_of(self, uid: int) -> int | None:
        i = self._index(uid)
        return None if i is None else i + 1

    def uid_of(self, seq: int) -> int:
        return self.uids[seq - 1]

    def resolve(
        self, seqset: SequenceSet, *, uid: bool, saved: list[int] | None = None
    ) -> list[tuple[int, int]]:
        """(seq, uid) of the messages a set names, ascending.

        UID sets ignore UIDs not in the mailbox (RFC 9051 §6.4.9); a message
        sequence number beyond EXISTS is `BadSequence` (§9 seq-number). ``$`` is the
        saved search result (RFC 5182 §2.1), empty when nothing was saved."""
        if seqset.saved:
            out = []
            for u in saved or ():
                s = self.seq_of(u)
                if s is not None:
                    out.append((s, u))
            return out
        uids = self.uids
        if uid:
            out = []
            for lo, hi in seqset.resolve(uids[-1] if uids else 0):
                i = bisect.bisect_left(uids, lo)
                j = bisect.bisect_right(uids, hi)
                out.extend(zip(range(i + 1, j + 1), uids[i:j], strict=True))
            return out
        n = len(uids)
        if seqset.max_number(n) > n or (n == 0 and seqset.ranges):
            raise BadSequence("Invalid message sequence number")
        out = []
        for lo, hi in seqset.resolve(n):
            out.extend(zip(range(lo, hi + 1), uids[lo - 1 : hi], strict=True))
        return out

    def by_seq(self) -> tuple[Sequence[int], Sequence[frozenset[str]]]:
        """MODSEQs and flag sets indexed by sequence number - 1 (the numbers
        `resolve` gives), for a loop over many messages: read-only, and valid only
        until the next await (a change copies or replaces them)."""
        return self._modseqs, self._flags

    def flags(self, uid: int) -> frozenset[str]:
        i = self._index(uid)
        return frozenset() if i is None else self._flags[i]

    def modseq(self, uid: int) -> int:
        i = self._index(uid)
        return 0 if i is None else self._modseqs[i]

    def flags_of(self, uid: int, *, with_recent: bool) -> frozenset[str]:
        f = self.flags(uid)
        if with_recent and uid in self.recent:
            return f | {"\\Recent"}
        return f

    def first_unseen(self) -> int | None:
        """Sequence number of the first message without \\Seen (RFC 3501 UNSEEN)."""
        return next((i for i, f in enumerate(self._flags, 1) if "\\Seen" not in f), None)

    def keywords(self) -> set[str]:
        """Keywords in use (for FLAGS / PERMANENTFLAGS); worked out once for columns
        that many views share and nobody changed."""
        cols = self._cols
        if cols.keywords is None:
            out: set[str] = set()
            for f in set(cols.flags):
                out.update(x for x in f if not x.startswith("\\"))
            cols.keywords = frozenset(out)
        return set(cols.keywords)

    # --- learning about changes -----------------------------------------------------
    def record_flags(self, m: Message) -> None:
        """Our own STORE (or implicit \\Seen) changed a message: already announced."""
        i = self._index(m.uid)
        if i is not None:
            self._note(m.flags)
            self._own()
            self._flags[i] = _intern(m.flags)
            self._modseqs[i] = m.modseq
            if self.touched is not None:
                self.touched.add(m.uid)

    def apply(
        self,
        changed: Iterable[Message],
        vanished: Iterable[int],
        baseline: int,
    ) -> list[int]:
        """Fold a `changed_since` / `vanished_since` answer into the view: new messages
        join at once (EXISTS owed), flag changes and expunges are queued. Returns
        the UIDs new to the view, for `claim_recent`."""
        new: list[int] = []
        for m in sorted(changed, key=lambda m: m.uid):
            if m.uid in self.expunged:
                continue
            i = self._index(m.uid)
            if i is not None:
                if self._modseqs[i] != m.modseq:
                    self._own()
                    if self._flags[i] != m.flags:
                        self.flag_changes.add(m.uid)
                        if self.touched is not None:
                            self.touched.add(m.uid)
                        self._note(m.flags)
                    self._flags[i] = _intern(m.flags)
                    self._modseqs[i] = m.modseq
            elif m.uid >= self.uidnext:
                # a lower unknown UID came and went before we looked: never announced
                self._add(m)
                new.append(m.uid)
                self.uidnext = m.uid + 1
        if new:
            self.new_exists = True
            if self.touched is not None:
                self.touched.update(new)
        for u in vanished:
            if self.has(u):
                self.expunged.add(u)
                self.flag_changes.discard(u)
        self.baseline = max(self.baseline, baseline)
        return new

    async def claim_recent(self, new: list[int], recent: RecentClaims) -> None:
        """\\Recent for the messages `apply` found new: claimed, or only shown
        when the mailbox is read-only (EXAMINE claims nothing)."""
        if not new:
            return
        if self.readonly:
            last = await recent.last(self.mailbox_id)
            self.recent.update(u for u in new if u > last)
        else:
            self.recent |= await recent.claim(self.mailbox_id, new)

    def remove(self, uids: Iterable[int]) -> None:
        """Our own EXPUNGE/MOVE removed these: queue them for announcement."""
        for u in uids:
            if self.has(u):
                self.expunged.add(u)
                self.flag_changes.discard(u)

    @property
    def pending(self) -> bool:
        """Something is owed to the client: expunges, EXISTS, flag changes or new
        keywords (`take_updates`, `take_new_keywords`)."""
        return bool(self.expunged or self.new_exists or self.flag_changes or self.new_keywords)

    def take_updates(self, *, allow_expunge: bool, allow_flags: bool = True) -> Updates:
        """What to announce now, applying it to the numbering.

        EXPUNGEs come first, highest sequence number first, so each number is valid
        when the client reads it (RFC 9051 §7.5.1); then EXISTS; then flag changes
        (held back, like expunges, when not `allow_flags`: NOTIFY without
        FlagChange, RFC 5465 §5.1)."""
        up = Updates()
        if allow_expunge and self.expunged:
            for u in sorted(self.expunged, reverse=True):
                i = self._index(u)
                if i is None:
                    continue
                up.expunged.append((i + 1, u))
                self.recent.discard(u)
                if self.touched is not None:
                    self.touched.discard(u)
            self.expunged.clear()
            if up.expunged:
                self._own()
                self._cols.remove([seq - 1 for seq, _ in up.expunged])
        if self.new_exists:
            up.exists = len(self.uids)
            up.recent = len(self.recent)
            self.new_exists = False
        if not allow_flags:
            return up
        for u in sorted(self.flag_changes):
            seq = self.seq_of(u)
            if seq is not None:
                up.flags.append((seq, u))
        self.flag_changes.clear()
        return up


#: one message's values under a SORT's criteria
SortValues = tuple[str | int | datetime, ...]


@dataclass
class LiveSearch:
    """A SEARCH or SORT result the client asked to keep current (RFC 5267 §4.3)."""

    tag: str
    uid: bool  # updates name UIDs (UID SEARCH, UID SORT), else sequence numbers
    key: SearchKey  # sequence sets and "$" already turned into UID sets
    criteria: tuple[SortCriterion, ...] | None  # None: a SEARCH, kept in mailbox order
    members: list[int] = field(default_factory=list)  # UIDs, in result order
    values: dict[int, SortValues] = field(default_factory=dict)  # SORT: by member


@dataclass
class Session:
    """Per-connection state other than the view."""

    sid: str
    tls: bool
    state: State = State.NOT_AUTHENTICATED
    user: User | None = None
    enabled: set[str] = field(default_factory=set)
    view: MailboxView | None = None
    #: RFC 5182 SEARCHRES: the UIDs saved by SEARCH RETURN (SAVE)
    saved: list[int] = field(default_factory=list)
    #: RFC 5267 CONTEXT: the searches kept current, by the tag that asked
    live: dict[str, LiveSearch] = field(default_factory=dict)
    bad_commands: int = 0

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def utf8(self) -> bool:
        """Mailbox names and quoted strings are UTF-8 (RFC 6855 §3, RFC 9051)."""
        return "UTF8=ACCEPT" in self.enabled or self.rev2

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled or "QRESYNC" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled
