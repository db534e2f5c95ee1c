"""Property tests: serialise → frame → parse round trips, and "any bytes into the
Receiver and parser give commands, ParseError or framing errors, never anything else"."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postier.imap import responses
from postier.imap.errors import ParseError
from postier.imap.parse import Command, Fetch, Login, Select, parse_command
from postier.imap.receiver import (
    NEED_DATA,
    BadInput,
    ConnectionClosed,
    NeedLiteral,
    RawCommand,
    Receiver,
)
from postier.imap.sequence import STAR, SequenceSet


def one_command(data: bytes, **kw: bool) -> Command:
    r = Receiver()
    r.receive_data(data)
    while True:
        event = r.next()
        if isinstance(event, NeedLiteral):
            continue
        assert isinstance(event, RawCommand), event
        return parse_command(event, **kw)


# printable or not, any Unicode but NUL (CHAR8 excludes it) and lone surrogates
texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))


@given(texts, texts)
def test_astring_round_trip(user: str, password: str) -> None:
    line = b"a LOGIN " + responses.astring(user) + b" " + responses.astring(password) + b"\r\n"
    assert one_command(line) == Login("a", user, password)


@given(texts)
def test_astring_round_trip_utf8(user: str) -> None:
    line = b"a LOGIN " + responses.astring(user, utf8=True) + b" x\r\n"
    assert one_command(line) == Login("a", user, "x")


seq_numbers = st.one_of(st.just(STAR), st.integers(min_value=1, max_value=2**32 - 1))


@given(st.lists(st.tuples(seq_numbers, seq_numbers), min_size=1, max_size=8))
def test_sequence_set_round_trip(ranges: list[tuple[int, int]]) -> None:
    seq = SequenceSet(tuple(ranges))
    cmd = one_command(b"a FETCH " + str(seq).encode() + b" FLAGS\r\n")
    assert isinstance(cmd, Fetch)
    assert cmd.set == seq


names = st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1).filter(
    lambda n: n.upper() != "INBOX" and not n.upper().startswith("INBOX/")
)


@given(names)
def test_mailbox_name_round_trip(name: str) -> None:
    assert one_command(b"a SELECT " + responses.mailbox(name) + b"\r\n") == Select("a", name)
    utf8_line = b"a SELECT " + responses.mailbox(name, utf8=True) + b"\r\n"
    assert one_command(utf8_line, utf8=True) == Select("a", name)


TOKENS = [
    b"a", b"b1", b" ", b"(", b")", b"[", b"]", b"<", b">", b".", b"\"", b"\\", b"*", b"%",
    b"$", b":", b",", b"1", b"0", b"4294967296", b"{3}\r\n", b"{2+}\r\n", b"~{1}\r\n",
    b"{99999999999999999999999}\r\n", b"\r\n", b"\n", b"\x00", b"\xff", b"&", b"-", b"NIL",
    b"UID", b"FETCH", b"STORE", b"SEARCH", b"SELECT", b"APPEND", b"LIST", b"LOGIN", b"STATUS",
    b"BODY", b"BODY.PEEK", b"BINARY", b"HEADER.FIELDS", b"MIME", b"TEXT", b"+FLAGS", b"OR",
    b"NOT", b"CHARSET", b"RETURN", b"QRESYNC", b"CONDSTORE", b"CHANGEDSINCE", b"VANISHED",
    b"UNCHANGEDSINCE", b"ID", b"SETQUOTA", b"SORT", b"THREAD", b"AUTHENTICATE", b"ENABLE",
    b"CREATE", b"USE", b"MODSEQ", b"HEADER", b"SINCE", b"1-Jan-2020", b"UTF8",
    b'"17-Jul-1996 02:44:25 -0700"', b"\\Seen", b"RENAME", b"ALL", b"FULL",
]  # fmt: skip

commands = st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join)
streams = st.one_of(
    st.binary(max_size=300), commands, st.lists(commands, max_size=5).map(b"\r\n".join)
)


def consume(r: Receiver) -> bool:
    """Handle every event available; True once the connection is closed."""
    while True:
        event = r.next()
        if event is NEED_DATA:
            return False
        if isinstance(event, ConnectionClosed):
            return True
        if isinstance(event, BadInput):
            assert event.response().endswith(b"\r\n")
        elif isinstance(event, RawCommand):
            for utf8 in (False, True):
                try:
                    assert isinstance(parse_command(event, utf8=utf8, max_depth=8), Command)
                except ParseError as exc:
                    response = exc.response()
                    assert response.endswith(b"\r\n")
                    assert response.count(b"\r\n") == 1
        else:
            assert isinstance(event, NeedLiteral)


def drive(data: bytes, cut: int, **limits: int) -> None:
    r = Receiver(**limits)  # type: ignore[arg-type]
    for chunk in (data[:cut], data[cut:]):
        if chunk:
            r.receive_data(chunk)
            if consume(r):
                return
    r.receive_data(b"")
    assert consume(r)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams, st.integers(min_value=0, max_value=300))
def test_any_bytes_give_commands_or_protocol_errors(data: bytes, cut: int) -> None:
    drive(data, cut)
    drive(data, cut, max_line_length=20, max_literal_size=2, max_literals=2, max_discard_size=4)
