"""Fuzz target ``address``: the address and header-field parsers
(postier/mail/address.py, postier/mime/address.py).

Input: any bytes; as text they are what a client put in MAIL FROM / RCPT TO / EHLO
(UTF-8, as the SMTP core decodes it), as bytes a header block.

Allowed: `Address`/`Domain` or `AddressError`; `parse_address_list` and the header
view never raise. Checked: a parsed address prints to a form that parses back to the
same address, and its domain to one that parses back to the same domain; a
non-SMTPUTF8 address is ASCII; the trace fields built from client text (Received:,
Return-Path:) are CRLF-terminated lines with no other CR or LF and no line over
998 octets (RFC 5322 §2.1.1).
"""

from __future__ import annotations

import contextlib

from postier.mail.address import Address, AddressError, Domain
from postier.mail.headers import HeaderView
from postier.mime.address import addresses, parse_address_list
from postier.smtp import headers


def _check_field(raw: bytes) -> None:
    assert raw.endswith(b"\r\n"), raw
    for line in raw[:-2].split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line, raw
        assert len(line) <= 998, len(line)


def check(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    for smtputf8 in (False, True):
        with contextlib.suppress(AddressError):
            a = Address.parse(text, smtputf8=smtputf8)
            if not smtputf8:
                assert str(a).isascii(), a
            again = Address.parse(str(a), smtputf8=True)
            assert again == a, (a, again)
            assert a.key == again.key
    with contextlib.suppress(AddressError):
        d = Domain.parse(text)
        assert Domain.parse(d.ascii) == d, d
        assert isinstance(d.unicode, str)
    for addr in parse_address_list(text):
        assert addr.host is None or isinstance(addr.addr_spec, str)
    view = HeaderView.of(data)
    assert view.body_offset <= len(data) + 2
    values: list[str] = []
    for name in ("from", "to", "cc", "subject", "received", "message-id"):
        values += view.fields(name)
        view.has(name)
    addresses(values)
    _check_field(
        headers.received(
            helo=text,
            client_ip="192.0.2.1",
            client_name=text,
            hostname="mx.example.test",
            protocol="ESMTP",
            qid="Q1",
            tls=None,
            auth_user=text,
            recipient=text,
            when=0.0,
        )
    )
    _check_field(headers.return_path(text))
