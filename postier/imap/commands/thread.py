"""THREAD / UID THREAD (RFC 5256 §3, §4): the ORDEREDSUBJECT and REFERENCES
algorithms over the messages a search program matches.

Rules:
- Matching, header parsing and the algorithms run in the search threads
  (`matcher.in_search_thread`), never on the event loop; the search budget applies
  to matching.
- Only the matching messages are threaded; the answer names sequence numbers, or
  UIDs for UID THREAD. An unknown algorithm is BAD (RFC 5256 §4: thread-alg).
- The sent date is the Date: header normalised to UTC, else the INTERNALDATE; equal
  dates are ordered by sequence number (RFC 5256 §2.2). Subjects are compared by
  their base subject (RFC 5256 §2.1, `sortkeys.base_subject`), as SORT does.
- Subject and Message-ID come from the summary made at delivery; In-Reply-To and
  References are read from the header block of the blobs, only for REFERENCES.
- A Message-ID is "valid" when it is ``<left@right>`` without white space; IDs
  compare case-sensitively, as the octets of the ID.
- The algorithms are pure functions of `Candidate` lists, tested on crafted data;
  trees are walked with explicit stacks because a reply chain can be as long as the
  mailbox.
- No EXPUNGE is sent during THREAD (RFC 9051 §7.5.1; see `commands.NO_EXPUNGE`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from postier.imap import parse as p
from postier.imap import responses as r
from postier.imap.commands.context import Context, Result, bad, ok
from postier.imap.commands.search import limit_refusal, run_search
from postier.imap.matcher import Facts, TooComplex, in_search_thread
from postier.imap.session import BadSequence
from postier.imap.sortkeys import base_subject, extract_base_subject
from postier.mail.headers import HeaderView
from postier.store.models import BlobId

#: messages whose headers are read per store round trip (REFERENCES)
BLOB_BATCH = 128

_MSG_ID = re.compile(r"<([^<>@\s]+@[^<>@\s]+)>")


def message_ids(text: str) -> list[str]:
    """The valid msg-ids in a header value, in order, without the angle brackets."""
    return _MSG_ID.findall(text)


@dataclass(frozen=True)
class Candidate:
    """One matching message, as the algorithms see it."""

    id: int  # what the answer names: sequence number or UID
    seq: int  # RFC 5256 §2.2 tie-break
    sent: datetime  # RFC 5256 §2.2 sent date, timezone-aware
    subject: str  # decoded Subject:
    message_id: str = ""  # Message-ID: value as written
    references: tuple[str, ...] = ()  # References: msg-ids, else In-Reply-To's first

    def key(self) -> tuple[datetime, int]:
        return (self.sent.astimezone(UTC), self.seq)


def parent_ids(references: Sequence[str], in_reply_to: Sequence[str]) -> tuple[str, ...]:
    """RFC 5256 §3.2 step 1: the msg-ids of the References: fields, or when there
    are none, the first valid msg-id of In-Reply-To: as the only reference."""
    ids = [i for value in references for i in message_ids(value)]
    if ids:
        return tuple(ids)
    for value in in_reply_to:
        ids = message_ids(value)
        if ids:
            return (ids[0],)
    return ()


# --- ORDEREDSUBJECT ---------------------------------------------------------------------
def ordered_subject(messages: Sequence[Candidate]) -> list[r.ThreadNode]:
    """RFC 5256 §3.1: one thread per base subject; its first message (by sent date)
    at the top with every other one as a flat child; threads by their first date."""
    groups: dict[str, list[Candidate]] = {}
    for m in sorted(messages, key=Candidate.key):
        groups.setdefault(base_subject(m.subject), []).append(m)
    threads = sorted(groups.values(), key=lambda g: g[0].key())
    return [r.ThreadNode(g[0].id, tuple(r.ThreadNode(m.id) for m in g[1:])) for g in threads]


# --- REFERENCES -------------------------------------------------------------------------
@dataclass(eq=False)
class _Box:
    """A node of the thread tree under construction: a message, or a dummy."""

    msg: Candidate | None = None
    parent: _Box | None = None
    children: list[_Box] = field(default_factory=list)


def _is_ancestor(box: _Box, of: _Box) -> bool:
    """Whether `box` is `of` or above it."""
    node: _Box | None = of
    while node is not None:
        if node is box:
            return True
        node = node.parent
    return False


def _link(parent: _Box, child: _Box) -> None:
    """Make `child` a child of `parent` unless that would make a loop (§3.2 step 1)."""
    if _is_ancestor(child, parent):
        return
    child.parent = parent
    parent.children.append(child)


def _unlink(child: _Box) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
        child.parent = None


def _postorder(roots: Sequence[_Box]) -> list[_Box]:
    """Every box below and including `roots`, children before their parent."""
    out: list[_Box] = []
    stack = list(roots)
    while stack:
        box = stack.pop()
        out.append(box)
        stack.extend(box.children)
    out.reverse()
    return out


def _date_key(box: _Box) -> tuple[datetime, int]:
    """A message's sent date; a dummy's is its first child's (§3.2 steps 4 and 6)."""
    while box.msg is None:
        box = box.children[0]
    return box.msg.key()


def _subject(box: _Box) -> tuple[str, bool]:
    """Base subject (as a key) and reply-or-forward of a message or of a dummy's
    first child (§3.2 step 5.B.i)."""
    msg = box.msg if box.msg is not None else box.children[0].msg
    assert msg is not None  # pruning leaves no dummy under a dummy
    base, reply = extract_base_subject(msg.subject)
    return base.casefold(), reply and box.msg is not None


def references(messages: Sequence[Candidate]) -> list[r.ThreadNode]:
    """RFC 5256 §3.2, the REFERENCES algorithm, steps 1 to 6."""
    by_id: dict[str, _Box] = {}
    boxes: list[_Box] = []

    def box_for(msg_id: str) -> _Box:
        box = by_id.get(msg_id)
        if box is None:  # a dummy until a message with this ID claims it
            box = by_id[msg_id] = _Box()
            boxes.append(box)
        return box

    # (1) links from References / In-Reply-To, messages in sequence order
    for m in sorted(messages, key=lambda m: m.seq):
        ids = message_ids(m.message_id)
        own = by_id.get(ids[0]) if ids else None
        if ids and own is None:
            own = box_for(ids[0])
        if own is None or own.msg is not None:
            own = _Box()  # no valid ID, or a later duplicate: a unique ID of its own
            boxes.append(own)
        own.msg = m
        # (1.A) each reference is the parent of the next; existing parents stay
        prev: _Box | None = None
        for ref in m.references:
            box = box_for(ref)
            if prev is not None and box.parent is None:
                _link(prev, box)
            prev = box
        # (1.B) the last reference is this message's parent, replacing any other
        _unlink(own)
        if prev is not None:
            _link(prev, own)

    # (2) the root set: every box without a parent
    roots = [b for b in boxes if b.parent is None]

    # (3) prune dummies: drop childless ones, promote the children of the others,
    # except to the root unless there is only one child
    for box in _postorder(roots):
        kept: list[_Box] = []
        for child in box.children:
            if child.msg is None:
                for grandchild in child.children:
                    grandchild.parent = box
                kept += child.children
            else:
                kept.append(child)
        box.children = kept
    pruned: list[_Box] = []
    for box in roots:
        if box.msg is None and len(box.children) <= 1:
            for child in box.children:
                child.parent = None
            pruned += box.children
        else:
            pruned.append(box)
    roots = pruned

    # (4) sort the root set by sent date; a dummy's children first, then its first
    for box in roots:
        if box.msg is None:
            box.children.sort(key=_date_key)
    roots.sort(key=_date_key)

    # (5) gather threads with the same base subject
    table: dict[str, _Box] = {}
    for box in roots:  # (5.B) one message per base subject
        subject, reply = _subject(box)
        if not subject:
            continue
        held = table.get(subject)
        if held is None or (
            held.msg is not None and (box.msg is None or (_subject(held)[1] and not reply))
        ):
            table[subject] = box
    merged: list[_Box] = list(roots)
    for box in roots:  # (5.C) merge into the table's message
        if box.parent is not None:
            continue  # already placed under a new dummy
        subject, reply = _subject(box)
        if not subject:
            continue
        held = table[subject]
        if held is box:
            continue
        merged.remove(box)
        if held.msg is None and box.msg is None:
            for child in box.children:
                child.parent = held
            held.children += box.children
        elif held.msg is None or (reply and not _subject(held)[1]):
            box.parent = held
            held.children.append(box)
        else:
            dummy = _Box()
            merged[merged.index(held)] = dummy
            held.parent = box.parent = dummy
            dummy.children += [held, box]
            table[subject] = dummy
    roots = merged

    # (6) sort every set of siblings by sent date, the deepest first
    for box in _postorder(roots):
        box.children.sort(key=_date_key)
    roots.sort(key=_date_key)
    return _nodes(roots)


def _nodes(roots: Sequence[_Box]) -> list[r.ThreadNode]:
    built: dict[_Box, r.ThreadNode] = {}  # boxes hash by identity (eq=False)
    for box in _postorder(roots):
        children = tuple(built.pop(c) for c in box.children)
        built[box] = r.ThreadNode(box.msg.id if box.msg else None, children)
    return [built[b] for b in roots]


ALGORITHMS: dict[str, Callable[[Sequence[Candidate]], list[r.ThreadNode]]] = {
    "ORDEREDSUBJECT": ordered_subject,
    "REFERENCES": references,
}


async def thread(ctx: Context, cmd: p.Thread) -> Result:
    algorithm = ALGORITHMS.get(cmd.algorithm.upper())
    if algorithm is None:
        return bad(f"Unsupported thread algorithm {cmd.algorithm}")
    try:
        found = await run_search(ctx, cmd.key, summaries=True)
    except BadSequence as e:
        return bad(str(e))
    except TooComplex:
        return limit_refusal()
    parents: dict[int, tuple[str, ...]] = {}
    if algorithm is references:
        for start in range(0, len(found), BLOB_BATCH):
            batch = found[start : start + BLOB_BATCH]
            blobs = await ctx.store.read_blobs([x.m.blob_id for x in batch])
            parents.update(await in_search_thread(_parents, batch, blobs))
    candidates = [
        Candidate(
            id=x.m.uid if cmd.uid else x.seq,
            seq=x.seq,
            sent=x.m.summary.date or x.m.internal_date,
            subject=x.m.summary.subject,
            message_id=x.m.summary.message_id,
            references=parents.get(x.seq, ()),
        )
        for x in found
    ]
    ctx.send(r.thread(await in_search_thread(algorithm, candidates)))
    return ok("THREAD completed")


def _parents(batch: Sequence[Facts], blobs: dict[BlobId, bytes]) -> dict[int, tuple[str, ...]]:
    """Sequence number → the msg-ids its References / In-Reply-To name (a worker
    thread: header parsing stays off the event loop)."""
    out: dict[int, tuple[str, ...]] = {}
    for x in batch:
        data = blobs.get(x.m.blob_id, b"")
        head = HeaderView.of(data[: x.m.summary.header_size or None])
        out[x.seq] = parent_ids(head.fields("References"), head.fields("In-Reply-To"))
    return out
