"""`parse._short_command`, the parser's shortcut for the commonest command shapes
(``a NOOP``, ``a UID FETCH 12 FLAGS``): whatever it answers is what the whole
grammar (`parse._parse`) answers for the same line, and it answers the shapes it is
for. Anything else it leaves to the whole parser (None), errors included."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postier.imap.errors import ParseError
from postier.imap.parse import (
    DEFAULT_MAX_DEPTH,
    Command,
    Fetch,
    Noop,
    _parse,
    _short_command,
    parse_command,
)
from postier.imap.receiver import RawCommand, tag_of


def full(line: bytes) -> Command | ParseError:
    raw = RawCommand(tag_of(line), (line,))
    try:
        return _parse(raw, False, DEFAULT_MAX_DEPTH)
    except ParseError as e:
        return e


def check(line: bytes) -> Command | None:
    """The shortcut's answer for `line`, having checked it against the whole parser."""
    tag = tag_of(line)
    if tag is None:
        return None
    short = _short_command(tag, line)
    if short is not None:
        expected = full(line)
        assert short == expected, line
        assert type(short) is type(expected)
        assert parse_command(RawCommand(tag, (line,))) == expected
    return short


TAKEN = [
    b"a NOOP",
    b"t1 noop",
    b"A0001 Capability",
    b"x LOGOUT",
    b"x STARTTLS",
    b"x NAMESPACE",
    b"x IDLE",
    b"x CHECK",
    b"x CLOSE",
    b"x UNSELECT",
    b"t2 UID FETCH 12 FLAGS",
    b"t2 uid fetch 12 flags",
    b"t2 FETCH 1:* FLAGS",
    b"t2 FETCH 4294967295 UID",
    b"t2 UID FETCH 1,3:5,*:2 MODSEQ",
    b"t2 UID FETCH $ FLAGS",
    b"t2 FETCH 1 ALL",
    b"t2 UID FETCH 1 fast",
    b"t2 UID FETCH 1 FULL",
    b"t2 FETCH 1 RFC822.SIZE",
    b"t2 FETCH 1 rfc822",
    b"t2 UID FETCH 1:5 UID",
    b"t2 FETCH 1 BODY",
    b"t2 FETCH 1 BODYSTRUCTURE",
    b"t2 FETCH 1 ENVELOPE",
    b"t2 FETCH 1 INTERNALDATE",
    b"t2 FETCH 1 RFC822.HEADER",
    b"t2 FETCH 1 RFC822.TEXT",
]

LEFT = [  # valid or not, the whole parser answers these
    b"a",
    b"a ",
    b"a  NOOP",
    b"a NOOP ",
    b"a NOOP\x00",
    b"a NOOP x",
    b"a UID NOOP",
    b"a UID",
    b"a UID FETCH",
    b"a FETCH",
    b"a FETCH 1",
    b"a FETCH 1 ",
    b"a FETCH 1 FLAGS ",
    b"a FETCH 1 (FLAGS)",
    b"a FETCH 1 BODY[]",
    b"a FETCH 1 BODY.PEEK",
    b"a FETCH 1 BINARY",
    b"a FETCH 1 FLAGS (CHANGEDSINCE 1)",
    b"a FETCH 0 FLAGS",
    b"a FETCH 01 FLAGS",
    b"a FETCH 4294967296 FLAGS",
    b"a FETCH 1::2 FLAGS",
    b"a FETCH 1,,2 FLAGS",
    b"a FETCH $,1 FLAGS",
    b"a FETCH , FLAGS",
    b"a FETCH 1 FLAG",
    b"a FETCH 1 ALL.",
    b"a FETCH 1 .",
    b"a FETCH 1 FLAGS\xff",
    b"a UID UID FETCH 1 FLAGS",
    b"a STORE 1 FLAGS",
    b"a UID STORE 1 FLAGS",
    b"a UID 1 FLAGS",
    b"a SELECT INBOX",
    b"a EXPUNGE",
    b"a NOOP\r",
    b"a N\xd5OP",
    b"a FETCH \xd9 FLAGS",
]


@pytest.mark.parametrize("line", TAKEN)
def test_shortcut_takes_the_common_shapes(line: bytes) -> None:
    assert check(line) is not None


@pytest.mark.parametrize("line", LEFT)
def test_shortcut_leaves_the_rest(line: bytes) -> None:
    assert check(line) is None


def test_shortcut_results() -> None:
    assert check(b"t9 noop") == Noop("t9")
    got = check(b"t2 UID FETCH 12 FLAGS")
    assert isinstance(got, Fetch)
    assert [i.name for i in got.items] == ["FLAGS", "UID"]
    assert got.uid and str(got.set) == "12" and got.changed_since is None


_TOKENS = [
    "a", "t1", "*", "+", "\\", "%", "]", "[", "(", ")", "{1}", "~{1+}", '"', "\x00", "\x7f",
    "\xff", "\xe9", "\r", "\t", " ", " ", " ", " ",
    "UID", "uid", "Uid", "FETCH", "fetch", "FeTcH", "NOOP", "noop", "LOGOUT", "IDLE",
    "CHECK", "STORE", "SEARCH", "EXPUNGE", "COPY", "X", "DONE",
    "FLAGS", "flags", "UID", "MODSEQ", "ALL", "FAST", "FULL", "BODY", "BODY.PEEK",
    "RFC822", "RFC822.SIZE", ".", "ENVELOPE", "BINARY", "CHANGEDSINCE", "VANISHED",
    "0", "1", "12", "007", "4294967295", "4294967296", "99999999999999999999999",
    ":", ",", "$", "1:*", "*:3", "1,2", "ſ", "K",
]  # fmt: skip

_lines = st.lists(st.sampled_from(_TOKENS), max_size=9).map(
    lambda parts: "".join(parts).encode("utf-8")
)


@settings(max_examples=1000, deadline=None)
@given(_lines)
def test_shortcut_agrees_with_the_grammar_on_token_soup(line: bytes) -> None:
    check(line)


_shaped = st.tuples(
    st.sampled_from(["a", "t1", "A.b", "x*", "+"]),
    st.sampled_from(["", "UID ", "uid ", "UID  ", " "]),
    st.sampled_from(["FETCH", "fetch", "NOOP", "STORE", "Fetch", "LOGOUT"]),
    st.text(alphabet="0123456789*:,$ x", max_size=12),
    st.sampled_from(["FLAGS", "UID", "ALL", "fast", "BODY[]", "FLAGS ", "(FLAGS)", "BOGUS", ""]),
).map(lambda t: f"{t[0]} {t[1]}{t[2]} {t[3]} {t[4]}".encode())


@settings(max_examples=1000, deadline=None)
@given(_shaped)
def test_shortcut_agrees_with_the_grammar_on_fetch_shapes(line: bytes) -> None:
    check(line)
