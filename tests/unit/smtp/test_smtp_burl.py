"""BURL (RFC 4468) in the sans-IO SMTP core: syntax, sequence, mixing with BDAT, size,
refusal ending the transaction, and the EHLO keyword; fed whole and byte by byte."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from postier.mail.replies import R220_READY, R250_QUEUED, R554_BURL_AUTH_FAILED, Reply
from postier.smtp.core import LocalProtocolError, ServerConnection, State
from postier.smtp.events import (
    DECISIONS,
    NEED_DATA,
    Burl,
    ConnectionClosed,
    DataChunk,
    DataEnd,
    DataRejected,
    DataStart,
    Event,
)
from tests.unit.smtp.test_smtp_core import (
    EHLO,
    ENVELOPE,
    ENVELOPE_EVENTS,
    HOST,
    OK,
    QUEUED,
    RCPT_OK,
    SENDER_OK,
    merge_chunks,
    r,
)

URL = "imap://a%40b.test@mx.example.test/Drafts/;UID=1;URLAUTH=submit+a%40b.test:INTERNAL:00"
FETCHED = {URL: b"Subject: x\r\n\r\nbody\r\n", URL + "1": b"more\r\n"}
BURL_EHLO = EHLO.replace(b"250 CHUNKING", b"250-CHUNKING").replace(
    b"250-ENHANCED", b"250-AUTH PLAIN\r\n250-ENHANCED"
) + r("250 BURL imap")
BURL_OK = "250 2.5.0 Waiting for additional BURL or BDAT commands"


def resolve(ev: Burl) -> bytes | Reply:
    return FETCHED.get(ev.url, R554_BURL_AUTH_FAILED)


def drive(
    data: bytes, *, bytewise: bool = False, resolver: Callable[[Burl], bytes | Reply] = resolve
) -> tuple[bytes, list[Event]]:
    conn = ServerConnection(
        hostname=HOST, burl=True, auth_mechanisms=("PLAIN",), auth_requires_tls=False
    )
    conn.greet(R220_READY(HOST))
    conn.data_to_send()
    out = bytearray()
    events: list[Event] = []
    pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for piece in [*pieces, b""]:
        conn.receive_data(piece)
        while (ev := conn.next_event()) is not NEED_DATA:
            events.append(ev)
            if isinstance(ev, Burl):
                got = resolver(ev)
                if isinstance(got, bytes):
                    conn.accept_burl(got)
                else:
                    conn.reject(got)
            elif isinstance(ev, DataEnd):
                conn.accept(R250_QUEUED("Q1"))
            elif isinstance(ev, DECISIONS):
                conn.accept()
            elif isinstance(ev, ConnectionClosed):
                break
        out += conn.data_to_send()
    return bytes(out), merge_chunks(events)


def check(data: bytes, expected: bytes) -> list[Event]:
    whole = drive(data)
    assert whole[0] == expected
    assert drive(data, bytewise=True) == whole
    return whole[1]


REPLIES = BURL_EHLO + r(SENDER_OK, RCPT_OK)


def test_burl_last() -> None:
    events = check(ENVELOPE + f"BURL {URL} LAST\r\nNOOP\r\n".encode(), REPLIES + r(QUEUED, OK))
    assert events == [
        *ENVELOPE_EVENTS,
        DataStart(chunking=True),
        Burl(URL, last=True),
        DataChunk(FETCHED[URL]),
        DataEnd(len(FETCHED[URL])),
        ConnectionClosed(),
    ]


def test_burl_mixed_with_bdat() -> None:
    """RFC 4468 §3.2: BURL and BDAT interleave until one of them says LAST."""
    data = ENVELOPE + f"BDAT 4\r\nhey\nBURL {URL}1\r\nburl {URL} last\r\n".encode()
    events = check(data, REPLIES + r("250 2.0.0 Ok: 4 bytes", BURL_OK, QUEUED))
    body = b"hey\n" + FETCHED[URL + "1"] + FETCHED[URL]
    assert events[3:] == [
        DataStart(chunking=True),
        DataChunk(b"hey\n"),
        Burl(URL + "1", last=False),
        DataChunk(FETCHED[URL + "1"]),
        Burl(URL, last=True),
        DataChunk(FETCHED[URL]),
        DataEnd(len(body)),
        ConnectionClosed(),
    ]
    check(ENVELOPE + f"BURL {URL}\r\nBDAT 2 LAST\r\nok".encode(), REPLIES + r(BURL_OK, QUEUED))


def test_burl_refused_fails_the_transaction() -> None:
    data = (
        ENVELOPE + b"BURL imap://x/y;UID=1 LAST\r\nRCPT TO:<c@d.test>\r\nMAIL FROM:<a@b.test>\r\n"
    )
    check(
        data,
        REPLIES
        + r(
            "554 5.7.0 IMAP URL authorization failed",
            "503 5.5.1 Error: need MAIL command",
            SENDER_OK,
        ),
    )


def test_burl_syntax_and_sequence() -> None:
    syntax = "501 5.5.4 Syntax: BURL imap-url [LAST]"
    check(ENVELOPE + b"BURL\r\n", REPLIES + r(syntax))
    check(ENVELOPE + b"BURL  LAST\r\n", REPLIES + r(syntax))
    check(ENVELOPE + f"BURL {URL} FIRST\r\n".encode(), REPLIES + r(syntax))
    check(ENVELOPE + f"BURL {URL} LAST x\r\n".encode(), REPLIES + r(syntax))
    check(
        b"EHLO c\r\nBURL " + URL.encode() + b"\r\n",
        BURL_EHLO + r("503 5.5.1 Error: need MAIL command"),
    )
    check(
        b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nBURL " + URL.encode() + b" LAST\r\n",
        BURL_EHLO + r(SENDER_OK, "503 5.5.1 Error: need RCPT command"),
    )


def test_burl_size_limit() -> None:
    conn = ServerConnection(hostname=HOST, burl=True, max_message_size=10)
    conn.greet(R220_READY(HOST))
    conn.receive_data(ENVELOPE + f"BURL {URL} LAST\r\n".encode())
    events = []
    while (ev := conn.next_event()) is not NEED_DATA:
        events.append(ev)
        if isinstance(ev, Burl):
            with pytest.raises(LocalProtocolError):
                conn.accept()  # a Burl is answered with its data
            conn.accept_burl(b"x" * 11)
        elif isinstance(ev, DECISIONS):
            conn.accept()
    assert events[-1] == DataRejected(Reply(554, "5.3.4", "Message too big for system"))
    assert conn.data_to_send().endswith(b"554 5.3.4 Message too big for system\r\n")
    assert conn.state is State.READY
    with pytest.raises(LocalProtocolError):
        conn.accept_burl(b"")


def ehlo_then(line: bytes, **options: object) -> bytes:
    conn = ServerConnection(hostname=HOST, **options)  # type: ignore[arg-type]
    conn.greet(R220_READY(HOST))
    conn.data_to_send()
    conn.receive_data(b"EHLO c\r\n" + line)
    while (ev := conn.next_event()) is not NEED_DATA:
        conn.accept()
        assert not isinstance(ev, Burl)
    return conn.data_to_send()


def test_burl_only_on_submission_and_advertised_with_auth() -> None:
    # the MX listener: no keyword, and BURL is an unknown command (RFC 4468 §3.1)
    out = ehlo_then(b"BURL " + URL.encode() + b" LAST\r\n")
    assert out == EHLO + r("500 5.5.2 Error: command not recognized")
    # submission before STARTTLS, AUTH not offered yet: no keyword either
    out = ehlo_then(b"", burl=True, auth_mechanisms=("PLAIN",), tls_available=True)
    assert b"BURL" not in out
    assert b"250-STARTTLS" in out
    # once AUTH is offered (TLS, or loopback): "BURL imap"
    out = ehlo_then(b"", burl=True, auth_mechanisms=("PLAIN",), tls=True)
    assert out.endswith(b"250-CHUNKING\r\n250 BURL imap\r\n")


def test_burl_last_of_nothing_is_an_empty_message() -> None:
    """As DATA and BDAT: a message of zero octets is refused (554 5.6.0)."""
    empty = {URL: b""}
    for bytewise in (False, True):
        out, events = drive(
            ENVELOPE + f"BURL {URL} LAST\r\n".encode(),
            bytewise=bytewise,
            resolver=lambda ev: empty[ev.url],
        )
        assert out.endswith(r(RCPT_OK, "554 5.6.0 Message is empty"))
        assert events[-2] == DataRejected(Reply(554, "5.6.0", "Message is empty"))
