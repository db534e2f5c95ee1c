"""The SMTP server core on bytes: exact replies and events for every command and limit.

Each table scenario runs twice: its packets as given (pipelined) and one byte at a time;
both must give the same reply bytes and the same events (DataChunks merged). A
scripted adapter (`drive`) answers the decision events.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postier.mail.address import Address, Domain
from postier.mail.replies import (
    R220_READY,
    R250_QUEUED,
    R421_SHUTTING_DOWN,
    R421_TIMEOUT_EXCEEDED,
    R535_AUTH_FAILED,
    R550_NO_SUCH_USER,
    Reply,
)
from postier.smtp.core import LocalProtocolError, ServerConnection, State
from postier.smtp.events import (
    DECISIONS,
    NEED_DATA,
    Authenticate,
    ConnectionClosed,
    DataChunk,
    DataEnd,
    DataRejected,
    DataStart,
    Disconnect,
    Event,
    Hello,
    MailFrom,
    MailParams,
    Quit,
    RcptParams,
    RcptTo,
    Reset,
    StartTls,
)

HOST = "mx.example.test"
GREETING = b"220 mx.example.test ESMTP postier\r\n"


def r(*lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


EHLO = r(
    "250-mx.example.test",
    "250-PIPELINING",
    "250-SIZE 52428800",
    "250-ENHANCEDSTATUSCODES",
    "250-8BITMIME",
    "250-DSN",
    "250-SMTPUTF8",
    "250 CHUNKING",
)
OK = "250 2.0.0 Ok"
SENDER_OK = "250 2.1.0 Ok"
RCPT_OK = "250 2.1.5 Ok"
GO_AHEAD = "354 End data with <CR><LF>.<CR><LF>"
QUEUED = "250 2.0.0 Ok: queued as Q1"
BYE = "221 2.0.0 Bye"
ENVELOPE = b"EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n"
ENVELOPE_REPLIES = EHLO + r(SENDER_OK, RCPT_OK)
ENVELOPE_EVENTS: list[Event] = [
    Hello("client.test", extended=True),
    MailFrom(Address("a", Domain("b.test")), MailParams()),
    RcptTo(Address("c", Domain("d.test")), RcptParams()),
]


def policy_default(event: Event) -> Reply | None:
    """None = accept with the core's default reply."""
    if isinstance(event, RcptTo) and event.address.localpart == "nobody":
        return R550_NO_SUCH_USER(str(event.address))
    if isinstance(event, Authenticate):
        ok = event.username == "alice" and event.password == "secret"
        return None if ok else R535_AUTH_FAILED
    if isinstance(event, DataEnd):
        return R250_QUEUED("Q1")
    return None


@dataclass
class Run:
    out: bytes
    events: list[Event]
    conn: ServerConnection
    greeting: bytes = b""
    chunks: list[bytes] = field(default_factory=list)


def merge_chunks(events: list[Event]) -> list[Event]:
    """Merge adjacent DataChunks, and drop those of a rejected message: how much of
    a refused message streams out before the refusal depends on packet boundaries."""
    merged: list[Event] = []
    for ev in events:
        if isinstance(ev, DataChunk) and merged and isinstance(merged[-1], DataChunk):
            merged[-1] = DataChunk(merged[-1].data + ev.data)
        elif isinstance(ev, DataRejected) and merged and isinstance(merged[-1], DataChunk):
            merged[-1] = ev
        else:
            merged.append(ev)
    return merged


def drive(
    packets: bytes | list[bytes],
    *,
    bytewise: bool = False,
    policy: Callable[[Event], Reply | None] = policy_default,
    eof: bool = True,
    **options: Any,
) -> Run:
    """Feed ``packets`` (optionally byte by byte), answer decisions with ``policy``,
    complete STARTTLS at the end of the packet that carried it."""
    conn = ServerConnection(hostname=HOST, **options)
    conn.greet(R220_READY(HOST))
    greeting = conn.data_to_send()
    if isinstance(packets, bytes):
        packets = [packets]
    out = bytearray()
    events: list[Event] = []
    chunks: list[bytes] = []
    feeds = [*packets, b""] if eof else list(packets)
    done = False
    for packet in feeds:
        pieces = [packet[i : i + 1] for i in range(len(packet))] if bytewise else [packet]
        tls_pending = False
        for piece in pieces or [b""]:
            conn.receive_data(piece)
            while not done:
                ev = conn.next_event()
                if ev is NEED_DATA:
                    break
                events.append(ev)
                if isinstance(ev, DataChunk):
                    chunks.append(ev.data)
                if isinstance(ev, DECISIONS):
                    reply = policy(ev)
                    if reply is None or reply.is_positive:
                        conn.accept(reply)
                    else:
                        conn.reject(reply)
                elif isinstance(ev, StartTls):
                    tls_pending = True
                elif isinstance(ev, ConnectionClosed):
                    done = True
            out += conn.data_to_send()
        if tls_pending:
            conn.tls_started()
    return Run(bytes(out), merge_chunks(events), conn, greeting, chunks)


def delivered_only(events: list[Event]) -> list[Event]:
    """Drop DataChunks of messages that did not reach DataEnd (their streaming depends
    on packet boundaries; the adapter throws them away)."""
    kept: list[Event] = []
    keep = False
    for ev in reversed(events):
        if isinstance(ev, DataEnd):
            keep = True
        elif isinstance(ev, (DataRejected, ConnectionClosed, Reset, Disconnect, StartTls)):
            keep = False
        if keep or not isinstance(ev, DataChunk):
            kept.append(ev)
    return kept[::-1]


def check(
    packets: bytes | list[bytes],
    expected: bytes,
    events: list[Event] | None = None,
    **options: Any,
) -> Run:
    """Run whole and byte by byte; both must match ``expected`` (and ``events``)."""
    whole = drive(packets, **options)
    assert whole.out == expected
    single = drive(packets, bytewise=True, **options)
    assert single.out == expected
    assert single.events == whole.events
    if events is not None:
        assert whole.events == events
    return whole


def mail(msg: bytes) -> bytes:
    return ENVELOPE + b"DATA\r\n" + msg


# --- commands ------------------------------------------------------------------------

COMMANDS = [
    pytest.param(b"EHLO client.test\r\n", EHLO, id="ehlo"),
    pytest.param(b"ehlo client.test\r\n", EHLO, id="ehlo-lowercase"),
    pytest.param(b"HELO client.test\r\n", r("250 mx.example.test"), id="helo"),
    pytest.param(b"EHLO\r\n", r("501 5.5.4 Syntax: EHLO hostname"), id="ehlo-no-name"),
    pytest.param(b"HELO \r\n", r("501 5.5.4 Syntax: HELO hostname"), id="helo-no-name"),
    pytest.param(b"EHLO client.test\n", EHLO, id="bare-lf-command-accepted"),
    pytest.param(b"NOOP\r\n", r(OK), id="noop"),
    pytest.param(b"NOOP anything at all\r\n", r(OK), id="noop-args"),
    pytest.param(b"RSET\r\n", r(OK), id="rset"),
    pytest.param(b"RSET x\r\n", r("501 5.5.4 Syntax: RSET"), id="rset-args"),
    pytest.param(
        b"VRFY bob\r\n",
        r("252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery"),
        id="vrfy",
    ),
    pytest.param(b"VRFY\r\n", r("501 5.5.4 Syntax: VRFY address"), id="vrfy-no-arg"),
    pytest.param(b"EXPN list\r\n", r("502 5.5.1 Error: command not implemented"), id="expn"),
    pytest.param(b"HELP\r\n", r("214 2.0.0 See https://www.rfc-editor.org/rfc/rfc5321"), id="help"),
    pytest.param(b"QUIT\r\n", r(BYE), id="quit"),
    pytest.param(b"FOO\r\n", r("500 5.5.2 Error: command not recognized"), id="unknown"),
    pytest.param(b"\r\n", r("500 5.5.2 Error: command not recognized"), id="empty-line"),
    pytest.param(b"TURN\r\n", r("502 5.5.1 Error: command not implemented"), id="turn"),
    pytest.param(b"ETRN x\r\n", r("502 5.5.1 Error: command not implemented"), id="etrn"),
    pytest.param(b"NO\x00OP\r\n", r("500 5.5.2 Error: bad character in command"), id="nul"),
    pytest.param(b"NOOP\rX\r\n", r("500 5.5.2 Error: bad character in command"), id="bare-cr"),
    pytest.param(b"NOOP \xff\r\n", r("500 5.5.2 Error: invalid UTF-8 in command"), id="utf8"),
    pytest.param(
        b"EHLO c\r\nSTARTTLS\r\n",
        EHLO + r("502 5.5.1 Error: command not implemented"),
        id="starttls-off",
    ),
    pytest.param(b"STARTTLS\r\n", r("503 5.5.1 Error: send HELO/EHLO first"), id="starttls-first"),
    pytest.param(
        b"EHLO c\r\nAUTH PLAIN\r\n",
        EHLO + r("503 5.5.1 Error: authentication not enabled"),
        id="auth-off",
    ),
    # sequence (RFC 5321 §3.3, §4.1.4)
    pytest.param(
        b"MAIL FROM:<a@b.test>\r\n", r("503 5.5.1 Error: send HELO/EHLO first"), id="mail-first"
    ),
    pytest.param(
        b"RCPT TO:<a@b.test>\r\n", r("503 5.5.1 Error: send HELO/EHLO first"), id="rcpt-first"
    ),
    pytest.param(b"DATA\r\n", r("503 5.5.1 Error: send HELO/EHLO first"), id="data-first"),
    pytest.param(
        b"HELO c\r\nRCPT TO:<a@b.test>\r\n",
        r("250 mx.example.test", "503 5.5.1 Error: need MAIL command"),
        id="rcpt-no-mail",
    ),
    pytest.param(
        b"HELO c\r\nDATA\r\n",
        r("250 mx.example.test", "503 5.5.1 Error: need MAIL command"),
        id="data-no-mail",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nDATA\r\n",
        r("250 mx.example.test", SENDER_OK, "503 5.5.1 Error: need RCPT command"),
        id="data-no-rcpt",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\nDATA\r\n",
        r(
            "250 mx.example.test",
            SENDER_OK,
            "550 5.1.1 <nobody@d.test>: Recipient address rejected: User unknown",
            "554 5.5.1 Error: no valid recipients",
        ),
        id="data-all-rcpt-rejected",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nMAIL FROM:<a@b.test>\r\n",
        r("250 mx.example.test", SENDER_OK, "503 5.5.1 Error: nested MAIL command"),
        id="nested-mail",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRSET\r\nMAIL FROM:<a@b.test>\r\n",
        r("250 mx.example.test", SENDER_OK, OK, SENDER_OK),
        id="rset-ends-transaction",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nHELO c\r\nMAIL FROM:<a@b.test>\r\n",
        r("250 mx.example.test", SENDER_OK, "250 mx.example.test", SENDER_OK),
        id="helo-ends-transaction",
    ),
    # MAIL / RCPT syntax
    pytest.param(
        b"HELO c\r\nMAIL TO:<a@b.test>\r\n",
        r("250 mx.example.test", "501 5.5.4 Syntax: MAIL FROM:<address>"),
        id="mail-to",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:a@b.test\r\n",
        r("250 mx.example.test", "501 5.5.4 Syntax: MAIL FROM:<address>"),
        id="mail-no-brackets",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test\r\n",
        r("250 mx.example.test", "501 5.5.4 Syntax: MAIL FROM:<address>"),
        id="mail-unclosed",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test>SIZE=1\r\n",
        r("250 mx.example.test", "501 5.5.4 Syntax: MAIL FROM:<address>"),
        id="mail-no-space",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM: <a@b.test>\r\n",
        r("250 mx.example.test", SENDER_OK),
        id="mail-space-lenient",
    ),
    pytest.param(
        b"HELO c\r\nmail from:<a@b.test>\r\n",
        r("250 mx.example.test", SENDER_OK),
        id="mail-lowercase",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<>\r\n", r("250 mx.example.test", SENDER_OK), id="null-sender"
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a..b@c.test>\r\n",
        r("250 mx.example.test", "501 5.1.7 Bad sender address syntax"),
        id="bad-sender",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@-b.test>\r\n",
        r("250 mx.example.test", "501 5.1.7 Bad sender address syntax"),
        id="bad-sender-domain",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<@x.test:a@b.test>\r\n",
        r("250 mx.example.test", SENDER_OK),
        id="source-route",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<@x.test,a@b.test>\r\n",
        r("250 mx.example.test", "501 5.1.7 Bad sender address syntax"),
        id="bad-source-route",
    ),
    pytest.param(
        b'HELO c\r\nMAIL FROM:<"a>b"@c.test>\r\n',
        r("250 mx.example.test", SENDER_OK),
        id="quoted-gt",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<>\r\n",
        r("250 mx.example.test", SENDER_OK, "501 5.1.3 Bad recipient address syntax"),
        id="rcpt-null",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c d@e.test>\r\n",
        r("250 mx.example.test", SENDER_OK, "501 5.1.3 Bad recipient address syntax"),
        id="rcpt-bad",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:c@d.test\r\n",
        r("250 mx.example.test", SENDER_OK, "501 5.5.4 Syntax: RCPT TO:<address>"),
        id="rcpt-no-brackets",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<Postmaster>\r\n",
        r("250 mx.example.test", SENDER_OK, RCPT_OK),
        id="rcpt-postmaster",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\n",
        r(
            "250 mx.example.test",
            SENDER_OK,
            "550 5.1.1 <nobody@d.test>: Recipient address rejected: User unknown",
        ),
        id="rcpt-rejected",
    ),
    # MAIL parameters
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test> SIZE=52428801\r\n",
        r("250 mx.example.test", "552 5.3.4 Message size exceeds fixed maximum message size"),
        id="size-too-big",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test> SIZE=52428800\r\n",
        r("250 mx.example.test", SENDER_OK),
        id="size-at-limit",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test> SIZE=x\r\n",
        r("250 mx.example.test", "501 5.5.4 Bad SIZE parameter"),
        id="size-bad",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test> SIZE\r\n",
        r("250 mx.example.test", "501 5.5.4 Bad SIZE parameter"),
        id="size-empty",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test> SIZE=1 SIZE=1\r\n",
        r("250 mx.example.test", "501 5.5.4 Bad SIZE parameter"),
        id="size-twice",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test> BODY=8bitmime\r\n",
        r("250 mx.example.test", SENDER_OK),
        id="body-8bit",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test> BODY=BINARYMIME\r\n",
        r("250 mx.example.test", "501 5.5.4 Bad BODY parameter"),
        id="body-binary-off",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test> BODY=9BIT\r\n",
        r("250 mx.example.test", "501 5.5.4 Bad BODY parameter"),
        id="body-bad",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test> XFOO=1\r\n",
        r("250 mx.example.test", "555 5.5.4 Unsupported option: XFOO"),
        id="unknown-param",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test> =1\r\n",
        r("250 mx.example.test", "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]"),
        id="param-syntax",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test> AUTH=<>\r\n",
        r("250 mx.example.test", "555 5.5.4 Unsupported option: AUTH"),
        id="auth-param-without-auth",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test> RET=ALL\r\n",
        r("250 mx.example.test", "501 5.5.4 Bad RET parameter"),
        id="ret-bad",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test> ENVID=a+2\r\n",
        r("250 mx.example.test", "501 5.5.4 Bad ENVID parameter"),
        id="envid-bad-xtext",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test> SMTPUTF8=yes\r\n",
        r("250 mx.example.test", "501 5.5.4 Bad SMTPUTF8 parameter"),
        id="smtputf8-value",
    ),
    pytest.param(
        "HELO c\r\nMAIL FROM:<jos\u00e9@b.test>\r\n".encode(),
        r("250 mx.example.test", "553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter"),
        id="utf8-without-smtputf8",
    ),
    pytest.param(
        "HELO c\r\nMAIL FROM:<jos\u00e9@b.test> SMTPUTF8\r\n".encode(),
        r("250 mx.example.test", SENDER_OK),
        id="utf8-with-smtputf8",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test> NOTIFY=NEVER,DELAY\r\n",
        r("250 mx.example.test", SENDER_OK, "501 5.5.4 Bad NOTIFY parameter"),
        id="notify-never-plus",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test> NOTIFY=SOMETIMES\r\n",
        r("250 mx.example.test", SENDER_OK, "501 5.5.4 Bad NOTIFY parameter"),
        id="notify-bad",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test> ORCPT=rfc822\r\n",
        r("250 mx.example.test", SENDER_OK, "501 5.5.4 Bad ORCPT parameter"),
        id="orcpt-bad",
    ),
    pytest.param(
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test> FOO\r\n",
        r("250 mx.example.test", SENDER_OK, "555 5.5.4 Unsupported option: FOO"),
        id="rcpt-unknown-param",
    ),
]


@pytest.mark.parametrize(("data", "expected"), COMMANDS)
def test_command_replies(data: bytes, expected: bytes) -> None:
    check(data, expected)


def test_greeting_and_state() -> None:
    run = drive(b"")
    assert run.greeting == GREETING
    assert run.events == [ConnectionClosed()]
    assert run.conn.is_closed


def test_mail_events_carry_parsed_parameters() -> None:
    data = (
        b"EHLO c\r\nMAIL FROM:<@r1.test,@r2.test:a@b.test> SIZE=10 BODY=8BITMIME RET=HDRS"
        b" ENVID=id+2B1\r\nRCPT TO:<c@d.test> NOTIFY=success,failure"
        b" ORCPT=rfc822;c+40d.test\r\nRCPT TO:<postmaster>\r\n"
    )
    run = check(data, EHLO + r(SENDER_OK, RCPT_OK, RCPT_OK))
    assert run.events == [
        Hello("c", extended=True),
        MailFrom(
            Address("a", Domain("b.test")),
            MailParams(size=10, body="8BITMIME", ret="HDRS", envid="id+1"),
        ),
        RcptTo(
            Address("c", Domain("d.test")),
            RcptParams(notify=("SUCCESS", "FAILURE"), orcpt=("rfc822", "c@d.test")),
        ),
        RcptTo(Address("postmaster", Domain(HOST)), RcptParams()),
        ConnectionClosed(),
    ]


def test_null_sender_and_smtputf8_events() -> None:
    data = "EHLO c\r\nMAIL FROM:<> SMTPUTF8\r\nRCPT TO:<j\u00f6rg@b\u00fccher.test>\r\n".encode()
    run = check(data, EHLO + r(SENDER_OK, RCPT_OK))
    assert run.events[1] == MailFrom(None, MailParams(smtputf8=True))
    assert run.events[2] == RcptTo(Address("j\u00f6rg", Domain("xn--bcher-kva.test")), RcptParams())


def test_ehlo_inside_transaction_resets_first() -> None:
    run = check(
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nEHLO c\r\n",
        r("250 mx.example.test", SENDER_OK) + EHLO,
    )
    assert [type(e) for e in run.events] == [Hello, MailFrom, Reset, Hello, ConnectionClosed]
    assert run.conn.state is State.CLOSED


def test_rejected_ehlo_keeps_state() -> None:
    def policy(ev: Event) -> Reply | None:
        if isinstance(ev, Hello) and ev.name == "bad":
            return Reply(550, "5.7.1", "Go away")
        return None

    check(
        b"EHLO bad\r\nMAIL FROM:<a@b.test>\r\nHELO good\r\nMAIL FROM:<a@b.test>\r\n",
        r(
            "550 5.7.1 Go away",
            "503 5.5.1 Error: send HELO/EHLO first",
            "250 mx.example.test",
            SENDER_OK,
        ),
        policy=policy,
    )


def test_quit_ends_session() -> None:
    run = check(b"HELO c\r\nQUIT\r\nNOOP\r\n", r("250 mx.example.test", BYE))
    assert run.events == [Hello("c", extended=False), Quit(), ConnectionClosed()]


def test_pipelining_answers_in_order_in_one_write() -> None:
    data = ENVELOPE + b"RCPT TO:<nobody@d.test>\r\nRCPT TO:<e@d.test>\r\nDATA\r\n"
    conn = ServerConnection(hostname=HOST)
    conn.greet(R220_READY(HOST))
    conn.data_to_send()
    conn.receive_data(data)
    seen = []
    while (ev := conn.next_event()) is not NEED_DATA:
        seen.append(type(ev))
        if isinstance(ev, DECISIONS):
            reply = policy_default(ev)
            conn.accept() if reply is None else conn.reject(reply)
    assert seen == [Hello, MailFrom, RcptTo, RcptTo, RcptTo, DataStart]
    assert conn.data_to_send() == ENVELOPE_REPLIES + r(
        "550 5.1.1 <nobody@d.test>: Recipient address rejected: User unknown",
        RCPT_OK,
        GO_AHEAD,
    )


def test_decision_must_be_answered() -> None:
    conn = ServerConnection(hostname=HOST)
    conn.greet(R220_READY(HOST))
    conn.receive_data(b"EHLO c\r\nNOOP\r\n")
    assert isinstance(conn.next_event(), Hello)
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.accept(Reply(550, "5.0.0", "no"))
    with pytest.raises(LocalProtocolError):
        conn.reject(Reply(250, "2.0.0", "yes"))
    conn.accept()
    assert conn.next_event() is NEED_DATA
    with pytest.raises(LocalProtocolError):
        conn.accept()
    assert conn.data_to_send().endswith(r(OK))


def test_reject_with_421_closes() -> None:
    def policy(ev: Event) -> Reply | None:
        if isinstance(ev, MailFrom):
            return Reply(421, "4.3.2", "Shutting down")
        return None

    run = check(
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nNOOP\r\n",
        r("250 mx.example.test", "421 4.3.2 Shutting down"),
        policy=policy,
    )
    assert run.events[-2:] == [
        Disconnect(Reply(421, "4.3.2", "Shutting down")),
        ConnectionClosed(),
    ]


def test_abort_sends_reply_and_closes() -> None:
    conn = ServerConnection(hostname=HOST)
    conn.greet(R220_READY(HOST))
    conn.data_to_send()
    conn.receive_data(b"MAIL FROM:<a@b.test>\r\n")
    conn.abort(R421_TIMEOUT_EXCEEDED(HOST))
    assert conn.data_to_send() == r(f"421 4.4.2 {HOST} Error: timeout exceeded")
    assert conn.next_event() == ConnectionClosed()


def test_constructor_validates_limits() -> None:
    with pytest.raises(ValueError, match="512"):
        ServerConnection(hostname=HOST, max_line_length=100)
    with pytest.raises(ValueError, match="SASL"):
        ServerConnection(hostname=HOST, auth_mechanisms=("CRAM-MD5",))
    with pytest.raises(ValueError, match="bare_lf"):
        ServerConnection(hostname=HOST, bare_lf="keep")  # type: ignore[arg-type]


# --- greeting ------------------------------------------------------------------------


def test_early_talker_gets_554_and_disconnect() -> None:
    conn = ServerConnection(hostname=HOST)
    conn.receive_data(b"EHLO spam\r\n")
    assert conn.early_talker
    assert conn.next_event() is NEED_DATA
    conn.greet(R220_READY(HOST))
    assert conn.data_to_send() == r("554 5.5.0 Error: SMTP protocol synchronization")
    assert conn.next_event() == Disconnect(
        Reply(554, "5.5.0", "Error: SMTP protocol synchronization")
    )
    assert conn.next_event() == ConnectionClosed()


def test_no_service_greeting_allows_only_quit() -> None:
    conn = ServerConnection(hostname=HOST)
    conn.greet(Reply(554, "5.3.2", "No SMTP service here"))
    conn.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nQUIT\r\n")
    assert conn.next_event() == Quit()
    assert conn.data_to_send() == r(
        "554 5.3.2 No SMTP service here",
        "503 5.5.1 Error: no SMTP service here, send QUIT",
        "503 5.5.1 Error: no SMTP service here, send QUIT",
        BYE,
    )


def test_greeting_421_closes() -> None:
    conn = ServerConnection(hostname=HOST)
    conn.greet(R421_SHUTTING_DOWN)
    assert conn.is_closed
    with pytest.raises(LocalProtocolError):
        conn.greet(R220_READY(HOST))


# --- DATA ----------------------------------------------------------------------------

DATA_CASES = [
    pytest.param(b"Subject: hi\r\n\r\nbody\r\n.\r\n", b"Subject: hi\r\n\r\nbody\r\n", id="simple"),
    pytest.param(b"a\r\n..b\r\n.\r\n", b"a\r\n.b\r\n", id="dot-stuffed"),
    pytest.param(b"..\r\n.\r\n", b".\r\n", id="dot-stuffed-first-line"),
    pytest.param(b"a\r\n...\r\n.\r\n", b"a\r\n..\r\n", id="two-dots"),
    pytest.param(b"a\r\n.b\r\n.\r\n", b"a\r\nb\r\n", id="lone-leading-dot-dropped"),
    pytest.param(b"a.\r\n.\r\n", b"a.\r\n", id="dot-not-leading"),
    pytest.param(b"a\r\n\r\n.\r\n", b"a\r\n\r\n", id="empty-line-before-end"),
    pytest.param(b"no newline at end\r\n.\r\n", b"no newline at end\r\n", id="last-line"),
]


@pytest.mark.parametrize(("msg", "content"), DATA_CASES)
def test_data_unstuffing(msg: bytes, content: bytes) -> None:
    run = check(mail(msg) + b"NOOP\r\n", ENVELOPE_REPLIES + r(GO_AHEAD, QUEUED, OK))
    assert run.events == [
        *ENVELOPE_EVENTS,
        DataStart(chunking=False),
        *([DataChunk(content)] if content else []),
        DataEnd(len(content)),
        ConnectionClosed(),
    ]
    assert b"".join(run.chunks) == content


EMPTY = "554 5.6.0 Message is empty"


def test_empty_data_is_refused_and_ends_transaction() -> None:
    check(
        mail(b".\r\n") + b"RCPT TO:<c@d.test>\r\nNOOP\r\n",
        ENVELOPE_REPLIES + r(GO_AHEAD, EMPTY, "503 5.5.1 Error: need MAIL command", OK),
        events=[
            *ENVELOPE_EVENTS,
            DataStart(chunking=False),
            DataRejected(Reply(554, "5.6.0", "Message is empty")),
            ConnectionClosed(),
        ],
    )


def test_empty_line_is_not_an_empty_message() -> None:
    run = check(mail(b"\r\n.\r\n"), ENVELOPE_REPLIES + r(GO_AHEAD, QUEUED))
    assert run.events[-2] == DataEnd(2)


def test_bdat_zero_last_alone_is_refused() -> None:
    check(
        ENVELOPE + b"BDAT 0 LAST\r\nMAIL FROM:<a@b.test>\r\n",
        ENVELOPE_REPLIES + r(EMPTY, SENDER_OK),
        events=[
            *ENVELOPE_EVENTS,
            DataStart(chunking=True),
            DataRejected(Reply(554, "5.6.0", "Message is empty")),
            MailFrom(Address("a", Domain("b.test")), MailParams()),
            ConnectionClosed(),
        ],
    )
    # zero-sized chunks before the last one add up to nothing either
    check(
        ENVELOPE + b"BDAT 0\r\nBDAT 0 LAST\r\n",
        ENVELOPE_REPLIES + r("250 2.0.0 Ok: 0 bytes", EMPTY),
    )


def test_data_then_second_transaction() -> None:
    data = (
        mail(b"one\r\n.\r\n")
        + b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\ntwo\r\n.\r\n"
    )
    run = check(data, ENVELOPE_REPLIES + r(GO_AHEAD, QUEUED, SENDER_OK, RCPT_OK, GO_AHEAD, QUEUED))
    assert [e.data for e in run.events if isinstance(e, DataChunk)] == [b"one\r\n", b"two\r\n"]


def test_data_with_args_is_syntax_error() -> None:
    check(ENVELOPE + b"DATA x\r\n", ENVELOPE_REPLIES + r("501 5.5.4 Syntax: DATA"))


def test_data_rejected_by_policy_ends_transaction() -> None:
    def policy(ev: Event) -> Reply | None:
        if isinstance(ev, DataEnd):
            return Reply(554, "5.7.1", "Spam")
        return None

    check(
        mail(b"x\r\n.\r\n") + b"RCPT TO:<c@d.test>\r\n",
        ENVELOPE_REPLIES + r(GO_AHEAD, "554 5.7.1 Spam", "503 5.5.1 Error: need MAIL command"),
        policy=policy,
    )


def test_large_message_is_not_split_per_line() -> None:
    body = b"".join(b"line %05d of a message body, some text\r\n" % i for i in range(1300))
    assert len(body) > 50_000
    conn_run = drive(mail(body + b".\r\n"))
    chunks = [e for e in conn_run.events if isinstance(e, DataChunk)]
    assert chunks == [DataChunk(body)]
    assert conn_run.out.endswith(r(QUEUED))


def test_data_across_packets_with_split_terminator() -> None:
    packets = [mail(b"abc\r"), b"\n.", b"\r", b"\n"]
    run = check(packets, ENVELOPE_REPLIES + r(GO_AHEAD, QUEUED))
    assert b"".join(run.chunks) == b"abc\r\n"


def test_eof_inside_data() -> None:
    run = check(mail(b"partial\r\n"), ENVELOPE_REPLIES + r(GO_AHEAD))
    assert run.events[-2:] == [DataChunk(b"partial\r\n"), ConnectionClosed()]


# RFC 5321 §2.3.8, aiosmtpd test_smtpsmuggling: none of these ends the data.
SMUGGLING = [
    pytest.param(b"\n.\n", id="LF.LF"),
    pytest.param(b"\r.\n", id="CR.LF"),
    pytest.param(b"\n.\r\n", id="LF.CRLF"),
    pytest.param(b"\r\n.\n", id="CRLF.LF"),
    pytest.param(b"\r.\r\n", id="CR.CRLF"),
    pytest.param(b"\r\n.\r", id="CRLF.CR"),
    pytest.param(b"\n.\r", id="LF.CR"),
]


@pytest.mark.parametrize("seq", SMUGGLING)
def test_smuggling_sequence_never_ends_data(seq: bytes) -> None:
    smuggled = b"MAIL FROM:<admin@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nsmuggled\r\n"
    data = mail(b"first" + seq + smuggled + b".\r\n") + b"NOOP\r\n"
    run = check(
        data,
        ENVELOPE_REPLIES
        + r(
            GO_AHEAD,
            "554 5.5.2 Message contains bare LF/CR, rejected (see RFC 5321 section 2.3.8)",
            OK,
        ),
    )
    assert [type(e) for e in run.events] == [
        Hello, MailFrom, RcptTo, DataStart, DataRejected, ConnectionClosed,
    ]  # fmt: skip


@pytest.mark.parametrize("seq", SMUGGLING)
def test_smuggling_sequence_normalized_stays_in_message(seq: bytes) -> None:
    smuggled = b"MAIL FROM:<admin@b.test>\r\n"
    data = mail(b"first" + seq + smuggled + b".\r\n")
    run = check(data, ENVELOPE_REPLIES + r(GO_AHEAD, QUEUED), bare_lf="normalize")
    content = b"".join(run.chunks)
    assert content.endswith(smuggled)
    assert content.count(b"\r") == content.count(b"\n") == content.count(b"\r\n")
    assert sum(isinstance(e, MailFrom) for e in run.events) == 1


BARE = [
    pytest.param(b"a\nb\r\n.\r\n", b"a\r\nb\r\n", id="bare-lf"),
    pytest.param(b"a\rb\r\n.\r\n", b"a\r\nb\r\n", id="bare-cr"),
    pytest.param(b"a\r\r\n.\r\n", b"a\r\n\r\n", id="cr-crlf"),
    pytest.param(b"\n.\r\nx\r\n.\r\n", b"\r\n.\r\nx\r\n", id="lf-dot-crlf-at-start"),
    pytest.param(b"x\r\n.\ny\r\n.\r\n", b"x\r\n\r\ny\r\n", id="crlf-dot-lf"),
]
BARE_REPLY = "554 5.5.2 Message contains bare LF/CR, rejected (see RFC 5321 section 2.3.8)"


@pytest.mark.parametrize(("msg", "normalized"), BARE)
def test_bare_lf_reject_and_normalize(msg: bytes, normalized: bytes) -> None:
    run = check(mail(msg), ENVELOPE_REPLIES + r(GO_AHEAD, BARE_REPLY))
    assert run.events[-2] == DataRejected(Reply(554, "5.5.2", BARE_REPLY[10:]))
    norm = check(mail(msg), ENVELOPE_REPLIES + r(GO_AHEAD, QUEUED), bare_lf="normalize")
    assert b"".join(norm.chunks) == normalized
    assert norm.events[-2] == DataEnd(len(normalized))


def test_bare_lf_rejection_keeps_session_usable() -> None:
    data = (
        mail(b"a\nb\r\n.\r\n")
        + b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nok\r\n.\r\n"
    )
    check(
        data,
        ENVELOPE_REPLIES
        + r(
            GO_AHEAD,
            "554 5.5.2 Message contains bare LF/CR, rejected (see RFC 5321 section 2.3.8)",
            SENDER_OK,
            RCPT_OK,
            GO_AHEAD,
            QUEUED,
        ),
    )


# --- BDAT (RFC 3030) ---------------------------------------------------------------------


def test_bdat_chunks_and_last() -> None:
    data = ENVELOPE + b"BDAT 5\r\nHel\r\nBDAT 7 LAST\r\nlo.\r\n\r\nNOOP\r\n"
    run = check(data, ENVELOPE_REPLIES + r("250 2.0.0 Ok: 5 bytes", QUEUED, OK))
    assert run.events == [
        *ENVELOPE_EVENTS,
        DataStart(chunking=True),
        DataChunk(b"Hel\r\nlo.\r\n\r\n"),
        DataEnd(12),
        ConnectionClosed(),
    ]


def test_bdat_zero_last_and_raw_bytes() -> None:
    raw = b"a\nb\r.\r\n\x00"
    data = ENVELOPE + b"BDAT %d\r\n" % len(raw) + raw + b"BDAT 0 LAST\r\n"
    run = check(data, ENVELOPE_REPLIES + r(f"250 2.0.0 Ok: {len(raw)} bytes", QUEUED))
    assert b"".join(run.chunks) == raw
    assert run.events[-2] == DataEnd(len(raw))


def test_bdat_lowercase_last() -> None:
    check(ENVELOPE + b"bdat 2 last\r\nhi", ENVELOPE_REPLIES + r(QUEUED))


def test_bdat_out_of_sequence_consumes_chunk() -> None:
    check(
        b"EHLO c\r\nBDAT 6\r\nNOOP\r\nNOOP\r\n",
        EHLO + r("503 5.5.1 Error: need MAIL command", OK),
    )
    check(
        b"BDAT 4 LAST\r\nQUIT",
        r("503 5.5.1 Error: send HELO/EHLO first"),
    )


def test_bdat_then_data_refused() -> None:
    check(
        ENVELOPE + b"BDAT 1\r\nxDATA\r\nRSET\r\nMAIL FROM:<a@b.test>\r\n",
        ENVELOPE_REPLIES
        + r("250 2.0.0 Ok: 1 bytes", "503 5.5.1 Error: BDAT transfer in progress", OK, SENDER_OK),
    )


def test_bdat_syntax_and_disabled() -> None:
    check(ENVELOPE + b"BDAT x\r\n", ENVELOPE_REPLIES + r("501 5.5.4 Syntax: BDAT size [LAST]"))
    check(
        ENVELOPE + b"BDAT 1 FIRST\r\n", ENVELOPE_REPLIES + r("501 5.5.4 Syntax: BDAT size [LAST]")
    )
    check(
        b"EHLO c\r\nBDAT 1\r\n",
        EHLO.replace(b"250-SMTPUTF8", b"250 SMTPUTF8").replace(b"250 CHUNKING\r\n", b"")
        + r("502 5.5.1 Error: command not implemented"),
        chunking=False,
    )


def test_bdat_size_limit_discards_and_ends_transaction() -> None:
    data = ENVELOPE + b"BDAT 6\r\n123456BDAT 5 LAST\r\n12345RCPT TO:<c@d.test>\r\n"
    run = check(
        data,
        ENVELOPE_REPLIES.replace(b"SIZE 52428800", b"SIZE 10")
        + r(
            "250 2.0.0 Ok: 6 bytes",
            "552 5.3.4 Message size exceeds fixed maximum message size",
            "503 5.5.1 Error: need MAIL command",
        ),
        max_message_size=10,
    )
    assert b"".join(run.chunks) == b"123456"
    assert (
        DataRejected(Reply(552, "5.3.4", "Message size exceeds fixed maximum message size"))
        in run.events
    )


def test_bdat_binarymime() -> None:
    ehlo = EHLO.replace(b"250 CHUNKING", b"250-CHUNKING") + r("250 BINARYMIME")
    prefix = b"EHLO c\r\nMAIL FROM:<a@b.test> BODY=BINARYMIME\r\nRCPT TO:<c@d.test>\r\n"
    check(
        prefix + b"DATA\r\nBDAT 1 LAST\r\n\xff",
        ehlo + r(SENDER_OK, RCPT_OK, "503 5.5.1 Error: BINARYMIME requires BDAT", QUEUED),
        binarymime=True,
    )


# --- AUTH (RFC 4954) ---------------------------------------------------------------------

PLAIN_OK = base64.b64encode(b"\x00alice\x00secret")
PLAIN_BAD = base64.b64encode(b"\x00alice\x00wrong")
AUTH_OPTS: dict[str, Any] = {"tls": True, "auth_mechanisms": ("PLAIN", "LOGIN")}
EHLO_AUTH = r(
    "250-mx.example.test",
    "250-PIPELINING",
    "250-SIZE 52428800",
    "250-AUTH PLAIN LOGIN",
    "250-ENHANCEDSTATUSCODES",
    "250-8BITMIME",
    "250-DSN",
    "250-SMTPUTF8",
    "250 CHUNKING",
)
AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_FAILED = "535 5.7.8 Authentication credentials invalid"

AUTH_CASES = [
    pytest.param(b"AUTH PLAIN " + PLAIN_OK + b"\r\n", r(AUTH_OK), id="plain-ir"),
    pytest.param(b"AUTH plain " + PLAIN_OK + b"\r\n", r(AUTH_OK), id="plain-ir-lowercase"),
    pytest.param(b"AUTH PLAIN " + PLAIN_BAD + b"\r\n", r(AUTH_FAILED), id="plain-ir-bad"),
    pytest.param(b"AUTH PLAIN\r\n" + PLAIN_OK + b"\r\n", r("334 ", AUTH_OK), id="plain-334"),
    pytest.param(
        b"AUTH PLAIN\r\n*\r\n", r("334 ", "501 5.0.0 Authentication cancelled"), id="plain-cancel"
    ),
    pytest.param(
        b"AUTH PLAIN\r\n!!!\r\n", r("334 ", "501 5.5.2 Cannot decode response"), id="plain-not-b64"
    ),
    pytest.param(b"AUTH PLAIN =\r\n", r("501 5.5.2 Cannot decode response"), id="plain-empty"),
    pytest.param(
        b"AUTH PLAIN " + base64.b64encode(b"alice\x00secret") + b"\r\n",
        r("501 5.5.2 Cannot decode response"),
        id="plain-two-fields",
    ),
    pytest.param(
        b"AUTH LOGIN\r\n"
        + base64.b64encode(b"alice")
        + b"\r\n"
        + base64.b64encode(b"secret")
        + b"\r\n",
        r("334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", AUTH_OK),
        id="login",
    ),
    pytest.param(
        b"AUTH LOGIN "
        + base64.b64encode(b"alice")
        + b"\r\n"
        + base64.b64encode(b"secret")
        + b"\r\n",
        r("334 UGFzc3dvcmQ6", AUTH_OK),
        id="login-ir",
    ),
    pytest.param(
        b"AUTH LOGIN\r\n" + base64.b64encode(b"alice") + b"\r\n*\r\n",
        r("334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "501 5.0.0 Authentication cancelled"),
        id="login-cancel",
    ),
    pytest.param(
        b"AUTH CRAM-MD5\r\n", r("504 5.5.4 Unrecognized authentication type"), id="unknown-mech"
    ),
    pytest.param(
        b"AUTH\r\n", r("501 5.5.4 Syntax: AUTH mechanism [initial-response]"), id="no-mech"
    ),
    pytest.param(
        b"AUTH PLAIN a b\r\n",
        r("501 5.5.4 Syntax: AUTH mechanism [initial-response]"),
        id="too-many-args",
    ),
    pytest.param(
        b"AUTH PLAIN " + PLAIN_OK + b"\r\nAUTH PLAIN " + PLAIN_OK + b"\r\n",
        r(AUTH_OK, "503 5.5.1 Error: already authenticated"),
        id="twice",
    ),
    pytest.param(
        b"AUTH PLAIN " + PLAIN_BAD + b"\r\nAUTH PLAIN " + PLAIN_OK + b"\r\n",
        r(AUTH_FAILED, AUTH_OK),
        id="retry-after-failure",
    ),
    pytest.param(
        b"MAIL FROM:<a@b.test>\r\nAUTH PLAIN " + PLAIN_OK + b"\r\n",
        r(SENDER_OK, "503 5.5.1 Error: MAIL transaction in progress"),
        id="in-transaction",
    ),
    pytest.param(
        b"AUTH PLAIN " + PLAIN_OK + b"\r\nMAIL FROM:<a@b.test> AUTH=a+40b.test\r\n",
        r(AUTH_OK, SENDER_OK),
        id="mail-auth-param",
    ),
]


@pytest.mark.parametrize(("data", "expected"), AUTH_CASES)
def test_auth(data: bytes, expected: bytes) -> None:
    check(b"EHLO client.test\r\n" + data, EHLO_AUTH + expected, **AUTH_OPTS)


def test_auth_event_and_state() -> None:
    run = check(
        b"EHLO client.test\r\nAUTH PLAIN "
        + base64.b64encode(b"admin\x00alice\x00secret")
        + b"\r\n",
        EHLO_AUTH + r(AUTH_OK),
        **AUTH_OPTS,
    )
    assert run.events[1] == Authenticate("PLAIN", "admin", "alice", "secret")
    assert "secret" not in repr(run.events[1])
    assert run.conn.is_authenticated


def test_auth_before_ehlo_and_without_tls() -> None:
    check(b"AUTH PLAIN\r\n", r("503 5.5.1 Error: send HELO/EHLO first"), **AUTH_OPTS)
    opts: dict[str, Any] = {"auth_mechanisms": ("PLAIN",), "tls_available": True}
    ehlo = EHLO.replace(b"250-SIZE 52428800\r\n", b"250-SIZE 52428800\r\n250-STARTTLS\r\n")
    check(
        b"EHLO client.test\r\nAUTH PLAIN\r\n",
        ehlo + r("538 5.7.11 Encryption required for requested authentication mechanism"),
        **opts,
    )
    cleartext_ok = EHLO.replace(
        b"250-SIZE 52428800\r\n", b"250-SIZE 52428800\r\n250-AUTH PLAIN\r\n"
    )
    check(
        b"EHLO client.test\r\nAUTH PLAIN " + PLAIN_OK + b"\r\n",
        cleartext_ok + r(AUTH_OK),
        auth_mechanisms=("PLAIN",),
        auth_requires_tls=False,
    )


def test_auth_line_may_exceed_command_limit() -> None:
    long_ir = base64.b64encode(b"\x00alice\x00" + b"p" * 3000)
    check(
        b"EHLO client.test\r\nAUTH PLAIN " + long_ir + b"\r\n",
        EHLO_AUTH + r(AUTH_FAILED),
        max_line_length=512,
        **AUTH_OPTS,
    )
    check(
        b"EHLO client.test\r\nAUTH PLAIN\r\n" + b"A" * 13000 + b"\r\nNOOP\r\n",
        EHLO_AUTH + r("334 ", "500 5.5.2 Line too long", OK),
        **AUTH_OPTS,
    )


# --- STARTTLS (RFC 3207) -----------------------------------------------------------------

EHLO_TLS = EHLO.replace(b"250-SIZE 52428800\r\n", b"250-SIZE 52428800\r\n250-STARTTLS\r\n")


def test_starttls_drops_injected_plaintext() -> None:
    packets = [
        b"EHLO client.test\r\nSTARTTLS\r\nMAIL FROM:<evil@b.test>\r\nRCPT TO:<c@d.test>\r\n",
        b"EHLO client.test\r\n",
    ]
    run = check(
        packets,
        EHLO_TLS + r("220 2.0.0 Ready to start TLS") + EHLO,
        tls_available=True,
    )
    assert run.events == [
        Hello("client.test", extended=True),
        StartTls(),
        Hello("client.test", extended=True),
        ConnectionClosed(),
    ]
    assert run.conn.has_tls


def test_starttls_requires_ehlo_again_and_resets_auth() -> None:
    packets = [b"EHLO client.test\r\nSTARTTLS\r\n", b"MAIL FROM:<a@b.test>\r\nSTARTTLS\r\n"]
    check(
        packets,
        EHLO_TLS
        + r(
            "220 2.0.0 Ready to start TLS",
            "503 5.5.1 Error: send HELO/EHLO first",
            "503 5.5.1 Error: send HELO/EHLO first",
        ),
        tls_available=True,
    )


def test_starttls_errors() -> None:
    check(
        b"EHLO client.test\r\nSTARTTLS now\r\nMAIL FROM:<a@b.test>\r\nSTARTTLS\r\n",
        EHLO_TLS
        + r(
            "501 5.5.4 Syntax: STARTTLS",
            SENDER_OK,
            "503 5.5.1 Error: MAIL transaction in progress",
        ),
        tls_available=True,
    )
    check(
        b"EHLO client.test\r\nSTARTTLS\r\n",
        EHLO + r("503 5.5.1 Error: TLS already active"),
        tls=True,
        tls_available=True,
    )
    conn = ServerConnection(hostname=HOST)
    with pytest.raises(LocalProtocolError):
        conn.tls_started()


# --- limits --------------------------------------------------------------------------


def test_line_too_long_resyncs() -> None:
    long = b"NOOP " + b"x" * 600 + b"\r\n"
    check(long + b"NOOP\r\n", r("500 5.5.2 Line too long", OK), max_line_length=512)
    exact = b"NOOP " + b"x" * 505 + b"\r\n"  # 512 octets with CRLF (RFC 5321 §4.5.3.1.4)
    assert len(exact) == 512
    check(exact, r(OK), max_line_length=512)
    check(exact[:-2] + b"x\r\n", r("500 5.5.2 Line too long"), max_line_length=512)


def test_huge_line_is_never_buffered() -> None:
    conn = ServerConnection(hostname=HOST, max_line_length=1024)
    conn.greet(R220_READY(HOST))
    conn.data_to_send()
    block = b"x" * 65536
    for _ in range(800):  # 50 MB without a newline
        conn.receive_data(block)
        assert conn.next_event() is NEED_DATA
        assert conn.buffered <= 1024
    conn.receive_data(b"x\r\nNOOP\r\n")
    assert conn.next_event() is NEED_DATA
    assert conn.data_to_send() == r("500 5.5.2 Line too long", OK)


def test_max_recipients() -> None:
    data = (
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\n"
        + b"".join(b"RCPT TO:<u%d@d.test>\r\n" % i for i in range(4))
        + b"RCPT TO:<nobody@d.test>\r\n"
    )
    check(
        data,
        r(
            "250 mx.example.test",
            SENDER_OK,
            RCPT_OK,
            RCPT_OK,
            RCPT_OK,
            "452 4.5.3 Too many recipients",
            "452 4.5.3 Too many recipients",
        ),
        max_recipients=3,
    )


def test_rejected_recipients_do_not_count() -> None:
    data = b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\nRCPT TO:<u@d.test>\r\n"
    check(
        data,
        r(
            "250 mx.example.test",
            SENDER_OK,
            "550 5.1.1 <nobody@d.test>: Recipient address rejected: User unknown",
            RCPT_OK,
        ),
        max_recipients=1,
    )


def test_max_errors_closes_with_421() -> None:
    run = check(
        b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n",
        r(
            "500 5.5.2 Error: command not recognized",
            "500 5.5.2 Error: command not recognized",
            "500 5.5.2 Error: command not recognized",
            "421 4.7.0 Too many errors, closing connection",
        ),
        max_errors=3,
    )
    assert run.events == [
        Disconnect(Reply(421, "4.7.0", "Too many errors, closing connection")),
        ConnectionClosed(),
    ]


def test_accepted_message_resets_error_count() -> None:
    data = b"FOO\r\n" + mail(b"x\r\n.\r\n") + b"BAR\r\nBAZ\r\n"
    check(
        data,
        r("500 5.5.2 Error: command not recognized")
        + ENVELOPE_REPLIES
        + r(
            GO_AHEAD,
            QUEUED,
            "500 5.5.2 Error: command not recognized",
            "500 5.5.2 Error: command not recognized",
            "421 4.7.0 Too many errors, closing connection",
        ),
        max_errors=2,
    )


def test_max_message_size_in_data() -> None:
    msg = b"0123456789\r\n" * 5 + b".\r\n"  # 60 bytes
    run = check(
        mail(msg) + b"NOOP\r\n",
        ENVELOPE_REPLIES.replace(b"SIZE 52428800", b"SIZE 50")
        + r(GO_AHEAD, "552 5.3.4 Message size exceeds fixed maximum message size", OK),
        max_message_size=50,
    )
    assert sum(len(c) for c in run.chunks) <= 50
    assert isinstance(run.events[-2], DataRejected)
    ok = check(
        mail(msg),
        ENVELOPE_REPLIES.replace(b"SIZE 52428800", b"SIZE 60") + r(GO_AHEAD, QUEUED),
        max_message_size=60,
    )
    assert ok.events[-2] == DataEnd(60)


def test_ehlo_lists_configured_extensions() -> None:
    opts: dict[str, Any] = {
        "tls_available": True,
        "auth_mechanisms": ("LOGIN",),
        "auth_requires_tls": False,
        "pipelining": False,
        "dsn": False,
        "smtputf8": False,
        "chunking": False,
        "max_message_size": 1000,
    }
    check(
        b"EHLO c\r\n",
        r(
            "250-mx.example.test",
            "250-SIZE 1000",
            "250-STARTTLS",
            "250-AUTH LOGIN",
            "250-ENHANCEDSTATUSCODES",
            "250 8BITMIME",
        ),
        **opts,
    )
    check(
        b"HELO c\r\nMAIL FROM:<a@b.test> RET=FULL\r\nMAIL FROM:<a@b.test> SMTPUTF8\r\n",
        r(
            "250 mx.example.test",
            "555 5.5.4 Unsupported option: RET",
            "555 5.5.4 Unsupported option: SMTPUTF8",
        ),
        **opts,
    )


def test_expn_enabled() -> None:
    check(
        b"EXPN staff\r\n",
        r("252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery"),
        expn=True,
    )


# --- invariant: any bytes → replies and events, never an exception -----------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.sampled_from([b"", ENVELOPE, ENVELOPE + b"DATA\r\n", ENVELOPE + b"BDAT 20\r\n"]),
    data=st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from(
                [
                    b"\r\n",
                    b"\r\n.\r\n",
                    b"\n.\n",
                    b"AUTH PLAIN\r\n",
                    b"AUTH LOGIN\r\n",
                    b"*\r\n",
                    b"STARTTLS\r\n",
                    b"BDAT 3 LAST\r\n",
                    b"MAIL FROM:<a@b.test>\r\n",
                    b"RCPT TO:<c@d.test>\r\n",
                    b"DATA\r\n",
                    b"RSET\r\n",
                    b"EHLO x\r\n",
                ]
            ),
        ),
        max_size=12,
    ),
)
def test_any_bytes_give_replies_never_exceptions(prefix: bytes, data: list[bytes]) -> None:
    opts: dict[str, Any] = {
        "tls_available": True,
        "auth_mechanisms": ("PLAIN", "LOGIN"),
        "max_line_length": 512,
        "max_errors": 1000,
    }
    whole = drive([prefix + b"".join(data)], **opts)
    single = drive([prefix + b"".join(data)], bytewise=True, **opts)
    assert whole.out == single.out
    assert delivered_only(whole.events) == delivered_only(single.events)
    assert isinstance(whole.events[-1], ConnectionClosed)
    for line in whole.out.split(b"\r\n")[:-1]:
        assert line[:3].isdigit()
        assert 200 <= int(line[:3]) < 600


def test_size_limit_wins_over_bare_lf_whatever_the_packets() -> None:
    msg = b"bare\nline\r\n" + b"x" * 100 + b"\r\n.\r\n"
    check(
        mail(msg),
        ENVELOPE_REPLIES.replace(b"SIZE 52428800", b"SIZE 50")
        + r(GO_AHEAD, "552 5.3.4 Message size exceeds fixed maximum message size"),
        max_message_size=50,
    )


def test_mid_line_tells_the_adapter_a_command_line_is_incomplete() -> None:
    conn = ServerConnection(hostname="mx.example.test", max_line_length=512)
    conn.greet(R220_READY("mx.example.test"))
    assert not conn.mid_line
    conn.receive_data(b"NOOP\r\nNO")
    assert conn.next_event() is NEED_DATA
    assert conn.mid_line  # "NO" waits for the rest of its line
    conn.receive_data(b"OP\r\n")
    assert conn.next_event() is NEED_DATA
    assert not conn.mid_line
    conn.receive_data(b"X" * 600)  # over-long: answered, then skipped as it comes
    assert conn.next_event() is NEED_DATA
    assert conn.buffered == 0
    assert conn.mid_line
    conn.receive_data(b"XX\r\n")
    assert conn.next_event() is NEED_DATA
    assert not conn.mid_line


@given(st.text(alphabet='<>"\\a@ .', max_size=20))
def test_split_path_fast_path_agrees_with_the_character_scan(tail: str) -> None:
    from postier.smtp.core import _split_path, _split_path_scan

    for text in (tail, "<" + tail):
        assert _split_path(text) == _split_path_scan(text)


@pytest.mark.parametrize("end", [b"\r\n", b"\n"])
def test_command_line_at_the_length_limit(end: bytes) -> None:
    """A line that ends within max_line_length (CRLF included) is a command, one
    byte more is too long; AUTH lines get max_auth_line_length (RFC 4954 §4)."""
    c = ServerConnection(hostname="mx.example.test", max_line_length=512)
    c.greet(R220_READY("mx.example.test"))
    c.receive_data(b"HELO c\r\n")
    assert isinstance(c.next_event(), Hello)
    c.accept()
    c.data_to_send()
    fits = b"NOOP " + b"x" * (512 - 5 - len(end)) + end
    c.receive_data(fits)
    assert c.next_event() is NEED_DATA
    assert c.data_to_send() == b"250 2.0.0 Ok\r\n"
    c.receive_data(b"NOOP " + b"x" * (513 - 5 - len(end)) + end)
    assert c.next_event() is NEED_DATA
    assert c.data_to_send().startswith(b"500 5.5.2")
    c.receive_data(b"AUTH " + b"x" * 600 + end)
    assert c.next_event() is NEED_DATA
    assert c.data_to_send().startswith(b"503")  # judged as AUTH, not as too long


def test_commands_without_parameters_share_one_params_value() -> None:
    c = ServerConnection(hostname="mx.example.test")
    c.greet(R220_READY("mx.example.test"))
    c.receive_data(b"HELO c\r\nMAIL FROM:<a@b.test>\r\n")
    c.next_event()
    c.accept()
    mail = c.next_event()
    assert isinstance(mail, MailFrom)
    assert mail.params == MailParams()
    c.accept()
    c.receive_data(b"RCPT TO:<c@d.test>\r\n")
    rcpt = c.next_event()
    assert isinstance(rcpt, RcptTo)
    assert rcpt.params == RcptParams()
