"""A folder's message list: which messages (filters), in what order (sorts), which
page, and conversations (the thread view).

Rules:
- Pure and synchronous over the store's rows (with their summaries); the routes
  run it in the web pool. Sorting is `sorted` on a key per message: O(n log n),
  whatever the senders put in their headers.
- Date is the Date: header, else arrival; From sorts by the display name (else
  the address), Subject without "Re:"/"Fwd:" prefixes, both case-folded; ties
  fall back to the UID, so a page never shows a message twice.
- The thread view groups by conversation: a message joins the thread of the
  message its subject (without reply and forward prefixes) names, the way IMAP's
  THREAD=ORDEREDSUBJECT does (RFC 5256 §2.1), which needs no header the summary
  lacks; threads are ordered by their newest message.
"""

from __future__ import annotations

import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from postier.store.models import Message, SortRow, Uid

SORTS = ("date", "from", "subject", "size")
FILTERS = ("all", "unread", "flagged")
#: prefixes a reply or a forward adds to a subject (compared case-folded)
PREFIXES = ("re:", "fw:", "fwd:", "aw:", "sv:", "tr:", "wg:")


@dataclass(frozen=True)
class Row:
    uid: Uid
    subject: str
    from_: str
    preview: str
    when: str
    iso: str
    size: int
    unread: bool
    flagged: bool
    #: messages in its conversation (the thread view), 1 otherwise
    count: int = 1


def when(m: Message) -> datetime:
    d = m.summary.date or m.internal_date
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


def base_subject(subject: str) -> str:
    """`subject` without leading reply/forward prefixes and "[tags]", case-folded
    (one pass: each prefix is removed once, from the front)."""
    s = " ".join(subject.split()).casefold()
    start = 0
    while start < len(s):
        rest = s[start:]
        for pre in PREFIXES:
            if rest.startswith(pre):
                start += len(pre)
                break
        else:
            if rest.startswith("[") and "]" in rest:
                start += rest.index("]") + 1
            else:
                break
        while start < len(s) and s[start] == " ":
            start += 1
    return s[start:]


def _display_name(from_: str) -> str:
    name = from_.split("<", 1)[0].strip().strip('"').strip()
    return (name or from_).casefold()


def sort_key(sort: str) -> Callable[[Message], Any]:
    if sort == "from":
        return lambda m: (_display_name(m.summary.from_), m.uid)
    if sort == "subject":
        return lambda m: (base_subject(m.summary.subject), m.uid)
    if sort == "size":
        return lambda m: (m.size, m.uid)
    return lambda m: (when(m), m.uid)


def keep(msgs: list[Message], filter_: str) -> list[Message]:
    if filter_ == "unread":
        return [m for m in msgs if "\\Seen" not in m.flags]
    if filter_ == "flagged":
        return [m for m in msgs if "\\Flagged" in m.flags]
    return msgs


def kept_order(ordered: Sequence[int], msgs: list[Message], filter_: str) -> list[int]:
    """The UIDs of `ordered` whose message in `msgs` the filter keeps, in that order."""
    wanted = {m.uid for m in keep(msgs, filter_)}
    return [u for u in ordered if u in wanted]


def _row_key(sort: str) -> Callable[[SortRow], tuple[Any, int]]:
    """`sort_key` on a `SortRow`."""
    if sort == "from":
        return lambda r: (_display_name(r[3]), r[0])
    if sort == "subject":
        return lambda r: (base_subject(r[4]), r[0])
    if sort == "size":
        return lambda r: (r[2], r[0])
    return lambda r: (r[1], r[0])


def uid_order(rows: list[SortRow], sort: str, descending: bool) -> array.array[int]:
    """The UIDs of a folder in list order (`arrange` without threads, on each
    message's `SortRow` rather than its `Message`), as its cached order keeps
    them: one array."""
    return array.array("Q", (r[0] for r in sorted(rows, key=_row_key(sort), reverse=descending)))


def arrange(msgs: list[Message], sort: str, descending: bool, threads: bool) -> list[list[Message]]:
    """`msgs` in display order, each entry a conversation (one message unless
    `threads`), newest first within none: the first message of an entry is the one
    its row shows (the newest of the conversation)."""
    ordered = sorted(msgs, key=sort_key(sort), reverse=descending)
    if not threads:
        return [[m] for m in ordered]
    groups: dict[str, list[Message]] = {}
    for m in sorted(msgs, key=lambda m: (when(m), m.uid), reverse=True):
        # messages without a subject are each their own conversation
        base = base_subject(m.summary.subject) or f"\0{m.uid}"
        groups.setdefault(base, []).append(m)
    entries = list(groups.values())
    key = sort_key(sort)
    entries.sort(key=lambda g: key(g[0]), reverse=descending)
    return entries


def row(m: Message, count: int = 1) -> Row:
    d = when(m)
    return Row(
        uid=m.uid,
        subject=m.summary.subject or "(no subject)",
        from_=m.summary.from_,
        preview=m.summary.preview,
        when=d.strftime("%Y-%m-%d %H:%M"),
        iso=d.isoformat(),
        size=m.size,
        unread="\\Seen" not in m.flags,
        flagged="\\Flagged" in m.flags,
        count=count,
    )


def page_rows(entries: list[list[Message]], page: int, size: int) -> list[Row]:
    out = []
    for group in entries[(page - 1) * size : page * size]:
        r = row(group[0], len(group))
        if len(group) > 1:
            unread = any("\\Seen" not in m.flags for m in group)
            flagged = any("\\Flagged" in m.flags for m in group)
            r = Row(**{**r.__dict__, "unread": unread, "flagged": flagged})
        out.append(r)
    return out


def conversation(msgs: list[Message], subject: str) -> list[Message]:
    """The messages of `msgs` in the conversation of `subject`, oldest first."""
    base = base_subject(subject)
    return sorted(
        (m for m in msgs if base_subject(m.summary.subject) == base), key=lambda m: (when(m), m.uid)
    )
