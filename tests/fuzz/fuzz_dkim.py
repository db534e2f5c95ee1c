"""Fuzz target ``dkim``: DKIM-Signature tag parsing, key records and verification
(postier/mailauth/dkimverify.py) and signing (postier/mailauth/dkim.py).

Input: a message; or ``KEY-RECORD \\0\\0 MESSAGE``, where KEY-RECORD replaces the TXT
record of sel._domainkey.example.test (by default the public half of
tests/fuzz/dkim_key.pem, a 1024-bit RSA key used only here). The zone also has a
selector that times out and one with no record.

Allowed: `verify` returns one result per signature and never raises; `sign` raises
only `DkimError`. Checked: statuses are RFC 8601's; Authentication-Results texts are
free of control characters; a message we signed verifies as pass with our key record
(unless it has more From fields than we sign: dkimpy then fails it by design).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import dkim

from postier.dns.fake import TIMEOUT, FakeResolver
from postier.mailauth import dkimverify
from postier.mailauth.dkim import SIGNED_HEADERS, DkimError, DkimKey, sign

KEY = DkimKey("example.test", "sel", "rsa", (Path(__file__).parent / "dkim_key.pem").read_bytes())
KEY_RECORD = KEY.txt_record().encode()
_STATUSES = frozenset({"pass", "fail", "neutral", "temperror", "permerror", "policy"})

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _resolver(record: bytes) -> FakeResolver:
    return FakeResolver(
        {
            "sel._domainkey.example.test": {"TXT": [record]},
            "slow._domainkey.example.test": TIMEOUT,
        }
    )


def _verify(message: bytes, record: bytes) -> list[dkimverify.DkimResult]:
    results = asyncio.run(dkimverify.verify(message, _resolver(record), min_key_bits=1024))
    for r in results:
        assert r.status in _STATUSES, r
        text = r.auth_results()
        assert not _CONTROL.search(text), text  # results.py: no CR, LF or controls
    return results


def check(data: bytes) -> None:
    record, sep, message = data.partition(b"\x00\x00")
    if not sep:
        record, message = KEY_RECORD, data
    for tags in dkimverify.signature_tags(message):
        if tags is not None:
            dkimverify.key_name(tags)
    results = _verify(message, record)
    assert len(results) == len(dkimverify.signature_tags(message))
    with contextlib.suppress(DkimError):
        signed = sign(message, [KEY]) + message
        first = _verify(signed, KEY_RECORD)[0]
        # dkimpy verifies one From more than h= names (its Debian bug #644046), so a
        # message with more From fields than we sign (twice) fails by design
        froms = sum(1 for name, _ in dkim.rfc822_parse(message)[0] if name.lower() == b"from")
        if froms <= SIGNED_HEADERS.count(b"from"):
            assert first.status == "pass", (first, signed[:400])
