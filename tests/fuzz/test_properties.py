"""Round-trip and framing properties (hypothesis), next to the fuzz harnesses that
check the same invariants on coverage-guided input.

- Modified UTF-7 (postier/imap/utf7.py): decode(encode(s)) == s, and the strict
  decoder accepts only canonical encodings: encode(decode(x)) == x.
- DATA framing: what the SMTP client's dot-stuffing sends, the server core
  delivers unchanged, however the bytes are cut into packets.
- IMAP literal framing: any split of a stream of commands with literals gives the
  same commands, with the literals' octets intact.
- Each core fed any bytes one octet at a time or all at once: the same replies and
  events (events, replies or documented protocol errors; nothing raises).
"""

from __future__ import annotations

import contextlib
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postier.imap import utf7
from postier.imap.receiver import RawCommand
from postier.mail.replies import R554_BARE_LF
from postier.smtp import events as ev
from postier.smtp.client import dot_stuff
from tests.fuzz.drivers import (
    check_pop3_output,
    check_smtp_output,
    drive_imap,
    drive_pop3,
    drive_smtp,
    imap_limits,
    merged,
    parse_errors_equal,
    pop3_options,
    smtp_options,
)

SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# --- modified UTF-7 ---------------------------------------------------------------


@given(st.text(st.characters(exclude_categories=["Cs"])))
def test_utf7_decode_inverts_encode(name: str) -> None:
    encoded = utf7.encode(name)
    assert encoded.isascii()
    assert utf7.decode(encoded) == name


@given(
    st.lists(
        st.one_of(
            st.sampled_from(["&", "-", "&-", ",", "+", "/", "A", "AOk", "&AOk-", "&AOkA6Q-"]),
            st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=4),
            st.text(max_size=2),
        ),
        max_size=10,
    ).map("".join)
)
def test_utf7_accepts_only_canonical_encodings(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert utf7.encode(utf7.decode(text)) == text


# --- SMTP DATA: client dot-stuffing against the server's unstuffing ---------------

lines = st.lists(
    st.one_of(
        st.sampled_from([b".", b"..", b". x", b".\r", b"\n", b"\r", b"", b"From: a", b"\x00"]),
        st.binary(max_size=12),
    ),
    max_size=12,
).map(b"\r\n".join)
ENVELOPE = b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"


@SLOW
@given(lines, st.lists(st.integers(min_value=0), max_size=8))
def test_dot_stuffed_data_arrives_unchanged(message: bytes, cuts: list[int]) -> None:
    stream = ENVELOPE + dot_stuff(message) + b"QUIT\r\n"
    run = drive_smtp(_cut(stream, cuts), smtp_options(0))
    check_smtp_output(run.out)
    sent = message if message.endswith(b"\r\n") else message + b"\r\n"
    if sent.count(b"\r") == sent.count(b"\n") == sent.count(b"\r\n"):
        assert run.messages == [(False, sent)]
    else:  # RFC 5321 §2.3.8: a bare CR or LF is refused, whatever the packets
        assert run.messages == []
        assert ev.DataRejected(R554_BARE_LF) in run.events
    assert isinstance(run.events[-1], ev.Quit)


# --- IMAP literal framing ---------------------------------------------------------

literal_data = st.binary(max_size=40)
command = st.tuples(
    st.sampled_from([b"LOGIN", b"APPEND INBOX", b"SELECT", b"CREATE", b"SEARCH TEXT"]),
    st.lists(st.tuples(literal_data, st.sampled_from([b"", b"+"])), min_size=1, max_size=3),
)


def _serialise(commands: list[tuple[bytes, list[tuple[bytes, bytes]]]]) -> bytes:
    out = b""
    for n, (name, literals) in enumerate(commands):
        out += b"t%d %s" % (n, name)
        for data, plus in literals:
            out += b" {%d%s}\r\n" % (len(data), plus) + data
        out += b"\r\n"
    return out


@SLOW
@given(st.lists(command, max_size=4), st.lists(st.integers(min_value=0), max_size=10))
def test_imap_literals_frame_the_same_whatever_the_split(
    commands: list[tuple[bytes, list[tuple[bytes, bytes]]]], cuts: list[int]
) -> None:
    stream = _serialise(commands)
    limits = imap_limits(0)
    whole = drive_imap([stream], limits)
    split = drive_imap(_cut(stream, cuts), limits)
    bytewise = drive_imap([stream[i : i + 1] for i in range(len(stream))], limits)
    framed = [e for e in whole.events if isinstance(e, RawCommand)]
    assert [e.tag for e in framed] == [f"t{n}" for n in range(len(commands))]
    for event, (_, literals) in zip(framed, commands, strict=True):
        assert [lit.data for lit in event.literals] == [data for data, _ in literals]
        assert [lit.non_sync for lit in event.literals] == [plus == b"+" for _, plus in literals]
    for other in (split, bytewise):
        assert other.events == whole.events
        assert parse_errors_equal(other.commands, whole.commands)


# --- any bytes, one octet at a time or all at once --------------------------------

SMTP_TOKENS = [
    b"EHLO x\r\n", b"MAIL FROM:<a@b.test>\r\n", b"RCPT TO:<c@d.test>\r\n", b"DATA\r\n",
    b"BDAT 3\r\n", b"BDAT 2 LAST\r\n", b"AUTH PLAIN\r\n", b"AUTH LOGIN\r\n", b"*\r\n",
    b"\r\n.\r\n", b".\r\n", b"\n", b"\r", b"RSET\r\n", b"QUIT\r\n", b"NOOP x\r\n",
]  # fmt: skip
POP3_TOKENS = [
    b"USER alice\r\n", b"PASS secret\r\n", b"RETR 1\r\n", b"TOP 2 1\r\n", b"DELE 1\r\n",
    b"LIST\r\n", b"UIDL 2\r\n", b"AUTH PLAIN\r\n", b"CAPA\r\n", b"QUIT\r\n", b"\r\n", b"\n",
]  # fmt: skip
IMAP_TOKENS = [
    b"a1 LOGIN {3}\r\nabc x\r\n", b"a2 APPEND x {2+}\r\nab\r\n", b"a3 IDLE\r\n", b"DONE\r\n",
    b"a4 AUTHENTICATE PLAIN\r\n", b"a5 FETCH 1 BODY[]\r\n", b"{", b"}", b"~{1}\r\n", b"\r\n",
    b"a6 SEARCH OR (", b")", b'"', b"\\",
]  # fmt: skip


def _stream(tokens: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.lists(st.one_of(st.sampled_from(tokens), st.binary(max_size=10)), max_size=14).map(
        b"".join
    )


@SLOW
@given(st.integers(0, 255), _stream(SMTP_TOKENS))
def test_smtp_core_bytewise_equals_whole(flags: int, stream: bytes) -> None:
    options = smtp_options(flags & ~0x04)  # no STARTTLS: it drops what shares its packet
    whole = drive_smtp([stream], options)
    bytewise = drive_smtp([stream[i : i + 1] for i in range(len(stream))], options)
    check_smtp_output(whole.out)
    assert bytewise.out == whole.out
    assert merged(bytewise.events) == merged(whole.events)


@SLOW
@given(st.integers(0, 255), _stream(POP3_TOKENS))
def test_pop3_core_bytewise_equals_whole(flags: int, stream: bytes) -> None:
    options = pop3_options(flags & ~0x02)  # no STLS: it drops what shares its packet
    whole = drive_pop3([stream], options)
    check_pop3_output(whole)
    assert drive_pop3([stream[i : i + 1] for i in range(len(stream))], options) == whole


@SLOW
@given(st.integers(0, 255), _stream(IMAP_TOKENS))
def test_imap_receiver_bytewise_equals_whole(flags: int, stream: bytes) -> None:
    limits = imap_limits(flags)
    whole = drive_imap([stream], limits, utf8=bool(flags & 0x04))
    bytewise = drive_imap(
        [stream[i : i + 1] for i in range(len(stream))], limits, utf8=bool(flags & 0x04)
    )
    assert bytewise.events == whole.events
    assert parse_errors_equal(bytewise.commands, whole.commands)
    assert bytewise.out == whole.out
