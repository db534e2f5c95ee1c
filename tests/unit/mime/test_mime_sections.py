"""BODY[section], BINARY[section], BINARY.SIZE and partial fetches (RFC 9051 §6.4.5, RFC 3516)."""

import pytest

from postier.mime import (
    Section,
    SectionError,
    SectionText,
    UnknownEncoding,
    binary,
    binary_size,
    extract,
    parse,
    partial,
    resolve,
)

SIMPLE = b"Subject: hi\r\nFrom: a@b\r\nX-Long: one\r\n two\r\n\r\nbody line\r\n"

RFC822 = (
    b"From: bob@example.test\r\nSubject: Fwd\r\n"
    b"Content-Type: multipart/mixed; boundary=fwd\r\n\r\n"
    b"--fwd\r\nContent-Type: text/plain\r\n\r\nForwarding.\r\n"
    b"--fwd\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: carol@example.net\r\nSubject: Inner\r\n"
    b"Content-Type: multipart/alternative; boundary=in\r\n\r\n"
    b"--in\r\nContent-Type: text/plain\r\n\r\nHi\r\n"
    b"--in\r\nContent-Type: text/html\r\n\r\n<p>Hi</p>\r\n--in--\r\n"
    b"--fwd\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: single\r\n\r\nsingle body\r\n"
    b"--fwd--\r\n"
)


def get(data: bytes, spec: str) -> bytes | None:
    return extract(data, parse(data), Section.parse(spec))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", SIMPLE),
        ("HEADER", b"Subject: hi\r\nFrom: a@b\r\nX-Long: one\r\n two\r\n\r\n"),
        ("TEXT", b"body line\r\n"),
        ("1", b"body line\r\n"),  # part 1 of a non-multipart message is its body
        ("1.MIME", b"Subject: hi\r\nFrom: a@b\r\nX-Long: one\r\n two\r\n\r\n"),
        ("HEADER.FIELDS (FROM)", b"From: a@b\r\n\r\n"),
        ("header.fields (x-long subject)", b"Subject: hi\r\nX-Long: one\r\n two\r\n\r\n"),
        ('HEADER.FIELDS ("From" "No-Such")', b"From: a@b\r\n\r\n"),
        ("HEADER.FIELDS (No-Such)", b"\r\n"),
        ("HEADER.FIELDS.NOT (Subject X-LONG)", b"From: a@b\r\n\r\n"),
        ("2", None),
        ("1.1", None),
        ("1.HEADER", None),  # part 1 is not message/rfc822
    ],
)
def test_single_part_sections(spec, expected):
    assert get(SIMPLE, spec) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1", b"Forwarding."),
        ("1.MIME", b"Content-Type: text/plain\r\n\r\n"),
        ("2.MIME", b"Content-Type: message/rfc822\r\n\r\n"),
        (
            "2.HEADER",
            b"From: carol@example.net\r\nSubject: Inner\r\n"
            b"Content-Type: multipart/alternative; boundary=in\r\n\r\n",
        ),
        ("2.HEADER.FIELDS (SUBJECT)", b"Subject: Inner\r\n\r\n"),
        ("2.HEADER.FIELDS.NOT (SUBJECT CONTENT-TYPE)", b"From: carol@example.net\r\n\r\n"),
        (
            "2.TEXT",
            b"--in\r\nContent-Type: text/plain\r\n\r\nHi\r\n"
            b"--in\r\nContent-Type: text/html\r\n\r\n<p>Hi</p>\r\n--in--",
        ),
        ("2.1", b"Hi"),
        ("2.2", b"<p>Hi</p>"),
        ("2.2.MIME", b"Content-Type: text/html\r\n\r\n"),
        ("2.3", None),
        ("3.1", b"single body"),  # encapsulated non-multipart: 1 is its body
        ("3.1.MIME", b"Subject: single\r\n\r\n"),
        ("3.HEADER", b"Subject: single\r\n\r\n"),
        ("3.TEXT", b"single body"),
        ("3.2", None),
        ("4", None),
        ("1.HEADER", None),
        ("2.1.HEADER", None),
        ("HEADER.FIELDS (Subject)", b"Subject: Fwd\r\n\r\n"),
    ],
)
def test_nested_sections(spec, expected):
    assert get(RFC822, spec) == expected


def test_section_two_is_the_whole_encapsulated_message():
    got = get(RFC822, "2")
    assert got is not None
    assert got.startswith(b"From: carol@example.net\r\n")
    assert got.endswith(b"--in--")


def test_header_fields_of_a_header_without_body_ends_with_blank_line():
    assert get(b"Subject: x\r\nFrom: y", "HEADER.FIELDS (FROM)") == b"From: y\r\n\r\n"


def test_header_fields_keep_lf_line_ends_of_the_source():
    assert get(b"A: 1\nB: 2\n\nbody", "HEADER.FIELDS (b)") == b"B: 2\n\r\n"


@pytest.mark.parametrize(
    ("spec", "section"),
    [
        ("", Section()),
        ("TEXT", Section((), SectionText.TEXT)),
        ("1.2.3", Section((1, 2, 3))),
        ("4.MIME", Section((4,), SectionText.MIME)),
        ("2.header", Section((2,), SectionText.HEADER)),
        ("HEADER.FIELDS (A b)", Section((), SectionText.HEADER_FIELDS, ("A", "b"))),
        (
            '1.HEADER.FIELDS.NOT ("x y" Z)',
            Section((1,), SectionText.HEADER_FIELDS_NOT, ("x y", "Z")),
        ),
    ],
)
def test_section_parse(spec, section):
    assert Section.parse(spec) == section


@pytest.mark.parametrize(
    "spec",
    [
        "MIME",
        "0",
        "1.0",
        "01",
        "BOGUS",
        "1.TEXT extra",
        "HEADER.FIELDS",
        "HEADER.FIELDS ()",
        "HEADER.FIELDS A",
        'HEADER.FIELDS ("open)',
        "TEXT.MIME",
        "1 2",
        "\u00b2",
        "1.\u0663",
    ],
)
def test_section_parse_errors(spec):
    with pytest.raises(SectionError):
        Section.parse(spec)


def test_resolve_returns_the_part():
    root = parse(RFC822)
    assert resolve(root, ()) is root
    assert resolve(root, (2,)) is root.children[1]
    inner = root.children[1].message
    assert inner is not None
    assert resolve(root, (2, 1)) is inner.children[0]
    assert resolve(root, (0,)) is None


@pytest.mark.parametrize(
    ("start", "length", "expected"),
    [
        (0, 4, b"body"),
        (5, 100, b"line\r\n"),
        (11, 1, b""),
        (50, 5, b""),
        (2, None, b"dy line\r\n"),
        (0, 0, b""),
    ],
)
def test_partial(start, length, expected):
    assert partial(b"body line\r\n", start, length) == expected


BINARY_MSG = (
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC/w==\r\n"
    b"--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =\r\nsoft\r\n"
    b"--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n"
    b"--b\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa9\r\n"
    b"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: s\r\n\r\nb\r\n"
    b"--b--\r\n"
)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ((1,), b"\x00\x01\x02\xff"),
        ((2,), "café soft".encode()),
        ((4,), b"\xc3\xa9"),
        ((5,), b"Subject: s\r\n\r\nb"),
        ((9,), None),
        ((), BINARY_MSG),
    ],
)
def test_binary(path, expected):
    root = parse(BINARY_MSG)
    assert binary(BINARY_MSG, root, path) == expected
    assert binary_size(BINARY_MSG, root, path) == (None if expected is None else len(expected))


def test_binary_unknown_encoding():
    root = parse(BINARY_MSG)
    with pytest.raises(UnknownEncoding):
        binary(BINARY_MSG, root, (3,))
    with pytest.raises(UnknownEncoding):
        binary_size(BINARY_MSG, root, (3,))


def test_binary_base64_is_tolerant():
    data = b"Content-Transfer-Encoding: BASE64\r\n\r\nAA E\r\nC/w*=\r\nZm9v"
    root = parse(data)
    # junk ignored, missing padding repaired (RFC 2045 §6.8)
    assert binary(data, root, (1,)) == b"\x00\x01\x02\xff\x66\x6f\x6f"
