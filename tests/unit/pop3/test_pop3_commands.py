"""POP3 wire syntax: command parsing, status lines, message formatting."""

from __future__ import annotations

import io
import poplib
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.pop3 import commands
from postier.pop3.commands import (
    NUMBER_CLAMP,
    Command,
    Response,
    decode_base64,
    format_message,
    format_message_parts,
    multiline,
    normalize,
    parse_command,
    parse_number,
    pop3_size,
)
from postier.pop3.errors import RemoteProtocolError

# --- command lines ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"STAT", Command("STAT", (), b"")),
        (b"stat", Command("STAT", (), b"")),
        (b"LiSt 1", Command("LIST", (b"1",), b"1")),
        (b"TOP 1 10", Command("TOP", (b"1", b"10"), b"1 10")),
        (b"TOP  1   10 ", Command("TOP", (b"1", b"10"), b" 1   10 ")),
        (b"PASS  two  spaces ", Command("PASS", (b"two", b"spaces"), b" two  spaces ")),
        (b"PASS tab\there", Command("PASS", (b"tab\there",), b"tab\there")),
        ("USER élodie".encode(), Command("USER", ("élodie".encode(),), "élodie".encode())),
    ],
)
def test_parse_command(line: bytes, command: Command) -> None:
    assert parse_command(line) == command


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b"", "Empty command line"),
        (b" STAT", "Unknown command"),
        (b"ST", "Unknown command"),
        (b"STATS", "Unknown command"),
        (b"ST1T", "Unknown command"),
        (b"\xffSTAT", "Unknown command"),
        (b"USER a\tb", "Invalid characters in command line"),
        (b"LIST 1\x7f", "Invalid characters in command line"),
        (b"PASS a\x00", "Invalid characters in command line"),
        (b"PASS a\rb", "Invalid characters in command line"),
    ],
)
def test_parse_command_errors(line: bytes, text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_command(line)
    assert info.value.response == Response(False, text)
    assert info.value.counts


@pytest.mark.parametrize(
    ("arg", "value"),
    [
        (b"0", 0),
        (b"1", 1),
        (b"007", 7),
        (b"999999999999999999", 999999999999999999),
        (b"1000000000000000000", NUMBER_CLAMP),
        (b"9" * 5000, NUMBER_CLAMP),
        (b"0" * 5000 + b"5", 5),
    ],
)
def test_parse_number(arg: bytes, value: int) -> None:
    assert parse_number(arg) == value


@pytest.mark.parametrize("arg", [b"", b"-1", b"+1", b"1.0", b"0x1", b" 1", "١".encode()])
def test_parse_number_refuses(arg: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_number(arg)
    assert info.value.response.to_bytes() == b"-ERR Invalid message number\r\n"


# --- status lines -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "wire"),
    [
        (Response(True), b"+OK\r\n"),
        (Response(False), b"-ERR\r\n"),
        (Response(True, "2 320"), b"+OK 2 320\r\n"),
        (Response(False, "Locked", "IN-USE"), b"-ERR [IN-USE] Locked\r\n"),
        (Response(False, "", "SYS/TEMP"), b"-ERR [SYS/TEMP]\r\n"),
    ],
)
def test_response_bytes(response: Response, wire: bytes) -> None:
    assert response.to_bytes() == wire


@pytest.mark.parametrize(
    ("text", "code", "match"),
    [
        ("a\r\nb", None, "printable ASCII"),
        ("é", None, "printable ASCII"),
        ("x", "auth", "response code"),
        ("x", "SYS/", "response code"),
        ("x" * 506, None, "512 octets"),
    ],
)
def test_response_refuses_unsafe_lines(text: str, code: str | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Response(False, text, code)


def test_response_of_exactly_512_octets() -> None:
    assert len(Response(False, "x" * 505).to_bytes()) == 512


def test_multiline() -> None:
    assert multiline(Response(True, "list"), [b"1 2", b"A"]) == b"+OK list\r\n1 2\r\nA\r\n.\r\n"
    assert multiline(Response(True), []) == b"+OK\r\n.\r\n"


# --- base64 (RFC 4648 §4, as RFC 5034 needs it) ------------------------------------


@pytest.mark.parametrize(
    ("data", "decoded"),
    [
        (b"", b""),
        (b"YQ==", b"a"),
        (b"YWI=", b"ab"),
        (b"YWJj", b"abc"),
        (b"AGFsaWNlAHNlY3JldA==", b"\0alice\0secret"),
        (b"YWJj=", None),
        (b"YQ=", None),
        (b"YQ", None),
        (b"Y===", None),
        (b"YW Jj", None),
        (b"YW\nJj", None),
        (b"YW-j", None),
        (b"=", None),
        (b"*", None),
    ],
)
def test_decode_base64(data: bytes, decoded: bytes | None) -> None:
    assert decode_base64(data) == decoded


# --- message bytes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "normalized"),
    [
        (b"", b""),
        (b"a", b"a\r\n"),
        (b"a\r\n", b"a\r\n"),
        (b"a\nb\n", b"a\r\nb\r\n"),
        (b"a\r\nb\nc", b"a\r\nb\r\nc\r\n"),
        (b"a\rb\r\n", b"a\rb\r\n"),  # a lone CR is data
        (b"a\r\r\n", b"a\r\r\n"),
        (b"a\r", b"a\r\r\n"),
        (b"\n\n", b"\r\n\r\n"),
    ],
)
def test_normalize_and_size(data: bytes, normalized: bytes) -> None:
    assert normalize(data) == normalized
    assert pop3_size(data) == len(normalized)


@pytest.mark.parametrize(
    ("data", "top", "wire"),
    [
        (b"", None, b".\r\n"),
        (b"A: b\r\n\r\nbody", None, b"A: b\r\n\r\nbody\r\n.\r\n"),
        (b".\r\n", None, b"..\r\n.\r\n"),
        (b"A: b\n\n.\n..\n.x\n", None, b"A: b\r\n\r\n..\r\n...\r\n..x\r\n.\r\n"),
        (b"A: b\r\n\r\n1\r\n2\r\n3\r\n", 0, b"A: b\r\n\r\n.\r\n"),
        (b"A: b\r\n\r\n1\r\n2\r\n3\r\n", 2, b"A: b\r\n\r\n1\r\n2\r\n.\r\n"),
        (b"A: b\r\n\r\n1\r\n2\r\n3\r\n", 3, b"A: b\r\n\r\n1\r\n2\r\n3\r\n.\r\n"),
        (b"A: b\r\n\r\n1\r\n2\r\n3\r\n", 99, b"A: b\r\n\r\n1\r\n2\r\n3\r\n.\r\n"),
        (b"A: b\r\n\r\n\r\n\r\nx\r\n", 2, b"A: b\r\n\r\n\r\n\r\n.\r\n"),  # blank body lines
        (b"A: b\r\nC: d\r\n", 0, b"A: b\r\nC: d\r\n.\r\n"),  # no body at all
        (b"A: b", 5, b"A: b\r\n.\r\n"),
        (b"\r\nbody\r\nmore\r\n", 1, b"\r\nbody\r\n.\r\n"),  # no header fields
        (b"A: b\n\n.dot\nx\n", 1, b"A: b\r\n\r\n..dot\r\n.\r\n"),
        (b"", 0, b".\r\n"),
    ],
)
def test_format_message(data: bytes, top: int | None, wire: bytes) -> None:
    assert format_message(data, top) == wire


def test_format_message_large_is_fast_and_exact() -> None:
    line = b".x" + b"y" * 76 + b"\n"
    data = line * 200_000  # 15.6 MB of bare-LF lines, each to be stuffed
    wire = format_message(data)
    assert len(wire) == pop3_size(data) + 200_000 + 3
    assert wire.endswith(b"..x" + b"y" * 76 + b"\r\n.\r\n")


@pytest.mark.parametrize(
    "data",
    [b"", b"a\r\n", b"a\nb", b".a\r\n..b\r\nc", b"x\r", b"Subject: s\r\n\r\nbody\r\n"],
)
def test_format_message_parts_size_is_pop3_size(data: bytes) -> None:
    size, parts = format_message_parts(data)
    assert size == pop3_size(data)
    assert b"".join(parts) == format_message(data)


def test_format_message_parts_pass_a_clean_message_uncopied() -> None:
    data = b"Subject: s\r\n\r\n" + b"line\r\n" * 1000  # CRLF, no line starting with "."
    size, parts = format_message_parts(data)
    assert parts[0] is data and parts[1] == b".\r\n" and size == len(data)


@pytest.mark.parametrize(
    "data",
    [b"", b"a\r\n", b"a\nb", b"a\n", b".a\r\n..b\r\nc", b"x\r", b"a\rb\r\n", b"S: s\r\n\r\nb\r\n"],
)
@pytest.mark.parametrize("top", [None, 0, 1])
def test_format_message_parts_with_the_cached_size_sends_the_same(data: bytes, top) -> None:
    """The maildrop's cached size (pop3_size of the same bytes) only lets a CRLF
    message skip the counts: every message goes out as without it."""
    want = format_message_parts(data, top)
    assert format_message_parts(data, top, crlf_size=pop3_size(data)) == want


def unstuff(wire: bytes) -> bytes:
    """What a client reads back from a multi-line body (RFC 1939 §3)."""
    assert wire.endswith(b".\r\n")
    body = wire[:-3]
    lines = body.split(b"\r\n")
    assert lines[-1] == b""
    out = []
    for line in lines[:-1]:
        assert line != b"."  # the terminator never appears inside
        out.append(line[1:] if line.startswith(b".") else line)
        if line.startswith(b"."):
            assert line.startswith(b"..")
    return b"".join(part + b"\r\n" for part in out)


message_bytes = st.lists(
    st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"..", b"\r\n.\r\n", b"x: y", b" "]),
    max_size=40,
).map(b"".join) | st.binary(max_size=200)


@given(message_bytes)
def test_size_matches_normalized_length(data: bytes) -> None:
    assert pop3_size(data) == len(normalize(data))
    assert normalize(normalize(data)) == normalize(data)
    assert normalize(data).count(b"\n") == normalize(data).count(b"\r\n")


@given(message_bytes)
def test_retr_round_trips(data: bytes) -> None:
    assert unstuff(format_message(data)) == normalize(data)


@given(message_bytes, st.integers(min_value=0, max_value=50))
def test_top_is_a_line_prefix(data: bytes, lines: int) -> None:
    top = unstuff(format_message(data, lines))
    full = normalize(data)
    assert full.startswith(top)
    assert top == full or top.endswith(b"\r\n")


@given(message_bytes)
def test_poplib_reads_what_we_send(data: bytes) -> None:
    """Python's own POP3 client parses our RETR response back to the message."""
    size = pop3_size(data)
    wire = b"+OK %d octets\r\n" % size + format_message(data)
    client: Any = poplib.POP3.__new__(poplib.POP3)  # no socket: read from bytes
    client.file = io.BytesIO(wire)
    client._debugging = 0
    response, lines, octets = client._getlongresp()
    assert response == b"+OK %d octets" % size
    assert b"".join(line + b"\r\n" for line in lines) == normalize(data)
    assert octets == size


def _whole(data: bytes, top: int | None) -> tuple[int, bytes]:
    """`format_message_parts` as one pass over the whole message (what a small
    message gets): the reference for the slice-at-a-time path."""
    body = normalize(data)
    size = len(body)
    if top is not None:
        body = commands._top(body, top)
    stuffed = body.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return size, stuffed + b".\r\n"


large_message_bytes = st.lists(
    st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\r\n.", b"\n\n", b"\r\n\r\n", b"x" * 40]),
    max_size=80,
).map(b"".join)


@given(large_message_bytes, st.sampled_from([None, 0, 1, 3, 40, 10**18]), st.booleans())
def test_a_large_message_is_formatted_a_slice_at_a_time_as_if_whole(
    data: bytes, top: int | None, cached: bool
) -> None:
    """Over `SLICE` octets, pieces are cut after a LF (or inside a longer line,
    never between CR and LF), each normalised and stuffed alone, and TOP's cut is
    found in the raw bytes: the bytes and the size are those of the whole pass.
    (`SLICE` is small here, so that small messages take that path.)"""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(commands, "SLICE", 8)
        size, parts = format_message_parts(data, top, crlf_size=pop3_size(data) if cached else -1)
    assert (size, b"".join(parts)) == _whole(data, top)
    assert all(len(p) <= 2 * 8 + 2 for p in parts)  # normalising doubles, stuffing adds


def test_top_of_many_lines_costs_what_retr_costs() -> None:
    """TOP's cut is found with counts over slices (then halving one slice), not a
    find per line: TOP 19,999,999 of 20 million empty lines (40 MB) looped 1.6 s
    on the event loop, a RETR of it 20 ms. CPU time: the machine's load does not
    count."""
    data = b"Subject: s\r\n\r\n" + b"\r\n" * 2_000_000
    size = pop3_size(data)

    def cpu(top: int | None) -> float:
        t = time.thread_time()
        format_message_parts(data, top, crlf_size=size)
        return time.thread_time() - t

    retr = min(cpu(None) for _ in range(3))
    top = min(cpu(1_999_999) for _ in range(3))
    assert top < 5 * retr + 0.005
