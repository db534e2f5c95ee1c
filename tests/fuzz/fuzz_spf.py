"""Fuzz target ``spf``: SPF record and macro parsing and evaluation
(postier/mailauth/spf.py) against a fake DNS zone.

Input: up to three lines: the TXT record of example.test (the domain checked), of
inc.example.test (for include:/redirect=) and of exp.example.test (for exp=). The
zone also has A, AAAA, MX and PTR records for the mechanisms, a name that times out
and a name whose record includes itself. Evaluated for an IPv4 and an IPv6 client.

Allowed: `parse_record`/`parse_macro_string` raise only the RFC's permerror;
`check_host` never raises (every outcome is a status). Checked: the Received-SPF
and Authentication-Results texts built from the result have no control characters
(they go into header fields).
"""

from __future__ import annotations

import asyncio
import contextlib
import re

from postier.dns.fake import TIMEOUT, FakeResolver
from postier.mailauth import spf

_IPS = ("192.0.2.10", "2001:db8::10")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _zone(records: list[bytes]) -> dict[str, object]:
    zone: dict[str, object] = {
        "mx.example.test": {"A": ["192.0.2.10"], "AAAA": ["2001:db8::10"]},
        "mail.example.test": {"A": ["192.0.2.10"], "AAAA": ["2001:db8::10"]},
        "10.2.0.192.in-addr.arpa": {"PTR": ["mail.example.test"]},
        "timeout.example.test": TIMEOUT,
        "loop.example.test": {"TXT": ["v=spf1 include:loop.example.test -all"]},
    }
    names = ("example.test", "inc.example.test", "exp.example.test")
    for name, record in zip(names, records, strict=False):
        zone[name] = {
            "TXT": [record],
            "A": ["192.0.2.10"],
            "AAAA": ["2001:db8::10"],
            "MX": [(10, "mx.example.test")],
        }
    return zone


def _check_text(text: str) -> None:
    assert not _CONTROL.search(text), text  # header values: no CR, LF or controls


def check(data: bytes) -> None:
    records = data.split(b"\n")[:3]
    for record in records:
        text = record.decode("latin-1")
        for explanation in (False, True):
            with contextlib.suppress(spf._PermError):
                spf.parse_macro_string(text, explanation=explanation)
        if text[:6].lower() == "v=spf1":
            with contextlib.suppress(spf._PermError):
                spf.parse_record(text)
    resolver = FakeResolver(_zone(records))
    for ip in _IPS:
        result = asyncio.run(
            spf.check_host(
                resolver,
                ip,
                "example.test",
                "user@example.test",
                "helo.example.test",
                receiver="mx.example.test",
            )
        )
        assert isinstance(result.status, spf.Status)
        _check_text(result.received_spf())
        _check_text(result.auth_results())
