"""Search-key evaluation (RFC 9051 §6.4.4): a parsed search program is compiled once,
then every message is tested against all of its keys in one pass.

Rules:
- `compile_program` resolves what does not depend on the message, once: sequence and
  UID sets against the mailbox (each test is then a binary search, whatever the
  number of ranges), needles case-folded, system flags in their stored case, the
  time for OLDER/YOUNGER, the saved result for ``$``.
- A message is a `Facts`: its row (flags, size, dates, MODSEQ), its summary (FROM,
  TO, CC, BCC and SUBJECT decoded at delivery: no blob is read for them) and, once the
  caller has loaded them, its bytes. The header fields and the decoded text are
  derived at most once per message and shared by every key; a key repeated with the
  same needle is tested once per message.
- `search` asks the store's header index (`Store.search_headers`) for FROM, TO, CC,
  BCC and SUBJECT first: those keys then test a UID set. A program whose every key
  the session's view answers (flags, keywords, numbers, UIDs, MODSEQ, \\Recent,
  index hits) reads no row at all; otherwise the index hits bound the rows read.
- Evaluation is three-valued: a key that needs the message bytes answers None
  ("unknown") until they are loaded, so the caller reads the blobs only of the
  messages the cheap keys could not decide. AND, OR and NOT follow Kleene logic;
  AND tests its cheaper keys first.
- Text matching is case-insensitive substring matching (RFC 9051 §6.4.4): casefold
  then ``in``, linear in the text. No regular expression is built from client text.
- Dates compare days, disregarding time and zone (RFC 9051 §6.4.4): the internal
  date's day in UTC; SENT* use the Date: header's day as written, in its own zone,
  and, like Dovecot, the internal date when the message has no valid Date:.
- Every text test and every message first checks the `Budget` of CPU seconds; past
  it, `TooComplex` stops the search (the caller answers NO [LIMIT]).
- `evaluate` is a pure function of its inputs; `matching` drives it: the search
  threads (`in_search_thread`) for the CPU, in batches, and the store for the bytes,
  read in bounded batches (memory stays flat on a TEXT search of a large mailbox).
  Searches have threads of their own, so however many clients search at once, the
  default executor (blob writes, file reads) is never queued behind them.
"""

from __future__ import annotations

import array
import asyncio
import bisect
import contextlib
import enum
import functools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import ParamSpec, TypeVar, overload

from postier import mime
from postier.imap import parse as p
from postier.imap.session import BadSequence, MailboxView
from postier.mime.encoding import UnknownEncoding, decode_charset, decode_transfer, header_text
from postier.mime.parse import find_header_end, parse_fields
from postier.store import models
from postier.store.api import SearchField, Store
from postier.store.models import SYSTEM_FLAGS, BlobId, MailboxId, Message, Uid

_SYSTEM_FLAG_CASE = {f.lower(): f for f in SYSTEM_FLAGS}
#: the search key's header name → the store's name for the field
_SEARCH_FIELD: dict[str, SearchField] = {
    "from": "from",
    "to": "to",
    "cc": "cc",
    "bcc": "bcc",
    "subject": "subject",
}
#: header keys answered from the summary made at delivery
_SUMMARY_FIELDS = frozenset({"from", "to", "cc", "bcc", "subject"})


class TooComplex(Exception):
    """The search used up its CPU budget."""


class Budget:
    """CPU seconds a search may spend, across the worker threads it runs in.

    `start` and `stop` bracket one batch in the thread that runs it (thread CPU
    time, so waiting for the GIL or the disk does not count)."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds
        self._deadline = 0.0

    def start(self) -> None:
        self._deadline = time.thread_time() + self.left

    def stop(self) -> None:
        self.left = self._deadline - time.thread_time()

    def check(self) -> None:
        if time.thread_time() > self._deadline:
            raise TooComplex


class Cost(enum.IntEnum):
    """What a key reads; AND evaluates cheaper keys first."""

    VIEW = 0  # the session's view: sequence number, UID, flags, MODSEQ, \\Recent; index hits
    ROW = 1  # the messages table
    SUMMARY = 2  # the summary stored at delivery
    HEADER = 3  # the message's header block
    TEXT = 4  # the decoded text of the message


#: `Facts.m` of a message known only from the session's view (see `Facts`)
NO_ROW = Message(
    MailboxId(0),
    Uid(0),
    models.ModSeq(0),
    frozenset(),
    datetime.fromtimestamp(0, UTC),
    0,
    BlobId(""),
)


class Facts:
    """One message as the keys see it; what is derived from its bytes is derived once.

    `seq`, `uid`, `flags` and `modseq` are always known. `m` is the store's row (with
    its summary when listed with it), except for a search the session's view
    answered alone (every key of cost `Cost.VIEW`): then it is `NO_ROW`, and no
    caller that asked for summaries ever gets such a message."""

    __slots__ = (
        "_body",
        "_fields",
        "_header",
        "_summary",
        "budget",
        "data",
        "flags",
        "m",
        "memo",
        "modseq",
        "seq",
        "uid",
    )

    def __init__(self, seq: int, m: Message) -> None:
        self.seq = seq
        self.m = m
        self.uid: int = m.uid
        self.flags = m.flags
        self.modseq: int = m.modseq
        self.data: bytes | None = None  # loaded by the caller when a key needs it
        self.budget: Budget | None = None
        #: results of text tests, by (kind, where, needle): a repeated key runs once
        self.memo: dict[tuple[str, str, str], bool] = {}
        self._summary: dict[str, str] | None = None
        self._fields: dict[str, list[str]] | None = None
        self._header: str | None = None
        self._body: str | None = None

    def release(self) -> None:
        """Drop the bytes and what was derived from them (memory stays flat)."""
        self.data = self._fields = self._header = self._body = None
        self.memo.clear()

    def check(self) -> None:
        if self.budget is not None:
            self.budget.check()

    def summary(self, name: str) -> str:
        if self._summary is None:
            self._summary = {}
        text = self._summary.get(name)
        if text is None:
            s = self.m.summary
            raw = {"from": s.from_, "to": s.to, "cc": s.cc, "bcc": s.bcc, "subject": s.subject}[
                name
            ]
            text = self._summary[name] = raw.casefold()
        return text

    def fields(self, name: str) -> list[str] | None:
        """The decoded values of header field `name`, casefolded; None before the
        bytes are loaded."""
        if self.data is None:
            return None
        if self._fields is None:
            data = self.data
            end = self.m.summary.header_size or find_header_end(data, 0, len(data))[1]
            self._fields = {}
            for fname, value in parse_fields(data[:end]):
                self._fields.setdefault(fname.lower(), []).append(header_text(value).casefold())
        return self._fields.get(name, [])

    def header(self) -> str | None:
        """The whole header block, decoded and casefolded (TEXT)."""
        if self.data is None:
            return None
        if self._header is None:
            end = self.m.summary.header_size or find_header_end(self.data, 0, len(self.data))[1]
            self._header = header_text(self.data[:end].replace(b"\r\n", b" ")).casefold()
        return self._header

    def body(self) -> str | None:
        """The decoded text of every text/* leaf part, casefolded (BODY, TEXT)."""
        if self.data is None:
            return None
        if self._body is None:
            data = self.data
            chunks = []
            for part in mime.parse(data).walk():
                if part.is_multipart or part.message is not None:
                    continue
                if part.maintype.lower() != "text" and part.content_type_given:
                    continue
                raw = data[part.body_start : part.body_end]
                with contextlib.suppress(UnknownEncoding):
                    raw = decode_transfer(raw, part.encoding)
                chunks.append(decode_charset(raw, part.param("charset")))
            self._body = "\n".join(chunks).casefold()
        return self._body


# --- the compiled program --------------------------------------------------------------
class Node:
    cost = Cost.VIEW

    def test(self, f: Facts) -> bool | None:
        raise NotImplementedError


class Const(Node):
    def __init__(self, value: bool) -> None:
        self.value = value

    def test(self, f: Facts) -> bool | None:
        return self.value


class Not(Node):
    def __init__(self, node: Node) -> None:
        self.node = node
        self.cost = node.cost

    def test(self, f: Facts) -> bool | None:
        v = self.node.test(f)
        return None if v is None else not v


class And(Node):
    def __init__(self, nodes: Iterable[Node]) -> None:
        self.nodes = sorted(nodes, key=lambda n: n.cost)  # cheap keys decide first
        self.cost = max((n.cost for n in self.nodes), default=Cost.VIEW)

    def test(self, f: Facts) -> bool | None:
        out: bool | None = True
        for node in self.nodes:
            v = node.test(f)
            if v is False:
                return False
            if v is None:
                out = None
        return out


class Or(Node):
    def __init__(self, left: Node, right: Node) -> None:
        self.nodes = sorted((left, right), key=lambda n: n.cost)
        self.cost = max(left.cost, right.cost)

    def test(self, f: Facts) -> bool | None:
        out: bool | None = False
        for node in self.nodes:
            v = node.test(f)
            if v is True:
                return True
            if v is None:
                out = None
        return out


class Flag(Node):
    def __init__(self, flag: str, present: bool) -> None:
        self.flag = _SYSTEM_FLAG_CASE.get(flag.lower(), flag) if flag.startswith("\\") else flag
        self.present = present

    def test(self, f: Facts) -> bool | None:
        return (self.flag in f.flags) == self.present


class Recent(Node):
    def __init__(self, recent: frozenset[int], present: bool) -> None:
        self.recent = recent
        self.present = present

    def test(self, f: Facts) -> bool | None:
        return (f.uid in self.recent) == self.present


class Members(Node):
    """A sequence or UID set, resolved against the mailbox once."""

    def __init__(self, spans: Sequence[tuple[int, int]], uid: bool) -> None:
        self.starts = [lo for lo, _ in spans]
        self.ends = [hi for _, hi in spans]
        self.uid = uid

    def test(self, f: Facts) -> bool | None:
        n = f.uid if self.uid else f.seq
        i = bisect.bisect_right(self.starts, n) - 1
        return i >= 0 and n <= self.ends[i]


class Size(Node):
    cost = Cost.ROW

    def __init__(self, larger: bool, size: int) -> None:
        self.larger = larger
        self.size = size

    def test(self, f: Facts) -> bool | None:
        return f.m.size > self.size if self.larger else f.m.size < self.size


class ModSeq(Node):
    def __init__(self, modseq: int) -> None:
        self.modseq = modseq

    def test(self, f: Facts) -> bool | None:
        return f.modseq >= self.modseq


class Age(Node):
    cost = Cost.ROW

    def __init__(self, older: bool, seconds: int, now: datetime) -> None:
        self.older = older
        self.seconds = seconds
        self.now = now

    def test(self, f: Facts) -> bool | None:
        age = (self.now - f.m.internal_date).total_seconds()
        return age >= self.seconds if self.older else age <= self.seconds


def sent_day(m: Message) -> date:
    """The day of the Date: header in its own zone; the internal date's (UTC) day
    when there is no valid Date: (as Dovecot)."""
    return m.summary.date.date() if m.summary.date is not None else internal_day(m)


def internal_day(m: Message) -> date:
    return m.internal_date.astimezone(UTC).date()


class Day(Node):
    def __init__(self, sent: bool, op: str, value: date) -> None:
        self.day = sent_day if sent else internal_day
        self.cost = Cost.SUMMARY if sent else Cost.ROW
        self.op = op
        self.value = value

    def test(self, f: Facts) -> bool | None:
        day = self.day(f.m)
        if self.op == "before":
            return day < self.value
        if self.op == "on":
            return day == self.value
        return day >= self.value  # since


class Indexed(Node):
    """FROM, TO, CC, BCC, SUBJECT answered by the store's header index
    (`Store.search_headers`) before the evaluation: the UIDs that match."""

    def __init__(self, uids: frozenset[int]) -> None:
        self.uids = uids

    def test(self, f: Facts) -> bool | None:
        return f.uid in self.uids


class SummaryText(Node):
    """FROM, TO, CC, BCC, SUBJECT tested on the text decoded at delivery (when no index
    answer was looked up: `commands.updates` testing a few new messages)."""

    cost = Cost.SUMMARY

    def __init__(self, name: str, needle: str) -> None:
        self.name = name
        self.needle = needle

    def test(self, f: Facts) -> bool | None:
        return self.needle in f.summary(self.name)


class HeaderText(Node):
    """HEADER (and FROM, TO, CC, BCC, SUBJECT with an empty needle): a substring of
    a decoded field; an empty needle asks whether the field is present (RFC 9051
    §6.4.4)."""

    cost = Cost.HEADER

    def __init__(self, name: str, needle: str) -> None:
        self.name = name
        self.needle = needle

    def test(self, f: Facts) -> bool | None:
        values = f.fields(self.name)
        if values is None:
            return None
        if not self.needle:
            return bool(values)
        memo = ("h", self.name, self.needle)
        hit = f.memo.get(memo)
        if hit is None:
            f.check()
            hit = f.memo[memo] = any(self.needle in v for v in values)
        return hit


class Text(Node):
    """BODY (the decoded text parts) and TEXT (the header block too)."""

    cost = Cost.TEXT

    def __init__(self, where: str, needle: str) -> None:
        self.where = where
        self.needle = needle

    def test(self, f: Facts) -> bool | None:
        memo = ("t", self.where, self.needle)
        hit = f.memo.get(memo)
        if hit is not None:
            return hit
        body = f.body()
        if body is None:
            return None
        f.check()
        hit = self.needle in body
        if not hit and self.where == "text":
            f.check()
            hit = self.needle in (f.header() or "")
        f.memo[memo] = hit
        return hit


@dataclass(frozen=True)
class Program:
    root: Node
    needs_summary: bool  # a key reads the summary (or more): list rows with it


def names_modseq(key: p.SearchKey) -> bool:
    """Whether `key` names MODSEQ anywhere (RFC 7162 §3.1.5: the answer then carries
    the highest MODSEQ of the messages returned)."""
    todo = [key]
    while todo:
        k = todo.pop()
        if isinstance(k, p.SearchModSeq):
            return True
        if isinstance(k, p.SearchAnd):
            todo.extend(k.keys)
        elif isinstance(k, p.SearchOr):
            todo += (k.left, k.right)
        elif isinstance(k, p.SearchNot):
            todo.append(k.key)
    return False


#: (field, needle as the client gave it) → the UIDs the header index answered
IndexAnswers = Mapping[tuple[str, str], frozenset[int]]


def compile_program(
    key: p.SearchKey,
    view: MailboxView,
    saved: Sequence[int],
    now: datetime | None = None,
    *,
    indexed: IndexAnswers | None = None,
) -> Program:
    """`key` ready to test messages of `view`; `saved` is the SEARCHRES result
    (RFC 5182); `indexed` the header index's answers (`index_answers`). Raises
    `BadSequence` for a sequence number beyond the mailbox."""
    when = now or datetime.now(UTC)
    recent = frozenset(view.recent)
    last_uid = view.uids[-1] if view.uids else 0
    # an explicit stack, children before parents: nesting is bounded by the parser,
    # and this keeps the evaluation of a deep key free of recursion here
    todo: list[tuple[p.SearchKey, bool]] = [(key, False)]
    built: list[Node] = []
    while todo:
        k, ready = todo.pop()
        if isinstance(k, p.SearchAnd | p.SearchOr | p.SearchNot) and not ready:
            todo.append((k, True))
            subs = k.keys if isinstance(k, p.SearchAnd) else (
                (k.left, k.right) if isinstance(k, p.SearchOr) else (k.key,)
            )  # fmt: skip
            todo.extend((s, False) for s in subs)
            continue
        node: Node
        if isinstance(k, p.SearchAnd):
            node = And(built.pop() for _ in k.keys)
        elif isinstance(k, p.SearchOr):
            node = Or(built.pop(), built.pop())
        elif isinstance(k, p.SearchNot):
            node = Not(built.pop())
        elif isinstance(k, p.SearchAll):
            node = Const(True)
        elif isinstance(k, p.SearchFlag):
            node = Recent(recent, k.present) if k.flag == "\\Recent" else Flag(k.flag, k.present)
        elif isinstance(k, p.SearchSet):
            node = _members(k, view, saved, last_uid)
        elif isinstance(k, p.SearchSize):
            node = Size(k.op == "larger", k.size)
        elif isinstance(k, p.SearchModSeq):
            node = ModSeq(k.modseq)
        elif isinstance(k, p.SearchAge):
            node = Age(k.op == "older", k.seconds, when)
        elif isinstance(k, p.SearchDate):
            node = Day(k.field == "sent", k.op, k.value)
        elif isinstance(k, p.SearchHeader):
            name = k.header.lower()
            needle = k.value.casefold()
            hits = (indexed or {}).get((name, k.value))
            if hits is not None:
                node = Indexed(hits)
            elif name in _SUMMARY_FIELDS and needle:
                node = SummaryText(name, needle)
            else:
                node = HeaderText(name, needle)
        elif isinstance(k, p.SearchText):
            node = Text(k.where, k.value.casefold())
        else:  # pragma: no cover - the parser makes no other key
            raise AssertionError(f"unknown search key {k!r}")
        built.append(node)
    root = built.pop()
    return Program(root, root.cost >= Cost.SUMMARY)


def _members(k: p.SearchSet, view: MailboxView, saved: Sequence[int], last_uid: int) -> Node:
    if k.set.saved:  # RFC 5182 §2.1: "$" is the saved result, as UIDs
        uids = sorted(set(saved))
        return Members([(u, u) for u in uids], uid=True)
    if k.uid:
        return Members(k.set.resolve(last_uid), uid=True)
    spans = k.set.resolve(view.exists)
    if (spans and spans[-1][1] > view.exists) or (view.exists == 0 and k.set.ranges):
        raise BadSequence("Invalid message sequence number")  # RFC 9051 §9 seq-number
    return Members(spans, uid=False)


def evaluate(
    program: Program, batch: Sequence[Facts], budget: Budget
) -> tuple[list[Facts], list[Facts]]:
    """(matching, undecided) messages of `batch`; undecided ones need their bytes.
    Runs in a worker thread; raises `TooComplex` past the budget."""
    budget.start()
    try:
        matched: list[Facts] = []
        undecided: list[Facts] = []
        for f in batch:
            budget.check()
            f.budget = budget
            v = program.root.test(f)
            if v is None:
                undecided.append(f)
            elif v:
                matched.append(f)
        return matched, undecided
    finally:
        budget.stop()


#: bytes read per store round trip while matching: at most this many messages, and
#: past this many octets the batch ends
BLOB_BATCH = 64
BLOB_BATCH_OCTETS = 8 * 1024 * 1024
#: messages tested per hop to a search thread when no bytes are needed (searches of
#: several clients take turns)
ROW_BATCH = 2000
#: threads shared by every search, SORT and THREAD of the process
SEARCH_THREADS = 2

_pool: ThreadPoolExecutor | None = None


P = ParamSpec("P")
T = TypeVar("T")


async def in_search_thread(fn: Callable[P, T], *args: P.args, **kw: P.kwargs) -> T:
    """`fn(*args)` in one of the search threads."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(SEARCH_THREADS, thread_name_prefix="postier-search")
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, functools.partial(fn, *args, **kw))


def _batches(found: Sequence[Facts]) -> Iterator[list[Facts]]:
    batch: list[Facts] = []
    octets = 0
    for f in found:
        batch.append(f)
        octets += f.m.size
        if len(batch) >= BLOB_BATCH or octets >= BLOB_BATCH_OCTETS:
            yield batch
            batch, octets = [], 0
    if batch:
        yield batch


async def matching(
    store: Store, program: Program, facts: Sequence[Facts], budget: Budget
) -> list[Facts]:
    """The members of `facts` that match, in the order given. The bytes are read
    only for the messages their row and summary could not decide. Raises
    `TooComplex` past the budget."""
    matched: list[Facts] = []
    undecided: list[Facts] = []
    for start in range(0, len(facts), ROW_BATCH):
        got, unknown = await in_search_thread(
            evaluate, program, facts[start : start + ROW_BATCH], budget
        )
        matched += got
        undecided += unknown
    for batch in _batches(undecided):
        blobs = await store.read_blobs([f.m.blob_id for f in batch])
        for f in batch:
            f.data = blobs.get(f.m.blob_id, b"")  # a lost blob matches no text
        try:
            more, unknown = await in_search_thread(evaluate, program, batch, budget)
        finally:
            for f in batch:
                f.release()
        assert not unknown, "every key is decided once the bytes are loaded"
        matched += more
    if undecided:
        order = {id(f): i for i, f in enumerate(facts)}
        matched.sort(key=lambda f: order[id(f)])
    return matched


# --- the search as a whole --------------------------------------------------------------
def header_keys(key: p.SearchKey) -> set[tuple[str, str]]:
    """The (field, needle) pairs of `key` the store's header index answers: FROM,
    TO, CC, BCC and SUBJECT with a needle (an empty one asks whether the field is there,
    which the bytes answer)."""
    out: set[tuple[str, str]] = set()
    todo = [key]
    while todo:
        k = todo.pop()
        if isinstance(k, p.SearchHeader):
            name = k.header.lower()
            if name in _SUMMARY_FIELDS and k.value:
                out.add((name, k.value))
        elif isinstance(k, p.SearchAnd):
            todo.extend(k.keys)
        elif isinstance(k, p.SearchOr):
            todo += (k.left, k.right)
        elif isinstance(k, p.SearchNot):
            todo.append(k.key)
    return out


async def index_answers(store: Store, mailbox_id: MailboxId, key: p.SearchKey) -> IndexAnswers:
    """Each header key of `key` answered by the store's index, once per distinct
    (field, needle)."""
    out: dict[tuple[str, str], frozenset[int]] = {}
    for name, needle in sorted(header_keys(key)):
        field = _SEARCH_FIELD[name]
        out[name, needle] = frozenset(await store.search_headers(mailbox_id, needle, [field]))
    return out


async def search(
    store: Store,
    view: MailboxView,
    key: p.SearchKey,
    saved: Sequence[int],
    budget: Budget,
    *,
    summaries: bool = False,
    structures: bool = False,
) -> Sequence[Facts]:
    """The messages of `view` matching `key`, in mailbox order; with their summaries
    when asked (`summaries`, `structures` as for `Store.list_messages`). One the
    view answered alone is a `ViewHits`.

    FROM, TO, CC, BCC and SUBJECT come from the store's header index. A search whose
    every key the view answers (flags, keywords, numbers, UIDs, MODSEQ, \\Recent,
    index hits) reads no message row: it runs over the view's columns (a search
    of flags alone tests each distinct flag set once). Otherwise the rows are
    listed, only over the UID span the index hits allow when they bound the
    result. A message expunged elsewhere and not yet announced matches nothing.
    Raises `BadSequence` and `TooComplex` (past `budget`)."""
    if view.exists == 0:
        compile_program(key, view, saved)  # a sequence number is still checked
        return []
    answers = await index_answers(store, view.mailbox_id, key)
    program = compile_program(key, view, saved, indexed=answers)
    bound = candidates(program.root)
    if program.root.cost == Cost.VIEW and not (summaries or structures):
        uids, modseqs, flags = view.columns_copy()  # the thread never sees the view move
        gone = frozenset(view.expunged)
        return await in_search_thread(
            _in_view, program.root, bound, uids, flags, modseqs, gone, budget
        )
    lo, hi = view.uids[0], view.uids[-1]
    if bound is not None:
        if not bound:
            return []
        lo, hi = max(lo, min(bound)), min(hi, max(bound))
        if lo > hi:
            return []
    start = bisect.bisect_left(view.uids, lo)
    uids = view.uids[start : bisect.bisect_right(view.uids, hi)]
    matched: list[Facts] = []
    # the rows a ROW_BATCH at a time: a search of 10,000 messages with their
    # summaries had all of them alive at once, and the few objects of the session
    # allocated meanwhile kept ~5 MB of the allocator's arenas from being freed
    for at in range(0, len(uids), ROW_BATCH):
        span = uids[at : at + ROW_BATCH]
        rows = await store.list_messages(
            view.mailbox_id,
            span[0],
            span[-1],
            summaries=summaries or structures or program.needs_summary,
            structures=structures,
        )
        by_uid: dict[int, Message] = {m.uid: m for m in rows}
        del rows
        facts = [
            Facts(i, by_uid[uid])
            for i, uid in enumerate(span, start + at + 1)
            if uid in by_uid and (bound is None or uid in bound)
        ]  # a message expunged elsewhere, not announced yet, matches nothing
        del by_uid
        matched += await matching(store, program, facts, budget)
    return matched


def candidates(node: Node) -> frozenset[int] | None:
    """UIDs outside which `node` cannot match (from index hits), None: no bound."""
    if isinstance(node, Indexed):
        return node.uids
    if isinstance(node, Const) and not node.value:
        return frozenset()
    if isinstance(node, And):
        bounds = [b for b in map(candidates, node.nodes) if b is not None]
        return min(bounds, key=len) if bounds else None
    if isinstance(node, Or):
        left, right = (candidates(n) for n in node.nodes)
        return None if left is None or right is None else left | right
    return None


def _flags_only(node: Node) -> bool:
    """Whether `node` reads nothing but the flags (FLAGGED, UNSEEN, KEYWORD, ...)."""
    if isinstance(node, Flag | Const):
        return True
    if isinstance(node, And | Or):
        return all(_flags_only(n) for n in node.nodes)
    if isinstance(node, Not):
        return _flags_only(node.node)
    return False


#: positions tested between two looks at the budget's clock
_CHECK_EVERY = 1024


def _in_view(
    root: Node,
    bound: frozenset[int] | None,
    uids: Sequence[int],
    flags: Sequence[frozenset[str]],
    modseqs: Sequence[int],
    gone: frozenset[int],
    budget: Budget,
) -> ViewHits:
    """Evaluate a program of `Cost.VIEW` keys over a snapshot of the view's columns
    (in a search thread). Index hits bound the positions tested; a program of flags
    alone is tested once per distinct flag set, then each message is one set
    look-up."""
    budget.start()
    try:
        cursor = Facts(0, NO_ROW)
        positions: Iterable[int]
        if bound is not None:
            if len(bound) * 8 < len(uids):  # few: find each by bisection
                positions = []
                for u in sorted(bound):
                    i = bisect.bisect_left(uids, u)
                    if i < len(uids) and uids[i] == u:
                        positions.append(i)
            else:
                positions = [i for i, u in enumerate(uids) if u in bound]
            if isinstance(root, Indexed):  # the bound is the answer
                return ViewHits((i for i in positions if uids[i] not in gone), uids, flags, modseqs)
        elif _flags_only(root):
            good = set()
            for fs in set(flags):
                cursor.flags = fs
                if root.test(cursor):
                    good.add(fs)
            return ViewHits(
                (i for i, fs in enumerate(flags) if fs in good and uids[i] not in gone),
                uids,
                flags,
                modseqs,
            )
        else:
            positions = range(len(uids))
        out = array.array("L")
        for n, i in enumerate(positions):
            if n % _CHECK_EVERY == 0:
                budget.check()
            cursor.seq, cursor.uid, cursor.flags, cursor.modseq = (
                i + 1, uids[i], flags[i], modseqs[i]
            )  # fmt: skip
            if root.test(cursor) and uids[i] not in gone:
                out.append(i)
        return ViewHits(out, uids, flags, modseqs)
    finally:
        budget.stop()


class ViewHits(Sequence[Facts]):
    """The result of a search the view answered alone: the positions matched in a
    snapshot of the view's columns, each `Facts` made when it is read (and then
    dropped by the reader). A list of them kept one tracked object per match alive
    while the answer was written: SEARCH UNSEEN over 50,000 messages 50,000 of
    them, which the cyclic GC promoted to its oldest generation, so nearly every
    such search set off a full collection that scanned them (25-35 ms of CPU
    holding the GIL, the event loop waiting)."""

    __slots__ = ("_at", "_flags", "_modseqs", "_uids")

    def __init__(
        self,
        at: Iterable[int],
        uids: Sequence[int],
        flags: Sequence[frozenset[str]],
        modseqs: Sequence[int],
    ) -> None:
        self._at = at if isinstance(at, array.array) else array.array("L", at)
        self._uids, self._flags, self._modseqs = uids, flags, modseqs

    def __len__(self) -> int:
        return len(self._at)

    @overload
    def __getitem__(self, i: int) -> Facts: ...
    @overload
    def __getitem__(self, i: slice) -> list[Facts]: ...
    def __getitem__(self, i: int | slice) -> Facts | list[Facts]:
        if isinstance(i, slice):
            return [_view_facts(j, self._uids, self._flags, self._modseqs) for j in self._at[i]]
        return _view_facts(self._at[i], self._uids, self._flags, self._modseqs)

    def __iter__(self) -> Iterator[Facts]:
        uids, flags, modseqs = self._uids, self._flags, self._modseqs
        for j in self._at:
            yield _view_facts(j, uids, flags, modseqs)

    def numbers(self, uid: bool) -> list[int]:
        uids = self._uids
        return [uids[j] for j in self._at] if uid else [j + 1 for j in self._at]

    def highest_modseq(self) -> int | None:
        modseqs = self._modseqs
        return max((modseqs[j] for j in self._at), default=None)


def numbers(found: Sequence[Facts], uid: bool) -> list[int]:
    """The UIDs (or sequence numbers) of a search's result, without a `Facts` per
    message of a `ViewHits`."""
    if isinstance(found, ViewHits):
        return found.numbers(uid)
    return [f.uid if uid else f.seq for f in found]


def highest_modseq(found: Sequence[Facts]) -> int | None:
    if isinstance(found, ViewHits):
        return found.highest_modseq()
    return max((f.modseq for f in found), default=None)


def _view_facts(
    i: int, uids: Sequence[int], flags: Sequence[frozenset[str]], modseqs: Sequence[int]
) -> Facts:
    # only what a view knows is set: nothing reads more of a message found this way
    f = Facts.__new__(Facts)
    f.seq, f.m, f.uid, f.flags, f.modseq = i + 1, NO_ROW, uids[i], flags[i], modseqs[i]
    return f
