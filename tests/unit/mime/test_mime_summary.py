"""Preview text, header decoding and `summarize` (the record intake caches)."""

import base64
import binascii
import os
import re
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postier.mail.summary import MessageSummary
from postier.mime import decode_charset, decode_words, encoding, parse, preview, summarize
from postier.mime.encoding import decode_base64, decode_qp, header_text
from postier.mime.preview import html_to_text
from postier.mime.summary import _email_date, parse_date


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= =?UTF-8?Q?_aus?= Berlin", "Grüße aus Berlin"),
        ("=?utf-8?b?w6k=?=", "é"),
        # one character split over two words of the same charset (RFC 2047 §5)
        ("=?utf-8?B?4oI=?= =?utf-8?B?rA==?=", "€"),
        ("=?iso-8859-1?q?Andr=E9?= x", "André x"),
        ("a =?utf-8?q?b?= c", "a b c"),
        ("=?utf-8*en?q?lang?=", "lang"),  # RFC 2231 §5 language suffix
        ("=?no-such-charset?q?ok?=", "ok"),
        ("=?base64_codec?q?x?=", "x"),  # not a text codec: treated as unknown
        ("=?utf-8?x?unknown-encoding?=", "=?utf-8?x?unknown-encoding?="),
        ("no words", "no words"),
    ],
)
def test_decode_words(text, expected):
    assert decode_words(text) == expected


def test_header_text_reads_raw_utf8_and_collapses_space():
    assert header_text("Caf\u00e9\t  ouvert".encode()) == "Café ouvert"
    assert header_text(b"Caf\xe9") == "Café"  # not UTF-8: Windows-1252


@pytest.mark.parametrize(
    ("data", "charset", "expected"),
    [
        (b"abc", None, "abc"),
        ("é".encode(), "us-ascii", "é"),  # mislabelled UTF-8
        (b"\xe9", "iso-8859-1", "é"),
        (b"\x80", "us-ascii", "€"),  # WHATWG: ascii/latin1 labels are windows-1252
        (b"\xff\xfe", "utf-8", "\ufffd\ufffd"),
        (b"\xa4", "iso-8859-15", "€"),
    ],
)
def test_decode_charset(data, charset, expected):
    assert decode_charset(data, charset) == expected


@pytest.mark.parametrize(
    ("data", "charset", "expected"),
    [
        # Python codecs that are no charset: read as unknown (UTF-8, else cp1252)
        (b"\\ud800", "unicode_escape", "\\ud800"),
        (b"\\U0001f600", "raw_unicode_escape", "\\U0001f600"),
        (b"xn--caf-dma", "punycode", "xn--caf-dma"),
        (b"xn--caf-dma", "idna", "xn--caf-dma"),
        (b"abc", "undefined", "abc"),
        (b"abc", "charmap", "abc"),
        (b"nop", "rot13", "nop"),
        (b"YWJj", "base64", "YWJj"),
        (b"x\x9c", "zlib", "x\ufffd"),
        (b"abc", "bz2_codec", "abc"),
        (b"616263", "hex", "616263"),
        # UTF-7 can spell a lone surrogate: it becomes U+FFFD
        (b"+2D0-x", "utf-7", "\ufffdx"),
        (b"+2D3eAQ-", "utf-7", "\U0001f601"),  # a real pair stays
    ],
)
def test_decode_charset_refuses_non_charsets_and_surrogates(data, charset, expected):
    text = decode_charset(data, charset)
    assert text == expected
    text.encode("utf-8")  # valid Unicode: never a surrogate


def test_summary_text_is_always_valid_unicode():
    """Raw 8-bit header octets read as UTF-8, else Windows-1252; surrogates → U+FFFD."""
    data = (
        b'From: "\xff\xfe" <a@b.test>, =?utf-7?q?+2D0-?= <c@d.test>\r\n'
        b"To: \xe9t\xe9@b.test, grp: ;\r\nCc: =?utf-7?q?+2D0-?=: ;\r\n"
        b"Subject: =?utf-7?q?+2D0-x?= =?unicode_escape?q?=5Cud800?=\r\n"
        b"Content-Type: text/plain; charset=utf-7\r\n\r\n+2D0-body\r\n"
    )
    s = summarize(data)
    assert s.from_ == "\xff\xfe <a@b.test>, \ufffd <c@d.test>"
    assert s.to == "\xe9t\xe9@b.test, grp:;"
    assert s.cc == "\ufffd:;"
    assert s.subject == "\ufffdx\\ud800"
    assert s.preview == "\ufffdbody"
    for text in (s.from_, s.to, s.cc, s.subject, s.preview, s.message_id):
        text.encode("utf-8")


def test_decode_qp_and_base64():
    assert decode_qp(b"a=3Db=\r\nc") == b"a=bc"
    # RFC 2045 §6.7: trailing white space is transport padding; "=" then white
    # space at a line end is still a soft break; =xx in lower case; a bad escape
    # stays as written; each line keeps its own line end
    assert decode_qp(b"caf=c3=a9  \r\nlong= \t\r\nline\r\n") == b"caf\xc3\xa9\r\nlongline\r\n"
    assert decode_qp(b"x=ZZ ==41\nend=") == b"x=ZZ =A\nend"
    assert decode_base64(b"Zm9v\r\nYmFy") == b"foobar"
    assert decode_base64(b"Zm9vYg") == b"foob"
    assert decode_base64(b"") == b""


def _qp_by_regex(data: bytes) -> bytes:
    """decode_qp's rules written the plain way (an re.sub per line): the reference."""
    out = []
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        crlf = line.endswith(b"\r")
        line = line.rstrip(b" \t\r")
        soft = line.endswith(b"=")
        if soft:
            line = line[:-1]
        out.append(re.sub(rb"=([0-9A-Fa-f]{2})", lambda m: bytes.fromhex(m[1].decode()), line))
        if i < len(lines) - 1 and not soft:
            out.append(b"\r\n" if crlf else b"\n")
    return b"".join(out)


@given(st.lists(st.sampled_from([b"=", b"a", b"E", b"9", b"f", b"z", b"\r", b"\n", b" ", b"\t"])))
@settings(max_examples=500)
def test_decode_qp_is_the_plain_rules(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    assert decode_qp(data) == _qp_by_regex(data)


def test_decode_qp_in_pieces_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long lines are undone a piece at a time; no escape is split."""
    from postier.mime import encoding

    data = b"x=41==3D=\r=3=e9=" * 50 + b"=4" + b"\r\n" + b"=41" * 20
    monkeypatch.setattr(encoding, "QP_CHUNK", 4)
    assert decode_qp(data) == _qp_by_regex(data)


def test_decode_qp_runs_no_python_per_escape() -> None:
    """An escape cost a Python callback (~1 µs: 40 MB of quoted-printable took
    10 s of a thread); now a line is undone in C whatever it holds."""
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        calls += event == "call"

    line = b"caf=C3=A9 ==41 " * 1000
    sys.setprofile(count)
    try:
        decode_qp(line + b"\r\n" + line)
    finally:
        sys.setprofile(None)
    assert calls < 20, calls


def test_large_base64_is_decoded_a_slice_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each C call holds the GIL: a large part is decoded `SLICE` octets a call,
    so a search or FETCH thread decoding 40 MB lets the event loop run between
    calls. The result is the same, line breaks, junk and inner padding included."""
    raw = os.urandom(3 * encoding.SLICE // 4 * 3 + 5)  # three slices and a bit
    lines = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    calls: list[int] = []
    real = binascii.a2b_base64

    def a2b(data: bytes) -> bytes:
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(encoding.binascii, "a2b_base64", a2b)
    assert decode_base64(lines) == raw
    assert len(calls) > 3
    assert max(calls) <= encoding.SLICE
    calls.clear()
    # "=" ends a quantum: two encodings one after the other, with junk between
    two = base64.b64encode(raw[:-1]) + b"!\r\n" + base64.b64encode(raw[:7])
    assert decode_base64(two) == raw[:-1] + raw[:7]
    assert max(calls) <= encoding.SLICE


def test_html_to_text():
    markup = (
        "<html><head><title>T</title><style>p{}</style></head><body>"
        "<script>alert(1)</script><p>A &amp; B&nbsp;<b>bold</b></p><!-- hidden --></body>"
    )
    assert " ".join(html_to_text(markup).split()) == "A & B bold"


def _preview(data: bytes, **kw: int) -> str:
    return preview(data, parse(data), **kw)


def test_preview_prefers_plain_and_skips_attachments():
    data = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nattached\r\n"
        b"--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n"
        b"--c\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n"
        b"--c\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nthe  plain=\r\n text=C3=A9\r\n"
        b"--c--\r\n--b--\r\n"
    )
    assert _preview(data) == "the plain texté"


def test_preview_of_html_only_mail():
    data = (
        b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"PGh0bWw+PGhlYWQ+PHN0eWxlPmJvZHl7fTwvc3R5bGU+PC9oZWFkPjxwPkhlbGxvICZhbXA7IHdl"
        b"bGNvbWU8L3A+PC9odG1sPg==\r\n"
    )
    assert _preview(data) == "Hello & welcome"


def test_preview_limits():
    body = ("word " * 100).encode()
    data = b"Content-Type: text/plain\r\n\r\n" + body
    assert _preview(data) == ("word " * 40).strip()  # 200 characters, cut, trimmed
    assert _preview(data, max_chars=9) == "word word"
    assert _preview(data, max_octets=12) == "word word wo"


def test_preview_never_splits_a_character_at_the_read_limit():
    data = b"Content-Type: text/plain\r\n\r\n" + "ééé".encode()
    assert _preview(data, max_octets=3) == "é"
    assert _preview(data, max_octets=4) == "éé"


def test_preview_without_text_is_empty():
    data = b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
    assert _preview(data) == ""


def test_preview_looks_into_an_encapsulated_message():
    data = b"Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ninner text\r\n"
    assert _preview(data) == "inner text"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"Mon, 1 Jan 2024 10:00:00 +0000", datetime(2024, 1, 1, 10, 0, tzinfo=UTC)),
        (
            b"1 Jan 2024 10:00:00 +0130",
            datetime(2024, 1, 1, 10, 0, tzinfo=timezone(timedelta(hours=1, minutes=30))),
        ),
        (b"Mon, 1 Jan 2024 10:00:00 -0000", datetime(2024, 1, 1, 10, 0, tzinfo=UTC)),
        (
            b"Mon, 1 Jan 2024 10:00:00 EST",
            datetime(2024, 1, 1, 10, 0, tzinfo=timezone(timedelta(hours=-5))),
        ),
        (b"not a date", None),
        (b"Mon, 99 Foo 2024 99:99:99 +0000", None),
        (b"", None),
        (None, None),
    ],
)
def test_parse_date(raw, expected):
    got = parse_date(raw)
    assert got == expected
    if got is not None:
        assert got.tzinfo is not None


def test_summarize_fills_every_field(sample):
    data = sample("encoded_words.eml")
    s = summarize(data)
    root = parse(data)
    assert s == MessageSummary(
        envelope=s.envelope,
        bodystructure=b'("text" "plain" ("charset" "utf-8") NIL NIL "base64" 30 1 NIL NIL NIL NIL)',
        body=b'("text" "plain" ("charset" "utf-8") NIL NIL "base64" 30 1)',
        subject="Grüße aus Berlin",
        from_="Jörg Müller <joerg@example.de>",
        to="Doe, John <john@example.com>, André <andre@example.fr>",
        cc="",
        date=datetime(2024, 1, 5, 14, 15, 16, tzinfo=timezone(timedelta(hours=1))),
        message_id="<ew-1@example.de>",
        preview="Grüße aus Berlin!",
        header_size=root.body_start,
        crlf_size=len(data),  # CRLF throughout, ends with CRLF: nothing to add
    )
    assert s.envelope.startswith(b'("Fri, 5 Jan 2024 14:15:16 +0100" "=?UTF-8?Q?Gr=C3')
    assert data[s.header_size - 4 : s.header_size] == b"\r\n\r\n"


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (b"", 0),
        (b"a\r\nb\r\n", 6),
        (b"a\nb\n", 6),  # bare LFs are sent as CRLF
        (b"a\r\nb", 6),  # a final CRLF is added
        (b"a\rb\r\n", 5),  # a lone CR is left alone
    ],
)
def test_crlf_size_is_what_pop3_sends(data, size):
    from postier.mime.summary import crlf_size
    from postier.pop3.commands import normalize

    assert crlf_size(data) == size == len(normalize(data))


def test_summarize_groups_and_missing_parts(sample):
    s = summarize(sample("group.eml"))
    assert s.to == "undisclosed-recipients:;"
    assert s.cc == "Team: alice@example.org, Bob B <bob@example.test>;, carol@example.net"
    s = summarize(b"To: foo, <>, Name <@x>\r\n\r\n")
    assert s.to == "foo, Name"
    assert s.from_ == ""
    assert s.subject == ""
    assert s.date is None
    assert s.message_id == ""


def test_summarize_empty_and_garbage():
    s = summarize(b"")
    assert s.envelope == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
    assert s.bodystructure == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)'
    )
    assert s.header_size == 0
    s = summarize(b"\x00\xff\r\n\r\n\xfe")
    assert s.header_size == 6
    assert s.preview == "þ"


def test_summarize_survives_an_internal_error(monkeypatch, caplog):
    import postier.mime.summary as summary

    def boom(_data):
        raise RuntimeError("bug")

    monkeypatch.setattr(summary, "parse", boom)
    s = summary.summarize(b"Subject: x\r\n\r\nbody")
    # 18 octets, no final CRLF: POP3 sends 2 more
    assert s == MessageSummary(header_size=14, crlf_size=20)
    assert "cannot summarise a 18-octet message" in caplog.text


# --- the shortcut for the usual Date: form ----------------------------------------------


@given(
    st.sampled_from(["", "Sun, ", "Mon,", "sun, ", "Xyz, ", " ", "\t"]),
    st.integers(0, 40),
    st.sampled_from(["Jan", "Feb", "Jun", "Dec", "dec", "Foo"]),
    st.sampled_from(["1970", "2026", "0099", "9999", "26", "10000"]),
    st.integers(0, 61),
    st.integers(0, 61),
    st.sampled_from(["", ":00", ":59", ":60", ":7"]),
    st.sampled_from(["+0000", "-0000", "+0130", "-0800", "+2400", "+9959", "GMT", "-2359"]),
    st.sampled_from(
        ["", " ", " (UTC)", "\r\n", "(UTC)", "  (Coordinated Universal Time)", "\tx y", " \xa0"]
    ),
    st.sampled_from([" ", "  ", "\t", " \t"]),
)
@settings(max_examples=3000, deadline=None)
def test_the_usual_dates_parse_as_email_utils_parses_them(
    day, d, month, year, hh, mm, ss, zone, tail, sep
):
    raw = f"{day}{d}{sep}{month} {year}{sep}{hh:02d}:{mm:02d}{ss}{sep}{zone}{tail}".encode(
        "latin-1"
    )
    assert parse_date(raw) == _email_date(raw)
    got, slow = parse_date(raw), _email_date(raw)
    if got is not None and slow is not None:
        assert got.utcoffset() == slow.utcoffset()


def test_the_usual_date_takes_the_shortcut(monkeypatch):
    import postier.mime.summary as summary

    monkeypatch.setattr(summary, "parsedate_to_datetime", None)  # would raise TypeError
    got = summary.parse_date(b" Sun, 6 Dec 2026 11:00:00 +0100")
    assert got is not None and got.isoformat() == "2026-12-06T11:00:00+01:00"
    # a padded day and a zone comment (smtp-source, Postfix) too
    got = summary.parse_date(b"Sun,  6 Dec 2026 15:22:12 +0000 (UTC)")
    assert got is not None and got.isoformat() == "2026-12-06T15:22:12+00:00"
