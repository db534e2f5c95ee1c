"""`postier.imap.matcher.search`: the header index and the session's view answer
exactly what the plain scan answers (every key tested on every row and its bytes),
on a generated corpus in a real SQLite store, and read no row when they can."""

from __future__ import annotations

import base64
import gc
import random
from pathlib import Path

import pytest

from postier.imap import matcher
from postier.imap import parse as p
from postier.imap.matcher import Budget, Facts, compile_program, evaluate
from postier.imap.sequence import SequenceSet
from postier.imap.session import MailboxView
from postier.store.sqlite import SqliteStore
from tests.support.messages import new_message

ALPHABET = "aAbBsSßẞ iİıIΣσς fﬁéÉ\"'{}:*-@."
FLAGS = ["\\Seen", "\\Flagged", "\\Answered", "\\Deleted", "\\Draft", "$Junk", "work"]
HEADERS = ["From", "To", "Cc", "Bcc", "Subject"]


def text(rnd: random.Random, n: int) -> str:
    return "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, n)))


def encoded(rnd: random.Random, value: str) -> str:
    """`value` as written in a header: as is (UTF-8) or as an RFC 2047 encoded word."""
    if value and rnd.random() < 0.4:
        return "=?utf-8?b?" + base64.b64encode(value.encode()).decode() + "?="
    return value


def corpus_message(rnd: random.Random) -> bytes:
    head = (
        f"From: {encoded(rnd, text(rnd, 6))} <{text(rnd, 3).replace(' ', '')}a@b.test>\r\n"
        f"To: {encoded(rnd, text(rnd, 5))} <to@c.test>\r\n"
        f"Subject: {encoded(rnd, text(rnd, 14))}\r\n"
    )
    if rnd.random() < 0.6:
        head += f"Cc: {encoded(rnd, text(rnd, 5))}\r\n"
    if rnd.random() < 0.3:
        head += f"Bcc: {encoded(rnd, text(rnd, 5))}\r\n"
    return (head + "\r\n" + text(rnd, 40) + "\r\n").encode()


def random_key(rnd: random.Random, depth: int = 0) -> p.SearchKey:
    pick = rnd.random()
    if depth < 3 and pick < 0.25:
        kind = rnd.choice(["and", "or", "not"])
        if kind == "not":
            return p.SearchNot(random_key(rnd, depth + 1))
        if kind == "or":
            return p.SearchOr(random_key(rnd, depth + 1), random_key(rnd, depth + 1))
        return p.SearchAnd(tuple(random_key(rnd, depth + 1) for _ in range(rnd.randint(2, 3))))
    if pick < 0.65:
        return p.SearchHeader(rnd.choice(HEADERS), text(rnd, 4))
    if pick < 0.85:
        flag = rnd.choice([*FLAGS, "\\Recent", "\\flagged", "\\SEEN"])
        return p.SearchFlag(flag, rnd.random() < 0.6)
    if pick < 0.92:
        lo = rnd.randint(1, 60)
        return p.SearchSet(SequenceSet.parse(f"{lo}:{lo + rnd.randint(0, 20)}"), uid=True)
    if pick < 0.96:
        return p.SearchSize(rnd.choice(["larger", "smaller"]), rnd.randint(80, 200))
    return p.SearchAll()


@pytest.fixture
async def mailbox(tmp_path: Path):
    """A store with a 70-message INBOX (a few expunged) and a view of it."""
    rnd = random.Random(1405)
    store = SqliteStore(tmp_path / "data")
    await store.open()
    await store.add_domain("example.test")
    user = await store.add_user("u@example.test", "h")
    inbox = await store.get_mailbox(user.id, "INBOX")
    for _ in range(70):
        flags = frozenset(f for f in FLAGS if rnd.random() < 0.3)
        await store.append(inbox.id, new_message(corpus_message(rnd)), flags)
    await store.store_flags(inbox.id, list(range(3, 70, 9)), frozenset({"\\Deleted"}), "add")
    await store.expunge(inbox.id, list(range(3, 70, 9)))
    rows = await store.list_messages(inbox.id)
    view = MailboxView(await store.get_mailbox_by_id(inbox.id), rows, readonly=False)
    view.recent = {m.uid for m in rows[-10:]}
    yield store, view
    await store.close()


async def scan(store, view, key) -> list[int]:
    """The reference: no index, every row with its summary and bytes."""
    program = compile_program(key, view, [])
    rows = await store.list_messages(view.mailbox_id)
    facts = [Facts(view.seq_of(m.uid), m) for m in rows]
    blobs = await store.read_blobs([m.blob_id for m in rows])
    for f in facts:
        f.data = blobs[f.m.blob_id]
    found, unknown = evaluate(program, facts, Budget(10))
    assert unknown == []
    return [f.uid for f in found]


async def indexed(store, view, key) -> list[int]:
    found = await matcher.search(store, view, key, [], Budget(10))
    assert [f.seq for f in found] == [view.seq_of(f.uid) for f in found]
    assert matcher.numbers(found, True) == [f.uid for f in found]
    assert matcher.numbers(found, False) == [f.seq for f in found]
    assert matcher.highest_modseq(found) == max((f.modseq for f in found), default=None)
    return [f.uid for f in found]


async def test_a_search_the_view_answers_keeps_no_facts_per_match(mailbox) -> None:
    """Its result is positions in the view's columns: a `Facts` is made when one is
    read, so a SEARCH ALL of 50,000 keeps no 50,000 objects for the cyclic GC."""
    store, view = mailbox
    gc.collect()
    before = sum(type(o) is Facts for o in gc.get_objects())
    found = await matcher.search(store, view, p.SearchSet(SequenceSet.parse("1:*")), [], Budget(10))
    assert len(found) == view.exists > 50
    assert sum(type(o) is Facts for o in gc.get_objects()) == before
    assert matcher.numbers(found, True) == list(view.uids)
    assert [f.uid for f in found[-2:]] == list(view.uids[-2:])


async def test_index_and_view_answer_what_the_scan_answers(mailbox) -> None:
    store, view = mailbox
    rnd = random.Random(9051)
    hits = 0
    for _ in range(400):
        key = random_key(rnd)
        want = await scan(store, view, key)
        assert await indexed(store, view, key) == want, key
        hits += bool(want)
    assert hits > 100  # the corpus and keys are not so sparse that [] == [] proves all


@pytest.mark.parametrize(
    "key",
    [
        p.SearchHeader("Subject", "ss"),  # ß and ẞ casefold to "ss"
        p.SearchHeader("SUBJECT", "SS"),
        p.SearchHeader("subject", "ﬁ"),
        p.SearchHeader("From", "Σ"),
        p.SearchHeader("From", "ς"),  # final sigma casefolds to σ
        p.SearchHeader("To", "é"),
        p.SearchHeader("Cc", "\"'"),
        p.SearchHeader("Subject", "{}:*"),
        p.SearchHeader("Subject", ""),  # presence of the field: the bytes answer
        p.SearchHeader("Bcc", "a"),
        p.SearchNot(p.SearchHeader("Subject", "sa")),
        p.SearchOr(p.SearchHeader("From", "İ"), p.SearchFlag("\\Flagged")),
        p.SearchAnd((p.SearchHeader("Subject", "a"), p.SearchFlag("\\Seen", False))),
        p.SearchAnd((p.SearchHeader("From", "b"), p.SearchSize("larger", 120))),
        p.SearchFlag("work"),
        p.SearchFlag("\\Recent"),
        p.SearchNot(p.SearchOr(p.SearchFlag("\\Seen"), p.SearchFlag("$Junk", False))),
    ],
    ids=repr,
)
async def test_chosen_keys_answer_what_the_scan_answers(mailbox, key) -> None:
    store, view = mailbox
    assert await indexed(store, view, key) == await scan(store, view, key)


@pytest.mark.parametrize(
    "key",
    [
        p.SearchFlag("\\Flagged"),
        p.SearchNot(p.SearchFlag("\\Seen")),
        p.SearchHeader("Subject", "sa"),
        p.SearchOr(p.SearchHeader("From", "a"), p.SearchFlag("work")),
        p.SearchAnd((p.SearchSet(SequenceSet.parse("60:65"), uid=True), p.SearchFlag("\\Recent"))),
    ],
    ids=repr,
)
async def test_flags_and_header_keys_read_no_row(mailbox, monkeypatch, key) -> None:
    store, view = mailbox
    want = await scan(store, view, key)
    assert want  # the keys find something

    async def no_rows(*args, **kw):
        raise AssertionError("the view and the index answer this")

    monkeypatch.setattr(store, "list_messages", no_rows)
    assert await indexed(store, view, key) == want


async def test_rows_listed_in_batches_answer_the_same(mailbox, monkeypatch) -> None:
    """The rows are listed ROW_BATCH at a time (memory): batches that split the
    mailbox anywhere, and index hits that bound the span, change no answer, no
    sequence number and no order."""
    store, view = mailbox
    monkeypatch.setattr(matcher, "ROW_BATCH", 7)
    rnd = random.Random(3501)
    for _ in range(60):
        key = random_key(rnd)
        assert await indexed(store, view, key) == await scan(store, view, key), key
    for key in (p.SearchAll(), p.SearchSize("larger", 120), p.SearchHeader("Subject", "sa")):
        assert await indexed(store, view, key) == await scan(store, view, key), key


async def test_a_message_expunged_elsewhere_matches_nothing(mailbox) -> None:
    """Until the session announces it, an expunged message keeps its number, but no
    search finds it (as when the rows were listed)."""
    store, view = mailbox
    everything = [int(u) for u in view.uids]
    gone = everything[4]
    view.expunged.add(gone)
    for key in (p.SearchAll(), p.SearchFlag("\\Seen", False), p.SearchNot(p.SearchFlag("x"))):
        found = await indexed(store, view, key)
        assert gone not in found
    assert await indexed(store, view, p.SearchAll()) == [u for u in everything if u != gone]


async def test_a_sequence_number_beyond_an_empty_mailbox_is_still_bad(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "data")
    await store.open()
    try:
        await store.add_domain("example.test")
        user = await store.add_user("u@example.test", "h")
        inbox = await store.get_mailbox(user.id, "INBOX")
        view = MailboxView(inbox, [], readonly=False)
        with pytest.raises(matcher.BadSequence):
            await matcher.search(store, view, p.SearchSet(SequenceSet.parse("1")), [], Budget(10))
        assert await matcher.search(store, view, p.SearchHeader("From", "x"), [], Budget(10)) == []
    finally:
        await store.close()
