"""GENURLAUTH, URLFETCH and RESETKEY (RFC 4467 §8) through the command parser."""

from __future__ import annotations

import pytest

from postier.imap.parse import Command, GenUrlAuth, ResetKey, UrlFetch
from tests.unit.imap.test_imap_parse import bad, parse

U = "imap://a%40b@h/INBOX/;UID=1;URLAUTH=authuser"

CASES = [
    (b'g GENURLAUTH "' + U.encode() + b'" INTERNAL', GenUrlAuth("g", ((U, "INTERNAL"),))),
    (
        b'g genurlauth "' + U.encode() + b'" internal {4+}\r\nimap x-Mech.2',
        GenUrlAuth("g", ((U, "INTERNAL"), ("imap", "X-MECH.2"))),
    ),
    (b"k RESETKEY", ResetKey("k")),
    (b"k RESETKEY inbox", ResetKey("k", "INBOX")),
    (b'k RESETKEY "Drafts" INTERNAL X', ResetKey("k", "Drafts", ("INTERNAL", "X"))),
    (b'u URLFETCH "' + U.encode() + b'"', UrlFetch("u", (U,))),
    (b'u URLFETCH x "y z" {1+}\r\nw', UrlFetch("u", ("x", "y z", "w"))),
]


@pytest.mark.parametrize(("line", "expected"), CASES, ids=[c[0][:40].decode() for c in CASES])
def test_urlauth_commands(line: bytes, expected: Command) -> None:
    assert parse(line + b"\r\n") == expected


ERRORS = [
    (b"g GENURLAUTH", b"g BAD Missing argument"),
    (b'g GENURLAUTH "x"', b"g BAD Missing argument"),
    (b'g GENURLAUTH "x" INTERNAL "y"', b"g BAD Missing argument"),
    (b'g GENURLAUTH "x" INT(ERNAL', b"g BAD Expected URLAUTH mechanism"),
    (b"k RESETKEY INBOX IN/TERNAL", b"k BAD Expected URLAUTH mechanism"),
    (b"u URLFETCH", b"u BAD Missing argument"),
    (b"u URLFETCH (x)", b"u BAD Expected URL"),
]


@pytest.mark.parametrize(("line", "response"), ERRORS, ids=[e[0].decode() for e in ERRORS])
def test_urlauth_malformed(line: bytes, response: bytes) -> None:
    assert bad(line + b"\r\n") == response + b"\r\n"
