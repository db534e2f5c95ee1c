"""Address lists, IMAP string quoting and ENVELOPE edge cases (RFC 9051 §7.5.2)."""

import pytest

from postier.mime import Address, envelope, parse, parse_address_list
from postier.mime.address import GROUP_END
from postier.mime.quote import nstring, quote

A = Address


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice@example.org", [A(None, None, "alice", "example.org")]),
        ("Alice <alice@example.org>", [A("Alice", None, "alice", "example.org")]),
        ('"Doe, John" <j@x.com>', [A("Doe, John", None, "j", "x.com")]),
        ('"A \\"quoted\\" name" <a@b>', [A('A "quoted" name', None, "a", "b")]),
        ("John Q. Public <jqp@x>", [A("John Q. Public", None, "jqp", "x")]),
        ("John  (the man)  Doe <j@x>", [A("John Doe", None, "j", "x")]),
        ("a@b (Comment Name)", [A("Comment Name", None, "a", "b")]),
        ("<a@b> (Trailing)", [A("Trailing", None, "a", "b")]),
        ('"john doe"@example.com', [A(None, None, "john doe", "example.com")]),
        ("john . doe @ example . com", [A(None, None, "john.doe", "example.com")]),
        ("user@[192.0.2.1]", [A(None, None, "user", "[192.0.2.1]")]),
        ("<@r1,@r2:u@h>", [A(None, "@r1,@r2", "u", "h")]),
        ("=?utf-8?q?J=C3=B6rg?= <j@x>", [A("=?utf-8?q?J=C3=B6rg?=", None, "j", "x")]),
        ("a@b, c@d,,", [A(None, None, "a", "b"), A(None, None, "c", "d")]),
        ("undisclosed-recipients:;", [A(None, None, "undisclosed-recipients", None), GROUP_END]),
        (
            "G: a@b, c@d;",
            [A(None, None, "G", None), A(None, None, "a", "b"), A(None, None, "c", "d"), GROUP_END],
        ),
        ("G: a@b", [A(None, None, "G", None), A(None, None, "a", "b"), GROUP_END]),
        ("a@b <c@d>", [A("a@b", None, "c", "d")]),
        # broken addresses never look like group markers (Dovecot's fill-in)
        ("foo", [A(None, None, "foo", "MISSING_DOMAIN")]),
        ("foo@", [A(None, None, "foo", "MISSING_DOMAIN")]),
        ("@bar", [A(None, None, "MISSING_MAILBOX", "bar")]),
        ("<>", [A(None, None, "MISSING_MAILBOX", "MISSING_DOMAIN")]),
        ("Name <unterminated@x", [A("Name", None, "unterminated", "x")]),
        ('"unterminated', [A(None, None, "unterminated", "MISSING_DOMAIN")]),
        ("(only a comment)", []),
        ("", []),
        ("Jörg <jörg@bücher.de>", [A("Jörg", None, "jörg", "bücher.de")]),
    ],
)
def test_parse_address_list(value, expected):
    assert parse_address_list(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"plain", b'"plain"'),
        (b"", b'""'),
        (b'a "q" \\ b', b'"a \\"q\\" \\\\ b"'),
        ("Jörg".encode(), b"{5}\r\nJ\xc3\xb6rg"),
        (b"line\r\nbreak", b"{11}\r\nline\r\nbreak"),
        (b"nul\x00byte", b'"nulbyte"'),
        (b"x" * 1025, b"{1025}\r\n" + b"x" * 1025),
        (b"x" * 1024, b'"' + b"x" * 1024 + b'"'),
    ],
)
def test_quote(value, expected):
    assert quote(value) == expected


def test_quote_literal_threshold_is_configurable():
    assert quote(b"abcd", literal_over=3) == b"{4}\r\nabcd"
    assert nstring(None) == b"NIL"


def test_envelope_sender_and_reply_to_default_to_from_when_empty():
    data = b"From: a@b\r\nSender:\r\nReply-To: r@s\r\n\r\n"
    assert envelope(parse(data)) == (
        b'(NIL NIL ((NIL NIL "a" "b")) ((NIL NIL "a" "b")) ((NIL NIL "r" "s")) NIL NIL NIL NIL NIL)'
    )


def test_envelope_of_empty_message():
    assert envelope(parse(b"")) == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


def test_envelope_keeps_raw_unfolded_text_and_uses_literals():
    data = (
        b"Subject: =?utf-8?q?caf=C3=A9?=\r\n  and more\r\n"
        b"Date: Mon, 1 Jan 2024\r\n 10:00:00 +0000\r\n"
        b'From: "J\xc3\xb6rg" <j@x>\r\n'
        b"In-Reply-To: <a@b>\r\n"
        b"Message-ID: <c@d>\r\n"
        b"Subject: second subject ignored\r\n"
        b"Bcc: hidden@x\r\n\r\n"
    )
    assert envelope(parse(data)) == (
        b'("Mon, 1 Jan 2024 10:00:00 +0000" "=?utf-8?q?caf=C3=A9?=  and more"'
        b' (({5}\r\nJ\xc3\xb6rg NIL "j" "x")) (({5}\r\nJ\xc3\xb6rg NIL "j" "x"))'
        b' (({5}\r\nJ\xc3\xb6rg NIL "j" "x")) NIL NIL ((NIL NIL "hidden" "x"))'
        b' "<a@b>" "<c@d>")'
    )


def test_envelope_literal_threshold_parameter():
    data = b"Subject: abcdef\r\n\r\n"
    assert envelope(parse(data), literal_over=4) == (
        b"(NIL {6}\r\nabcdef NIL NIL NIL NIL NIL NIL NIL NIL)"
    )


def test_unterminated_quote_ending_in_a_backslash_is_one_token():
    # found by fuzzing (tests/fuzz/corpus/address/slow-*): the quoted-string branch
    # failed on a trailing lone backslash after scanning to the end, for every quote,
    # so a header of many quotes took quadratic time (64 KiB: about a minute)
    assert parse_address_list('"x \\"y\\" z\\') == [
        Address(None, None, 'x "y" z', "MISSING_DOMAIN")
    ]
    value = '"a \\"a \\" b\\' * 400
    assert len(parse_address_list(value)) == 1


def _address_list_one_string_at_a_time(addrs: list[Address], literal_over: int) -> bytes:
    """What `envelope._address_list` gave before its one-match fast path."""
    if not addrs:
        return b"NIL"
    return (
        b"("
        + b"".join(b"(" + b" ".join(nstring(s, literal_over) for s in a) + b")" for a in addrs)
        + b")"
    )


def test_envelope_addresses_fast_path_is_the_string_by_string_one():
    # `_address_list` quotes a plain address in one match of its strings joined;
    # names with quotes, backslashes, 8-bit or surrogate-escaped octets, NUL, CR/LF,
    # encoded-words, groups, routes and long strings must give what each string
    # quoted alone gives, at every literal threshold
    import random

    from postier.mime.envelope import _address_list

    pieces = [
        "a", "Bob", " ", '"', "\\", "<", ">", "@", ",", ";", ":", ".", "(c)", "=?utf-8?q?J=C3=B6?=",
        "é", "\udcff", "\x00", "\r", "\n", "\t", "[1.2.3.4]", "<@r:", "G:", "x" * 30, "{", "}",
    ]  # fmt: skip
    rnd = random.Random(5)
    values = ['"A \\"q\\" b" <a@b>', "Jörg <j@x>", "a@b (C)", "G: a@b, c@d;", "<@r1:u@h>"]
    values += ["".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 12))) for _ in range(3000)]
    for value in values:
        addrs = parse_address_list(value)
        addrs.append(Address("", None, "", ""))
        for literal_over in (0, 3, 8, 20, 1024):
            assert _address_list(addrs, literal_over) == _address_list_one_string_at_a_time(
                addrs, literal_over
            ), (value, literal_over)


def test_bodystructure_parameter_fast_path_is_the_string_by_string_one():
    # `_Writer.params` quotes plain names and values in one match of them joined;
    # anything else must give what each string quoted alone gives
    import random

    from postier.mime.bodystructure import _Writer
    from postier.mime.parse import Param

    pieces = ["a", "utf-8", " ", '"', "\\", "é", "\udcff", "\x00", "\r\n", "%C3", "x" * 30]
    rnd = random.Random(7)

    def text() -> str:
        return "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 4)))

    for _ in range(3000):
        params = [
            Param(text(), text(), text() if rnd.random() < 0.3 else None)
            for _ in range(rnd.randint(0, 3))
        ]
        extra = [("CHARSET", "US-ASCII")] if rnd.random() < 0.5 else None
        for literal_over in (0, 5, 40, 1024):
            items = [
                (p.name + "*", p.raw) if p.raw is not None else (p.name, p.value) for p in params
            ]
            items += extra or []
            want = (
                b"("
                + b" ".join(
                    quote(k, literal_over) + b" " + quote(v, literal_over) for k, v in items
                )
                + b")"
                if items
                else b"NIL"
            )
            assert _Writer(True, literal_over, []).params(params, extra) == want
