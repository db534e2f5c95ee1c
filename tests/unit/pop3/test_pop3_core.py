"""The POP3 core on bytes: every command, every error path, exact reply bytes.

Each table scenario runs twice: the whole input in one packet (PIPELINING) and
one byte at a time. A scripted adapter (`drive`) answers the hook events.
"""

from __future__ import annotations

import base64
import poplib
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postier.pop3.commands import ERR_SYS_PERM, Response, pop3_size
from postier.pop3.core import (
    NEED_DATA,
    Authenticate,
    Close,
    Event,
    MaildropEntry,
    NeedData,
    Quit,
    Reply,
    Retrieve,
    ServerConnection,
    StartTls,
    State,
    Top,
)
from postier.pop3.errors import LocalProtocolError

GREETING = b"+OK postier POP3 server ready\r\n"

MESSAGES = [
    b"Subject: one\r\n\r\nHello\r\n.dot line\r\n",  # CRLF, a body line to stuff
    b"Subject: two\nFrom: b\n\nline1\nline2\nline3\n",  # bare LF, stored that way
    b".lead\r\n\r\n..x\r\nend",  # first line starts with ".", no final CRLF
]
SIZES = [34, 46, 19]
MAILDROP = [MaildropEntry(pop3_size(m), f"uid-{i}") for i, m in enumerate(MESSAGES, 1)]
UNREADABLE = "uid-2"  # the scripted adapter fails to read it when asked to

LOGIN = b"USER alice\r\nPASS secret\r\n"
LOGIN_OK = b"+OK Send PASS\r\n+OK Logged in, maildrop has 3 messages (99 octets)\r\n"
ERR_AUTH = b"-ERR [AUTH] Authentication failed\r\n"
ERR_PLAINTEXT = b"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections\r\n"
CAPA_HEAD = (
    b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
)
CAPA_TAIL = b"IMPLEMENTATION postier\r\n.\r\n"
SIGN_OFF = b"+OK postier POP3 server signing off"


def plain(text: bytes) -> bytes:
    return base64.b64encode(text)


@dataclass
class Run:
    output: bytes
    hooks: list[Event] = field(default_factory=list)  # every non-Reply event, in order
    conn: ServerConnection | None = None

    @property
    def close(self) -> Close | None:
        last = self.hooks[-1] if self.hooks else None
        return last if isinstance(last, Close) else None


def answer(conn: ServerConnection, event: Event, *, unreadable: bool, quit_ok: bool) -> bytes:
    """The scripted adapter: alice/secret and bob/'with space ' log in; locked is
    in use; broken makes the store fail; empty has no messages."""
    if isinstance(event, Authenticate):
        creds = (event.username, event.password)
        if creds in {("alice", "secret"), ("bob", "with space "), ("élodie", "pässword")}:
            return conn.auth_ok(MAILDROP)
        if creds == ("empty", "secret"):
            return conn.auth_ok([])
        if event.username == "locked":
            return conn.auth_in_use()
        if event.username == "broken":
            return conn.fail()
        return conn.auth_failed()
    if isinstance(event, Retrieve | Top):
        if unreadable and event.uidl == UNREADABLE:
            return conn.fail()
        return conn.send_message(MESSAGES[event.number - 1])
    if isinstance(event, Quit):
        return conn.update_done(quit_ok)
    if isinstance(event, StartTls):
        conn.tls_started()
        return b""
    raise AssertionError(event)


def drive(
    data: bytes | list[bytes],
    *,
    bytewise: bool = False,
    eof: bool = False,
    unreadable: bool = False,
    quit_ok: bool = True,
    **kwargs: Any,
) -> Run:
    kwargs.setdefault("plaintext_allowed", True)
    conn = ServerConnection(**kwargs)
    run = Run(b"", conn=conn)
    out = bytearray()

    def drain() -> bool:
        while True:
            event = conn.next_event()
            if isinstance(event, NeedData):
                return False
            if isinstance(event, Reply):
                assert event.data.endswith(b"\r\n")
                out.extend(event.data)
                continue
            run.hooks.append(event)
            if isinstance(event, Close):
                assert conn.next_event() == event  # Close repeats
                return True
            out.extend(answer(conn, event, unreadable=unreadable, quit_ok=quit_ok))

    if isinstance(data, list):
        chunks = list(data)
    elif bytewise:
        chunks = [data[i : i + 1] for i in range(len(data))]
    else:
        chunks = [data]
    if eof:
        chunks.append(b"")
    closed = drain()
    for chunk in chunks:
        if closed:
            break
        conn.receive_data(chunk)
        closed = drain()
    run.output = bytes(out)
    return run


# (id, constructor/driver kwargs, input, expected output after the greeting)
CASES: list[tuple[str, dict[str, Any], bytes, bytes]] = [
    # --- CAPA (RFC 2449 §5) ---
    ("capa", {}, b"CAPA\r\n", CAPA_HEAD + b"USER\r\nSASL PLAIN\r\n" + CAPA_TAIL),
    (
        "capa-stls",
        {"tls_available": True},
        b"CAPA\r\n",
        CAPA_HEAD + b"USER\r\nSASL PLAIN\r\nSTLS\r\n" + CAPA_TAIL,
    ),
    (
        "capa-no-plaintext-hides-user-and-sasl",
        {"plaintext_allowed": False, "tls_available": True},
        b"CAPA\r\n",
        CAPA_HEAD + b"STLS\r\n" + CAPA_TAIL,
    ),
    (
        "capa-tls-active-hides-stls",
        {"tls_available": True, "tls_active": True},
        b"CAPA\r\n",
        CAPA_HEAD + b"USER\r\nSASL PLAIN\r\n" + CAPA_TAIL,
    ),
    (
        "capa-transaction-same-as-authorization",
        {"tls_available": True},
        LOGIN + b"CAPA\r\n",
        LOGIN_OK + CAPA_HEAD + b"USER\r\nSASL PLAIN\r\nSTLS\r\n" + CAPA_TAIL,
    ),
    (
        "capa-implementation",
        {"implementation": "postier 0.1"},
        b"CAPA\r\n",
        CAPA_HEAD + b"USER\r\nSASL PLAIN\r\nIMPLEMENTATION postier 0.1\r\n.\r\n",
    ),
    ("capa-argument", {}, b"CAPA x\r\n", b"-ERR Syntax: CAPA\r\n"),
    # --- USER / PASS (RFC 1939 §7) ---
    ("login", {}, LOGIN, LOGIN_OK),
    ("login-lower-case", {}, b"user alice\r\npass secret\r\n", LOGIN_OK),
    ("login-bare-lf", {}, b"USER alice\nPASS secret\n", LOGIN_OK),
    ("login-trailing-space-user", {}, b"USER alice \r\nPASS secret\r\n", LOGIN_OK),
    (
        "login-password-with-spaces",
        {},
        b"USER bob\r\nPASS with space \r\n",
        LOGIN_OK,
    ),
    (
        "login-utf8",
        {},
        "USER élodie\r\nPASS pässword\r\n".encode(),
        LOGIN_OK,
    ),
    ("wrong-password", {}, b"USER alice\r\nPASS nope\r\n", b"+OK Send PASS\r\n" + ERR_AUTH),
    (
        "retry-after-failure",
        {},
        b"USER alice\r\nPASS nope\r\n" + LOGIN,
        b"+OK Send PASS\r\n" + ERR_AUTH + LOGIN_OK,
    ),
    (
        "pass-without-user",
        {},
        b"PASS secret\r\n",
        b"-ERR PASS must follow a successful USER\r\n",
    ),
    (
        "pass-not-right-after-user",
        {},
        b"USER alice\r\nCAPA\r\nPASS secret\r\n",
        b"+OK Send PASS\r\n"
        + CAPA_HEAD
        + b"USER\r\nSASL PLAIN\r\n"
        + CAPA_TAIL
        + b"-ERR PASS must follow a successful USER\r\n",
    ),
    (
        "pass-after-failed-user",
        {},
        b"USER\r\nPASS secret\r\n",
        b"-ERR Syntax: USER name\r\n-ERR PASS must follow a successful USER\r\n",
    ),
    (
        "pass-empty",
        {},
        b"USER alice\r\nPASS\r\n",
        b"+OK Send PASS\r\n-ERR Syntax: PASS password\r\n",
    ),
    ("pass-bad-utf8", {}, b"USER alice\r\nPASS \xff\r\n", b"+OK Send PASS\r\n" + ERR_AUTH),
    (
        "pass-with-nul",
        {},
        b"USER alice\r\nPASS a\x00b\r\n",
        b"+OK Send PASS\r\n-ERR Invalid characters in command line\r\n",
    ),
    ("user-no-argument", {}, b"USER\r\n", b"-ERR Syntax: USER name\r\n"),
    ("user-two-arguments", {}, b"USER a b\r\n", b"-ERR Syntax: USER name\r\n"),
    ("user-bad-utf8", {}, b"USER \xff\r\n", b"-ERR User name is not valid UTF-8\r\n"),
    ("user-control-char", {}, b"USER a\x01b\r\n", b"-ERR Invalid characters in command line\r\n"),
    ("user-plaintext-disallowed", {"plaintext_allowed": False}, b"USER alice\r\n", ERR_PLAINTEXT),
    ("pass-plaintext-disallowed", {"plaintext_allowed": False}, b"PASS secret\r\n", ERR_PLAINTEXT),
    (
        "in-use",
        {},
        b"USER locked\r\nPASS x\r\n",
        b"+OK Send PASS\r\n-ERR [IN-USE] Maildrop already locked by another session\r\n",
    ),
    (
        "store-failure",
        {},
        b"USER broken\r\nPASS x\r\n",
        b"+OK Send PASS\r\n-ERR [SYS/TEMP] Temporary system error, try again later\r\n",
    ),
    (
        "apop",
        {},
        b"APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n",
        b"-ERR APOP not supported\r\n",
    ),
    # --- AUTH PLAIN (RFC 5034, RFC 4616) ---
    ("auth-plain-initial", {}, b"AUTH PLAIN " + plain(b"\0alice\0secret") + b"\r\n", LOGIN_OK[15:]),
    (
        "auth-plain-continuation",
        {},
        b"AUTH PLAIN\r\n" + plain(b"\0alice\0secret") + b"\r\n",
        b"+ \r\n" + LOGIN_OK[15:],
    ),
    (
        "auth-plain-lower-case",
        {},
        b"auth plain " + plain(b"alice\0alice\0secret") + b"\r\n",
        LOGIN_OK[15:],
    ),
    (
        "auth-plain-other-authzid",
        {},
        b"AUTH PLAIN " + plain(b"admin\0alice\0secret") + b"\r\n",
        b"-ERR [AUTH] Authorization identity must be empty or equal\r\n",
    ),
    (
        "auth-plain-wrong-password",
        {},
        b"AUTH PLAIN " + plain(b"\0alice\0nope") + b"\r\n",
        ERR_AUTH,
    ),
    ("auth-cancel", {}, b"AUTH PLAIN\r\n*\r\n", b"+ \r\n-ERR Authentication cancelled\r\n"),
    ("auth-bad-base64", {}, b"AUTH PLAIN !!!!\r\n", b"-ERR Invalid base64 data\r\n"),
    ("auth-bad-padding", {}, b"AUTH PLAIN YWJj=\r\n", b"-ERR Invalid base64 data\r\n"),
    (
        "auth-continuation-bad-base64",
        {},
        b"AUTH PLAIN\r\n=\r\n",
        b"+ \r\n-ERR Invalid base64 data\r\n",
    ),
    (
        "auth-plain-two-fields",
        {},
        b"AUTH PLAIN " + plain(b"alice\0secret") + b"\r\n",
        b"-ERR Malformed PLAIN response\r\n",
    ),
    (
        "auth-plain-empty-password",
        {},
        b"AUTH PLAIN " + plain(b"\0alice\0") + b"\r\n",
        b"-ERR Malformed PLAIN response\r\n",
    ),
    (
        "auth-plain-bad-utf8",
        {},
        b"AUTH PLAIN " + plain(b"\0\xff\0secret") + b"\r\n",
        b"-ERR Malformed PLAIN response\r\n",
    ),
    ("auth-plain-empty-initial", {}, b"AUTH PLAIN =\r\n", b"-ERR Malformed PLAIN response\r\n"),
    (
        "auth-plain-continuation-empty-line",
        {},
        b"AUTH PLAIN\r\n\r\n",
        b"+ \r\n-ERR Malformed PLAIN response\r\n",
    ),
    (
        "auth-plain-too-many-arguments",
        {},
        b"AUTH PLAIN a b\r\n",
        b"-ERR Syntax: AUTH mechanism [initial-response]\r\n",
    ),
    (
        "auth-unknown-mechanism",
        {},
        b"AUTH CRAM-MD5\r\n",
        b"-ERR Unsupported authentication mechanism\r\n",
    ),
    ("auth-list", {}, b"AUTH\r\n", b"+OK\r\nPLAIN\r\n.\r\n"),
    ("auth-list-no-plaintext", {"plaintext_allowed": False}, b"AUTH\r\n", b"+OK\r\n.\r\n"),
    ("auth-plaintext-disallowed", {"plaintext_allowed": False}, b"AUTH PLAIN\r\n", ERR_PLAINTEXT),
    (
        "auth-then-commands",
        {},
        b"AUTH PLAIN\r\n*\r\nCAPA\r\n",
        b"+ \r\n-ERR Authentication cancelled\r\n"
        + CAPA_HEAD
        + b"USER\r\nSASL PLAIN\r\n"
        + CAPA_TAIL,
    ),
    # --- STLS (RFC 2595 §4) ---
    ("stls-unavailable", {}, b"STLS\r\n", b"-ERR TLS not available\r\n"),
    (
        "stls-already-active",
        {"tls_available": True, "tls_active": True},
        b"STLS\r\n",
        b"-ERR Command not permitted when TLS active\r\n",
    ),
    ("stls-argument", {"tls_available": True}, b"STLS now\r\n", b"-ERR Syntax: STLS\r\n"),
    (
        "stls-in-transaction",
        {"tls_available": True},
        LOGIN + b"STLS\r\n",
        LOGIN_OK + b"-ERR STLS not allowed in TRANSACTION state, already logged in\r\n",
    ),
    # --- QUIT (RFC 1939 §4, §6) ---
    ("quit-authorization", {}, b"QUIT\r\n", SIGN_OFF + b"\r\n"),
    ("quit-ignores-the-rest", {}, b"QUIT\r\nCAPA\r\n", SIGN_OFF + b"\r\n"),
    ("quit-argument", {}, b"QUIT now\r\n", b"-ERR Syntax: QUIT\r\n"),
    (
        "quit-transaction",
        {},
        LOGIN + b"QUIT\r\n",
        LOGIN_OK + SIGN_OFF + b" (3 messages left)\r\n",
    ),
    (
        "quit-after-deletions",
        {},
        LOGIN + b"DELE 1\r\nDELE 3\r\nQUIT\r\nNOOP\r\n",
        LOGIN_OK
        + b"+OK Message 1 deleted\r\n+OK Message 3 deleted\r\n"
        + SIGN_OFF
        + b" (1 message left)\r\n",
    ),
    (
        "quit-maildrop-empty",
        {},
        LOGIN + b"DELE 2\r\nDELE 1\r\nDELE 3\r\nQUIT\r\n",
        LOGIN_OK
        + b"+OK Message 2 deleted\r\n+OK Message 1 deleted\r\n+OK Message 3 deleted\r\n"
        + SIGN_OFF
        + b" (maildrop empty)\r\n",
    ),
    (
        "quit-expunge-failed",
        {"quit_ok": False},
        LOGIN + b"DELE 1\r\nQUIT\r\n",
        LOGIN_OK
        + b"+OK Message 1 deleted\r\n-ERR [SYS/TEMP] Some deleted messages not removed\r\n",
    ),
    # --- commands in the wrong state ---
    (
        "stat-before-login",
        {},
        b"STAT\r\n",
        b"-ERR STAT not allowed in AUTHORIZATION state, log in first\r\n",
    ),
    (
        "transaction-commands-before-login",
        {},
        b"LIST\r\nRETR 1\r\nDELE 1\r\nNOOP\r\nRSET\r\nTOP 1 0\r\nUIDL\r\n",
        b"".join(
            b"-ERR %s not allowed in AUTHORIZATION state, log in first\r\n" % c
            for c in (b"LIST", b"RETR", b"DELE", b"NOOP", b"RSET", b"TOP", b"UIDL")
        ),
    ),
    (
        "authorization-commands-after-login",
        {},
        LOGIN + b"USER alice\r\nPASS secret\r\nAUTH PLAIN\r\nAPOP a b\r\n",
        LOGIN_OK
        + b"".join(
            b"-ERR %s not allowed in TRANSACTION state, already logged in\r\n" % c
            for c in (b"USER", b"PASS", b"AUTH", b"APOP")
        ),
    ),
    # --- garbage ---
    ("unknown-command", {}, b"FOO\r\n", b"-ERR Unknown command\r\n"),
    ("unknown-long-keyword", {}, b"STATUS\r\n", b"-ERR Unknown command\r\n"),
    ("unknown-in-transaction", {}, LOGIN + b"XTND\r\n", LOGIN_OK + b"-ERR Unknown command\r\n"),
    ("empty-line", {}, b"\r\n", b"-ERR Empty command line\r\n"),
    ("nul-keyword", {}, b"\x00\r\n", b"-ERR Unknown command\r\n"),
    ("leading-space", {}, b" CAPA\r\n", b"-ERR Unknown command\r\n"),
    ("cr-in-line", {}, b"CAPA \r\r\n", b"-ERR Invalid characters in command line\r\n"),
    ("high-bytes-keyword", {}, b"\xc3\xa9t\xc3\xa9\r\n", b"-ERR Unknown command\r\n"),
    # --- STAT / LIST / UIDL (RFC 1939 §5, §7) ---
    ("stat", {}, LOGIN + b"STAT\r\n", LOGIN_OK + b"+OK 3 99\r\n"),
    ("stat-argument", {}, LOGIN + b"STAT 1\r\n", LOGIN_OK + b"-ERR Syntax: STAT\r\n"),
    (
        "list",
        {},
        LOGIN + b"LIST\r\n",
        LOGIN_OK + b"+OK 3 messages (99 octets)\r\n1 34\r\n2 46\r\n3 19\r\n.\r\n",
    ),
    ("list-one", {}, LOGIN + b"LIST 2\r\n", LOGIN_OK + b"+OK 2 46\r\n"),
    ("list-leading-zeros", {}, LOGIN + b"LIST 0002\r\n", LOGIN_OK + b"+OK 2 46\r\n"),
    ("list-zero", {}, LOGIN + b"LIST 0\r\n", LOGIN_OK + b"-ERR No such message\r\n"),
    ("list-past-end", {}, LOGIN + b"LIST 4\r\n", LOGIN_OK + b"-ERR No such message\r\n"),
    (
        "list-huge-number",
        {},
        LOGIN + b"LIST " + b"9" * 300 + b"\r\n",
        LOGIN_OK + b"-ERR No such message\r\n",
    ),
    ("list-negative", {}, LOGIN + b"LIST -1\r\n", LOGIN_OK + b"-ERR Invalid message number\r\n"),
    ("list-plus", {}, LOGIN + b"LIST +1\r\n", LOGIN_OK + b"-ERR Invalid message number\r\n"),
    ("list-word", {}, LOGIN + b"LIST one\r\n", LOGIN_OK + b"-ERR Invalid message number\r\n"),
    (
        "list-unicode-digit",
        {},
        LOGIN + "LIST ١\r\n".encode(),
        LOGIN_OK + b"-ERR Invalid message number\r\n",
    ),
    ("list-two-arguments", {}, LOGIN + b"LIST 1 2\r\n", LOGIN_OK + b"-ERR Syntax: LIST [msg]\r\n"),
    (
        "uidl",
        {},
        LOGIN + b"UIDL\r\n",
        LOGIN_OK + b"+OK Unique-ID listing follows\r\n1 uid-1\r\n2 uid-2\r\n3 uid-3\r\n.\r\n",
    ),
    ("uidl-one", {}, LOGIN + b"UIDL 3\r\n", LOGIN_OK + b"+OK 3 uid-3\r\n"),
    ("uidl-past-end", {}, LOGIN + b"UIDL 9\r\n", LOGIN_OK + b"-ERR No such message\r\n"),
    ("uidl-two-arguments", {}, LOGIN + b"UIDL 1 2\r\n", LOGIN_OK + b"-ERR Syntax: UIDL [msg]\r\n"),
    (
        "empty-maildrop",
        {},
        b"USER empty\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nQUIT\r\n",
        b"+OK Send PASS\r\n+OK Logged in, maildrop has 0 messages (0 octets)\r\n+OK 0 0\r\n"
        b"+OK 0 messages (0 octets)\r\n.\r\n+OK Unique-ID listing follows\r\n.\r\n"
        b"-ERR No such message\r\n" + SIGN_OFF + b" (maildrop empty)\r\n",
    ),
    # --- RETR (RFC 1939 §5): CRLF, bare LF converted, byte-stuffing ---
    (
        "retr-crlf",
        {},
        LOGIN + b"RETR 1\r\n",
        LOGIN_OK + b"+OK 34 octets\r\nSubject: one\r\n\r\nHello\r\n..dot line\r\n.\r\n",
    ),
    (
        "retr-bare-lf",
        {},
        LOGIN + b"RETR 2\r\n",
        LOGIN_OK
        + b"+OK 46 octets\r\nSubject: two\r\nFrom: b\r\n\r\nline1\r\nline2\r\nline3\r\n.\r\n",
    ),
    (
        "retr-leading-dot-no-final-crlf",
        {},
        LOGIN + b"RETR 3\r\n",
        LOGIN_OK + b"+OK 19 octets\r\n..lead\r\n\r\n...x\r\nend\r\n.\r\n",
    ),
    ("retr-no-argument", {}, LOGIN + b"RETR\r\n", LOGIN_OK + b"-ERR Syntax: RETR msg\r\n"),
    ("retr-past-end", {}, LOGIN + b"RETR 4\r\n", LOGIN_OK + b"-ERR No such message\r\n"),
    (
        "retr-unreadable-then-go-on",
        {"unreadable": True},
        LOGIN + b"RETR 2\r\nNOOP\r\n",
        LOGIN_OK + b"-ERR [SYS/TEMP] Temporary system error, try again later\r\n+OK\r\n",
    ),
    # --- TOP (RFC 1939 §7) ---
    (
        "top-0",
        {},
        LOGIN + b"TOP 1 0\r\n",
        LOGIN_OK + b"+OK Top of message follows\r\nSubject: one\r\n\r\n.\r\n",
    ),
    (
        "top-2",
        {},
        LOGIN + b"TOP 2 2\r\n",
        LOGIN_OK
        + b"+OK Top of message follows\r\nSubject: two\r\nFrom: b\r\n\r\nline1\r\nline2\r\n.\r\n",
    ),
    (
        "top-stuffed-body-line",
        {},
        LOGIN + b"TOP 1 2\r\n",
        LOGIN_OK
        + b"+OK Top of message follows\r\nSubject: one\r\n\r\nHello\r\n..dot line\r\n.\r\n",
    ),
    (
        "top-more-than-body",
        {},
        LOGIN + b"TOP 3 100\r\n",
        LOGIN_OK + b"+OK Top of message follows\r\n..lead\r\n\r\n...x\r\nend\r\n.\r\n",
    ),
    (
        "top-huge-line-count",
        {},
        LOGIN + b"TOP 3 " + b"9" * 100 + b"\r\n",
        LOGIN_OK + b"+OK Top of message follows\r\n..lead\r\n\r\n...x\r\nend\r\n.\r\n",
    ),
    (
        "top-0-stuffed-header",
        {},
        LOGIN + b"TOP 3 0\r\n",
        LOGIN_OK + b"+OK Top of message follows\r\n..lead\r\n\r\n.\r\n",
    ),
    ("top-one-argument", {}, LOGIN + b"TOP 1\r\n", LOGIN_OK + b"-ERR Syntax: TOP msg lines\r\n"),
    ("top-bad-count", {}, LOGIN + b"TOP 1 -1\r\n", LOGIN_OK + b"-ERR Invalid line count\r\n"),
    ("top-bad-number", {}, LOGIN + b"TOP x 1\r\n", LOGIN_OK + b"-ERR Invalid message number\r\n"),
    ("top-past-end", {}, LOGIN + b"TOP 5 1\r\n", LOGIN_OK + b"-ERR No such message\r\n"),
    # --- DELE / RSET / NOOP (RFC 1939 §5) ---
    (
        "dele-then-stat-list-uidl",
        {},
        LOGIN + b"DELE 1\r\nSTAT\r\nLIST\r\nUIDL\r\n",
        LOGIN_OK + b"+OK Message 1 deleted\r\n+OK 2 65\r\n"
        b"+OK 2 messages (65 octets)\r\n2 46\r\n3 19\r\n.\r\n"
        b"+OK Unique-ID listing follows\r\n2 uid-2\r\n3 uid-3\r\n.\r\n",
    ),
    (
        "deleted-message-refused",
        {},
        LOGIN + b"DELE 1\r\nDELE 1\r\nRETR 1\r\nTOP 1 0\r\nLIST 1\r\nUIDL 1\r\n",
        LOGIN_OK + b"+OK Message 1 deleted\r\n" + b"-ERR Message 1 already deleted\r\n" * 5,
    ),
    ("dele-past-end", {}, LOGIN + b"DELE 4\r\n", LOGIN_OK + b"-ERR No such message\r\n"),
    ("dele-no-argument", {}, LOGIN + b"DELE\r\n", LOGIN_OK + b"-ERR Syntax: DELE msg\r\n"),
    (
        "rset-restores",
        {},
        LOGIN + b"DELE 1\r\nDELE 2\r\nRSET\r\nSTAT\r\nLIST 1\r\nQUIT\r\n",
        LOGIN_OK + b"+OK Message 1 deleted\r\n+OK Message 2 deleted\r\n"
        b"+OK Reset, maildrop has 3 messages (99 octets)\r\n+OK 3 99\r\n+OK 1 34\r\n"
        + SIGN_OFF
        + b" (3 messages left)\r\n",
    ),
    ("rset-argument", {}, LOGIN + b"RSET 1\r\n", LOGIN_OK + b"-ERR Syntax: RSET\r\n"),
    ("noop", {}, LOGIN + b"NOOP\r\n", LOGIN_OK + b"+OK\r\n"),
    ("noop-argument", {}, LOGIN + b"NOOP 1\r\n", LOGIN_OK + b"-ERR Syntax: NOOP\r\n"),
    # --- a whole pipelined session (RFC 2449 §6.6) ---
    (
        "pipelined-session",
        {},
        b"CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST 1\r\nUIDL 1\r\nRETR 1\r\n"
        b"DELE 1\r\nQUIT\r\n",
        CAPA_HEAD
        + b"USER\r\nSASL PLAIN\r\n"
        + CAPA_TAIL
        + LOGIN_OK
        + b"+OK 3 99\r\n+OK 1 34\r\n+OK 1 uid-1\r\n"
        b"+OK 34 octets\r\nSubject: one\r\n\r\nHello\r\n..dot line\r\n.\r\n"
        b"+OK Message 1 deleted\r\n" + SIGN_OFF + b" (2 messages left)\r\n",
    ),
    # --- limits ---
    (
        "line-at-limit",
        {"max_line": 16},
        b"USER abcdefghi\r\nQUIT\r\n",  # 16 octets with CRLF
        b"+OK Send PASS\r\n" + SIGN_OFF + b"\r\n",
    ),
    (
        "line-over-limit",
        {"max_line": 16},
        b"USER abcdefghij\r\nQUIT\r\n",  # 17 octets
        b"-ERR Line too long\r\n" + SIGN_OFF + b"\r\n",
    ),
    (
        "huge-line-resyncs",
        {},
        b"USER " + b"a" * 5000 + b"\r\nPASS secret\r\nCAPA\r\n",
        b"-ERR Line too long\r\n-ERR PASS must follow a successful USER\r\n"
        + CAPA_HEAD
        + b"USER\r\nSASL PLAIN\r\n"
        + CAPA_TAIL,
    ),
    (
        "huge-argument-in-transaction",
        {},
        LOGIN + b"RETR " + b"1" * 600 + b"\r\nNOOP\r\n",
        LOGIN_OK + b"-ERR Line too long\r\n+OK\r\n",
    ),
    (
        "sasl-line-limit",
        {"max_sasl_line": 16},
        b"AUTH PLAIN\r\n" + b"A" * 40 + b"\r\nCAPA\r\n",
        b"+ \r\n-ERR Line too long\r\n" + CAPA_HEAD + b"USER\r\nSASL PLAIN\r\n" + CAPA_TAIL,
    ),
    (
        "sasl-line-longer-than-command-line",
        {"max_line": 16},
        b"AUTH PLAIN\r\n" + plain(b"\0alice\0secret") + b"\r\n",
        b"+ \r\n" + LOGIN_OK[15:],
    ),
    (
        "too-many-errors",
        {"max_errors": 3},
        b"FOO\r\nSTAT\r\nUSER\r\nCAPA\r\n",
        b"-ERR Unknown command\r\n"
        b"-ERR STAT not allowed in AUTHORIZATION state, log in first\r\n"
        b"-ERR Too many errors, closing connection\r\n",
    ),
    (
        "long-lines-count-as-errors",
        {"max_errors": 2, "max_line": 16},
        b"X" * 20 + b"\r\n" + b"Y" * 20 + b"\r\nCAPA\r\n",
        b"-ERR Line too long\r\n-ERR Too many errors, closing connection\r\n",
    ),
    (
        "no-such-message-does-not-count",
        {"max_errors": 2},
        LOGIN + b"RETR 9\r\nRETR 9\r\nRETR 9\r\nAPOP\r\nAPOP\r\nNOOP\r\n",
        LOGIN_OK
        + b"-ERR No such message\r\n" * 3
        + b"-ERR APOP not allowed in TRANSACTION state, already logged in\r\n"
        + b"-ERR Too many errors, closing connection\r\n",
    ),
    (
        "too-many-auth-failures",
        {"max_auth_failures": 2},
        b"USER alice\r\nPASS a\r\nUSER alice\r\nPASS b\r\nUSER alice\r\n",
        b"+OK Send PASS\r\n"
        + ERR_AUTH
        + b"+OK Send PASS\r\n"
        + b"-ERR [AUTH] Too many authentication failures, closing connection\r\n",
    ),
    (
        "bad-utf8-password-counts-as-failure",
        {"max_auth_failures": 1},
        b"USER alice\r\nPASS \xff\r\nCAPA\r\n",
        b"+OK Send PASS\r\n-ERR [AUTH] Too many authentication failures, closing connection\r\n",
    ),
    (
        "in-use-is-not-an-auth-failure",
        {"max_auth_failures": 1},
        b"USER locked\r\nPASS x\r\nNOOP\r\n",
        b"+OK Send PASS\r\n-ERR [IN-USE] Maildrop already locked by another session\r\n"
        b"-ERR NOOP not allowed in AUTHORIZATION state, log in first\r\n",
    ),
]


@pytest.mark.parametrize("bytewise", [False, True], ids=["packet", "bytewise"])
@pytest.mark.parametrize(
    ("kwargs", "data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_table(kwargs: dict[str, Any], data: bytes, expected: bytes, bytewise: bool) -> None:
    run = drive(data, bytewise=bytewise, **kwargs)
    assert run.output == GREETING + expected


def test_case_ids_are_unique() -> None:
    assert len({c[0] for c in CASES}) == len(CASES)


# --- hook events carry exactly what the adapter needs ---------------------------


@pytest.mark.parametrize("bytewise", [False, True])
def test_authenticate_events(bytewise: bool) -> None:
    data = b"USER x\r\nPASS with space \r\nAUTH PLAIN " + plain(b"alice\0alice\0s p") + b"\r\n"
    run = drive(data, bytewise=bytewise)
    assert run.hooks == [
        Authenticate("x", "with space ", "USER"),
        Authenticate("alice", "s p", "PLAIN"),
    ]
    assert "with space" not in repr(run.hooks[0])  # passwords stay out of logs


def test_retrieve_and_top_events() -> None:
    run = drive(LOGIN + b"RETR 2\r\nTOP 3 7\r\n")
    assert run.hooks[1:] == [Retrieve(2, "uid-2"), Top(3, 7, "uid-3")]


@pytest.mark.parametrize("bytewise", [False, True])
def test_quit_event_lists_deletions_in_order(bytewise: bool) -> None:
    run = drive(LOGIN + b"DELE 3\r\nDELE 1\r\nQUIT\r\n", bytewise=bytewise)
    assert run.hooks[1:] == [Quit((1, 3), ("uid-1", "uid-3")), Close("quit")]
    assert run.conn is not None
    assert run.conn.state is State.CLOSED


def test_quit_without_deletions_still_asks_for_update() -> None:
    run = drive(LOGIN + b"QUIT\r\n")
    assert run.hooks[1:] == [Quit((), ()), Close("quit")]


@pytest.mark.parametrize("bytewise", [False, True])
def test_eof_in_transaction_never_deletes(bytewise: bool) -> None:
    run = drive(LOGIN + b"DELE 1\r\nDELE 2\r\nSTAT", bytewise=bytewise, eof=True)
    assert run.output == GREETING + LOGIN_OK + b"+OK Message 1 deleted\r\n+OK Message 2 deleted\r\n"
    assert run.hooks[1:] == [Close("connection closed by client")]


def test_eof_processes_complete_lines_first() -> None:
    run = drive(b"CAPA\r\nQUIT\r\n", eof=True)
    assert run.output.endswith(SIGN_OFF + b"\r\n")
    assert run.hooks == [Close("quit")]


def test_eof_during_sasl() -> None:
    run = drive(b"AUTH PLAIN\r\nAAAA", eof=True)
    assert run.output == GREETING + b"+ \r\n"
    assert run.hooks == [Close("connection closed by client")]


def test_close_reasons() -> None:
    assert drive(b"X\r\n", max_errors=1).close == Close("too many errors")
    run = drive(b"USER a\r\nPASS b\r\n", max_auth_failures=1)
    assert run.close == Close("too many authentication failures")
    assert drive(LOGIN + b"QUIT\r\n", quit_ok=False).close == Close("quit")


def test_username_and_state() -> None:
    conn = ServerConnection(plaintext_allowed=True)
    assert conn.state.name == "AUTHORIZATION"
    assert conn.username is None
    conn.next_event()
    conn.receive_data(LOGIN)
    assert conn.next_event() == Reply(b"+OK Send PASS\r\n")
    assert isinstance(conn.next_event(), Authenticate)
    conn.auth_ok(MAILDROP)
    assert conn.state is State.TRANSACTION
    assert conn.username == "alice"
    assert conn.next_event() is NEED_DATA


# --- STLS (RFC 2595 §4) --------------------------------------------------------


def test_stls_discards_pipelined_plaintext() -> None:
    conn = ServerConnection(plaintext_allowed=False, tls_available=True)
    assert conn.next_event() == Reply(GREETING)
    conn.receive_data(b"STLS\r\nUSER mallory\r\nPASS x\r\n")
    assert conn.next_event() == Reply(b"+OK Begin TLS negotiation\r\n")
    assert conn.next_event() == StartTls()
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"more plaintext\r\n")  # the adapter is doing the handshake
    conn.tls_started(plaintext_allowed=True)
    assert conn.tls_active
    assert conn.next_event() is NEED_DATA  # USER mallory / PASS x are gone
    conn.receive_data(b"CAPA\r\nUSER alice\r\n")
    capa = CAPA_HEAD + b"USER\r\nSASL PLAIN\r\n" + CAPA_TAIL  # STLS no longer offered
    assert conn.next_event() == Reply(capa)
    assert conn.next_event() == Reply(b"+OK Send PASS\r\n")


def test_stls_then_plaintext_still_refused_when_adapter_says_so() -> None:
    conn = ServerConnection(plaintext_allowed=False, tls_available=True)
    conn.next_event()
    conn.receive_data(b"STLS\r\n")
    conn.next_event()
    conn.next_event()
    conn.tls_started(plaintext_allowed=False)
    conn.receive_data(b"USER alice\r\nSTLS\r\n")
    assert conn.next_event() == Reply(ERR_PLAINTEXT)
    assert conn.next_event() == Reply(b"-ERR Command not permitted when TLS active\r\n")


def test_stls_handshake_failure_closes_silently() -> None:
    conn = ServerConnection(plaintext_allowed=False, tls_available=True)
    conn.next_event()
    conn.receive_data(b"STLS\r\n")
    conn.next_event()
    assert conn.next_event() == StartTls()
    assert conn.fail() == b""
    assert conn.next_event() == Close("TLS handshake failed")


# --- hook answers: errors and misuse --------------------------------------------


def test_fail_with_custom_response_on_authenticate() -> None:
    conn = ServerConnection(plaintext_allowed=True, max_auth_failures=1)
    conn.next_event()
    conn.receive_data(b"USER a\r\nPASS b\r\nNOOP\r\n")
    conn.next_event()
    conn.next_event()
    assert conn.fail(ERR_SYS_PERM) == (
        b"-ERR [SYS/PERM] Permanent system error, contact the administrator\r\n"
    )
    # not counted as an authentication failure: the session goes on
    assert conn.next_event() == Reply(
        b"-ERR NOOP not allowed in AUTHORIZATION state, log in first\r\n"
    )


def test_auth_failed_with_custom_response() -> None:
    conn = ServerConnection(plaintext_allowed=True)
    conn.next_event()
    conn.receive_data(b"USER a\r\nPASS b\r\n")
    conn.next_event()
    conn.next_event()
    response = Response(False, "Account disabled", "AUTH")
    assert conn.auth_failed(response) == b"-ERR [AUTH] Account disabled\r\n"


def test_fail_on_quit_ends_session() -> None:
    conn = ServerConnection(plaintext_allowed=True)
    conn.next_event()
    conn.receive_data(LOGIN + b"QUIT\r\n")
    for _ in range(2):
        conn.next_event()
    conn.auth_ok(MAILDROP)
    assert conn.next_event() == Quit((), ())
    assert conn.state is State.UPDATE
    assert conn.fail() == b"-ERR [SYS/TEMP] Temporary system error, try again later\r\n"
    assert conn.next_event() == Close("expunge failed")


def test_next_event_while_hook_pending_is_a_local_error() -> None:
    conn = ServerConnection(plaintext_allowed=True)
    conn.next_event()
    conn.receive_data(LOGIN + b"NOOP\r\n")
    conn.next_event()
    assert isinstance(conn.next_event(), Authenticate)
    conn.receive_data(b"STAT\r\n")  # buffering while a hook is pending is fine
    with pytest.raises(LocalProtocolError, match="Authenticate is not answered"):
        conn.next_event()


@pytest.mark.parametrize(
    "misuse",
    [
        lambda c: c.auth_ok([]),
        lambda c: c.auth_failed(),
        lambda c: c.auth_in_use(),
        lambda c: c.send_message(b"x"),
        lambda c: c.tls_started(),
        lambda c: c.update_done(True),
        lambda c: c.fail(),
    ],
)
def test_answer_without_pending_hook_is_a_local_error(misuse: Any) -> None:
    conn = ServerConnection(plaintext_allowed=True)
    with pytest.raises(LocalProtocolError):
        misuse(conn)


def test_answer_to_the_wrong_hook_is_a_local_error() -> None:
    conn = ServerConnection(plaintext_allowed=True)
    conn.next_event()
    conn.receive_data(LOGIN)
    conn.next_event()
    conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send_message(b"x")
    with pytest.raises(LocalProtocolError):
        conn.update_done(True)


@pytest.mark.parametrize(
    "maildrop",
    [
        [(10, "")],
        [(10, "a b")],
        [(10, "x" * 71)],
        [(10, "é")],
        [(-1, "a")],
        [(1, "a"), (2, "a")],
    ],
    ids=["empty-uidl", "space", "too-long", "non-ascii", "negative-size", "duplicate"],
)
def test_invalid_maildrop_is_a_local_error(maildrop: list[tuple[int, str]]) -> None:
    conn = ServerConnection(plaintext_allowed=True)
    conn.next_event()
    conn.receive_data(LOGIN)
    conn.next_event()
    conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.auth_ok(maildrop)


def test_maildrop_uidl_of_70_printable_characters() -> None:
    conn = ServerConnection(plaintext_allowed=True)
    conn.next_event()
    conn.receive_data(LOGIN + b"UIDL 1\r\n")
    conn.next_event()
    conn.next_event()
    uidl = "!" + "~" * 69
    conn.auth_ok([(5, uidl)])
    assert conn.next_event() == Reply(b"+OK 1 " + uidl.encode() + b"\r\n")


def test_fail_needs_an_error_response() -> None:
    conn = ServerConnection(plaintext_allowed=True)
    conn.next_event()
    conn.receive_data(LOGIN)
    conn.next_event()
    conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.fail(Response(True, "fine"))
    with pytest.raises(LocalProtocolError):
        conn.auth_failed(Response(True, "fine"))


def test_receive_after_eof_is_a_local_error() -> None:
    conn = ServerConnection(plaintext_allowed=True)
    conn.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"CAPA\r\n")


def test_receive_after_close_is_ignored() -> None:
    conn = ServerConnection(plaintext_allowed=True)
    conn.receive_data(b"QUIT\r\n")
    events = [conn.next_event() for _ in range(3)]
    assert events[-1] == Close("quit")
    conn.receive_data(b"CAPA\r\n")
    conn.receive_data(b"")
    assert conn.next_event() == Close("quit")


@pytest.mark.parametrize(
    "kwargs",
    [{"max_line": 7}, {"max_sasl_line": 0}, {"max_errors": 0}, {"max_auth_failures": 0}],
)
def test_constructor_refuses_unusable_limits(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="at least"):
        ServerConnection(plaintext_allowed=True, **kwargs)


def test_custom_greeting() -> None:
    conn = ServerConnection(plaintext_allowed=True, greeting="mail.example.test POP3 ready")
    assert conn.next_event() == Reply(b"+OK mail.example.test POP3 ready\r\n")


def test_greeting_must_be_a_safe_line() -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        ServerConnection(plaintext_allowed=True, greeting="ready\r\n+OK injected")


# --- bounded buffers --------------------------------------------------------------


def test_endless_line_keeps_buffer_bounded() -> None:
    conn = ServerConnection(plaintext_allowed=True, max_line=64)
    conn.next_event()
    replies = []
    for _ in range(1000):  # 4 MB without a line feed
        conn.receive_data(b"A" * 4096)
        while not isinstance(event := conn.next_event(), NeedData):
            replies.append(event)
        assert len(conn._buffer) < 64
    conn.receive_data(b"tail\r\nNOOP\r\n")
    while not isinstance(event := conn.next_event(), NeedData):
        replies.append(event)
    assert replies == [
        Reply(b"-ERR Line too long\r\n"),
        Reply(b"-ERR NOOP not allowed in AUTHORIZATION state, log in first\r\n"),
    ]


def test_large_maildrop_listing() -> None:
    conn = ServerConnection(plaintext_allowed=True)
    conn.next_event()
    conn.receive_data(LOGIN + b"DELE 50000\r\nSTAT\r\nLIST\r\n")
    conn.next_event()
    conn.next_event()
    conn.auth_ok([(n, f"u{n}") for n in range(1, 100_001)])
    conn.next_event()
    total = sum(range(1, 100_001)) - 50000
    assert conn.next_event() == Reply(b"+OK 99999 %d\r\n" % total)
    listing = conn.next_event()
    assert isinstance(listing, Reply)
    lines = listing.data.split(b"\r\n")
    assert lines[0] == b"+OK 99999 messages (%d octets)" % total
    assert lines[1] == b"1 1"
    assert b"50000 50000" not in lines
    assert lines[-3:] == [b"100000 100000", b".", b""]


# --- any bytes: events, never an exception -----------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.sampled_from(
                [
                    LOGIN,
                    b"\r\n",
                    b"\n",
                    b"RETR 1\r\n",
                    b"TOP 2 1\r\n",
                    b"DELE 1\r\n",
                    b"RSET\r\n",
                    b"LIST\r\n",
                    b"UIDL 2\r\n",
                    b"AUTH PLAIN\r\n",
                    b"STLS\r\n",
                    b"QUIT\r\n",
                    b"*\r\n",
                    b"A" * 100,
                ]
            ),
        ),
        max_size=20,
    ),
    eof=st.booleans(),
)
def test_any_bytes_never_raise(chunks: list[bytes], eof: bool) -> None:
    run = drive(
        chunks,
        eof=eof,
        tls_available=True,
        max_line=48,
        max_sasl_line=48,
        max_errors=50,
        max_auth_failures=50,
    )
    assert run.output.startswith(GREETING)
    assert run.output.endswith(b"\r\n")
    if eof:
        assert run.close is not None
    assert run.conn is not None
    assert len(run.conn._buffer) < 48


# --- Python's poplib against the core, over a socketpair ------------------------------


def serve_socket(sock: socket.socket) -> None:
    """A minimal adapter loop: the shape `postier.pop3.server` has."""
    conn = ServerConnection(plaintext_allowed=True)
    with sock:
        while True:
            event = conn.next_event()
            if isinstance(event, NeedData):
                conn.receive_data(sock.recv(4096))
            elif isinstance(event, Reply):
                sock.sendall(event.data)
            elif isinstance(event, Close):
                return
            else:
                sock.sendall(answer(conn, event, unreadable=False, quit_ok=True))


def test_poplib_session() -> None:
    client_sock, server_sock = socket.socketpair()
    server = threading.Thread(target=serve_socket, args=(server_sock,))
    server.start()

    class PairPOP3(poplib.POP3):
        def _create_socket(self, timeout: float) -> socket.socket:
            return client_sock

    pop = PairPOP3("unused.invalid", timeout=10)
    try:
        assert pop.getwelcome() == b"+OK postier POP3 server ready"
        capa = pop.capa()
        assert capa["SASL"] == ["PLAIN"]
        assert capa["IMPLEMENTATION"] == ["postier"]
        assert "USER" in capa
        with pytest.raises(poplib.error_proto, match="APOP not supported"):
            pop.apop("alice", "secret")
        assert pop.user("alice") == b"+OK Send PASS"
        assert pop.pass_("secret").startswith(b"+OK Logged in")
        assert pop.stat() == (3, 99)
        assert pop.list()[1] == [b"1 34", b"2 46", b"3 19"]
        assert pop.uidl(2) == b"+OK 2 uid-2"
        _, lines, octets = pop.retr(3)
        assert (lines, octets) == ([b".lead", b"", b"..x", b"end"], 19)
        assert pop.top(2, 1)[1] == [b"Subject: two", b"From: b", b"", b"line1"]
        pop.dele(1)
        with pytest.raises(poplib.error_proto, match="already deleted"):
            pop.retr(1)
        assert pop.stat() == (2, 65)
        pop.rset()
        pop.dele(2)
        pop.noop()
        assert pop.quit() == b"+OK postier POP3 server signing off (2 messages left)"
    finally:
        client_sock.close()
        server.join(timeout=10)
    assert not server.is_alive()


# --- the default limits -------------------------------------------------------------


def test_default_max_line_is_512_octets_with_crlf() -> None:
    fits = b"USER " + b"a" * (512 - 7) + b"\r\n"
    too_long = b"USER " + b"a" * (512 - 6) + b"\r\n"
    assert len(fits) == 512
    assert drive(fits).output == GREETING + b"+OK Send PASS\r\n"
    assert drive(too_long).output == GREETING + b"-ERR Line too long\r\n"


def test_default_max_sasl_line_is_2048_octets_with_crlf() -> None:
    fits = b"A" * 2044 + b"\r\n"  # valid base64, decodes to garbage: malformed PLAIN
    too_long = b"A" * 2048 + b"\r\n"
    assert drive(b"AUTH PLAIN\r\n" + fits).output.endswith(b"-ERR Malformed PLAIN response\r\n")
    assert drive(b"AUTH PLAIN\r\n" + too_long).output.endswith(b"-ERR Line too long\r\n")


def test_default_max_errors_is_10() -> None:
    run = drive(b"FOO\r\n" * 11)
    assert run.output == (
        GREETING + b"-ERR Unknown command\r\n" * 9 + b"-ERR Too many errors, closing connection\r\n"
    )
    assert run.close == Close("too many errors")


def test_default_max_auth_failures_is_3() -> None:
    run = drive(b"USER alice\r\nPASS x\r\n" * 4)
    assert run.output == (
        GREETING
        + (b"+OK Send PASS\r\n" + ERR_AUTH) * 2
        + b"+OK Send PASS\r\n-ERR [AUTH] Too many authentication failures, closing connection\r\n"
    )
