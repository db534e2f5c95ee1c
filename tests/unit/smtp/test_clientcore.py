"""The SMTP client core on bytes, and client/server pairs in memory.

Table scenarios give the server's bytes and expect the exact bytes the client wrote
and the exact events; each runs twice, the server bytes in one packet and one byte
at a time. Pair tests connect `ClientConnection` to the server core
`ServerConnection` (no sockets), its decisions answered by the policy the server
core's unit tests use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postier.mail.replies import R220_READY, Reply
from postier.smtp import events as sev
from postier.smtp.clientcore import (
    NEED_DATA,
    AuthDone,
    ClientConnection,
    ConnectionClosed,
    EhloDone,
    Event,
    Greeting,
    LocalProtocolError,
    ProtocolViolation,
    Recipient,
    RecipientResult,
    Replied,
    ServerReply,
    State,
    TlsReady,
    TlsRefused,
    Transaction,
    TransactionDone,
)
from postier.smtp.core import ServerConnection
from tests.unit.smtp.test_smtp_core import HOST, policy_default

GREET = b"220 mx.test ESMTP\r\n"
MSG = b"Subject: t\r\n\r\nhello\r\n"


def r(*lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


def rep(line: str, *more: str) -> ServerReply:
    """ServerReply of one or more reply lines: rep("250 2.1.5 Ok")."""
    return ServerReply(int(line[:3]), tuple(x[4:] for x in (line, *more)))


def ehlo_reply(extensions: tuple[str, ...]) -> bytes:
    lines = ["mx.test", *extensions]
    return r(*(f"250{'-' if i < len(lines) - 1 else ' '}{x}" for i, x in enumerate(lines)))


def drain(conn: ClientConnection, sent: bytearray, events: list[Event]) -> bool:
    """Take events until NEED_DATA (False) or ConnectionClosed (True)."""
    while True:
        ev = conn.next_event()
        sent += conn.data_to_send()
        if ev is NEED_DATA:
            return False
        events.append(ev)
        if isinstance(ev, (ConnectionClosed, TlsReady)):
            return True  # TlsReady: the adapter's handshake comes next


def greeted() -> ClientConnection:
    conn = ClientConnection()
    conn.receive_data(GREET)
    assert conn.next_event() == Greeting(rep("220 mx.test ESMTP"))
    assert conn.next_event() is NEED_DATA
    return conn


def ready(extensions: tuple[str, ...]) -> ClientConnection:
    conn = greeted()
    assert conn.ehlo("client.test") == b"EHLO client.test\r\n"
    conn.receive_data(ehlo_reply(extensions))
    assert isinstance(conn.next_event(), EhloDone)
    assert conn.next_event() is NEED_DATA
    assert conn.state is State.READY
    return conn


@dataclass
class Case:
    id: str
    extensions: tuple[str, ...] | None  # None: greeted only, no EHLO yet
    call: Callable[[ClientConnection], bytes]
    server: bytes
    sent: bytes
    events: list[Event]
    eof: bool = False
    state: State = State.READY


def play(case: Case, bytewise: bool) -> tuple[bytes, list[Event], ClientConnection]:
    conn = greeted() if case.extensions is None else ready(case.extensions)
    sent = bytearray(case.call(conn))
    events: list[Event] = []
    data = case.server
    pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    if case.eof:
        pieces.append(b"")
    for piece in pieces:
        conn.receive_data(piece)
        if drain(conn, sent, events):
            break
    return bytes(sent), events, conn


TWO = [Recipient("c@d.test"), Recipient("nobody@d.test", "NOTIFY=NEVER")]
ONE = [Recipient("nobody@d.test")]
PIPE = ("PIPELINING", "SIZE 1000", "8BITMIME")
CHUNK = ("PIPELINING", "CHUNKING")
OK_MAIL = "250 2.1.0 Ok"
OK_RCPT = "250 2.1.5 Ok"
NO_USER = "550 5.1.1 no such user"
GO = "354 go ahead"
QUEUED = "250 2.0.0 queued as Q1"
RSET_OK = "250 2.0.0 Ok"
BYE421 = "421 4.4.2 closing"
ENVELOPE2 = (
    b"MAIL FROM:<a@b.test> SIZE=22\r\n"
    b"RCPT TO:<c@d.test>\r\nRCPT TO:<nobody@d.test> NOTIFY=NEVER\r\n"
)


def tx2(conn: ClientConnection) -> bytes:
    return conn.transaction("a@b.test", TWO, MSG, mail_params="SIZE=22")


def tx1(conn: ClientConnection) -> bytes:
    return conn.transaction("a@b.test", ONE, MSG)


def rr(i: int, line: str) -> RecipientResult:
    return RecipientResult(i, TWO[i].address if i < 2 else f"r{i}@d.test", rep(line))


CASES = [
    Case(
        "pipelined-data-one-refused",
        PIPE,
        tx2,
        r(OK_MAIL, OK_RCPT, NO_USER, GO, QUEUED),
        ENVELOPE2 + b"DATA\r\n" + MSG + b".\r\n",
        [
            rr(0, OK_RCPT),
            rr(1, NO_USER),
            TransactionDone(
                Transaction(rep(OK_MAIL), (rep(OK_RCPT), rep(NO_USER)), rep(QUEUED), rep(GO))
            ),
        ],
    ),
    Case(
        # RFC 2920 §3.1: DATA got 354 though no recipient was accepted: end it empty
        "pipelined-all-refused-but-354",
        PIPE,
        tx1,
        r(OK_MAIL, NO_USER, GO, "554 5.5.1 no valid recipients", RSET_OK),
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\nDATA\r\n.\r\nRSET\r\n",
        [
            RecipientResult(0, "nobody@d.test", rep(NO_USER)),
            TransactionDone(Transaction(rep(OK_MAIL), (rep(NO_USER),), None, rep(GO))),
        ],
    ),
    Case(
        "pipelined-all-refused-data-554",
        PIPE,
        tx1,
        r(OK_MAIL, NO_USER, "554 5.5.1 no valid recipients", RSET_OK),
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\nDATA\r\nRSET\r\n",
        [
            RecipientResult(0, "nobody@d.test", rep(NO_USER)),
            TransactionDone(
                Transaction(
                    rep(OK_MAIL), (rep(NO_USER),), None, rep("554 5.5.1 no valid recipients")
                )
            ),
        ],
    ),
    Case(
        "pipelined-mail-refused-no-rset",
        PIPE,
        tx1,
        r("550 5.7.1 sender refused", "503 5.5.1 need MAIL", "503 5.5.1 need MAIL"),
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\nDATA\r\n",
        [
            RecipientResult(0, "nobody@d.test", rep("503 5.5.1 need MAIL")),
            TransactionDone(
                Transaction(
                    rep("550 5.7.1 sender refused"),
                    (rep("503 5.5.1 need MAIL"),),
                    None,
                    rep("503 5.5.1 need MAIL"),
                )
            ),
        ],
    ),
    Case(
        "lockstep-data-one-refused",
        ("SIZE 1000",),
        tx2,
        r(OK_MAIL, OK_RCPT, NO_USER, GO, QUEUED),
        ENVELOPE2 + b"DATA\r\n" + MSG + b".\r\n",
        [
            rr(0, OK_RCPT),
            rr(1, NO_USER),
            TransactionDone(
                Transaction(rep(OK_MAIL), (rep(OK_RCPT), rep(NO_USER)), rep(QUEUED), rep(GO))
            ),
        ],
    ),
    Case(
        "lockstep-mail-refused",
        (),
        tx2,
        r("451 4.3.0 try later"),
        b"MAIL FROM:<a@b.test> SIZE=22\r\n",
        [TransactionDone(Transaction(rep("451 4.3.0 try later"), (None, None)))],
    ),
    Case(
        "lockstep-all-refused-rset",
        (),
        tx1,
        r(OK_MAIL, NO_USER, RSET_OK),
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\nRSET\r\n",
        [
            RecipientResult(0, "nobody@d.test", rep(NO_USER)),
            TransactionDone(Transaction(rep(OK_MAIL), (rep(NO_USER),))),
        ],
    ),
    Case(
        "lockstep-data-refused-rset",
        (),
        tx1,
        r(OK_MAIL, OK_RCPT, "451 4.3.0 no", RSET_OK),
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\nDATA\r\nRSET\r\n",
        [
            RecipientResult(0, "nobody@d.test", rep(OK_RCPT)),
            TransactionDone(Transaction(rep(OK_MAIL), (rep(OK_RCPT),), None, rep("451 4.3.0 no"))),
        ],
    ),
    Case(
        "dot-stuffing-and-final-crlf",
        PIPE,
        lambda c: c.transaction("a@b.test", ONE, b".a\r\nb\r\n..c\r\n.\r\nend"),
        r(OK_MAIL, OK_RCPT, GO, QUEUED),
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\nDATA\r\n"
        b"..a\r\nb\r\n...c\r\n..\r\nend\r\n.\r\n",
        [
            RecipientResult(0, "nobody@d.test", rep(OK_RCPT)),
            TransactionDone(Transaction(rep(OK_MAIL), (rep(OK_RCPT),), rep(QUEUED), rep(GO))),
        ],
    ),
    Case(
        # RFC 3030: the message as one BDAT LAST chunk after the envelope replies
        "bdat-pipelined",
        CHUNK,
        lambda c: c.transaction("a@b.test", TWO, b".dot\r\nno final crlf"),
        r(OK_MAIL, OK_RCPT, NO_USER, QUEUED),
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nRCPT TO:<nobody@d.test> NOTIFY=NEVER\r\n"
        b"BDAT 21 LAST\r\n.dot\r\nno final crlf\r\n",
        [
            rr(0, OK_RCPT),
            rr(1, NO_USER),
            TransactionDone(Transaction(rep(OK_MAIL), (rep(OK_RCPT), rep(NO_USER)), rep(QUEUED))),
        ],
    ),
    Case(
        "bdat-all-refused-sends-no-message",
        CHUNK,
        tx1,
        r(OK_MAIL, NO_USER, RSET_OK),
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\nRSET\r\n",
        [
            RecipientResult(0, "nobody@d.test", rep(NO_USER)),
            TransactionDone(Transaction(rep(OK_MAIL), (rep(NO_USER),))),
        ],
    ),
    Case(
        "bdat-lockstep",
        ("CHUNKING",),
        tx1,
        r(OK_MAIL, OK_RCPT, "552 5.3.4 too big"),
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\nBDAT 21 LAST\r\n" + MSG,
        [
            RecipientResult(0, "nobody@d.test", rep(OK_RCPT)),
            TransactionDone(Transaction(rep(OK_MAIL), (rep(OK_RCPT),), rep("552 5.3.4 too big"))),
        ],
    ),
    Case(
        # RFC 5321 §3.8: the 421 answers every reply still due, then the session is over
        "421-mid-pipeline",
        PIPE,
        lambda c: c.transaction("a@b.test", [*TWO, Recipient("r2@d.test")], MSG),
        r(OK_MAIL, OK_RCPT, BYE421),
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nRCPT TO:<nobody@d.test> NOTIFY=NEVER\r\n"
        b"RCPT TO:<r2@d.test>\r\nDATA\r\n",
        [
            rr(0, OK_RCPT),
            rr(1, BYE421),
            rr(2, BYE421),
            TransactionDone(
                Transaction(
                    rep(OK_MAIL), (rep(OK_RCPT), rep(BYE421), rep(BYE421)), None, rep(BYE421)
                )
            ),
            ConnectionClosed("the server closed the session: 421 4.4.2 closing"),
        ],
        state=State.CLOSED,
    ),
    Case(
        "421-lockstep-rcpt",
        (),
        tx2,
        r(OK_MAIL, BYE421),
        ENVELOPE2[: ENVELOPE2.index(b"RCPT TO:<nobody")],
        [
            rr(0, BYE421),
            rr(1, BYE421),
            TransactionDone(
                Transaction(rep(OK_MAIL), (rep(BYE421), rep(BYE421)), None, rep(BYE421))
            ),
            ConnectionClosed("the server closed the session: 421 4.4.2 closing"),
        ],
        state=State.CLOSED,
    ),
    Case(
        # the accepted recipient learns the 421 too (data_command): next MX, RFC 5321 §3.8
        "421-bdat-envelope",
        CHUNK,
        tx2,
        r(OK_MAIL, OK_RCPT, BYE421),
        ENVELOPE2,
        [
            rr(0, OK_RCPT),
            rr(1, BYE421),
            TransactionDone(
                Transaction(rep(OK_MAIL), (rep(OK_RCPT), rep(BYE421)), None, rep(BYE421))
            ),
            ConnectionClosed("the server closed the session: 421 4.4.2 closing"),
        ],
        state=State.CLOSED,
    ),
    Case(
        "421-after-the-dot",
        PIPE,
        tx1,
        r(OK_MAIL, OK_RCPT, GO, BYE421),
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\nDATA\r\n" + MSG + b".\r\n",
        [
            RecipientResult(0, "nobody@d.test", rep(OK_RCPT)),
            TransactionDone(Transaction(rep(OK_MAIL), (rep(OK_RCPT),), rep(BYE421), rep(GO))),
            ConnectionClosed("the server closed the session: 421 4.4.2 closing"),
        ],
        state=State.CLOSED,
    ),
    Case(
        "rset-refused-closes",
        (),
        tx1,
        r(OK_MAIL, NO_USER, "500 5.5.2 what"),
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\nRSET\r\n",
        [
            RecipientResult(0, "nobody@d.test", rep(NO_USER)),
            TransactionDone(Transaction(rep(OK_MAIL), (rep(NO_USER),))),
            ConnectionClosed("RSET refused: 500 5.5.2 what"),
        ],
        state=State.CLOSED,
    ),
    Case(
        "eof-mid-transaction",
        PIPE,
        tx1,
        r(OK_MAIL),
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\nDATA\r\n",
        [ConnectionClosed("connection closed by the peer")],
        eof=True,
        state=State.CLOSED,
    ),
    Case(
        "ehlo-extensions",
        None,
        lambda c: c.ehlo("client.test"),
        r("250-mx.test greets you", "250-pipelining", "250-SIZE 1000", "250 AUTH PLAIN LOGIN"),
        b"EHLO client.test\r\n",
        [
            EhloDone(
                rep(
                    "250 mx.test greets you",
                    "250 pipelining",
                    "250 SIZE 1000",
                    "250 AUTH PLAIN LOGIN",
                ),
                {"PIPELINING": "", "SIZE": "1000", "AUTH": "PLAIN LOGIN"},
                extended=True,
            )
        ],
    ),
    Case(
        # RFC 5321 §3.2: EHLO unknown → HELO
        "ehlo-502-helo-fallback",
        None,
        lambda c: c.ehlo("client.test"),
        r("502 5.5.1 unknown command", "250 mx.test"),
        b"EHLO client.test\r\nHELO client.test\r\n",
        [EhloDone(rep("250 mx.test"), {}, extended=False)],
    ),
    Case(
        "ehlo-refused-stays-hello",
        None,
        lambda c: c.ehlo("client.test"),
        r("554 5.7.1 go away"),
        b"EHLO client.test\r\n",
        [EhloDone(rep("554 5.7.1 go away"), {}, extended=True)],
        state=State.HELLO,
    ),
    Case(
        "ehlo-421",
        None,
        lambda c: c.ehlo("client.test"),
        r(BYE421),
        b"EHLO client.test\r\n",
        [
            EhloDone(rep(BYE421), {}, extended=True),
            ConnectionClosed("the server closed the session: 421 4.4.2 closing"),
        ],
        state=State.CLOSED,
    ),
    Case(
        "starttls-ready",
        ("STARTTLS",),
        lambda c: c.starttls(),
        r("220 2.0.0 Ready to start TLS"),
        b"STARTTLS\r\n",
        [TlsReady(rep("220 2.0.0 Ready to start TLS"))],
        state=State.TLS,
    ),
    Case(
        "starttls-refused",
        ("STARTTLS",),
        lambda c: c.starttls(),
        r("454 4.7.0 TLS not available"),
        b"STARTTLS\r\n",
        [TlsRefused(rep("454 4.7.0 TLS not available"))],
    ),
    Case(
        "auth-plain",
        ("AUTH LOGIN PLAIN",),
        lambda c: c.auth("alice", "secret"),
        r("235 2.7.0 ok"),
        b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
        [AuthDone(rep("235 2.7.0 ok"))],
    ),
    Case(
        "auth-login",
        ("AUTH LOGIN",),
        lambda c: c.auth("alice", "secret"),
        r("334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "235 2.7.0 ok"),
        b"AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n",
        [AuthDone(rep("235 2.7.0 ok"))],
    ),
    Case(
        "auth-login-refused",
        ("AUTH LOGIN",),
        lambda c: c.auth("alice", "secret"),
        r("334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "535 5.7.8 bad"),
        b"AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n",
        [AuthDone(rep("535 5.7.8 bad"))],
    ),
    Case(
        # RFC 4954 §4: a challenge we cannot answer is cancelled with "*"
        "auth-plain-unexpected-challenge-cancelled",
        ("AUTH PLAIN",),
        lambda c: c.auth("alice", "secret"),
        r("334 ", "501 5.7.0 cancelled"),
        b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n*\r\n",
        [AuthDone(rep("501 5.7.0 cancelled"))],
    ),
    Case(
        "rset",
        (),
        lambda c: c.rset(),
        r(RSET_OK),
        b"RSET\r\n",
        [Replied("RSET", rep(RSET_OK))],
    ),
    Case(
        "command-multiline-bare-lf",
        None,
        lambda c: c.command("VRFY x"),
        b"252-first\n252 second\n",
        b"VRFY x\r\n",
        [Replied("VRFY", rep("252 first", "252 second"))],
        state=State.HELLO,
    ),
    Case(
        "quit",
        (),
        lambda c: c.quit(),
        r("221 2.0.0 Bye"),
        b"QUIT\r\n",
        [Replied("QUIT", rep("221 2.0.0 Bye")), ConnectionClosed("QUIT")],
        state=State.CLOSED,
    ),
]


@pytest.mark.parametrize("bytewise", [False, True], ids=["packet", "bytewise"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_scenario(case: Case, bytewise: bool) -> None:
    sent, events, conn = play(case, bytewise)
    assert sent == case.sent
    assert events == case.events
    assert conn.state is case.state
    assert conn.data_to_send() == b""


def test_extensions_and_limits_from_ehlo() -> None:
    conn = ready(("PIPELINING", "SIZE 1000", "AUTH plain LOGIN", "chunking"))
    assert conn.has("pipelining") and conn.has("CHUNKING") and not conn.has("DSN")
    assert conn.max_size == 1000
    assert conn.auth_mechanisms == frozenset({"PLAIN", "LOGIN"})
    assert ready(("SIZE",)).max_size == 0  # RFC 1870: SIZE without a limit


def test_greeting_421_closes_and_554_is_the_callers_to_judge() -> None:
    conn = ClientConnection()
    conn.receive_data(r(BYE421))
    assert conn.next_event() == Greeting(rep(BYE421))
    assert conn.closed and not conn.can_quit
    conn = ClientConnection()
    conn.receive_data(r("554 5.7.1 no service"))
    assert conn.next_event() == Greeting(rep("554 5.7.1 no service"))
    assert conn.state is State.HELLO and conn.can_quit


def test_starttls_then_session_starts_over() -> None:
    conn = ready(("STARTTLS", "PIPELINING"))
    conn.starttls()
    conn.receive_data(r("220 2.0.0 go"))
    assert conn.next_event() == TlsReady(rep("220 2.0.0 go"))
    with pytest.raises(LocalProtocolError):
        conn.next_event()  # the handshake comes first
    conn.tls_started()
    assert conn.tls and conn.state is State.HELLO and conn.extensions == {}
    with pytest.raises(LocalProtocolError):
        conn.transaction("a@b.test", ONE, MSG)  # RFC 3207 §4.2: EHLO again first
    with pytest.raises(LocalProtocolError):
        conn.starttls()


def test_plaintext_after_starttls_220_is_a_violation() -> None:
    # RFC 3207 §5 (CVE-2011-0411 class): a reply injected behind the 220
    conn = ready(("STARTTLS",))
    conn.starttls()
    conn.receive_data(r("220 2.0.0 go", "250 injected"))
    with pytest.raises(ProtocolViolation, match="after the STARTTLS 220"):
        conn.next_event()
    assert conn.closed and not conn.tls
    assert conn.next_event() == ConnectionClosed(
        "data after the STARTTLS 220 reply (injection attempt?)"
    )  # and not the TlsReady the injected bytes came with


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (r("250 unasked"), "a reply to no command"),
        (b"250 " + b"x" * 5000, "longer than 4096"),
        (b"250-x\r\n" * 201, "longer than 200 lines"),
        (b"hello\r\n", "not an SMTP reply line"),
        (b"250-a\r\n251 b\r\n", "code changed"),
        (b"199 x\r\n", "out of range"),
    ],
)
def test_protocol_violations(data: bytes, message: str) -> None:
    conn = ready(())
    conn.receive_data(data)
    with pytest.raises(ProtocolViolation, match=message):
        conn.next_event()
    assert conn.closed
    assert isinstance(conn.next_event(), ConnectionClosed)


def test_unsolicited_421_while_idle_closes() -> None:
    # RFC 5321 §3.8: a server may send 421 at any time (an idle timeout)
    conn = ready(("PIPELINING",))
    conn.receive_data(r(BYE421))
    assert conn.next_event() == ConnectionClosed("the server closed the session: 421 4.4.2 closing")
    with pytest.raises(LocalProtocolError):
        conn.rset()


def test_limits_are_configurable() -> None:
    conn = ClientConnection(max_line_length=20, max_lines=2)
    conn.receive_data(b"220-a\r\n220-b\r\n220 c\r\n")
    with pytest.raises(ProtocolViolation, match="longer than 2 lines"):
        conn.next_event()


def test_calls_out_of_state_and_injection_are_refused() -> None:
    conn = ClientConnection()
    with pytest.raises(LocalProtocolError):
        conn.ehlo("x")  # before the greeting
    conn = greeted()
    with pytest.raises(LocalProtocolError):
        conn.transaction("a@b.test", ONE, MSG)  # before EHLO
    conn = ready(())
    with pytest.raises(LocalProtocolError):
        conn.transaction("a@b.test", [], MSG)
    with pytest.raises(LocalProtocolError):
        conn.command("DATA")
    with pytest.raises(LocalProtocolError):
        conn.auth("a", "b", "CRAM-MD5")
    with pytest.raises(ValueError, match="CR or LF"):
        conn.transaction("a@b.test", [Recipient("x@y.test>\r\nRCPT TO:<evil@z.test")], MSG)
    with pytest.raises(ValueError, match="CR or LF"):
        conn.command("NOOP\r\nQUIT")
    with pytest.raises(ValueError, match="CR or LF"):
        conn.ehlo("client.test\nMAIL FROM:<x@y.test>")
    assert conn.state is State.READY and conn.data_to_send() == b""
    conn.rset()
    with pytest.raises(LocalProtocolError):
        conn.rset()  # one operation at a time


def test_connection_reused_for_a_second_transaction() -> None:
    conn = ready(PIPE)
    sent = bytearray(tx1(conn))
    events: list[Event] = []
    conn.receive_data(r(OK_MAIL, OK_RCPT, GO, QUEUED))
    drain(conn, sent, events)
    assert conn.transactions == 1 and conn.state is State.READY
    sent = bytearray(tx1(conn))
    assert sent == b"MAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\nDATA\r\n"


# --- client core against server core, in memory -----------------------------------------


@dataclass
class Pair:
    """A ClientConnection wired to a ServerConnection; `call` runs one client
    operation until its final event, answering the server's decisions with `policy`."""

    server: ServerConnection
    policy: Callable[[sev.Event], Reply | None] = policy_default
    client: ClientConnection = field(default_factory=ClientConnection)
    messages: list[bytes] = field(default_factory=list)
    server_events: list[sev.Event] = field(default_factory=list)
    notices: list[RecipientResult] = field(default_factory=list)
    _chunks: list[bytes] = field(default_factory=list)
    _server_closed: bool = False

    def __post_init__(self) -> None:
        self.server.greet(R220_READY(HOST))
        self.client.receive_data(self.server.data_to_send())
        assert isinstance(self.client.next_event(), Greeting)

    def _run_server(self) -> None:
        while not self._server_closed:
            ev = self.server.next_event()
            if ev is sev.NEED_DATA:
                return
            self.server_events.append(ev)
            if isinstance(ev, sev.DataChunk):
                self._chunks.append(ev.data)
            elif isinstance(ev, sev.DataEnd):
                self.messages.append(b"".join(self._chunks))
            if isinstance(ev, (sev.DataStart, sev.DataRejected, sev.Reset)):
                self._chunks = []
            if isinstance(ev, sev.DECISIONS):
                reply = self.policy(ev)
                if reply is None or reply.is_positive:
                    self.server.accept(reply)
                else:
                    self.server.reject(reply)
            elif isinstance(ev, sev.StartTls):
                # no real TLS in memory: the 220 goes out, then the handshake "succeeds"
                self.client.receive_data(self.server.data_to_send())
                self.server.tls_started()
            elif isinstance(ev, (sev.Quit, sev.Disconnect, sev.ConnectionClosed)):
                self._server_closed = True

    def call(self, out: bytes) -> Event:
        to_server = out
        for _ in range(10_000):
            if to_server:
                self.server.receive_data(to_server)
                to_server = b""
            self._run_server()
            to_client = self.server.data_to_send()
            if to_client:
                self.client.receive_data(to_client)
            if self._server_closed:
                self.client.receive_data(b"")  # the server closed the socket
            while True:
                ev = self.client.next_event()
                to_server += self.client.data_to_send()
                if ev is NEED_DATA:
                    break
                if isinstance(ev, RecipientResult):
                    self.notices.append(ev)
                    continue
                assert to_server == b""
                return ev
            assert to_server or to_client, "stalled"
        raise AssertionError("no end")

    def hello(self) -> EhloDone:
        ev = self.call(self.client.ehlo("client.test"))
        assert isinstance(ev, EhloDone)
        return ev

    def send(self, recipients: list[str], message: bytes, params: str = "") -> Transaction:
        rcpts = [Recipient(a) for a in recipients]
        ev = self.call(self.client.transaction("a@b.test", rcpts, message, mail_params=params))
        assert isinstance(ev, TransactionDone)
        return ev.result


def pair(policy: Callable[[sev.Event], Reply | None] = policy_default, **server: object) -> Pair:
    p = Pair(ServerConnection(hostname=HOST, **server), policy)  # type: ignore[arg-type]
    assert p.hello().reply.is_success
    return p


def test_pair_pipelined_data_transaction_in_one_write() -> None:
    p = pair(chunking=False)
    assert p.client.has("PIPELINING") and not p.client.has("CHUNKING")
    out = p.client.transaction("a@b.test", [Recipient("c@d.test")], MSG)
    assert out == b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"  # RFC 2920 §3.1
    ev = p.call(out)
    assert ev == TransactionDone(
        Transaction(
            rep("250 2.1.0 Ok"),
            (rep("250 2.1.5 Ok"),),
            rep("250 2.0.0 Ok: queued as Q1"),
            rep("354 End data with <CR><LF>.<CR><LF>"),
        )
    )
    assert p.messages == [MSG]
    assert [type(e) for e in p.server_events if isinstance(e, sev.DataStart)] == [sev.DataStart]
    assert sev.DataStart(chunking=False) in p.server_events
    assert p.client.transactions == 1


def test_pair_bdat_when_chunking_offered() -> None:
    p = pair()
    assert p.client.has("CHUNKING")
    message = b".leading dot\r\n.\r\nbare\nlf kept as is\r\n"
    tx = p.send(["c@d.test", "e@d.test"], message)
    assert tx.data == rep("250 2.0.0 Ok: queued as Q1")
    assert tx.data_command is None
    assert sev.DataStart(chunking=True) in p.server_events
    assert p.messages == [message]  # BDAT: raw bytes, no stuffing


def test_pair_one_recipient_refused() -> None:
    p = pair(chunking=False)
    tx = p.send(["c@d.test", "nobody@d.test", "e@d.test"], MSG)
    assert [x.code if x else None for x in tx.rcpts] == [250, 550, 250]
    assert tx.rcpts[1] == rep("550 5.1.1 <nobody@d.test>: Recipient address rejected: User unknown")
    assert [n.index for n in p.notices] == [0, 1, 2]
    assert p.messages == [MSG]


@pytest.mark.parametrize("chunking", [False, True])
def test_pair_all_refused_then_next_transaction_works(chunking: bool) -> None:
    p = pair(chunking=chunking)
    tx = p.send(["nobody@d.test"], MSG)
    assert tx.mail.code == 250 and tx.rcpts[0] is not None and tx.rcpts[0].code == 550
    assert tx.data is None
    # DATA: the server core answers 554 to DATA; BDAT: nothing sent, then RSET
    assert tx.data_command == (
        rep("554 5.5.1 Error: no valid recipients") if not chunking else None
    )
    assert p.messages == []
    assert sev.Reset() in p.server_events  # RFC 5321 §4.1.1.5: cleaned up with RSET
    tx = p.send(["c@d.test"], MSG)
    assert tx.data is not None and tx.data.code == 250
    assert p.messages == [MSG]


def test_pair_421_mid_transaction() -> None:
    busy = Reply(421, "4.3.2", "busy, closing")

    def policy(ev: sev.Event) -> Reply | None:
        if isinstance(ev, sev.RcptTo) and ev.address.localpart == "busy":
            return busy
        return policy_default(ev)

    p = pair(policy, chunking=False)
    tx = p.send(["c@d.test", "busy@d.test", "e@d.test"], MSG)
    closing = rep("421 4.3.2 busy, closing")
    assert tx.rcpts == (rep("250 2.1.5 Ok"), closing, closing)
    assert tx.data is None and tx.data_command == closing
    assert p.client.closed and p.messages == []
    assert p.client.next_event() == ConnectionClosed(
        "the server closed the session: 421 4.3.2 busy, closing"
    )


def test_pair_size_refused_at_mail() -> None:
    # RFC 1870 §6.1: the server refuses a declared SIZE above its limit at MAIL
    p = pair(max_message_size=1000, chunking=False)
    assert p.client.max_size == 1000
    tx = p.send(["c@d.test"], MSG, params="SIZE=5000")
    assert tx.mail == rep("552 5.3.4 Message size exceeds fixed maximum message size")
    assert tx.data is None and p.messages == []
    assert not p.client.closed
    # and a message over the limit that was not declared is refused at its end
    tx = p.send(["c@d.test"], b"x" * 2000 + b"\r\n")
    assert tx.data == rep("552 5.3.4 Message size exceeds fixed maximum message size")


def test_pair_starttls_then_auth_plain_and_login() -> None:
    p = pair(tls_available=True, auth_mechanisms=("PLAIN", "LOGIN"))
    assert p.client.has("STARTTLS") and not p.client.auth_mechanisms  # AUTH needs TLS
    ev = p.call(p.client.starttls())
    assert ev == TlsReady(rep("220 2.0.0 Ready to start TLS"))
    p.client.tls_started()
    assert p.hello().extensions["AUTH"] == "PLAIN LOGIN"
    assert not p.client.has("STARTTLS")
    ev = p.call(p.client.auth("alice", "wrong"))
    assert ev == AuthDone(rep("535 5.7.8 Authentication credentials invalid"))
    ev = p.call(p.client.auth("alice", "secret", "LOGIN"))
    assert ev == AuthDone(rep("235 2.7.0 Authentication successful"))
    assert p.server.is_authenticated


def test_pair_auth_plain() -> None:
    p = pair(auth_mechanisms=("PLAIN",), auth_requires_tls=False)
    ev = p.call(p.client.auth("alice", "secret"))
    assert ev == AuthDone(rep("235 2.7.0 Authentication successful"))
    assert [e for e in p.server_events if isinstance(e, sev.Authenticate)] == [
        sev.Authenticate("PLAIN", "", "alice", "secret")
    ]


def test_pair_rset_and_quit() -> None:
    p = pair()
    assert p.call(p.client.rset()) == Replied("RSET", rep("250 2.0.0 Ok"))
    assert p.call(p.client.quit()) == Replied("QUIT", rep("221 2.0.0 Bye"))
    assert p.client.closed and isinstance(p.server_events[-1], sev.Quit)


_LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_DOTTED = st.tuples(st.sampled_from([b"", b".", b"..", b". "]), _LINE).map(b"".join)


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(_DOTTED, max_size=12), final_crlf=st.booleans())
def test_pair_dot_stuffing_round_trip(lines: list[bytes], final_crlf: bool) -> None:
    """Any message of CRLF lines arrives identical after stuffing and unstuffing
    (ending in CRLF: RFC 5321 §4.5.2 adds one when missing)."""
    message = b"\r\n".join(lines) + (b"\r\n" if final_crlf else b"")
    p = pair(chunking=False)
    tx = p.send(["c@d.test"], message)
    assert tx.data is not None and tx.data.code == 250, tx
    expected = message if message.endswith(b"\r\n") else message + b"\r\n"
    assert p.messages == [expected]


@settings(max_examples=100, deadline=None)
@given(message=st.binary(max_size=300))
def test_pair_bdat_round_trip(message: bytes) -> None:
    p = pair()
    tx = p.send(["c@d.test"], message)
    assert tx.data is not None and tx.data.code == 250, tx
    assert p.messages == [message if message.endswith(b"\r\n") else message + b"\r\n"]
