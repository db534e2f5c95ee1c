"""Authentication-Results: the field we write, and forged ones removed (RFC 8601)."""

from __future__ import annotations

import pytest

from postier.mailauth.results import (
    authserv_id_of,
    comment,
    drop_fields,
    forged_fields,
    header,
    value,
)


def test_header_layout():
    assert header("mx.test", []) == b"Authentication-Results: mx.test; none\r\n"
    assert header("mx.test", ["spf=pass smtp.mailfrom=x.test", "dkim=none"]) == (
        b"Authentication-Results: mx.test;\r\n\tspf=pass smtp.mailfrom=x.test;\r\n\tdkim=none\r\n"
    )


@pytest.mark.parametrize(
    ("raw", "out"),
    [
        ("example.com", "example.com"),
        ("a b", '"a b"'),
        ('q"x', '"q\\"x"'),
        ("evil\r\nX-Injected: 1", '"evilX-Injected: 1"'),
    ],
)
def test_value_quoting(raw, out):
    assert value(raw) == out


@pytest.mark.parametrize(
    ("text", "aid"),
    [
        ("mx.test; spf=pass", "mx.test"),
        ("  MX.test 1; none", "MX.test"),
        ("(comment) mx.test; none", "mx.test"),
        ('"mx.test"; none', "mx.test"),
        ("", ""),
    ],
)
def test_authserv_id_of(text, aid):
    assert authserv_id_of(text) == aid


def test_forged_fields_removed_others_kept():
    block = (
        b"Authentication-Results: MX.TEST;\r\n\tspf=pass smtp.mailfrom=evil.test\r\n"
        b"Authentication-Results: other.test; dkim=pass\r\n"
        b"X-Spam-Status: No, score=-100\r\n"
        b"Subject: hi\r\n"
    )
    assert drop_fields(block, forged_fields("mx.test")) == (
        b"Authentication-Results: other.test; dkim=pass\r\nSubject: hi\r\n"
    )


def test_foreign_values_and_comments_are_cut_to_255_octets():
    long_domain = "a" * 300 + ".example"
    assert value(long_domain) == "a" * 252 + "..."
    # cut on a character boundary: 2-octet characters, never half of one
    cut = value("é" * 200)
    assert cut.endswith('..."') and len(cut.encode()) <= 257
    assert len(comment("x" * 1000).encode()) == 255 + 2


def test_no_line_over_998_octets_whatever_the_values():
    """A fuzzed DKIM-Signature gave a 1000-octet dkim= line (several long values on one method)."""
    junk = ":" * 900 + "@" + "\udcdd" * 50
    method = (
        f"dkim=permerror {comment('missing d= or s= ' + junk)} header.d={value(junk)}"
        f" header.s={value(junk)} header.i={value('(' * 400)} header.b={value(junk)}"
    )
    field = header("mx.example.test", ["spf=pass smtp.mailfrom=example.test", method])
    lines = field.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines), [len(line) for line in lines]
    assert lines[-1] == b""
    # folded only between units: each continuation line starts with a property or comment
    assert all(line.startswith(b"\t") for line in lines[1:-1])
    unfolded = field.replace(b"\r\n\t", b" ").decode()
    assert "header.d=" in unfolded and "header.b=" in unfolded


def test_short_methods_stay_on_one_line():
    field = header("mx.test", ["spf=pass smtp.mailfrom=a.test", "dkim=pass header.d=a.test"])
    assert field.count(b"\r\n") == 3
