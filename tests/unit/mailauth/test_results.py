"""Authentication-Results: the field we write, and forged ones removed (RFC 8601)."""

from __future__ import annotations

import pytest

from postier.mailauth.results import (
    authserv_id_of,
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
