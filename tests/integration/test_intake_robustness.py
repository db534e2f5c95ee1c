"""Everyday malformed mail through the real server: never a 4xx for a message that
can never succeed (issue 11). Surrogates in the summary; ..."""

from __future__ import annotations

import imaplib
import smtplib
from typing import Any

import pytest

from tests.integration.smtp_helpers import inbox
from tests.support.server import PASSWORD, ServerThread

# Each message once made the summary hold a lone surrogate, which SQLite refuses:
# SMTP answered 451 4.3.0 and IMAP APPEND NO [SERVERBUG], for ever.
SURROGATE_MESSAGES = [
    pytest.param(
        b'From: "\xff\xfe" <a@remote.test>\r\nTo: alice@example.test\r\nSubject: raw\r\n\r\nhi\r\n',
        {"from_": "\xff\xfe <a@remote.test>", "subject": "raw", "preview": "hi"},
        b'(NIL "raw" (({2}\r\n\xff\xfe NIL "a" "remote.test")) (({2}\r\n\xff\xfe NIL "a" '
        b'"remote.test")) (({2}\r\n\xff\xfe NIL "a" "remote.test")) '
        b'((NIL NIL "alice" "example.test")) NIL NIL NIL NIL)',
        id="raw-8bit-display-name",
    ),
    pytest.param(
        b"From: =?utf-7?q?+2D0-?= <a@remote.test>\r\nTo: alice@example.test\r\n"
        b"Subject: =?utf-7?q?+2D0-x?=\r\n\r\nhi\r\n",
        {"from_": "\ufffd <a@remote.test>", "subject": "\ufffdx", "preview": "hi"},
        b'(NIL "=?utf-7?q?+2D0-x?=" (("=?utf-7?q?+2D0-?=" NIL "a" "remote.test")) '
        b'(("=?utf-7?q?+2D0-?=" NIL "a" "remote.test")) (("=?utf-7?q?+2D0-?=" NIL "a" '
        b'"remote.test")) ((NIL NIL "alice" "example.test")) NIL NIL NIL NIL)',
        id="utf7-lone-surrogate",
    ),
    pytest.param(
        b"From: a@remote.test\r\nTo: alice@example.test\r\n"
        b"Subject: =?unicode_escape?q?=5Cud800?=\r\n"
        b"Content-Type: text/plain; charset=unicode_escape\r\n\r\n\\ud800 hi\r\n",
        {"from_": "a@remote.test", "subject": "\\ud800", "preview": "\\ud800 hi"},
        b'(NIL "=?unicode_escape?q?=5Cud800?=" ((NIL NIL "a" "remote.test")) '
        b'((NIL NIL "a" "remote.test")) ((NIL NIL "a" "remote.test")) '
        b'((NIL NIL "alice" "example.test")) NIL NIL NIL NIL)',
        id="charset-unicode-escape",
    ),
    pytest.param(
        b"From: a@remote.test\r\nTo: alice@example.test\r\nSubject: p\r\n"
        b"Content-Type: text/plain; charset=utf-7; name*=utf-7''%2B2D0-x\r\n\r\n+2D0-hi\r\n",
        {"from_": "a@remote.test", "subject": "p", "preview": "\ufffdhi"},
        b'(NIL "p" ((NIL NIL "a" "remote.test")) ((NIL NIL "a" "remote.test")) '
        b'((NIL NIL "a" "remote.test")) ((NIL NIL "alice" "example.test")) NIL NIL NIL NIL)',
        id="utf7-rfc2231-parameter-and-body",
    ),
]


def _summary(server: ServerThread, mailbox: str = "INBOX") -> Any:
    async def go() -> Any:
        user = await server.store.get_user("alice@example.test")
        mb = await server.store.get_mailbox(user.id, mailbox)
        [m] = await server.store.list_messages(mb.id)
        return m.summary

    return server.call(go())


@pytest.mark.parametrize(("message", "fields", "envelope"), SURROGATE_MESSAGES)
def test_surrogate_text_is_delivered_by_smtp(
    server: ServerThread, message: bytes, fields: dict[str, str], envelope: bytes
) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("mx")) as c:
        c.ehlo("client.remote.test")
        c.mail("a@remote.test")
        c.rcpt("alice@example.test")
        code, text = c.data(message)
    assert code == 250, text
    [stored] = inbox(server, "alice@example.test")
    assert stored.endswith(message)  # the raw octets stay in the message
    summary = _summary(server)
    assert {k: getattr(summary, k) for k in fields} == fields
    assert summary.envelope == envelope  # raw header octets: the client decodes
    with imaplib.IMAP4("127.0.0.1", server.port("imap")) as imap:
        imap.login("alice@example.test", PASSWORD)
        imap.select("INBOX")
        typ, data = imap.fetch("1", "(ENVELOPE BODYSTRUCTURE)")
    assert typ == "OK", data
    assert data[0] is not None


@pytest.mark.parametrize(("message", "fields", "envelope"), SURROGATE_MESSAGES)
def test_surrogate_text_is_stored_by_imap_append(
    server: ServerThread, message: bytes, fields: dict[str, str], envelope: bytes
) -> None:
    with imaplib.IMAP4("127.0.0.1", server.port("imap")) as imap:
        imap.login("alice@example.test", PASSWORD)
        typ, data = imap.append("Archive", None, None, message)
        assert typ == "OK", data
        imap.select("Archive")
        typ, data = imap.fetch("1", "(BODYSTRUCTURE ENVELOPE)")
        assert typ == "OK", data
    summary = _summary(server, "Archive")
    assert {k: getattr(summary, k) for k in fields} == fields
    assert summary.envelope == envelope
