"""The part tree: offsets, Content-* fields, RFC 2231, limits, malformed input."""

import pytest

from postier.mime import Param, bodystructure, parse
from postier.mime.parse import find_header_end, parse_fields, parse_params

# Dovecot's own test message (src/lib-imap/test-imap-bodystructure.c), CRLF.
DOVECOT_MSG = (
    b"From: user@domain.org\n"
    b"Date: Sat, 24 Mar 2007 23:00:00 +0200\n"
    b"Mime-Version: 1.0\n"
    b'Content-Type: multipart/mixed; boundary="foo\n'
    b' bar"\n'
    b"\n"
    b"Root MIME prologue\n"
    b"\n"
    b"--foo bar\n"
    b'Content-Type: text/x-myown; charset=us-ascii; foo="quoted\\"string"\n'
    b"Content-ID: <foo@example.com>\n"
    b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
    b"Content-Disposition: inline; foo=bar\n"
    b"Content-Description: hellodescription\n"
    b"Content-Language: en, fi, se\n"
    b"Content-Location: http://example.com/test.txt\n"
    b"\n"
    b"hello\n"
    b"\n"
    b"--foo bar\n"
    b"Content-Type: message/rfc822\n"
    b"\n"
    b"From: sub@domain.org\n"
    b"To: sub-to1@domain.org, sub-to2@domain.org\n"
    b"Date: Sun, 12 Aug 2012 12:34:56 +0300\n"
    b"Subject: submsg\n"
    b'Content-Type: multipart/alternative; boundary="sub1"\n'
    b"\n"
    b"Sub MIME prologue\n"
    b"--sub1\n"
    b"Content-Type: text/html\n"
    b"Content-Transfer-Encoding: 8bit\n"
    b"\n"
    b"<p>Hello world</p>\n"
    b"\n"
    b"--sub1\n"
    b"Content-Type: text/plain\n"
    b"Content-Transfer-Encoding: ?invalid\n"
    b"\n"
    b"Hello another world\n"
    b"\n"
    b"--sub1--\n"
    b"Sub MIME epilogue\n"
    b"\n"
    b"--foo bar--\n"
    b"Root MIME epilogue\n"
).replace(b"\n", b"\r\n")


def test_dovecot_reference_message():
    # Same sizes and line counts as Dovecot (7, 412/21, 20, 21); defaults are
    # spelled the RFC way ("7BIT", "CHARSET" "US-ASCII") and the invalid
    # encoding "?invalid" is ignored (7BIT), as in Dovecot.
    assert bodystructure(parse(DOVECOT_MSG)) == (
        b'(("text" "x-myown" ("charset" "us-ascii" "foo" "quoted\\"string") "<foo@example.com>"'
        b' "hellodescription" "7BIT" 7 1 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("inline" ("foo" "bar"))'
        b' ("en" "fi" "se") "http://example.com/test.txt")'
        b'("message" "rfc822" NIL NIL NIL "7BIT" 412 ("Sun, 12 Aug 2012 12:34:56 +0300" "submsg"'
        b' ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org"))'
        b' ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub-to1" "domain.org")'
        b'(NIL NIL "sub-to2" "domain.org")) NIL NIL NIL NIL)'
        b' (("text" "html" ("CHARSET" "US-ASCII") NIL NIL "8bit" 20 1 NIL NIL NIL NIL)'
        b'("text" "plain" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 21 1 NIL NIL NIL NIL)'
        b' "alternative" ("boundary" "sub1") NIL NIL NIL) 21 NIL NIL NIL NIL)'
        b' "mixed" ("boundary" "foo bar") NIL NIL NIL)'
    )


def test_offsets_of_a_multipart():
    data = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"pre\r\n--b\r\nX-A: 1\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b--\r\nepi\r\n"
    )
    root = parse(data)
    assert (root.header_start, root.header_end, root.body_start, root.body_end) == (
        0,
        43,
        45,
        len(data),
    )
    one, two = root.children
    assert data[one.header_start : one.body_start] == b"X-A: 1\r\n\r\n"
    assert data[one.body_start : one.body_end] == b"one"
    assert one.fields == [("x-a", b"1")]
    assert data[two.header_start : two.body_start] == b"\r\n"  # no header at all
    assert data[two.body_start : two.body_end] == b"two"
    assert two.content_type == "text/plain"
    assert not two.content_type_given


def test_header_only_message_has_empty_body():
    data = b"Subject: no body\r\nFrom: a@b"
    root = parse(data)
    assert (root.header_end, root.body_start, root.body_end) == (len(data), len(data), len(data))
    assert root.headers == {"subject": b"no body", "from": b"a@b"}
    assert bodystructure(root) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)'
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", (0, 0)),
        (b"\r\nbody", (0, 2)),
        (b"\nbody", (0, 1)),
        (b"A: 1\r\n\r\nbody", (6, 8)),
        (b"A: 1\n\nbody", (5, 6)),
        (b"A: 1\r\nB: 2\n\nbody\r\n\r\n", (11, 12)),  # first blank line wins
    ],
)
def test_find_header_end(data, expected):
    assert find_header_end(data, 0, len(data)) == expected


def test_fields_unfold_skip_junk_and_keep_order():
    block = (
        b"From foo@bar Mon Jan  1 00:00:00 2024\r\n"  # mbox separator: not a field
        b"Subject: a\r\n  folded\r\n\tline\r\n"
        b"junk without colon\r\n"
        b"X-Empty:\r\n"
        b"Subject : second\r\n"
    )
    assert parse_fields(block) == [
        ("subject", b"a  folded\tline"),
        ("x-empty", b""),
        ("subject", b"second"),
    ]
    root = parse(block + b"\r\nbody")
    assert root.header("SUBJECT") == b"a  folded\tline"  # the first occurrence


@pytest.mark.parametrize(
    ("value", "token", "params"),
    [
        ("text/plain", "text/plain", []),
        ('text/plain; charset="utf-8"', "text/plain", [Param("charset", "utf-8")]),
        (
            "text/plain ; charset = utf-8 ; format=flowed",
            "text/plain",
            [Param("charset", "utf-8"), Param("format", "flowed")],
        ),
        (
            'a/b; x="q\\"uote;d"; y=unquoted with space',
            "a/b",
            [Param("x", 'q"uote;d'), Param("y", "unquoted with space")],
        ),
        ("a/b; novalue; z=1", "a/b", [Param("z", "1")]),
        ('a/b; x="unterminated', "a/b", [Param("x", "unterminated")]),
        ("a/b (comment); x=1 (another)", "a/b", [Param("x", "1")]),
        # RFC 2231 §3 continuations, §4 charset and language, mixed forms
        ('a/b; title*0="foo "; title*1=bar', "a/b", [Param("title", "foo bar")]),
        ("a/b; t*=iso-8859-1'fr'caf%E9", "a/b", [Param("t", "café", "iso-8859-1'fr'caf%E9")]),
        ("a/b; t*1*=%C3%A9; t*0*=utf-8''caf", "a/b", [Param("t", "café", "utf-8''caf%C3%A9")]),
        ("a/b; t*0*=utf-8''a%20; t*1=\"b c\"", "a/b", [Param("t", "a b c", "utf-8''a%20b%20c")]),
        ("a/b; t*0=x; t*2=z", "a/b", [Param("t", "x")]),  # a gap ends the value
        ("a/b; t=plain; t*=utf-8''ext", "a/b", [Param("t", "plain")]),  # first form wins
        ("a/b; t*=bogus-charset''%41", "a/b", [Param("t", "A", "bogus-charset''%41")]),
        ("a/b; t*00=x", "a/b", []),  # leading zero: not a valid section number
        ("a/b; t*\u00b2=x; u*1\u0663*=y", "a/b", []),  # unicode digits are not DIGIT
    ],
)
def test_parse_params(value, token, params):
    assert parse_params(value) == (token, params)


def test_content_fields_of_a_part():
    data = (
        b"Content-Type: Application/Octet-Stream; NAME=x.bin\r\n"
        b"Content-Transfer-Encoding: Base64 (comment)\r\n"
        b"Content-Disposition: ATTACHMENT; filename*=utf-8''%E2%82%AC.bin\r\n"
        b"Content-Language: en-GB (British), fr\r\n\r\nAAAA\r\n"
    )
    p = parse(data)
    assert (p.maintype, p.subtype, p.content_type) == (
        "Application",
        "Octet-Stream",
        "application/octet-stream",
    )
    assert (p.encoding, p.cte) == ("Base64", "base64")
    assert p.disposition == "ATTACHMENT"
    assert p.filename == "€.bin"
    assert p.param("name") == "x.bin"
    assert p.language == ["en-GB", "fr"]
    assert bodystructure(p) == (
        b'("Application" "Octet-Stream" ("NAME" "x.bin") NIL NIL "Base64" 6 NIL'
        b' ("ATTACHMENT" ("filename*" "utf-8\'\'%E2%82%AC.bin")) ("en-GB" "fr") NIL)'
    )


@pytest.mark.parametrize(
    "ct",
    [b"garbage", b"text/", b"/plain", b"te xt/plain", b"text/pl@in", b""],
)
def test_unusable_content_type_is_default_text(ct):
    p = parse(b"Content-Type: " + ct + b"\r\n\r\nx")
    assert (p.maintype, p.subtype, p.content_type_given) == ("text", "plain", False)
    assert bodystructure(p, extensible=False) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1 0)'
    )


def test_multipart_without_boundary_is_text():
    p = parse(b"Content-Type: multipart/mixed\r\n\r\n--x\r\nhello\r\n")
    assert not p.is_multipart
    assert p.children == []
    assert bodystructure(p, extensible=False) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 12 2)'
    )


def test_multipart_without_any_delimiter_gets_an_empty_part():
    data = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nno delimiter here\r\n"
    p = parse(data)
    assert p.is_multipart
    assert p.children == []
    assert bodystructure(p) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)'
        b' "mixed" ("boundary" "zz") NIL NIL NIL)'
    )
    assert bodystructure(p, extensible=False) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0) "mixed")'
    )


def test_delimiter_must_start_a_line_and_close_ends_the_parts():
    data = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\n\r\nx --b\r\n--b--\r\n--b\r\n\r\nafter close\r\n"
    )
    p = parse(data)
    assert len(p.children) == 1
    c = p.children[0]
    assert data[c.body_start : c.body_end] == b"x --b"


def test_empty_body_parts_and_boundary_at_end_of_data():
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n\r\nz\r\n--b--"
    p = parse(data)
    assert [data[c.body_start : c.body_end] for c in p.children] == [b"", b"z"]


def test_digest_parts_default_to_message_rfc822():
    data = (
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n"
        b"--d\r\n\r\nSubject: inner\r\n\r\nhi\r\n--d--\r\n"
    )
    p = parse(data)
    child = p.children[0]
    assert child.content_type == "message/rfc822"
    assert child.message is not None
    assert child.message.header("subject") == b"inner"
    assert bodystructure(p, extensible=False) == (
        b'(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 20'
        b' (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL)'
        b' ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 2 0) 2) "digest")'
    )


def test_base64_message_rfc822_is_a_leaf_with_valid_syntax():
    data = (
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"U3ViamVjdDogeA0KDQp5\r\n"
    )
    p = parse(data)
    assert p.message is None
    assert bodystructure(p, extensible=False) == (
        b'("message" "rfc822" NIL NIL NIL "base64" 22 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)'
        b' ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0) 1)'
    )


def test_message_global_is_parsed_as_a_message():
    data = b"Content-Type: message/global\r\n\r\nSubject: =?utf-8?q?x?=\r\n\r\nbody"
    p = parse(data)
    assert p.message is not None
    assert p.message.header("subject") == b"=?utf-8?q?x?="


def _nested_multiparts(depth: int) -> bytes:
    out = b""
    for k in range(depth):
        out += b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (k, k)
    out += b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    for k in reversed(range(depth)):
        out += b"--b%d--\r\n" % k
    return out


def test_max_depth_limits_nesting():
    data = _nested_multiparts(5)
    deep = parse(data)
    assert len(deep.walk()) == 6
    limited = parse(data, max_depth=2)
    parts = limited.walk()
    assert len(parts) == 3  # root, depth 1, and depth 2 treated as an opaque leaf
    leaf = parts[-1]
    assert (leaf.content_type, leaf.is_multipart) == ("text/plain", False)
    assert bodystructure(limited, extensible=False).startswith(b'((("TEXT" "PLAIN"')


def test_max_depth_limits_encapsulated_messages():
    data = b"Content-Type: message/rfc822\r\n\r\n" * 4 + b"Subject: deep\r\n\r\nx"
    assert len(parse(data).walk()) == 5
    limited = parse(data, max_depth=1)
    assert [p.message is not None for p in limited.walk()] == [True, False]


def test_default_depth_limit_handles_very_deep_input():
    data = _nested_multiparts(200)
    root = parse(data)  # must not hit Python's recursion limit
    assert len(root.walk()) == 51
    assert bodystructure(root).count(b"(") > 50


def test_max_parts_limits_part_count():
    body = b"".join(b"--b\r\n\r\n%d\r\n" % k for k in range(100)) + b"--b--\r\n"
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + body
    assert len(parse(data).children) == 100
    limited = parse(data, max_parts=10)
    assert len(limited.children) == 10
    last = limited.children[-1]
    assert data[last.body_start : last.body_start + 2] == b"9\r"  # runs to the end


def test_huge_header_is_parsed():
    data = b"".join(b"X-H%d: %s\r\n" % (k, b"v" * 100) for k in range(5000))
    data += b"Subject: found\r\n\r\nbody"
    p = parse(data)
    assert len(p.fields) == 5001
    assert p.header("subject") == b"found"
    assert data[p.body_start :] == b"body"


def test_max_depth_is_capped_below_the_recursion_limit():
    root = parse(_nested_multiparts(400), max_depth=10_000)
    assert len(root.walk()) == 201
    assert bodystructure(root).startswith(b"(" * 201)


def _quoted_char_by_char(value: str, j: int) -> str:
    """A quoted parameter value from after its opening quote, as parse_params read
    it before its fast path: quoted-pairs undone, unterminated runs to the end."""
    buf: list[str] = []
    while j < len(value) and value[j] != '"':
        if value[j] == "\\" and j + 1 < len(value):
            j += 1
        buf.append(value[j])
        j += 1
    return "".join(buf)


def test_quoted_parameter_values_read_as_char_by_char():
    import random

    from postier.mime.parse import parse_params

    rnd = random.Random(9)
    pieces = ["a", "b c", '"', "\\", ";", "=", "é", "\\\\", '\\"', "\t"]
    for _ in range(5000):
        text = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 8)))
        value = 'text/plain; n="' + text + "; m=x"
        params = parse_params(value)[1]
        assert params[0].value == _quoted_char_by_char(value, len('text/plain; n="')), value
