"""`postier.imap.matcher`: search keys compiled once and tested against crafted
messages: one pass per message, three-valued evaluation, dates in the Date: header's
own zone, the CPU budget."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import pytest

from postier.imap import matcher
from postier.imap import parse as p
from postier.imap.matcher import Budget, Facts, TooComplex, compile_program, evaluate
from postier.imap.receiver import RawCommand, tag_of
from postier.imap.session import BadSequence, MailboxView
from postier.mime import summarize
from postier.store.models import BlobId, Mailbox, MailboxId, Message, ModSeq, Uid, UserId

MBOX = Mailbox(MailboxId(7), UserId(1), "INBOX", None, True, 42, 100, 20)
ARRIVED = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def message(uid: int, data: bytes, *, flags: frozenset[str] = frozenset(), when=ARRIVED) -> Message:
    return Message(
        MailboxId(7), Uid(uid), ModSeq(uid), flags, when, len(data), BlobId(f"b{uid}"),
        summarize(data),
    )  # fmt: skip


def key(text: str) -> p.SearchKey:
    line = b"t SEARCH " + text.encode()
    cmd = p.parse_command(RawCommand(tag_of(line), (line,)))
    assert isinstance(cmd, p.Search)
    return cmd.key


def run(text: str, messages: list[tuple[Message, bytes]], *, budget: float = 10.0) -> list[int]:
    """UIDs matching, loading each message's bytes only when the first pass asks."""
    view = MailboxView(MBOX, [m for m, _ in messages], readonly=False)
    program = compile_program(key(text), view, [])
    facts = [Facts(seq, m) for seq, (m, _) in enumerate(messages, 1)]
    b = Budget(budget)
    found, undecided = evaluate(program, facts, b)
    data = {m.uid: d for m, d in messages}
    for f in undecided:
        f.data = data[f.m.uid]
    more, unknown = evaluate(program, undecided, b)
    assert unknown == []
    return sorted(f.m.uid for f in found + more)


LATE = b"From: Bob <bob@remote.test>\r\nDate: Mon, 2 Mar 2026 23:30:00 -0500\r\n\r\nhi\r\n"
EARLY = b"From: Amy <amy@remote.test>\r\nDate: Tue, 3 Mar 2026 00:30:00 +0900\r\n\r\nhi\r\n"
UNDATED = b"From: Cy <cy@remote.test>\r\nDate: someday\r\n\r\nhi\r\n"


@pytest.mark.parametrize(
    ("search", "uids"),
    [
        # RFC 9051 §6.4.4: the date of the Date: header as written (its own zone):
        # 2 Mar 23:30 -0500 is 3 Mar in UTC, 3 Mar 00:30 +0900 is 2 Mar in UTC
        ("SENTON 2-Mar-2026", [1]),
        ("SENTON 3-Mar-2026", [2]),
        ("SENTBEFORE 3-Mar-2026", [1]),
        ("SENTSINCE 3-Mar-2026", [2, 3]),
        # no valid Date: the internal date (1 Jun 2026), as Dovecot
        ("SENTON 1-Jun-2026", [3]),
        ("SENTBEFORE 1-Jun-2026", [1, 2]),
        # BEFORE/ON/SINCE: the internal date
        ("BEFORE 1-Jun-2026", []),
        ("ON 1-Jun-2026", [1, 2, 3]),
    ],
)
def test_sent_dates_are_the_header_day_in_its_own_zone(search: str, uids: list[int]) -> None:
    msgs = [(message(1, LATE), LATE), (message(2, EARLY), EARLY), (message(3, UNDATED), UNDATED)]
    assert run(search, msgs) == uids


def test_summary_keys_need_no_bytes_and_text_keys_load_them_once(monkeypatch) -> None:
    """One pass per message: its text is parsed and decoded once, however many keys
    test it; a message the cheap keys rule out is never loaded."""
    body = b"From: Bob <bob@remote.test>\r\nSubject: Lunch\r\n\r\nShall we meet at noon?\r\n"
    other = body.replace(b"Bob <bob@", b"Eve <eve@")
    parses = []
    real_parse = matcher.mime.parse
    monkeypatch.setattr(matcher.mime, "parse", lambda d: parses.append(d) or real_parse(d))
    terms = " ".join(f"NOT BODY zz{i}" for i in range(500))
    view = MailboxView(MBOX, [message(1, body), message(2, other)], readonly=False)
    program = compile_program(key(f"FROM bob {terms} BODY noon"), view, [])
    facts = [Facts(1, message(1, body)), Facts(2, message(2, other))]
    found, undecided = evaluate(program, facts, Budget(10))
    assert (found, [f.m.uid for f in undecided]) == ([], [1])  # 2 is decided by FROM
    undecided[0].data = body
    found, undecided = evaluate(program, undecided, Budget(10))
    assert [f.m.uid for f in found] == [1]
    assert parses == [body]


def test_repeated_needles_are_tested_once() -> None:
    f = Facts(1, message(1, LATE))
    f.data = LATE
    program = compile_program(
        key("BODY hi " * 300 + "TEXT hi"), MailboxView(MBOX, [f.m], readonly=False), []
    )
    assert evaluate(program, [f], Budget(10))[0] == [f]
    assert f.memo == {("t", "body", "hi"): True, ("t", "text", "hi"): True}


def test_case_insensitive_matching_casefolds() -> None:
    data = b"Subject: =?utf-8?q?Stra=C3=9Fe?=\r\nFrom: x@y\r\n\r\nGROSS STRASSE\r\n"
    msgs = [(message(1, data), data)]
    assert run('SUBJECT "STRASSE"', msgs) == [1]  # ß casefolds to ss
    assert run('BODY "straße"', msgs) == [1]
    assert run('HEADER Subject "straße"', msgs) == [1]
    assert run('HEADER X-None ""', msgs) == []
    assert run('HEADER From ""', msgs) == [1]  # an empty value asks: is the field there?


def test_three_valued_logic_reads_bytes_only_when_needed() -> None:
    msgs = [(message(1, LATE), LATE), (message(2, EARLY), EARLY)]
    view = MailboxView(MBOX, [m for m, _ in msgs], readonly=False)
    facts = [Facts(1, msgs[0][0]), Facts(2, msgs[1][0])]
    cases = {
        "OR FROM bob BODY hi": ([1], [2]),  # 1: FROM decides; 2: BODY might
        "NOT OR FROM bob BODY hi": ([], [2]),
        "FROM nobody BODY hi": ([], []),
        "OR FROM bob NOT FROM bob": ([1, 2], []),
    }
    for text, (found, undecided) in cases.items():
        got = evaluate(compile_program(key(text), view, []), facts, Budget(10))
        assert ([f.m.uid for f in got[0]], [f.m.uid for f in got[1]]) == (found, undecided), text


def test_sets_resolve_once_and_numbers_beyond_the_mailbox_are_bad() -> None:
    msgs = [(message(u, LATE), LATE) for u in (3, 5, 9)]
    ranges = ",".join(["1,3"] * 5000)  # many ranges, resolved once
    assert run(ranges, msgs) == [3, 9]  # sequence numbers 1 and 3
    assert run("UID " + ",".join(str(n) for n in range(1, 20000, 2)), msgs) == [3, 5, 9]
    assert run("UID 4:*", msgs) == [5, 9]
    view = MailboxView(MBOX, [m for m, _ in msgs], readonly=False)
    with pytest.raises(BadSequence):
        compile_program(key("4"), view, [])
    assert compile_program(key("$"), view, [5]).root.test(Facts(2, msgs[1][0])) is True


def test_flags_keep_their_stored_case_and_recent_is_the_view() -> None:
    m = message(1, LATE, flags=frozenset({"\\Seen", "$Work"}))
    view = MailboxView(MBOX, [m], readonly=False, recent={1})
    for text, hit in {
        "SEEN": True, "KEYWORD \\SEEN": True, "UNSEEN": False, "KEYWORD $Work": True,
        "KEYWORD $work": False, "RECENT": True, "OLD": False, "NEW": False,
    }.items():  # fmt: skip
        assert compile_program(key(text), view, []).root.test(Facts(1, m)) is hit, text


def test_budget_stops_a_search_that_costs_too_much() -> None:
    big = b"From: x@y\r\n\r\n" + b"a" * 2_000_000 + b"\r\n"
    f = Facts(1, message(1, big))
    f.data = big
    terms = " ".join(f"NOT BODY b{i}" for i in range(500))
    program = compile_program(key(terms), MailboxView(MBOX, [f.m], readonly=False), [])
    budget = Budget(0.05)
    started = time.thread_time()
    with pytest.raises(TooComplex):
        evaluate(program, [f], budget)
    assert time.thread_time() - started < 1.0
    assert budget.left < 0


def test_internal_day_is_utc() -> None:
    m = message(1, UNDATED, when=datetime(2026, 3, 2, 23, 30, tzinfo=UTC))
    assert matcher.sent_day(m) == matcher.internal_day(m) == date(2026, 3, 2)
