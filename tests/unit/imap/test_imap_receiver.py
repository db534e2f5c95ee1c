"""The IMAP receiver on bytes: framing, literals, modes and every limit.

Each scenario runs twice: the input in one piece and one byte at a time; the events
must be the same (hypothesis also tries random chunkings)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postier.imap.errors import LocalProtocolError
from postier.imap.receiver import (
    NEED_DATA,
    BadInput,
    ConnectionClosed,
    ContinuationLine,
    Event,
    IdleDone,
    Literal,
    LiteralChunk,
    Mode,
    NeedLiteral,
    RawCommand,
    Receiver,
)

FEEDS = ["whole", "bytewise"]


def drain(r: Receiver) -> list[Event]:
    out: list[Event] = []
    while True:
        event = r.next()
        if event is NEED_DATA:
            return out
        out.append(event)
        if isinstance(event, ConnectionClosed):
            return out


def run(data: bytes, feed: str = "whole", *, eof: bool = True, **limits: int) -> list[Event]:
    r = Receiver(**limits)  # type: ignore[arg-type]
    events: list[Event] = []
    chunks = [data] if feed == "whole" else [data[i : i + 1] for i in range(len(data))]
    for chunk in chunks:
        if events and isinstance(events[-1], ConnectionClosed):
            break
        r.receive_data(chunk)
        events.extend(drain(r))
    if eof and not (events and isinstance(events[-1], ConnectionClosed)):
        r.receive_data(b"")
        events.extend(drain(r))
    return events


def mode(r: Receiver) -> Mode:
    return r.mode  # a call, so mypy does not keep the narrowing of an earlier assert


def cmd(tag: str | None, *segments: bytes, literals: tuple[Literal, ...] = ()) -> RawCommand:
    return RawCommand(tag, segments, literals)


CLOSED = ConnectionClosed()

CASES = [
    ("simple", b"a1 NOOP\r\n", [cmd("a1", b"a1 NOOP"), CLOSED]),
    (
        "pipelined",
        b"a1 NOOP\r\na2 CAPABILITY\r\n",
        [cmd("a1", b"a1 NOOP"), cmd("a2", b"a2 CAPABILITY"), CLOSED],
    ),
    ("bare LF", b"a1 NOOP\n", [cmd("a1", b"a1 NOOP"), CLOSED]),
    ("bare CR stays in the line", b"a1 NO\rOP\r\n", [cmd("a1", b"a1 NO\rOP"), CLOSED]),
    ("empty line", b"\r\n", [cmd(None, b""), CLOSED]),
    ("invalid tag", b"a+1 NOOP\r\n", [cmd(None, b"a+1 NOOP"), CLOSED]),
    ("tag with ]", b"a]1 NOOP\r\n", [cmd("a]1", b"a]1 NOOP"), CLOSED]),
    (
        "sync literals",
        b"a1 LOGIN {4}\r\nfred {3}\r\nabc\r\n",
        [
            NeedLiteral("a1", 4, False),
            NeedLiteral("a1", 3, False),
            cmd("a1", b"a1 LOGIN {4}", b" {3}", b"", literals=(Literal(b"fred"), Literal(b"abc"))),
            CLOSED,
        ],
    ),
    (
        "non-sync literal (LITERAL+)",
        b"a1 LOGIN {4+}\r\nfred x\r\n",
        [
            NeedLiteral("a1", 4, True),
            cmd("a1", b"a1 LOGIN {4+}", b" x", literals=(Literal(b"fred", non_sync=True),)),
            CLOSED,
        ],
    ),
    (
        "literal8",
        b"a1 APPEND x ~{3}\r\na\x00b\r\n",
        [
            NeedLiteral("a1", 3, False, binary=True),
            cmd("a1", b"a1 APPEND x ~{3}", b"", literals=(Literal(b"a\x00b", binary=True),)),
            CLOSED,
        ],
    ),
    (
        "literal8 non-sync",
        b"a1 APPEND x ~{1+}\r\n\x00\r\n",
        [
            NeedLiteral("a1", 1, True, binary=True),
            cmd(
                "a1",
                b"a1 APPEND x ~{1+}",
                b"",
                literals=(Literal(b"\x00", binary=True, non_sync=True),),
            ),
            CLOSED,
        ],
    ),
    (
        "empty literal",
        b"a1 LOGIN {0}\r\n {0+}\r\n\r\n",
        [
            NeedLiteral("a1", 0, False),
            NeedLiteral("a1", 0, True),
            cmd(
                "a1",
                b"a1 LOGIN {0}",
                b" {0+}",
                b"",
                literals=(Literal(b""), Literal(b"", non_sync=True)),
            ),
            CLOSED,
        ],
    ),
    (
        "literal contents are not scanned",
        b"a1 X {9}\r\n{2}\r\nab\r\n\r\n",
        [
            NeedLiteral("a1", 9, False),
            cmd("a1", b"a1 X {9}", b"", literals=(Literal(b"{2}\r\nab\r\n"),)),
            CLOSED,
        ],
    ),
    (
        "marker not at the end is text",
        b"a1 X {3} y\r\n",
        [cmd("a1", b"a1 X {3} y"), CLOSED],
    ),
    ("EOF inside a command", b"a1 NOOP", [CLOSED]),
    ("EOF inside a literal", b"a1 X {5}\r\nab", [NeedLiteral("a1", 5, False), CLOSED]),
]


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_framing(data: bytes, expected: list[Event], feed: str) -> None:
    assert run(data, feed) == expected


@pytest.mark.parametrize("feed", FEEDS)
def test_line_too_long_is_answered_and_resynchronised(feed: str) -> None:
    data = b"a1 " + b"x" * 60 + b"\r\na2 NOOP\r\n"
    events = run(data, feed, max_line_length=50)
    assert events == [
        BadInput("a1", "Command line too long", "TOOBIG"),
        cmd("a2", b"a2 NOOP"),
        CLOSED,
    ]
    assert events[0].response() == b"a1 BAD [TOOBIG] Command line too long\r\n"  # type: ignore[union-attr]


@pytest.mark.parametrize("feed", FEEDS)
def test_line_too_long_without_tag_is_untagged(feed: str) -> None:
    events = run(b"x" * 100 + b"\r\na2 NOOP\r\n", feed, max_line_length=50)
    assert events[0] == BadInput(None, "Command line too long", "TOOBIG")
    assert events[0].response() == b"* BAD [TOOBIG] Command line too long\r\n"
    assert events[1:] == [cmd("a2", b"a2 NOOP"), CLOSED]


@pytest.mark.parametrize("feed", FEEDS)
def test_line_limit_is_exact(feed: str) -> None:
    ok = b"a1 " + b"x" * 47  # 50 octets
    assert run(ok + b"\r\n", feed, max_line_length=50) == [cmd("a1", ok), CLOSED]
    events = run(ok + b"y\r\n", feed, max_line_length=50)
    assert events == [BadInput("a1", "Command line too long", "TOOBIG"), CLOSED]


@pytest.mark.parametrize("feed", FEEDS)
def test_line_limit_counts_all_segments_of_a_command(feed: str) -> None:
    data = b"a1 X {1+}\r\nz " + b"y" * 45 + b"\r\na2 NOOP\r\n"
    events = run(data, feed, max_line_length=50)
    assert events == [
        NeedLiteral("a1", 1, True),
        BadInput("a1", "Command line too long", "TOOBIG"),
        cmd("a2", b"a2 NOOP"),
        CLOSED,
    ]


@pytest.mark.parametrize("feed", FEEDS)
def test_overlong_line_skips_the_non_sync_literal_it_announces(feed: str) -> None:
    # found by fuzzing (tests/fuzz/corpus/imap): a whole overlong line was refused
    # without skipping its {n+} literal, whose octets then ran as commands; the
    # same line in pieces skipped it
    data = b"a1 APPEND x " + b"y" * 60 + b" {14+}\r\nb1 DELETE x\r\n\r\na2 NOOP\r\n"
    events = run(data, feed, max_line_length=50)
    assert events == [
        BadInput("a1", "Command line too long", "TOOBIG"),
        cmd("a2", b"a2 NOOP"),
        CLOSED,
    ]
    too_big = b"a1 APPEND x " + b"y" * 60 + b" {99+}\r\n" + b"z" * 99 + b"\r\n"
    events = run(too_big, feed, max_line_length=50, max_discard_size=50)
    assert events == [BadInput(None, "Literal too large", "TOOBIG", fatal=True), CLOSED]


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize(
    "digits", [b"1" * 30, b"0" * 19 + b"1", b"00000000000000000000000000000014"]
)
def test_overlong_line_finds_a_long_literal_marker_split_over_reads(
    feed: str, digits: bytes
) -> None:
    # found by fuzzing (tests/fuzz/corpus/imap): while a discarded line arrived, only
    # its last 32 octets were kept, so "{" and the start of a long number were lost
    # and the marker was missed (then its literal ran as commands)
    data = b"a1 APPEND x " + b"y" * 60 + b" {" + digits + b"+}\r\n" + b"z" * 14 + b"\r\na2 NOOP\r\n"
    events = run(data, feed, max_line_length=50, max_discard_size=50)
    if len(digits) > 20 or int(digits) > 50:  # over 20 digits is too large (number64)
        assert events == [BadInput(None, "Literal too large", "TOOBIG", fatal=True), CLOSED]
    else:
        assert events == [
            BadInput("a1", "Command line too long", "TOOBIG"),
            cmd("a2", b"a2 NOOP"),
            CLOSED,
        ]


def test_overlong_line_is_not_buffered() -> None:
    r = Receiver(max_line_length=1000)
    r.receive_data(b"a1 ")
    for _ in range(1000):
        r.receive_data(b"x" * 10_000)
        assert r.next() is NEED_DATA
        assert r.buffered <= 10_003
    r.receive_data(b"\r\na2 NOOP\r\n")
    assert r.next() == BadInput("a1", "Command line too long", "TOOBIG")
    assert r.next() == cmd("a2", b"a2 NOOP")
    assert r.buffered == 0


@pytest.mark.parametrize("feed", FEEDS)
def test_sync_literal_too_large_is_refused_before_it_is_sent(feed: str) -> None:
    events = run(b"a1 APPEND x {51}\r\na2 NOOP\r\n", feed, max_literal_size=50)
    assert events == [
        BadInput("a1", "Literal too large", "TOOBIG", "NO"),
        cmd("a2", b"a2 NOOP"),
        CLOSED,
    ]
    assert events[0].response() == b"a1 NO [TOOBIG] Literal too large\r\n"  # type: ignore[union-attr]
    ok = run(b"a1 APPEND x {50}\r\n" + b"m" * 50 + b"\r\n", feed, max_literal_size=50)
    assert ok[0] == NeedLiteral("a1", 50, False)
    assert ok[1] == cmd("a1", b"a1 APPEND x {50}", b"", literals=(Literal(b"m" * 50),))


@pytest.mark.parametrize("feed", FEEDS)
def test_nonsync_literal_too_large_is_discarded_then_bad(feed: str) -> None:
    # RFC 7888 §4: the literal (and the rest of the command, with its own
    # non-synchronising literals) is read and thrown away, then BAD
    data = b"a1 APPEND x {60+}\r\n" + b"m" * 60 + b" {5+}\r\n{9}\r\n\r\na2 NOOP\r\n"
    events = run(data, feed, max_literal_size=50)
    assert events == [BadInput("a1", "Literal too large", "TOOBIG"), cmd("a2", b"a2 NOOP"), CLOSED]
    assert events[0].response() == b"a1 BAD [TOOBIG] Literal too large\r\n"  # type: ignore[union-attr]


@pytest.mark.parametrize("feed", FEEDS)
def test_discarded_command_ends_at_a_sync_literal(feed: str) -> None:
    # the client waits for "+" that never comes: the BAD ends its command
    data = b"a1 APPEND x {60+}\r\n" + b"m" * 60 + b" {5}\r\na2 NOOP\r\n"
    events = run(data, feed, max_literal_size=50)
    assert events == [BadInput("a1", "Literal too large", "TOOBIG"), cmd("a2", b"a2 NOOP"), CLOSED]


@pytest.mark.parametrize("feed", FEEDS)
def test_nonsync_literal_beyond_hard_limit_closes(feed: str) -> None:
    events = run(b"a1 APPEND x {101+}\r\nzzz", feed, max_literal_size=50, max_discard_size=100)
    assert events == [BadInput(None, "Literal too large", "TOOBIG", fatal=True), CLOSED]
    assert events[0].response() == b"* BYE [TOOBIG] Literal too large\r\n"  # type: ignore[union-attr]


def test_closed_receiver_ignores_further_data() -> None:
    r = Receiver(max_literal_size=5, max_discard_size=10)
    r.receive_data(b"a1 X {11+}\r\n")
    assert r.next() == BadInput(None, "Literal too large", "TOOBIG", fatal=True)
    r.receive_data(b"a2 NOOP\r\n")
    assert r.next() == CLOSED
    assert r.next() == CLOSED


@pytest.mark.parametrize("feed", FEEDS)
def test_literal_minus_limits_nonsync_literals_to_4096(feed: str) -> None:
    ok = run(b"a1 X {4096+}\r\n" + b"m" * 4096 + b"\r\n", feed, literal_minus=True)
    assert ok[0] == NeedLiteral("a1", 4096, True)
    assert isinstance(ok[1], RawCommand)
    events = run(b"a1 X {4097+}\r\n" + b"m" * 4097 + b"\r\na2 NOOP\r\n", feed, literal_minus=True)
    assert events == [
        BadInput("a1", "Non-synchronizing literal too large", "TOOBIG"),
        cmd("a2", b"a2 NOOP"),
        CLOSED,
    ]
    # a synchronising literal of the same size is fine with LITERAL-
    sync = run(b"a1 X {4097}\r\n" + b"m" * 4097 + b"\r\n", feed, literal_minus=True)
    assert sync[0] == NeedLiteral("a1", 4097, False)


@pytest.mark.parametrize("feed", FEEDS)
def test_max_literals_per_command(feed: str) -> None:
    two = b"a1 X {1}\r\na {1}\r\nb\r\n"
    assert isinstance(run(two, feed, max_literals=2)[2], RawCommand)
    three = b"a1 X {1}\r\na {1}\r\nb {1}\r\na2 NOOP\r\n"
    events = run(three, feed, max_literals=2)
    assert events[2:] == [
        BadInput("a1", "Too many literals in one command", "LIMIT", "NO"),
        cmd("a2", b"a2 NOOP"),
        CLOSED,
    ]


@pytest.mark.parametrize("feed", FEEDS)
def test_max_command_size(feed: str) -> None:
    data = b"a1 APPEND x {30}\r\n" + b"m" * 30 + b" {30}\r\n"
    events = run(data, feed, max_literal_size=50, max_command_size=60)
    assert events[1:] == [BadInput("a1", "Literal too large", "TOOBIG", "NO"), CLOSED]
    fits = b"a1 APPEND x {20}\r\n" + b"m" * 20 + b" {20}\r\n" + b"n" * 20 + b"\r\n"
    assert isinstance(run(fits, feed, max_literal_size=50, max_command_size=60)[2], RawCommand)


def test_refuse_sync_literal_drops_the_command() -> None:
    r = Receiver()
    r.receive_data(b"a1 APPEND x {5}\r\n")
    assert r.next() == NeedLiteral("a1", 5, False)
    r.refuse_literal()
    r.receive_data(b"a2 NOOP\r\n")
    assert r.next() == cmd("a2", b"a2 NOOP")


def test_refuse_nonsync_literal_discards_it_silently() -> None:
    r = Receiver()
    r.receive_data(b"a1 APPEND x {5+}\r\nhello {2+}\r\nhi\r\na2 NOOP\r\n")
    assert r.next() == NeedLiteral("a1", 5, True)
    r.refuse_literal()
    assert r.next() == cmd("a2", b"a2 NOOP")


def test_refuse_literal_only_after_need_literal() -> None:
    r = Receiver()
    with pytest.raises(LocalProtocolError):
        r.refuse_literal()


@pytest.mark.parametrize("feed", FEEDS)
def test_idle_done(feed: str) -> None:
    r = Receiver()
    r.receive_data(b"a1 IDLE\r\n")
    assert r.next() == cmd("a1", b"a1 IDLE")
    r.start_idle("a1")
    assert mode(r) is Mode.IDLE
    data = b"done\r\na2 NOOP\r\n"
    chunks = [data] if feed == "whole" else [data[i : i + 1] for i in range(len(data))]
    events: list[Event] = []
    for chunk in chunks:
        r.receive_data(chunk)
        events.extend(drain(r))
    assert events == [IdleDone(), cmd("a2", b"a2 NOOP")]
    assert mode(r) is Mode.COMMAND


def test_idle_other_line_is_bad() -> None:
    r = Receiver()
    r.start_idle("a1")
    r.receive_data(b"a2 NOOP\r\n")
    event = r.next()
    assert event == BadInput("a1", "Expected DONE")
    assert event.response() == b"a1 BAD Expected DONE\r\n"
    assert mode(r) is Mode.COMMAND


@pytest.mark.parametrize("feed", FEEDS)
def test_idle_line_too_long(feed: str) -> None:
    r = Receiver(max_line_length=10)
    r.start_idle("a1")
    data = b"D" * 30 + b"\r\na2 NOOP\r\n"
    chunks = [data] if feed == "whole" else [data[i : i + 1] for i in range(len(data))]
    events: list[Event] = []
    for chunk in chunks:
        r.receive_data(chunk)
        events.extend(drain(r))
    assert events == [BadInput("a1", "Line too long", "TOOBIG"), cmd("a2", b"a2 NOOP")]


def test_authenticate_continuation() -> None:
    r = Receiver()
    r.receive_data(b"a1 AUTHENTICATE PLAIN\r\n")
    assert r.next() == cmd("a1", b"a1 AUTHENTICATE PLAIN")
    r.expect_continuation("a1")
    assert mode(r) is Mode.CONTINUATION
    r.receive_data(b"AGZyZWQAc2VjcmV0\r\n{5}\r\n")
    assert r.next() == ContinuationLine(b"AGZyZWQAc2VjcmV0")
    assert mode(r) is Mode.COMMAND
    # the mode ended with that line: the next one is a command again
    assert r.next() == NeedLiteral(None, 5, False)


def test_authenticate_cancel_line() -> None:
    r = Receiver()
    r.expect_continuation("a1")
    r.receive_data(b"*\r\n")
    assert r.next() == ContinuationLine(b"*")


def test_mode_change_inside_a_command_is_a_bug() -> None:
    r = Receiver()
    r.receive_data(b"a1 LOGIN {3}\r\n")
    assert r.next() == NeedLiteral("a1", 3, False)
    with pytest.raises(LocalProtocolError):
        r.start_idle("a1")


def test_data_after_eof_is_a_bug() -> None:
    r = Receiver()
    r.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        r.receive_data(b"x")


def test_need_data_until_the_line_ends() -> None:
    r = Receiver()
    r.receive_data(b"a1 NO")
    assert r.next() is NEED_DATA
    r.receive_data(b"OP\r")
    assert r.next() is NEED_DATA
    r.receive_data(b"\n")
    assert r.next() == cmd("a1", b"a1 NOOP")
    assert r.next() is NEED_DATA


SAMPLE = (
    b"a1 LOGIN {4}\r\nfred {3+}\r\nabc\r\n"
    b"a2 APPEND x ~{3}\r\na\x00b\r\n"
    + b"a3 " + b"y" * 80 + b"\r\n"
    + b"a4 APPEND x {200+}\r\n" + b"z" * 200 + b"\r\n"
    + b"a5 APPEND x {300}\r\n"
    + b"a6 NOOP\r\n"
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(SAMPLE)), max_size=20))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    expected = run(SAMPLE, max_line_length=64, max_literal_size=100)
    r = Receiver(max_line_length=64, max_literal_size=100)
    events: list[Event] = []
    start = 0
    for cut in sorted({*cuts, len(SAMPLE)}):
        r.receive_data(SAMPLE[start:cut])
        events.extend(drain(r))
        start = cut
    r.receive_data(b"")
    events.extend(drain(r))
    assert events == expected
    assert BadInput("a3", "Command line too long", "TOOBIG") in events
    assert BadInput("a4", "Literal too large", "TOOBIG") in events
    assert BadInput("a5", "Literal too large", "TOOBIG", "NO") in events
    assert events[-2:] == [cmd("a6", b"a6 NOOP"), CLOSED]


def test_in_command_and_commands_ended_drive_the_adapters_command_timer() -> None:
    rcv = Receiver()
    assert not rcv.in_command
    rcv.receive_data(b"a NOOP\r\nb NO")
    assert isinstance(rcv.next(), RawCommand)
    assert rcv.next() is NEED_DATA
    assert rcv.in_command  # "b NO" waits for the rest of its line
    first = rcv.commands_ended
    rcv.receive_data(b"OP\r\nc APPEND INBOX {5}\r\n")
    assert isinstance(rcv.next(), RawCommand)
    assert isinstance(rcv.next(), NeedLiteral)
    assert rcv.next() is NEED_DATA
    assert rcv.in_command  # a literal being read
    assert rcv.commands_ended == first + 1
    rcv.receive_data(b"hello\r\n")
    assert isinstance(rcv.next(), RawCommand)
    assert rcv.next() is NEED_DATA
    assert not rcv.in_command
    assert rcv.commands_ended == first + 2


def _stream_appends(data: bytes, feed: str) -> list[Event]:
    """Feed `data`, streaming every literal of 4 octets or more (as the adapter
    streams large APPEND literals)."""
    r = Receiver()
    events: list[Event] = []
    chunks = [data] if feed == "whole" else [data[i : i + 1] for i in range(len(data))]
    for chunk in chunks:
        r.receive_data(chunk)
        while (event := r.next()) is not NEED_DATA:
            events.append(event)
            if isinstance(event, NeedLiteral) and event.size >= 4:
                r.stream_literal()
    return events


@pytest.mark.parametrize("feed", FEEDS)
def test_streamed_literal_leaves_as_chunks_and_is_never_held(feed: str) -> None:
    data = b"a APPEND INBOX {2}\r\nhi {6+}\r\nhello!\r\n"
    events = _stream_appends(data, feed)
    assert events[0] == NeedLiteral("a", 2, False)
    assert events[0].command == "APPEND"
    assert events[0].held == len(b"a APPEND INBOX {2}")
    assert events[1] == NeedLiteral("a", 6, True)
    assert events[1].held == len(b"a APPEND INBOX {2}") + len(b"hi") + len(b" {6+}")
    chunks = [e for e in events if isinstance(e, LiteralChunk)]
    assert b"".join(c.data for c in chunks) == b"hello!"
    assert len(chunks) == (1 if feed == "whole" else 6)
    assert events[-1] == cmd(
        "a",
        b"a APPEND INBOX {2}",
        b" {6+}",
        b"",
        literals=(Literal(b"hi"), Literal(b"", non_sync=True, streamed=True)),
    )


def test_a_streamed_literal_is_not_buffered() -> None:
    r = Receiver()
    r.receive_data(b"a APPEND INBOX {1000000}\r\n")
    assert isinstance(r.next(), NeedLiteral)
    r.stream_literal()
    r.receive_data(b"x" * 65536)
    assert r.next() == LiteralChunk(b"x" * 65536)
    assert r.next() is NEED_DATA
    assert r.buffered == 0


def test_stream_literal_only_right_after_need_literal() -> None:
    r = Receiver()
    with pytest.raises(LocalProtocolError):
        r.stream_literal()
    r.receive_data(b"a APPEND INBOX {10}\r\nabc")
    assert isinstance(r.next(), NeedLiteral)
    assert r.next() is NEED_DATA  # 3 octets read and kept
    with pytest.raises(LocalProtocolError):
        r.stream_literal()
    with pytest.raises(LocalProtocolError):
        r.refuse_literal()


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"a APPEND INBOX {1}", "APPEND"),
        (b"a append INBOX {1}", "APPEND"),
        (b"a LOGIN {1}", "LOGIN"),
        (b"a {1}", ""),
        (b"{1}", ""),
    ],
)
def test_need_literal_names_its_command(line: bytes, command: str) -> None:
    r = Receiver()
    r.receive_data(line + b"\r\n")
    ev = r.next()
    assert isinstance(ev, NeedLiteral)
    assert ev.command == command


class _General(Receiver):
    _one_line = False  # every line through the general steps


_PIECES = [
    b"a1 NOOP\r\n", b"a2 UID FETCH 1 FLAGS\n", b"a3 LOGIN {4}\r\n", b"fred", b" {3+}\r\nabc",
    b"\r\n", b"a4 APPEND x ~{3}\r\n", b"a\x00b", b"a5 APPEND x {300}\r\n", b"a6 X {200+}\r\n",
    b"z" * 200, b"y" * 70, b"DONE\r\n", b"*\r\n", b"\r\n", b"\n", b"a7 {2}\r\n", b"}\r\n",
    b"a8 IDLE\r\n", b"a9 AUTHENTICATE PLAIN\r\n", b"+ x {5+}\r\n", b"b1 Y {99999999999}\r\n",
]  # fmt: skip


def _at_rest(r: Receiver) -> bool:
    """Between commands, the command being framed holds `_reset_command`'s values."""
    return (
        r._tag is None
        and not r._literals
        and r._line_total == 0
        and r._cmd_total == 0
        and r._lit_remaining == 0
        and not r._lit_data
        and not r._lit_streamed
        and r._lit_held == 0
        and r._pending_error is None
    )


def _drive(r: Receiver, steps: list[tuple[int, int]]) -> list[object]:
    """Feed pieces, acting on the events as the core might; the events and actions."""
    out: list[object] = []
    for piece, action in steps:
        r.receive_data(_PIECES[piece])
        while (event := r.next()) is not NEED_DATA:
            out.append(event)
            if isinstance(event, NeedLiteral) and action == 1:
                r.refuse_literal()
                out.append("refused")
            elif isinstance(event, NeedLiteral) and action == 2:
                r.stream_literal()
                out.append("streamed")
            elif isinstance(event, RawCommand) and event.tag and action == 3:
                r.start_idle(event.tag)
                out.append("idle")
            elif isinstance(event, RawCommand) and event.tag and action == 4:
                r.expect_continuation(event.tag)
                out.append("continuation")
            if r._state.value == "line" and r.mode is Mode.COMMAND and not r._segments:
                assert _at_rest(r), (event, r.__dict__)
            if isinstance(event, ConnectionClosed):
                return out
    return out


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(_PIECES) - 1), st.integers(0, 4)), min_size=1, max_size=25
    )
)
def test_one_line_commands_frame_as_the_general_steps_do(steps: list[tuple[int, int]]) -> None:
    got = _drive(Receiver(max_line_length=64, max_literal_size=100), steps)
    assert got == _drive(_General(max_line_length=64, max_literal_size=100), steps)
