"""Scripted adapters that drive each sans-IO protocol core over a byte stream, for the
fuzz harnesses and the property tests (test_properties.py).

Each driver feeds the pieces it is given, answers every decision/hook event the way a
simple deployment would (alice/secret logs in, "nobody" is an unknown recipient...),
and checks the invariants every adapter relies on: replies are well-formed lines, the
core never raises, buffers stay bounded, the session ends after EOF, and the event
loop makes progress (a bounded number of steps per input octet).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from postier.imap.errors import ParseError
from postier.imap.parse import Authenticate as ImapAuthenticate
from postier.imap.parse import Command, Idle, parse_command
from postier.imap.receiver import (
    NEED_DATA as IMAP_NEED_DATA,
)
from postier.imap.receiver import (
    BadInput,
    ContinuationLine,
    IdleDone,
    NeedLiteral,
    RawCommand,
    Receiver,
)
from postier.imap.receiver import (
    ConnectionClosed as ImapClosed,
)
from postier.mail.replies import (
    R220_READY,
    R250_QUEUED,
    R421_SHUTTING_DOWN,
    R535_AUTH_FAILED,
    R550_NO_SUCH_USER,
    Reply,
)
from postier.pop3 import core as pop3
from postier.pop3.commands import pop3_size
from postier.smtp import events as ev
from postier.smtp.core import ServerConnection

HOST = "mx.example.test"
R450_BUSY = Reply(450, "4.2.1", "Mailbox busy, try again later")
R554_HELLO_REFUSED = Reply(554, "5.7.1", "Access denied")

# --- SMTP ---------------------------------------------------------------------------

# RFC 5321 §4.2: Reply-line = *( Reply-code "-" [ textstring ] CRLF )
#                             Reply-code [ SP textstring ] CRLF
_SMTP_LINE = re.compile(rb"[2-5][0-9][0-9][ -][\x20-\x7e]*\r\n")


def smtp_options(flags: int) -> dict[str, Any]:
    """Core options from one byte, so the fuzzer explores every configuration."""
    return {
        "bare_lf": "normalize" if flags & 0x01 else "reject",
        "tls": bool(flags & 0x02),
        "tls_available": not flags & 0x04,
        "auth_mechanisms": ("PLAIN", "LOGIN") if not flags & 0x08 else ("PLAIN",),
        "auth_requires_tls": bool(flags & 0x10),
        "binarymime": bool(flags & 0x20),
        "max_line_length": 512 if flags & 0x40 else 2048,
        "max_message_size": 300 if flags & 0x80 else 1 << 20,
        "max_recipients": 3 if flags & 0x80 else 100,
        "max_errors": 20,
        "expn": bool(flags & 0x04),
    }


def smtp_policy(event: ev.Event) -> Any:
    """The scripted answer to a decision: None accepts with the default reply."""
    if isinstance(event, ev.Hello) and event.name.startswith("reject"):
        return R554_HELLO_REFUSED
    address = getattr(event, "address", None)
    if isinstance(event, ev.MailFrom) and address is not None and address.localpart == "bye":
        return R421_SHUTTING_DOWN
    if isinstance(event, ev.RcptTo):
        local = event.address.localpart
        if local == "nobody":
            return R550_NO_SUCH_USER(str(event.address))
        if local == "busy":
            return R450_BUSY
    if isinstance(event, ev.Authenticate) and (event.username, event.password) != (
        "alice",
        "secret",
    ):
        return R535_AUTH_FAILED
    if isinstance(event, ev.DataEnd):
        return R250_QUEUED("Q1")
    return None


@dataclass
class SmtpRun:
    out: bytes
    events: list[ev.Event]
    #: accepted messages as the spool saw them, and whether they came by BDAT
    messages: list[tuple[bool, bytes]] = field(default_factory=list)
    starttls: bool = False


def drive_smtp(pieces: Sequence[bytes], options: dict[str, Any], *, eof: bool = True) -> SmtpRun:
    conn = ServerConnection(hostname=HOST, **options)
    conn.greet(R220_READY(HOST))
    out = bytearray(conn.data_to_send())
    events: list[ev.Event] = []
    run = SmtpRun(b"", events)
    spool: bytearray | None = None
    chunking = False
    budget = 64 + 8 * sum(len(p) for p in pieces)  # events are at most a few per octet
    done = False
    feeds = [p for p in pieces if p]  # b"" would be EOF
    for piece in [*feeds, b""] if eof else feeds:
        conn.receive_data(piece)
        while not done:
            event = conn.next_event()
            if event is ev.NEED_DATA:
                break
            budget -= 1
            assert budget > 0, "the SMTP core loops without consuming input"
            events.append(event)
            if isinstance(event, ev.DataStart):
                spool = bytearray()
                chunking = event.chunking
            elif isinstance(event, ev.DataChunk):
                assert spool is not None, "DataChunk outside a message"
                spool += event.data
            elif isinstance(event, ev.DataRejected | ev.Reset | ev.StartTls):
                spool = None
            if isinstance(event, ev.DECISIONS):
                reply = smtp_policy(event)
                if reply is None or reply.is_positive:
                    conn.accept(reply)
                else:
                    conn.reject(reply)
                if isinstance(event, ev.DataEnd):
                    assert spool is not None and len(spool) == event.size
                    if reply is not None and reply.code == 250:
                        run.messages.append((chunking, bytes(spool)))
                    spool = None
            elif isinstance(event, ev.StartTls):
                run.starttls = True
                out += conn.data_to_send()
                conn.tls_started()
            elif isinstance(event, ev.Quit | ev.Disconnect | ev.ConnectionClosed):
                done = True
        out += conn.data_to_send()
        if done:
            break
        # Rules of core.py: after NEED_DATA at most one incomplete line is kept
        assert conn.buffered <= conn.max_auth_line_length, conn.buffered
    if eof:
        assert done, "no end of session after EOF"
    run.out = bytes(out)
    return run


def check_smtp_output(out: bytes) -> None:
    pos = 0
    for m in _SMTP_LINE.finditer(out):
        assert m.start() == pos, f"malformed reply bytes {out[pos : pos + 80]!r}"
        pos = m.end()
    assert pos == len(out), f"malformed reply bytes {out[pos : pos + 80]!r}"


def merged(events: list[ev.Event]) -> list[ev.Event]:
    """Events with the DataChunks of a delivered message joined into one before its
    DataEnd, and those of a message that never ended (refused, reset, cut by EOF)
    dropped: how much of such a message streams out first depends on packets."""
    out: list[ev.Event] = []
    pending: bytes | None = None
    for event in events:
        if isinstance(event, ev.DataChunk):
            pending = (pending or b"") + event.data
            continue
        if isinstance(event, ev.DataEnd) and pending is not None:
            out.append(ev.DataChunk(pending))
        pending = None
        out.append(event)
    return out


# --- POP3 ---------------------------------------------------------------------------

POP3_MESSAGES = [
    b"Subject: one\r\n\r\nHello\r\n.dot line\r\n",
    b"Subject: two\nFrom: b\n\nline1\nline2\nline3\n",
    b".lead\r\n\r\n..x\r\nend",
]
POP3_MAILDROP = [
    pop3.MaildropEntry(pop3_size(m), f"uid-{i}") for i, m in enumerate(POP3_MESSAGES, 1)
]


def pop3_options(flags: int) -> dict[str, Any]:
    return {
        "plaintext_allowed": not flags & 0x01,
        "tls_available": bool(flags & 0x02),
        "tls_active": bool(flags & 0x04),
        "max_line": 48 if flags & 0x08 else 512,
        "max_sasl_line": 64 if flags & 0x08 else 2048,
        "max_errors": 10,
        "max_auth_failures": 3,
    }


def _pop3_answer(conn: pop3.ServerConnection, event: pop3.Event) -> bytes:
    if isinstance(event, pop3.Authenticate):
        if (event.username, event.password) == ("alice", "secret"):
            return conn.auth_ok(POP3_MAILDROP)
        if event.username == "empty":
            return conn.auth_ok([])
        if event.username == "locked":
            return conn.auth_in_use()
        if event.username == "broken":
            return conn.fail()
        return conn.auth_failed()
    if isinstance(event, pop3.Retrieve | pop3.Top):
        assert POP3_MAILDROP[event.number - 1].uidl == event.uidl
        if event.uidl == "uid-2" and isinstance(event, pop3.Top) and event.lines == 7:
            return conn.fail()
        return conn.send_message(POP3_MESSAGES[event.number - 1])
    if isinstance(event, pop3.Quit):
        assert list(event.deletions) == sorted(set(event.deletions))
        return conn.update_done(True)
    if isinstance(event, pop3.StartTls):
        conn.tls_started()
        return b""
    raise AssertionError(f"unexpected POP3 event {event!r}")


def drive_pop3(pieces: Sequence[bytes], options: dict[str, Any], *, eof: bool = True) -> bytes:
    conn = pop3.ServerConnection(**options)
    out = bytearray()
    budget = 64 + 8 * sum(len(p) for p in pieces)
    closed = False
    feeds = [p for p in pieces if p]  # b"" would be EOF
    for piece in [*feeds, b""] if eof else feeds:
        if closed:
            break
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if isinstance(event, pop3.NeedData):
                break
            budget -= 1
            assert budget > 0, "the POP3 core loops without consuming input"
            if isinstance(event, pop3.Reply):
                out += event.data
            elif isinstance(event, pop3.Close):
                closed = True
                break
            else:
                out += _pop3_answer(conn, event)
        if not closed:
            limit = max(options.get("max_line", 512), options.get("max_sasl_line", 2048))
            assert len(conn._buffer) < limit, len(conn._buffer)  # Rules: one line at most
    if eof:
        assert closed, "no Close after EOF"
    return bytes(out)


def check_pop3_output(out: bytes) -> None:
    assert out.startswith(b"+OK "), out[:80]
    assert out.endswith(b"\r\n"), out[-80:]
    stripped = out.replace(b"\r\n", b"")
    assert b"\r" not in stripped and b"\n" not in stripped, "bare CR or LF in POP3 output"


# --- IMAP ---------------------------------------------------------------------------


def imap_limits(flags: int) -> dict[str, Any]:
    if flags & 0x01:
        return {
            "max_line_length": 64,
            "max_literal_size": 16,
            "max_literals": 3,
            "max_command_size": 100,
            "max_discard_size": 40,
            "literal_minus": bool(flags & 0x02),
        }
    return {"max_line_length": 8192, "literal_minus": bool(flags & 0x02)}


@dataclass
class ImapRun:
    events: list[Any]  # RawCommand, BadInput, ContinuationLine, IdleDone, ImapClosed
    commands: list[Command | ParseError]
    out: bytes  # BAD responses of the framing and of the parser


def _check_imap_line(resp: bytes) -> None:
    assert resp.endswith(b"\r\n") and resp.count(b"\n") == 1, resp
    assert b"\r" not in resp[:-2], resp


def drive_imap(
    pieces: Sequence[bytes], limits: dict[str, Any], *, utf8: bool = False, refuse_every: int = 0
) -> ImapRun:
    """Frame and parse; accept every literal (or refuse every n-th); enter IDLE and
    AUTHENTICATE modes as the session would."""
    r = Receiver(**limits)
    events: list[Any] = []
    commands: list[Command | ParseError] = []
    out = bytearray()
    budget = 64 + 8 * sum(len(p) for p in pieces)
    literals = 0
    closed = False
    for piece in [*(p for p in pieces if p), b""]:  # b"" is EOF
        if closed:
            break
        r.receive_data(piece)
        while True:
            event = r.next()
            if event is IMAP_NEED_DATA:
                break
            budget -= 1
            assert budget > 0, "the IMAP receiver loops without consuming input"
            if isinstance(event, NeedLiteral):
                literals += 1
                if refuse_every and literals % refuse_every == 0:
                    r.refuse_literal()
                continue
            events.append(event)
            if isinstance(event, ImapClosed):
                closed = True
                break
            if isinstance(event, BadInput):
                resp = event.response()
                _check_imap_line(resp)
                out += resp
                if event.fatal:
                    assert isinstance(r.next(), ImapClosed)
                    closed = True
                    break
            elif isinstance(event, RawCommand):
                assert len(event.segments) == len(event.literals) + 1
                try:
                    cmd = parse_command(event, utf8=utf8)
                except ParseError as exc:
                    resp = exc.response()
                    _check_imap_line(resp)
                    out += resp
                    commands.append(exc)
                    continue
                assert cmd.tag == event.tag
                commands.append(cmd)
                if isinstance(cmd, Idle):
                    r.start_idle(cmd.tag)
                elif isinstance(cmd, ImapAuthenticate) and cmd.initial_response is None:
                    r.expect_continuation(cmd.tag)
            else:
                assert isinstance(event, ContinuationLine | IdleDone), event
        if not closed:
            # Rules of receiver.py: memory is bounded by the limits
            bound = limits.get("max_line_length", 64 * 1024) + limits.get(
                "max_literal_size", 50 * 1024 * 1024
            )
            assert r.buffered <= bound + len(piece), r.buffered
    assert closed, "no ConnectionClosed after EOF"
    return ImapRun(events, commands, bytes(out))


def parse_errors_equal(a: list[Command | ParseError], b: list[Command | ParseError]) -> bool:
    def key(x: Command | ParseError) -> object:
        return x.response() if isinstance(x, ParseError) else x

    return [key(x) for x in a] == [key(x) for x in b]
