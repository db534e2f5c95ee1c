"""`ParsedMessage`: every view of the one parse gives what the parser it replaces
gave (dkimpy's `rfc822_parse`, `parse_fields`, `HeaderView`, `summarize`)."""

from __future__ import annotations

import random

import pytest

from postier.mail.headers import HeaderView
from postier.mailauth.dkimpy import dkim
from postier.mime.message import HeaderFormatError, ParsedMessage
from postier.mime.parse import find_header_end, parse_fields
from postier.mime.summary import summarize

SAMPLES = [
    b"From: a@b\r\nTo: c@d\r\nSubject: hi\r\n there\r\n\r\nbody\r\nline\n",
    b"Subject : x\r\nFrom: a\r\n\r\nb",
    b" cont\r\nA: b\r\n\r\n",
    b"From x\r\nA: b\r\n\r\n",
    b"A: b\r\nFrom x\r\n y\r\n\r\nbody",
    b"A: b\nB: c\n\nbody\nx\r\ny\n",
    b"junk\r\nA: b\r\n\r\n",
    b":Subject: x\r\n\r\n",
    b"A: b",
    b"A: b\r\n",
    b"A\r",
    b"\r\nbody",
    b"",
    b"A: b\r\r\nC: d\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=x\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"\r\n--x\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--x--\r\n",
]
_PIECES = [b"A", b":", b" ", b"\t", b"\r", b"\n", b"x", b"From ", b"\r\n", b"Subject: ", b"\xff"]


def _random(n: int) -> list[bytes]:
    rnd = random.Random(12)
    return [b"".join(rnd.choice(_PIECES) for _ in range(rnd.randint(0, 25))) for _ in range(n)]


CASES = SAMPLES + _random(3000)


def _dkimpy(data: bytes) -> object:
    try:
        headers, body = dkim.rfc822_parse(data)
    except dkim.MessageFormatError as e:
        return ("format", str(e))
    except IndexError:
        return ("index",)
    return [list(h) for h in headers], body


def _ours(data: bytes) -> object:
    m = ParsedMessage.of(data)
    try:
        return m.dkim_fields(), m.dkim_body()
    except HeaderFormatError as e:
        return ("format", f"Unexpected characters in RFC822 header: {e.line!r}")
    except IndexError:
        return ("index",)


def test_dkim_split_is_dkimpys() -> None:
    for data in CASES:
        assert _ours(data) == _dkimpy(data), data


def test_header_fields_are_the_mime_parsers() -> None:
    for data in CASES:
        end = find_header_end(data, 0, len(data))[0]
        assert ParsedMessage.of(data).header.mime_fields() == parse_fields(data[:end]), data


def test_header_look_ups_are_header_views() -> None:
    for data in CASES:
        if b"\n" in data.replace(b"\r\n", b""):
            continue  # HeaderView reads CRLF lines only
        header_end, body = find_header_end(data, 0, len(data))
        view = HeaderView(data[:header_end], body)
        ours = ParsedMessage.of(data).header
        for name in ("A", "subject", "From"):
            assert (ours.fields(name), ours.has(name)) == (view.fields(name), view.has(name))


def test_the_usual_header_is_split_as_line_by_line() -> None:
    # `parse_header` takes a header of field lines and continuations in one
    # regex pass; anything else (empty or blank-only lines, no-field lines, a
    # last line without LF, CR in a name) falls back to `_parse_lines`
    from postier.mime.message import _parse_lines, parse_header

    long = [b"a" * 100_000, b"A: " + b"x" * 100_000, b"a " * 50_000 + b"\n", b"a:" * 50_000]
    for data in [*CASES, *long]:
        for end in {len(data), find_header_end(data, 0, len(data))[0]}:
            assert parse_header(data, end) == _parse_lines(data[:end], end), data[:80]


@pytest.mark.parametrize("window", [1, 2, 5, 13, 64])
def test_the_usual_header_is_split_by_windows_as_line_by_line(
    window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each findall holds the GIL: a 1.3 MB header held it 30 ms in a thread. It
    goes WINDOW octets at a time, each window ending at a field's first line
    (never inside a field or its continuations): the fields are the same."""
    from postier.mime import message
    from postier.mime.message import _parse_lines, parse_header

    monkeypatch.setattr(message, "WINDOW", window)
    rng = random.Random(window)
    pieces = [b"A: b\r\n", b"Subject: x\r\n", b" folded\r\n", b"\tmore\n", b"X-Y:\n"]
    many = [b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40))) for _ in range(300)]
    for data in [*CASES, *many, b"A: b\r\nno field\r\nC: d\r\n"]:
        for end in {len(data), find_header_end(data, 0, len(data))[0]}:
            assert parse_header(data, end) == _parse_lines(data[:end], end), data[:80]


def test_a_large_header_is_split_a_window_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from postier.mime import message

    calls: list[int] = []

    class Spy:
        def findall(self, block: bytes, start: int, stop: int) -> list[tuple[bytes, ...]]:
            calls.append(stop - start)
            return real.findall(block, start, stop)

    real = message._FIELDS
    monkeypatch.setattr(message, "_FIELDS", Spy())
    data = b"".join(b"X-F%d: v\r\n folded\r\n" % i for i in range(20_000)) + b"\r\n"
    fields = message.parse_header(data, len(data) - 2)
    assert len(fields) == 20_000 and fields[-1].name == "x-f19999"
    assert len(calls) > 3 and max(calls) <= message.WINDOW + 30


def test_header_values_are_decoded_once_as_value_decodes_them() -> None:
    # `fields`, `has` and `without` answer from values unfolded and decoded once
    # (`Header._values`); each is what `value` decodes from the field's octets
    # alone, and what `parse_fields` unfolds (bare CR, LF, 8-bit, blanks, folds)
    for data in CASES:
        header = ParsedMessage.of(data).header
        expected = [(f.name, header.value(f)) for f in header.positions if f.colon >= 0]
        seen: list[tuple[str, str]] = []

        def record(name: str, value: str, seen: list[tuple[str, str]] = seen) -> bool:
            seen.append((name, value))
            return False

        assert header.without(record) is None
        assert seen == expected, data
        for name in {f.name for f in header.positions} | {"x", "A"}:
            want = [v for n, v in expected if n == name.lower()]
            assert header.fields(name) == want, data
            assert header.has(name) == bool(want), data
        header.fields("a").append("not kept")  # a fresh list each call
        assert header.fields("a") == [v for n, v in expected if n == "a"]


@pytest.mark.parametrize(
    "above",
    [
        b"",
        b"Return-Path: <x@y>\r\nDate: Tue, 2 Jan 2024 00:00:00 +0000\r\nSubject: o\r\n",
        # our trace and verdict fields only: the summary does not split them
        b"Return-Path: <x@y>\r\nReceived: from a\r\n\tby b; Tue, 2 Jan 2024 00:00:00 +0000\r\n"
        b"Authentication-Results: h; none\r\nX-Spam-Status: No, score=0.0\r\n",
        # a field the summary reads, in any case, blanks before its colon
        b"Received: x\r\nsUbJeCt \t: shadow\r\nX-Date: 1\r\n",
        b"Received: x\r\n date: in a continuation\r\nCONTENT-ID: <c@d>\r\n",
        b"Received: x\nMessage-ID: <bare@lf>\nIn-Reply-To: <y@z>\n",
    ],
)
def test_summary_is_the_summary_of_the_stored_bytes(above: bytes) -> None:
    for data in CASES:
        if above and data[:1] in (b" ", b"\t"):
            continue  # would continue our last field; intake's scanner never lets one through
        assert ParsedMessage.of(data).summary(above) == summarize(above + data), data


def test_summary_splits_no_field_of_ours_above(monkeypatch: pytest.MonkeyPatch) -> None:
    import postier.mime.summary as summary

    def boom(*_args: object) -> None:
        raise AssertionError("our trace fields were split")

    m = ParsedMessage.of(b"Subject: hi\r\nTo: a@b\r\n\r\nbody\r\n")
    m.root  # noqa: B018 - parsed before the patch
    monkeypatch.setattr(summary, "parse_fields", boom)
    above = b"Return-Path: <>\r\nReceived: x\r\nAuthentication-Results: h; none\r\n"
    assert m.summary(above).subject == "hi"


def test_summary_with_the_clients_header_edited() -> None:
    data = b"Subject: hi\r\nX-Spam-Status: Yes\r\n x\r\nTo: a@b\r\n\r\nbody\r\n"
    m = ParsedMessage.of(data)
    kept = m.header.without(lambda name, value: name == "x-spam-status")
    assert kept == b"Subject: hi\r\nTo: a@b\r\n"
    stored = b"Received: x\r\n" + kept + b"\r\nbody\r\n"
    assert m.summary(b"Received: x\r\n", kept + b"\r\n") == summarize(stored)
    assert m.header.without(lambda name, value: False) is None


def test_the_mime_tree_is_parsed_once_and_reused() -> None:
    m = ParsedMessage.of(SAMPLES[-1])
    assert m.root is m.root
    assert m.texts() == [("text/html", "<p>hi</p>")]
    assert m.texts() is m.texts()


def test_preview_words_from_a_start_of_the_text_are_those_of_all_of_it() -> None:
    from postier.mime.preview import _squeeze

    rnd = random.Random(3)
    pieces = ["a", "bb", " ", "\t", "\n", "é", "  ", "xyz"]
    for _ in range(5000):
        text = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 400)))
        max_chars = rnd.randint(0, 60)
        everything = " ".join(text.split())
        got = _squeeze(text, max_chars)
        assert everything.startswith(got)
        assert got == everything or len(got) >= max_chars


def test_a_message_known_to_have_crlf_line_ends_only_is_not_counted_again() -> None:
    above = b"Received: x\r\n"
    for data in CASES:
        if b"\r" in data.replace(b"\r\n", b"") or b"\n" in data.replace(b"\r\n", b""):
            continue  # SMTP DATA: the core refuses or rewrites bare CR and LF
        if data[:1] in (b" ", b"\t"):
            continue
        m = ParsedMessage.of(data)
        known = ParsedMessage(data, m.header, crlf_only=True)
        assert known.summary(above) == summarize(above + data), data
        expected = _dkimpy(data)
        if expected[0] not in ("format", "index"):  # type: ignore[index]
            assert (known.dkim_fields(), known.dkim_body()) == expected, data


def test_crlf_size_of_pieces_is_that_of_their_join() -> None:
    # `_crlf_size_of` counts ``above + head + body`` without joining them: a CR
    # at the end of one piece and an LF at the start of the next are one CRLF
    from postier.mime.summary import _crlf_size_of, crlf_size

    rnd = random.Random(4)
    pieces = [b"a", b"\r", b"\n", b"\r\n", b" "]

    def some() -> bytes:
        return b"".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 4)))

    for _ in range(5000):
        above, head, before, body = some(), some(), some(), some()
        data = before + body
        size = _crlf_size_of(
            above, head, data, len(before), body.count(b"\n") - body.count(b"\r\n")
        )
        assert size == crlf_size(above + head + body), (above, head, body)
