"""IMAP against the real server on loopback: exact response bytes over a raw socket
for the core commands (greeting, CAPABILITY, LOGIN/AUTHENTICATE, ENABLE, SELECT,
FETCH, STORE, SEARCH, COPY/MOVE, APPEND, EXPUNGE, mailbox management, STATUS,
QUOTA, errors and limits)."""

from __future__ import annotations

import asyncio
import base64
import re
import select
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import PASSWORD, ServerThread, thread_server

ALICE = "alice@example.test"
PRE_CAPS = b"IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE STARTTLS AUTH=PLAIN"
CAPS = (
    b"IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE "
    b"CHILDREN SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS STATUS=SIZE CONDSTORE "
    b"QRESYNC ESEARCH SEARCHRES SORT SORT=DISPLAY ESORT CONTEXT=SEARCH CONTEXT=SORT "
    b"THREAD=ORDEREDSUBJECT THREAD=REFERENCES "
    b"WITHIN BINARY MULTIAPPEND CATENATE UTF8=ACCEPT QUOTA QUOTA=RES-STORAGE NOTIFY URLAUTH "
    b"APPENDLIMIT=52428800"
)

SIMPLE = (
    b"From: Bob Example <bob@remote.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: Lunch plans\r\n"
    b"Date: Mon, 2 Mar 2026 10:00:00 +0000\r\n"
    b"Message-ID: <m1@remote.test>\r\n"
    b"\r\n"
    b"Shall we meet at noon?\r\n"
)
MULTIPART = (
    b"From: Carol <carol@remote.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: =?utf-8?q?Rapport_=C3=A9t=C3=A9?=\r\n"
    b"Date: Tue, 3 Mar 2026 11:00:00 +0100\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Voil=C3=A0 le rapport\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream; name=data.bin\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAw==\r\n"
    b"--b1--\r\n"
)


_OPEN: list[Raw] = []


def close_clients() -> None:
    while _OPEN:
        _OPEN.pop().close()


@pytest.fixture(autouse=True)
def _close_sockets(request: pytest.FixtureRequest) -> Iterator[None]:
    """Close the test's client sockets before the server stops (so no server-side
    transport is left waiting for its peer when the loop ends)."""
    if "server" in request.fixturenames:
        request.getfixturevalue("server")
    yield
    close_clients()


def stop(srv: ServerThread) -> None:
    close_clients()
    srv.stop()


class Raw:
    """A minimal IMAP client on a socket that returns exact response bytes."""

    def __init__(self, port: int, *, tls: bool = False) -> None:
        _OPEN.append(self)
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock)
        self.sock = sock
        self.buf = b""
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def line(self) -> bytes:
        """One response line with any literals inside it, ending with CRLF."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            i = self.buf.index(b"\r\n") + 2
            part, self.buf = self.buf[:i], self.buf[i:]
            out += part
            m = re.search(rb"\{(\d+)\}\r\n$", part)
            if m is None:
                return out
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            out += self.buf[:n]
            self.buf = self.buf[n:]

    def until(self, tag: bytes) -> bytes:
        out = b""
        while True:
            line = self.line()
            out += line
            if line.startswith(tag + b" "):
                return out

    def cmd(self, text: str | bytes, tag: bytes | None = None) -> bytes:
        data = text.encode() if isinstance(text, str) else text
        self.send(data + b"\r\n")
        return self.until(tag or data.split(b" ", 1)[0])

    def login(self, user: str = ALICE) -> None:
        reply = self.cmd(f'L LOGIN {user} "{PASSWORD}"')
        assert reply.startswith(b"L OK"), reply

    def close(self) -> None:
        self.sock.close()


def deliver(srv: ServerThread, *messages: bytes, to: str = ALICE) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port("mx")) as c:
        for m in messages:
            c.sendmail("sender@remote.test", [to], m)


@pytest.fixture
def raw(server: ServerThread) -> Raw:
    c = Raw(server.port("imap"))
    c.login()
    return c


def _uidvalidity(c: Raw, box: str = "INBOX") -> int:
    out = c.cmd(f"UV STATUS {box} (UIDVALIDITY)")
    m = re.search(rb"UIDVALIDITY (\d+)", out)
    assert m
    return int(m.group(1))


# --- greeting, capabilities, login ---------------------------------------------------
def test_greeting_and_capability_before_and_after_login(server: ServerThread) -> None:
    c = Raw(server.port("imap"))
    assert c.greeting == (
        b"* OK [CAPABILITY " + PRE_CAPS + b"] mail.example.test IMAP4rev2 server ready\r\n"
    )
    assert (
        c.cmd("a CAPABILITY") == b"* CAPABILITY " + PRE_CAPS + b"\r\na OK CAPABILITY completed\r\n"
    )
    assert c.cmd("b NOOP") == b"b OK NOOP completed\r\n"
    assert c.cmd(f'c LOGIN alice@example.test "{PASSWORD}"') == (
        b"c OK [CAPABILITY " + CAPS + b"] Logged in\r\n"
    )
    assert c.cmd("d CAPABILITY") == b"* CAPABILITY " + CAPS + b"\r\nd OK CAPABILITY completed\r\n"
    assert c.cmd("e LOGOUT") == b"* BYE Logging out\r\ne OK LOGOUT completed\r\n"
    with pytest.raises(EOFError):
        c.line()


def test_login_failures_and_state_errors(server: ServerThread) -> None:
    c = Raw(server.port("imap"))
    assert c.cmd("a LOGIN alice@example.test wrong") == (
        b"a NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"
    )
    assert c.cmd("b SELECT INBOX") == b"b BAD Log in first\r\n"
    c.login()
    assert c.cmd("c FETCH 1 FLAGS") == b"c BAD No mailbox selected\r\n"
    assert c.cmd(f'd LOGIN alice@example.test "{PASSWORD}"') == b"d BAD Already logged in\r\n"
    assert c.cmd("e FOO") == b"e BAD Unknown command\r\n"


def test_authenticate_plain_initial_response_and_continuation(server: ServerThread) -> None:
    token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
    c = Raw(server.port("imap"))
    assert (
        c.cmd(f"a AUTHENTICATE PLAIN {token}") == b"a OK [CAPABILITY " + CAPS + b"] Logged in\r\n"
    )
    c = Raw(server.port("imap"))
    c.send(b"b AUTHENTICATE PLAIN\r\n")
    assert c.line() == b"+ \r\n"
    assert c.cmd(token.encode(), tag=b"b") == b"b OK [CAPABILITY " + CAPS + b"] Logged in\r\n"
    c = Raw(server.port("imap"))
    c.send(b"c AUTHENTICATE PLAIN\r\n")
    assert c.line() == b"+ \r\n"
    assert c.cmd(b"*", tag=b"c") == b"c BAD Authentication cancelled\r\n"
    bad = base64.b64encode(f"bob@example.test\0{ALICE}\0{PASSWORD}".encode()).decode()
    assert c.cmd(f"d AUTHENTICATE PLAIN {bad}") == (
        b"d NO [AUTHORIZATIONFAILED] Cannot act as another user\r\n"
    )
    assert c.cmd("e AUTHENTICATE CRAM-MD5") == (
        b"e NO [CANNOT] Unsupported authentication mechanism CRAM-MD5\r\n"
    )


def test_enable_id_namespace(raw: Raw) -> None:
    assert (
        raw.cmd("a ENABLE CONDSTORE X-UNKNOWN")
        == b"* ENABLED CONDSTORE\r\na OK ENABLE completed\r\n"
    )
    assert raw.cmd("b ENABLE QRESYNC IMAP4rev2 CONDSTORE") == (
        b"* ENABLED QRESYNC IMAP4rev2\r\nb OK ENABLE completed\r\n"
    )
    assert raw.cmd('c ID ("name" "test")') == (
        b'* ID ("name" "postier" "vendor" "postier" "version" "0.1.0")\r\nc OK ID completed\r\n'
    )
    assert (
        raw.cmd("d NAMESPACE") == b'* NAMESPACE (("" "/")) NIL NIL\r\nd OK NAMESPACE completed\r\n'
    )


# --- SELECT ---------------------------------------------------------------------------
def test_select_rev1_then_examine_closes(server: ServerThread, raw: Raw) -> None:
    deliver(server, SIMPLE, MULTIPART)
    uv = _uidvalidity(raw)
    assert raw.cmd("a SELECT inbox") == (
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
        b"* 2 EXISTS\r\n"
        b"* 2 RECENT\r\n"
        b"* OK [UNSEEN 1] First unseen\r\n"
        b"* OK [UIDVALIDITY %d] UIDs valid\r\n"
        b"* OK [UIDNEXT 3] Predicted next UID\r\n"
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] "
        b"Flags permitted\r\n"
        b"* OK [HIGHESTMODSEQ 3] Highest\r\n"
        b"a OK [READ-WRITE] SELECT completed\r\n" % uv
    )
    assert raw.cmd("b EXAMINE INBOX") == (
        b"* OK [CLOSED] Previous mailbox is now closed\r\n"
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
        b"* 2 EXISTS\r\n"
        b"* 0 RECENT\r\n"
        b"* OK [UNSEEN 1] First unseen\r\n"
        b"* OK [UIDVALIDITY %d] UIDs valid\r\n"
        b"* OK [UIDNEXT 3] Predicted next UID\r\n"
        b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n"
        b"* OK [HIGHESTMODSEQ 3] Highest\r\n"
        b"b OK [READ-ONLY] EXAMINE completed\r\n" % uv
    )
    assert raw.cmd("c STORE 1 +FLAGS (\\Seen)") == b"c NO [READ-ONLY] Mailbox is read-only\r\n"
    assert raw.cmd("d SELECT Nope") == (
        b"* OK [CLOSED] Previous mailbox is now closed\r\nd NO [NONEXISTENT] No such mailbox\r\n"
    )
    assert raw.cmd("e FETCH 1 UID") == b"e BAD No mailbox selected\r\n"


def test_select_rev2_sends_list_and_no_recent(server: ServerThread, raw: Raw) -> None:
    deliver(server, SIMPLE)
    raw.cmd("a ENABLE IMAP4rev2")
    uv = _uidvalidity(raw)
    assert raw.cmd("b SELECT INBOX") == (
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
        b"* 1 EXISTS\r\n"
        b"* OK [UIDVALIDITY %d] UIDs valid\r\n"
        b"* OK [UIDNEXT 2] Predicted next UID\r\n"
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] "
        b"Flags permitted\r\n"
        b"* OK [HIGHESTMODSEQ 2] Highest\r\n"
        b'* LIST () "/" INBOX\r\n'
        b"b OK [READ-WRITE] SELECT completed\r\n" % uv
    )


# --- FETCH ----------------------------------------------------------------------------
def test_fetch_metadata_items(server: ServerThread, raw: Raw) -> None:
    deliver(server, SIMPLE)
    raw.cmd("s SELECT INBOX")
    out = raw.cmd("a FETCH 1 (UID FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY)")
    size = int(re.search(rb"RFC822.SIZE (\d+)", out).group(1))  # type: ignore[union-attr]
    env = (
        b'("Mon, 2 Mar 2026 10:00:00 +0000" "Lunch plans" (("Bob Example" NIL "bob" '
        b'"remote.test")) (("Bob Example" NIL "bob" "remote.test")) (("Bob Example" NIL "bob" '
        b'"remote.test")) ((NIL NIL "alice" "example.test")) NIL NIL NIL "<m1@remote.test>")'
    )
    assert out == (
        b"* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE %d ENVELOPE %s BODYSTRUCTURE "
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 24 1 NIL NIL NIL NIL) '
        b'BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 24 1))\r\n'
        b"a OK FETCH completed\r\n" % (size, env)
    )
    out = raw.cmd("b FETCH 1 (INTERNALDATE MODSEQ)")
    assert re.fullmatch(
        rb'\* 1 FETCH \(INTERNALDATE "[ 0-9]\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d \+0000" '
        rb"MODSEQ \(2\)\)\r\nb OK \[HIGHESTMODSEQ 2\] FETCH completed\r\n",  # RFC 7162 §3.1
        out,
    ), out


def test_fetch_body_sections_partial_and_seen(server: ServerThread, raw: Raw) -> None:
    deliver(server, MULTIPART)
    raw.cmd("s SELECT INBOX")
    assert raw.cmd("a FETCH 1 (BODY.PEEK[1] BODY.PEEK[2.MIME])") == (
        b"* 1 FETCH (BODY[1] {21}\r\nVoil=C3=A0 le rapport "
        b"BODY[2.MIME] {92}\r\nContent-Type: application/octet-stream; name=data.bin\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n)\r\n"
        b"a OK FETCH completed\r\n"
    )
    assert raw.cmd("b FETCH 1 (BINARY.PEEK[1] BINARY.PEEK[2] BINARY.SIZE[2])") == (
        b"* 1 FETCH (BINARY[1] {17}\r\nVoil\xc3\xa0 le rapport "
        b"BINARY[2] ~{4}\r\n\x00\x01\x02\x03 BINARY.SIZE[2] 4)\r\n"
        b"b OK FETCH completed\r\n"
    )
    assert raw.cmd("c FETCH 1 (BODY.PEEK[HEADER.FIELDS (subject FROM)]<6.20> FLAGS)") == (
        b"* 1 FETCH (BODY[HEADER.FIELDS (subject FROM)]<6> {20}\r\nCarol <carol@remote. "
        b"FLAGS (\\Recent))\r\nc OK FETCH completed\r\n"
    )
    assert raw.cmd("d FETCH 1 BODY.PEEK[9]") == (
        b"* 1 FETCH (BODY[9] {0}\r\n)\r\nd OK FETCH completed\r\n"
    )
    # a non-PEEK body fetch sets \Seen and reports the new flags
    assert raw.cmd("e FETCH 1 BODY[TEXT]<0.4>") == (
        b"* 1 FETCH (BODY[TEXT]<0> {4}\r\n--b1 FLAGS (\\Seen \\Recent))\r\ne OK FETCH completed\r\n"
    )
    assert raw.cmd("f FETCH 1 BODY[TEXT]<0.4>") == (
        b"* 1 FETCH (BODY[TEXT]<0> {4}\r\n--b1)\r\nf OK FETCH completed\r\n"
    )
    assert raw.cmd("g FETCH 2 FLAGS") == b"g BAD Invalid message sequence number\r\n"
    assert raw.cmd("h FETCH 1 (FLAGS") == b"h BAD Missing argument\r\n"


def test_examine_does_not_set_seen(server: ServerThread, raw: Raw) -> None:
    deliver(server, SIMPLE)
    raw.cmd("s EXAMINE INBOX")
    assert raw.cmd("a FETCH 1 RFC822.TEXT") == (
        b"* 1 FETCH (RFC822.TEXT {24}\r\nShall we meet at noon?\r\n)\r\na OK FETCH completed\r\n"
    )
    assert raw.cmd("b FETCH 1 FLAGS") == b"* 1 FETCH (FLAGS (\\Recent))\r\nb OK FETCH completed\r\n"


def test_uid_fetch_adds_uid_and_ignores_missing(server: ServerThread, raw: Raw) -> None:
    deliver(server, SIMPLE, SIMPLE)
    raw.cmd("s SELECT INBOX")
    assert raw.cmd("a UID FETCH 2:* FLAGS") == (
        b"* 2 FETCH (FLAGS (\\Recent) UID 2)\r\na OK FETCH completed\r\n"
    )
    # RFC 9051 §6.4.8: "7:*" includes the highest UID even when it is below 7
    assert raw.cmd("b UID FETCH 7:* FLAGS") == (
        b"* 2 FETCH (FLAGS (\\Recent) UID 2)\r\nb OK FETCH completed\r\n"
    )
    assert raw.cmd("c UID FETCH 7,9 FLAGS") == b"c OK FETCH completed\r\n"


# --- STORE ----------------------------------------------------------------------------
def test_store_forms_and_unchangedsince(server: ServerThread, raw: Raw) -> None:
    deliver(server, SIMPLE, SIMPLE)
    raw.cmd("x ENABLE IMAP4rev2")
    raw.cmd("s SELECT INBOX")
    assert raw.cmd("a STORE 1:2 +FLAGS (\\Flagged $Work)") == (  # RFC 9051 §7.3.5: new keyword
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)\r\n"
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work \\*)] "
        b"Flags permitted\r\n"
        b"* 1 FETCH (FLAGS (\\Flagged $Work))\r\n* 2 FETCH (FLAGS (\\Flagged $Work))\r\n"
        b"a OK STORE completed\r\n"
    )
    assert raw.cmd("b STORE 2 -FLAGS.SILENT $Work") == b"b OK STORE completed\r\n"
    assert raw.cmd("c UID STORE 1 FLAGS (\\seen)") == (
        b"* 1 FETCH (UID 1 FLAGS (\\Seen))\r\nc OK STORE completed\r\n"
    )
    assert raw.cmd("d FETCH 1:2 MODSEQ") == (
        b"* 1 FETCH (MODSEQ (7))\r\n* 2 FETCH (MODSEQ (6))\r\n"
        b"d OK [HIGHESTMODSEQ 7] FETCH completed\r\n"  # RFC 7162 §3.1: CONDSTORE now on
    )
    assert raw.cmd("e STORE 1:2 (UNCHANGEDSINCE 6) +FLAGS (\\Answered)") == (
        b"* 2 FETCH (UID 2 FLAGS (\\Answered \\Flagged) MODSEQ (8))\r\n"
        b"e OK [MODIFIED 1] Conditional STORE failed for some messages\r\n"
    )
    assert raw.cmd("f STORE 1 +FLAGS (bad\\flag)") == b"f BAD Expected space\r\n"


# --- SEARCH / SORT --------------------------------------------------------------------
def test_search_keys(server: ServerThread, raw: Raw) -> None:
    deliver(server, SIMPLE, MULTIPART, SIMPLE.replace(b"Lunch", b"Dinner"))
    raw.cmd("s SELECT INBOX")
    raw.cmd("t STORE 2 +FLAGS (\\Flagged)")
    cases = {
        "ALL": b"1 2 3",
        "FROM bob": b"1 3",
        'SUBJECT "rapport été"': b"2",
        "SUBJECT dinner": b"3",
        'BODY "voilà"': b"2",
        "TEXT MEET": b"1 3",
        "HEADER Message-ID m1@remote": b"1 3",
        'HEADER X-Missing ""': b"",
        "FLAGGED": b"2",
        "UNFLAGGED NOT 1": b"3",
        "OR 1 FLAGGED": b"1 2",
        "SENTON 3-Mar-2026": b"2",
        "SENTBEFORE 3-Mar-2026": b"1 3",
        "LARGER 700": b"2",
        "UID 2:*": b"2 3",
        "2:*": b"2 3",
        "NEW": b"1 2 3",
        "YOUNGER 3600": b"1 2 3",
        "BCC nobody": b"",
    }
    for i, (key, expected) in enumerate(cases.items()):
        tag = f"k{i}"
        ids = b" " + expected if expected else b""
        assert raw.cmd(f"{tag} SEARCH CHARSET UTF-8 {key}") == (
            b"* SEARCH%s\r\n%s OK SEARCH completed\r\n" % (ids, tag.encode())
        ), key
    assert raw.cmd("a UID SEARCH FROM carol") == b"* SEARCH 2\r\na OK SEARCH completed\r\n"
    assert raw.cmd("b SEARCH CHARSET KLINGON foo") == (
        b"b NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n"
    )
    assert raw.cmd("c SEARCH MODSEQ 4") == (
        b"* SEARCH 2 3 (MODSEQ 5)\r\nc OK [HIGHESTMODSEQ 5] SEARCH completed\r\n"
    )


def test_esearch_and_searchres(server: ServerThread, raw: Raw) -> None:
    deliver(server, SIMPLE, SIMPLE, SIMPLE, MULTIPART)
    raw.cmd("s SELECT INBOX")
    assert raw.cmd("a SEARCH RETURN (MIN MAX COUNT ALL) FROM bob") == (
        b'* ESEARCH (TAG "a") MIN 1 MAX 3 ALL 1:3 COUNT 3\r\na OK SEARCH completed\r\n'
    )
    assert raw.cmd("b UID SEARCH RETURN () FROM nobody") == (
        b'* ESEARCH (TAG "b") UID\r\nb OK SEARCH completed\r\n'
    )
    assert (
        raw.cmd("c SEARCH RETURN (SAVE) FROM carol") == b"c OK SEARCH completed, result saved\r\n"
    )
    assert raw.cmd("d FETCH $ UID") == b"* 4 FETCH (UID 4)\r\nd OK FETCH completed\r\n"
    assert raw.cmd("e SEARCH RETURN (SAVE MIN) FROM bob") == (
        b'* ESEARCH (TAG "e") MIN 1\r\ne OK SEARCH completed\r\n'
    )
    assert raw.cmd("f UID SEARCH $") == b"* SEARCH 1\r\nf OK SEARCH completed\r\n"


def test_sort(server: ServerThread, raw: Raw) -> None:
    deliver(server, SIMPLE, MULTIPART, SIMPLE.replace(b"Lunch", b"Re: Apples"))
    raw.cmd("s SELECT INBOX")
    assert raw.cmd("a SORT (SUBJECT) UTF-8 ALL") == b"* SORT 3 1 2\r\na OK SORT completed\r\n"
    assert raw.cmd("b UID SORT (REVERSE DATE) UTF-8 ALL") == (
        b"* SORT 2 1 3\r\nb OK SORT completed\r\n"
    )
    assert raw.cmd("c SORT (FROM SIZE) UTF-8 NOT 2") == b"* SORT 1 3\r\nc OK SORT completed\r\n"


def append(raw: Raw, *messages: bytes, when: str = "05-Jan-2026 10:00:00 +0000") -> None:
    """APPEND each message to INBOX with the internal date `when` (LITERAL+)."""
    for i, m in enumerate(messages):
        reply = raw.cmd(b'ap%d APPEND INBOX "%s" {%d+}\r\n%s' % (i, when.encode(), len(m), m))
        assert b" OK [APPENDUID " in reply, reply


def header(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode() + b"\r\n\r\nbody\r\n"


def test_search_sent_dates_are_the_header_date_in_its_own_zone(raw: Raw) -> None:
    """RFC 9051 §6.4.4: SENT* compare the date of the Date: header, its own zone, not
    converted; without a valid Date: the internal date (Dovecot)."""
    append(
        raw,
        header("Subject: late\nDate: Mon, 2 Mar 2026 23:30:00 -0500"),  # 3 Mar in UTC
        header("Subject: old\nDate: Wed, 1 Jan 2020 12:00:00 +0000"),
        header("Subject: undated"),
        header("Subject: junk date\nDate: the day after tomorrow"),
    )
    raw.cmd("s SELECT INBOX")
    cases = {
        "SENTON 2-Mar-2026": b"1",
        "SENTON 3-Mar-2026": b"",
        "SENTBEFORE 3-Mar-2026": b"1 2 3 4",
        "SENTSINCE 3-Mar-2026": b"",
        "SENTBEFORE 2-Jan-2020": b"2",
        "BEFORE 2-Jan-2020": b"",  # the internal dates are 5 Jan 2026
        "SENTON 5-Jan-2026": b"3 4",
        "ON 5-Jan-2026": b"1 2 3 4",
    }
    for i, (key, expected) in enumerate(cases.items()):
        ids = b" " + expected if expected else b""
        assert raw.cmd(f"k{i} SEARCH {key}") == (
            b"* SEARCH%s\r\nk%d OK SEARCH completed\r\n" % (ids, i)
        ), key


def test_sort_keys_cc_display_and_base_subject(raw: Raw) -> None:
    """RFC 5256 §3: CC, FROM, TO sort by the first address's mailbox (a quoted name with
    a comma is no address); SUBJECT by the base subject; RFC 5957 DISPLAYFROM by the
    name, else the address; ties by sequence number."""
    append(
        raw,
        header('From: zed@x.test\nCc: "Aaron, Zed" <zz@x.test>\nSubject: [fwd: Re: Beta]'),
        header("From: Bob <yves@x.test>\nCc: BOB@y.test\nSubject: alpha (fwd)"),
        header("From: alice@x.test\nSubject: [list] Re: beta"),
        header("From: =?utf-8?q?Zed-?= <aa@x.test>\nCc: alice@z.test\nSubject: Alpha"),
    )
    raw.cmd("s SELECT INBOX")
    for crit, expected in {
        "CC": b"3 4 2 1",  # "", alice, bob, zz: "Aaron, Zed" is a name
        "REVERSE CC": b"1 2 4 3",
        "FROM": b"4 3 2 1",
        "DISPLAYFROM": b"3 2 4 1",  # alice@x.test, bob, zed-, zed@x.test
        "SUBJECT": b"2 4 1 3",  # alpha, alpha, beta, beta: ties by number
        "SUBJECT CC": b"4 2 3 1",
        "REVERSE SUBJECT FROM": b"3 1 4 2",
    }.items():
        assert raw.cmd(f"a UID SORT ({crit}) UTF-8 ALL") == (
            b"* SORT " + expected + b"\r\na OK SORT completed\r\n"
        ), crit


def test_search_address_keys_see_group_syntax(server: ServerThread, raw: Raw) -> None:
    """FROM, TO, CC and BCC match a group's name and its members."""
    deliver(
        server,
        header(
            "From: Bob <bob@remote.test>\nTo: undisclosed: ann@a.test, cy@c.test;\n"
            'Cc: Team: dee@d.test, "Eve E" <eve@e.test>;, fay@f.test\n'
            "Bcc: hidden: gus@g.test;\nSubject: groups"
        ),
        header("From: bob@remote.test\nTo: zed@z.test\nSubject: plain"),
    )
    raw.cmd("s SELECT INBOX")
    for i, (key, expected) in enumerate(
        {
            "TO undisclosed": b" 1",
            "TO cy@c.test": b" 1",
            'CC "team:"': b" 1",
            'CC "eve e <eve@e"': b" 1",
            "CC fay": b" 1",
            "BCC hidden": b" 1",
            "BCC gus@g": b" 1",
            "TO zed": b" 2",
            "OR TO ann CC fay": b" 1",
        }.items()
    ):
        assert raw.cmd(f"g{i} SEARCH {key}") == (
            b"* SEARCH%s\r\ng%d OK SEARCH completed\r\n" % (expected, i)
        ), key


def test_imap4rev2_search_answers_esearch(server: ServerThread, raw: Raw) -> None:
    """RFC 9051 §6.4.4, §7.3.4: once IMAP4rev2 is enabled every SEARCH answers
    ESEARCH: a plain one means RETURN (ALL); SORT keeps its * SORT answer."""
    deliver(server, SIMPLE, MULTIPART, SIMPLE)
    assert raw.cmd("e ENABLE IMAP4rev2") == b"* ENABLED IMAP4rev2\r\ne OK ENABLE completed\r\n"
    raw.cmd("s SELECT INBOX")
    assert raw.cmd("a SEARCH FROM bob") == (
        b'* ESEARCH (TAG "a") ALL 1,3\r\na OK SEARCH completed\r\n'
    )
    assert raw.cmd("b UID SEARCH FROM nobody") == (
        b'* ESEARCH (TAG "b") UID\r\nb OK SEARCH completed\r\n'
    )
    assert raw.cmd("c SEARCH RETURN (MIN MAX COUNT) ALL") == (
        b'* ESEARCH (TAG "c") MIN 1 MAX 3 COUNT 3\r\nc OK SEARCH completed\r\n'
    )
    assert raw.cmd("d SEARCH MODSEQ 1") == (
        b'* ESEARCH (TAG "d") ALL 1:3 MODSEQ 4\r\n'
        b"d OK [HIGHESTMODSEQ 4] SEARCH completed\r\n"  # RFC 7162 §3.1: CONDSTORE now on
    )
    assert raw.cmd("f SEARCH RETURN (MIN) MODSEQ 1") == (  # RFC 4731 §3.2
        b'* ESEARCH (TAG "f") MIN 1 MODSEQ 2\r\nf OK SEARCH completed\r\n'
    )
    assert raw.cmd("g FETCH 1:3 (MODSEQ)") == (
        b"* 1 FETCH (MODSEQ (2))\r\n* 2 FETCH (MODSEQ (3))\r\n* 3 FETCH (MODSEQ (4))\r\n"
        b"g OK FETCH completed\r\n"
    )
    assert raw.cmd("h SORT (SUBJECT) UTF-8 ALL") == b"* SORT 1 3 2\r\nh OK SORT completed\r\n"


def test_esort_and_partial_results(server: ServerThread, raw: Raw) -> None:
    """RFC 5267 §3: SORT RETURN answers ESEARCH in sort order, MIN and MAX the first
    and last sorted, ranges only for ascending runs; §4.4: PARTIAL windows."""
    sizes = [5, 1, 4, 2, 3]
    deliver(server, *(SIMPLE + b"x" * n * 100 + b"\r\n" for n in sizes))
    raw.cmd("s SELECT INBOX")
    assert raw.cmd("a SORT RETURN (MIN MAX COUNT ALL) (REVERSE SIZE) UTF-8 ALL") == (
        b'* ESEARCH (TAG "a") MIN 1 MAX 2 ALL 1,3,5,4,2 COUNT 5\r\na OK SORT completed\r\n'
    )
    assert raw.cmd("b UID SORT RETURN () (SIZE) UTF-8 NOT 3") == (
        b'* ESEARCH (TAG "b") UID ALL 2,4:5,1\r\nb OK SORT completed\r\n'
    )
    assert raw.cmd("c SORT RETURN (PARTIAL 2:3) (SIZE) UTF-8 ALL") == (
        b'* ESEARCH (TAG "c") PARTIAL (2:3 4:5)\r\nc OK SORT completed\r\n'
    )
    assert raw.cmd("d SEARCH RETURN (PARTIAL 4:9 COUNT) ALL") == (
        b'* ESEARCH (TAG "d") PARTIAL (4:9 4:5) COUNT 5\r\nd OK SEARCH completed\r\n'
    )
    assert raw.cmd("e UID SEARCH RETURN (PARTIAL 7:9) ALL") == (
        b'* ESEARCH (TAG "e") UID PARTIAL (7:9 NIL)\r\ne OK SEARCH completed\r\n'
    )
    assert raw.cmd("f SEARCH RETURN (CONTEXT) 2") == (  # a hint only: ALL
        b'* ESEARCH (TAG "f") ALL 2\r\nf OK SEARCH completed\r\n'
    )
    assert raw.cmd("g SORT RETURN (SAVE MIN) (REVERSE SIZE) UTF-8 ALL") == (
        b'* ESEARCH (TAG "g") MIN 1\r\ng OK SORT completed\r\n'
    )
    assert raw.cmd("h UID SEARCH $") == b"* SEARCH 1\r\nh OK SEARCH completed\r\n"
    assert raw.cmd("i SEARCH RETURN (PARTIAL 1:2 ALL) ALL") == (
        b"i BAD PARTIAL conflicts with ALL\r\n"
    )


def test_context_updates_follow_the_mailbox(server: ServerThread, raw: Raw) -> None:
    """RFC 5267 §4.3: UPDATE keeps a result current: ADDTO after the EXISTS of a new
    message, REMOVEFROM when flags change and before an EXPUNGE; CANCELUPDATE ends
    it; a SORT context names positions."""
    deliver(server, SIMPLE, MULTIPART)
    raw.cmd("e ENABLE IMAP4rev2")
    raw.cmd("s SELECT INBOX")
    assert raw.cmd("A01 UID SEARCH RETURN (UPDATE COUNT) UNSEEN") == (
        b'* ESEARCH (TAG "A01") UID COUNT 2\r\nA01 OK SEARCH completed\r\n'
    )
    assert raw.cmd("A02 SORT RETURN (UPDATE) (REVERSE SIZE) UTF-8 UNSEEN") == (
        b'* ESEARCH (TAG "A02")\r\nA02 OK SORT completed\r\n'
    )  # sizes: 2 (multipart) before 1; positions count from the largest
    assert raw.cmd("A03 SEARCH RETURN (UPDATE) UNSEEN") == (
        b'* ESEARCH (TAG "A03")\r\nA03 OK SEARCH completed\r\n'
    )
    assert raw.cmd("A01 SEARCH RETURN (UPDATE) ALL") == b"A01 BAD Tag reuse\r\n"
    deliver(server, SIMPLE + b"more text to be the largest " * 40 + b"\r\n")
    assert raw.cmd("n1 NOOP") == (
        b"* 3 EXISTS\r\n"
        b'* ESEARCH (TAG "A01") UID ADDTO (0 3)\r\n'
        b'* ESEARCH (TAG "A02") ADDTO (1 3)\r\n'
        b'* ESEARCH (TAG "A03") ADDTO (0 3)\r\n'
        b"n1 OK NOOP completed\r\n"
    )
    assert raw.cmd("f1 STORE 2 +FLAGS (\\Seen)") == (
        b"* 2 FETCH (FLAGS (\\Seen))\r\n"
        b'* ESEARCH (TAG "A01") UID REMOVEFROM (0 2)\r\n'
        b'* ESEARCH (TAG "A02") REMOVEFROM (2 2)\r\n'
        b'* ESEARCH (TAG "A03") REMOVEFROM (0 2)\r\n'
        b"f1 OK STORE completed\r\n"
    )
    assert raw.cmd('c1 CANCELUPDATE "A03"') == b"c1 OK CANCELUPDATE completed\r\n"
    assert raw.cmd('c2 CANCELUPDATE "A03"') == b"c2 NO Unknown search tag A03\r\n"
    raw.cmd("f2 STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert raw.cmd("x1 EXPUNGE") == (
        b'* ESEARCH (TAG "A01") UID REMOVEFROM (0 1)\r\n'
        b'* ESEARCH (TAG "A02") REMOVEFROM (2 1)\r\n'
        b"* 1 EXPUNGE\r\n"
        b"x1 OK EXPUNGE completed\r\n"
    )
    assert raw.cmd("u1 UNSELECT") == b"u1 OK UNSELECT completed\r\n"
    raw.cmd("s SELECT INBOX")
    assert raw.cmd('c3 CANCELUPDATE "A01"') == b"c3 NO Unknown search tag A01\r\n"


def test_context_limit_refuses_updates_but_answers(server: ServerThread, tmp_path: Path) -> None:
    (tmp_path / "limits").mkdir()
    srv = thread_server(tmp_path / "limits", "[imap]\nmax_search_contexts = 1\n")
    try:
        srv.add_user(ALICE)
        c = Raw(srv.port("imap"))
        c.login()
        c.cmd("s SELECT INBOX")
        assert c.cmd("a SEARCH RETURN (UPDATE COUNT) ALL") == (
            b'* ESEARCH (TAG "a") COUNT 0\r\na OK SEARCH completed\r\n'
        )
        assert c.cmd("b SEARCH RETURN (UPDATE COUNT) ALL") == (
            b'* NO [NOUPDATE "b"] Too many contexts\r\n'
            b'* ESEARCH (TAG "b") COUNT 0\r\nb OK SEARCH completed\r\n'
        )
    finally:
        stop(srv)


def test_hostile_search_is_bounded_and_off_the_event_loop(tmp_path: Path) -> None:
    """500 NOT BODY terms over megabyte bodies: every term is tested against each
    message's text decoded once, in a worker thread, within the CPU budget; past it
    the answer is NO [LIMIT], and another client's NOOP is answered at once all along."""
    srv = thread_server(tmp_path, '[imap]\nsearch_time_limit = "0.5s"\n')
    try:
        srv.add_user(ALICE)
        a, b = Raw(srv.port("imap")), Raw(srv.port("imap"))
        a.login()
        b.login()
        words = b" ".join(b"word%d" % (i % 997) for i in range(120_000))
        append(a, *(header(f"Subject: big {i}") + words + b"\r\n" for i in range(12)))
        a.cmd("s SELECT INBOX")
        terms = " ".join(f"NOT BODY q{i}z" for i in range(500))
        started = time.monotonic()
        a.send(f"x SEARCH {terms}\r\n".encode())
        latencies = []
        small = header("Subject: meanwhile")
        while not a.buf and not select.select([a.sock], [], [], 0)[0]:
            assert time.monotonic() - started < 60, "no answer to the search"
            sent = time.monotonic()
            assert b.cmd("n NOOP") == b"n OK NOOP completed\r\n"
            if len(latencies) == 1:  # the store's own threads are not queued behind it
                assert b.cmd(b"m APPEND Drafts {%d+}\r\n%s" % (len(small), small)).startswith(
                    b"m OK [APPENDUID "
                )
            latencies.append(time.monotonic() - sent)
        assert a.until(b"x") == b"x NO [LIMIT] Search too complex, narrow it down\r\n"
        assert time.monotonic() - started < 30
        assert latencies, "the search answered before one NOOP"
        assert max(latencies) < 1.0, latencies
        # narrowed down, the same terms answer at once, exactly
        assert a.cmd(f'y SEARCH SUBJECT "big 3" {terms}') == (
            b"* SEARCH 4\r\ny OK SEARCH completed\r\n"
        )
    finally:
        stop(srv)


def test_many_body_terms_over_a_mailbox_complete(server: ServerThread, raw: Raw) -> None:
    append(raw, *(header(f"Subject: n{i}") + b"Shall we meet at noon?\r\n" for i in range(60)))
    raw.cmd("s SELECT INBOX")
    terms = " ".join(f"NOT BODY q{i}z" for i in range(500))
    started = time.monotonic()
    assert raw.cmd(f"x SEARCH {terms} BODY noon") == (
        b"* SEARCH " + b" ".join(b"%d" % i for i in range(1, 61)) + b"\r\nx OK SEARCH completed\r\n"
    )
    assert time.monotonic() - started < 10


# --- COPY / MOVE / EXPUNGE ------------------------------------------------------------
def test_copy_move_expunge(server: ServerThread, raw: Raw) -> None:
    deliver(server, SIMPLE, SIMPLE, SIMPLE)
    archive = _uidvalidity(raw, "Archive")
    raw.cmd("s SELECT INBOX")
    assert raw.cmd("a COPY 1:2 Archive") == (
        b"a OK [COPYUID %d 1:2 1:2] COPY completed\r\n" % archive
    )
    assert raw.cmd("b COPY 1 Nowhere") == b"b NO [TRYCREATE] No such mailbox\r\n"
    assert raw.cmd("c UID MOVE 2:3 Archive") == (
        b"* OK [COPYUID %d 2:3 3:4] Moved\r\n* 3 EXPUNGE\r\n* 2 EXPUNGE\r\n"
        b"c OK MOVE completed\r\n" % archive
    )
    assert raw.cmd("d UID MOVE 99 Archive") == b"d OK MOVE completed (no messages)\r\n"
    raw.cmd("e SELECT Archive")
    assert raw.cmd("f STORE 1,3 +FLAGS.SILENT (\\Deleted)") == b"f OK STORE completed\r\n"
    assert raw.cmd("g UID EXPUNGE 3:4") == b"* 3 EXPUNGE\r\ng OK EXPUNGE completed\r\n"
    assert raw.cmd("h EXPUNGE") == b"* 1 EXPUNGE\r\nh OK EXPUNGE completed\r\n"
    assert raw.cmd("i FETCH 1:* UID") == (
        b"* 1 FETCH (UID 2)\r\n* 2 FETCH (UID 4)\r\ni OK FETCH completed\r\n"
    )
    assert raw.cmd("j STORE 1 +FLAGS (\\Deleted)") == (
        b"* 1 FETCH (FLAGS (\\Deleted \\Recent))\r\nj OK STORE completed\r\n"
    )
    assert raw.cmd("k CLOSE") == b"k OK CLOSE completed\r\n"
    assert raw.cmd("l STATUS Archive (MESSAGES)") == (
        b"* STATUS Archive (MESSAGES 1)\r\nl OK STATUS completed\r\n"
    )


# --- APPEND ---------------------------------------------------------------------------
def test_append_forms(server: ServerThread, raw: Raw) -> None:
    uv = _uidvalidity(raw, "Drafts")
    raw.send(b"a APPEND Drafts (\\Draft) {%d}\r\n" % len(SIMPLE))
    assert raw.line() == b"+ Ready for literal data\r\n"
    raw.send(SIMPLE + b"\r\n")
    assert raw.until(b"a") == b"a OK [APPENDUID %d 1] APPEND completed\r\n" % uv
    # LITERAL+ and MULTIAPPEND with a date: no continuation requests
    raw.send(
        b'b APPEND Drafts {%d+}\r\n%s "05-Jan-2026 10:11:12 +0200" {%d+}\r\n%s\r\n'
        % (len(SIMPLE), SIMPLE, len(MULTIPART), MULTIPART)
    )
    assert raw.until(b"b") == b"b OK [APPENDUID %d 2:3] APPEND completed\r\n" % uv
    raw.cmd("s EXAMINE Drafts")
    assert raw.cmd("c FETCH 1:3 FLAGS") == (
        b"* 1 FETCH (FLAGS (\\Draft \\Recent))\r\n* 2 FETCH (FLAGS (\\Recent))\r\n"
        b"* 3 FETCH (FLAGS (\\Recent))\r\nc OK FETCH completed\r\n"
    )
    assert raw.cmd("d FETCH 3 INTERNALDATE") == (
        b'* 3 FETCH (INTERNALDATE " 5-Jan-2026 08:11:12 +0000")\r\nd OK FETCH completed\r\n'
    )
    assert raw.cmd("e APPEND Nope {3+}\r\nabc") == b"e NO [TRYCREATE] No such mailbox\r\n"
    assert raw.cmd("f APPEND Drafts {0+}\r\n") == b"f NO Empty message refused\r\n"
    # literal8 (BINARY) keeps NUL octets
    raw.send(b"g APPEND Drafts ~{5+}\r\nab\x00cd\r\n")
    assert raw.until(b"g") == (  # Drafts is selected: EXISTS (RFC 9051 §6.3.12)
        b"* 4 EXISTS\r\n* 4 RECENT\r\ng OK [APPENDUID %d 4] APPEND completed\r\n" % uv
    )


def test_append_limit_is_configurable(tmp_path: Path) -> None:
    srv = thread_server(tmp_path, "[imap]\nmax_literal_size = 100\n")
    try:
        srv.add_user(ALICE)
        c = Raw(srv.port("imap"))
        c.login()
        assert b"APPENDLIMIT=100" in c.cmd("a CAPABILITY")
        assert c.cmd("b APPEND INBOX {101}") == b"b NO [TOOBIG] Literal too large\r\n"
        assert (
            c.cmd("c APPEND INBOX {101+}\r\n" + "x" * 101)
            == b"c BAD [TOOBIG] Literal too large\r\n"
        )
        assert c.cmd("d NOOP") == b"d OK NOOP completed\r\n"
        assert c.cmd("e STATUS INBOX (APPENDLIMIT)") == (
            b"* STATUS INBOX (APPENDLIMIT 100)\r\ne OK STATUS completed\r\n"
        )
    finally:
        stop(srv)


# --- mailboxes --------------------------------------------------------------------------
def test_create_delete_rename_subscribe_list(raw: Raw) -> None:
    assert raw.cmd("a CREATE Projects/2026/") == b"a OK CREATE completed\r\n"
    assert raw.cmd("b CREATE Projects") == b"b NO [ALREADYEXISTS] Mailbox exists already\r\n"
    assert raw.cmd("c CREATE Invoices (USE (\\Flagged))") == b"c OK CREATE completed\r\n"
    assert raw.cmd("d CREATE X (USE (\\Nope))") == (
        b"d NO [USEATTR] Unsupported special-use attribute \\Nope\r\n"
    )
    assert raw.cmd('e LIST "" Projects*') == (
        b'* LIST (\\HasChildren) "/" Projects\r\n* LIST (\\HasNoChildren) "/" Projects/2026\r\n'
        b"e OK LIST completed\r\n"
    )
    assert raw.cmd('f LIST "" %') == (
        b'* LIST (\\HasNoChildren \\Archive) "/" Archive\r\n'
        b'* LIST (\\HasNoChildren \\Drafts) "/" Drafts\r\n'
        b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
        b'* LIST (\\HasNoChildren \\Flagged) "/" Invoices\r\n'
        b'* LIST (\\HasNoChildren \\Junk) "/" Junk\r\n'
        b'* LIST (\\HasChildren) "/" Projects\r\n'
        b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n'
        b'* LIST (\\HasNoChildren \\Trash) "/" Trash\r\n'
        b"f OK LIST completed\r\n"
    )
    assert raw.cmd('g LIST "" ""') == b'* LIST (\\Noselect) "/" ""\r\ng OK LIST completed\r\n'
    assert raw.cmd("h SUBSCRIBE Projects/2026") == b"h OK SUBSCRIBE completed\r\n"
    assert raw.cmd('i LIST (SUBSCRIBED RECURSIVEMATCH) "" Proj%') == (
        b'* LIST (\\HasChildren) "/" Projects ("CHILDINFO" ("SUBSCRIBED"))\r\n'
        b"i OK LIST completed\r\n"
    )
    assert raw.cmd('j LSUB "" Proj*') == b'* LSUB () "/" Projects/2026\r\nj OK LSUB completed\r\n'
    assert raw.cmd('k LSUB "" Proj%') == (
        b'* LSUB (\\Noselect) "/" Projects\r\nk OK LSUB completed\r\n'
    )
    assert raw.cmd('k2 LSUB "" %') == (
        b'* LSUB () "/" Archive\r\n* LSUB () "/" Drafts\r\n* LSUB () "/" INBOX\r\n'
        b'* LSUB () "/" Junk\r\n* LSUB (\\Noselect) "/" Projects\r\n* LSUB () "/" Sent\r\n'
        b'* LSUB () "/" Trash\r\nk2 OK LSUB completed\r\n'
    )
    assert raw.cmd('l LIST (SPECIAL-USE) "" * RETURN (STATUS (MESSAGES SIZE))') == (
        b'* LIST (\\HasNoChildren \\Archive) "/" Archive\r\n'
        b"* STATUS Archive (MESSAGES 0 SIZE 0)\r\n"
        b'* LIST (\\HasNoChildren \\Drafts) "/" Drafts\r\n* STATUS Drafts (MESSAGES 0 SIZE 0)\r\n'
        b'* LIST (\\HasNoChildren \\Flagged) "/" Invoices\r\n'
        b"* STATUS Invoices (MESSAGES 0 SIZE 0)\r\n"
        b'* LIST (\\HasNoChildren \\Junk) "/" Junk\r\n* STATUS Junk (MESSAGES 0 SIZE 0)\r\n'
        b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n* STATUS Sent (MESSAGES 0 SIZE 0)\r\n'
        b'* LIST (\\HasNoChildren \\Trash) "/" Trash\r\n* STATUS Trash (MESSAGES 0 SIZE 0)\r\n'
        b"l OK LIST completed\r\n"
    )
    assert raw.cmd('m LIST "" Projects/2026 RETURN (SUBSCRIBED)') == (
        b'* LIST (\\HasNoChildren \\Subscribed) "/" Projects/2026\r\nm OK LIST completed\r\n'
    )
    assert raw.cmd("n DELETE Projects") == (
        b"n NO [HASCHILDREN] Mailbox has children, delete them first\r\n"
    )
    assert raw.cmd("o RENAME Projects Work") == b"o OK RENAME completed\r\n"
    assert (
        raw.cmd('p LIST "" Work/*')
        == b'* LIST (\\HasNoChildren) "/" Work/2026\r\np OK LIST completed\r\n'
    )
    assert raw.cmd("q RENAME Gone Other") == b"q NO [NONEXISTENT] No such mailbox\r\n"
    assert (
        raw.cmd("r RENAME Work Sent") == b"r NO [ALREADYEXISTS] Target mailbox exists already\r\n"
    )
    assert raw.cmd("s DELETE Work/2026") == b"s OK DELETE completed\r\n"
    assert raw.cmd("t DELETE INBOX") == b"t NO [CANNOT] INBOX cannot be deleted\r\n"
    assert raw.cmd("u DELETE Gone") == b"u NO [NONEXISTENT] No such mailbox\r\n"
    assert raw.cmd("v UNSUBSCRIBE Gone") == b"v NO [NONEXISTENT] No such mailbox\r\n"


def test_rename_inbox_moves_messages(server: ServerThread, raw: Raw) -> None:
    deliver(server, SIMPLE, SIMPLE)
    assert raw.cmd("a RENAME INBOX Old") == b"a OK RENAME completed\r\n"
    assert raw.cmd("b STATUS INBOX (MESSAGES UIDNEXT)") == (
        b"* STATUS INBOX (MESSAGES 0 UIDNEXT 3)\r\nb OK STATUS completed\r\n"
    )
    assert (
        raw.cmd("c STATUS Old (MESSAGES)")
        == b"* STATUS Old (MESSAGES 2)\r\nc OK STATUS completed\r\n"
    )


def test_utf8_and_modified_utf7_names(raw: Raw) -> None:
    assert raw.cmd("a CREATE R&AOk-sum&AOk-") == b"a OK CREATE completed\r\n"
    assert raw.cmd('b LIST "" R*') == (
        b'* LIST (\\HasNoChildren) "/" R&AOk-sum&AOk-\r\nb OK LIST completed\r\n'
    )
    raw.cmd("c ENABLE UTF8=ACCEPT")
    assert raw.cmd('d LIST "" R*') == (
        b'* LIST (\\HasNoChildren) "/" "R\xc3\xa9sum\xc3\xa9"\r\nd OK LIST completed\r\n'
    )


def test_status_items(server: ServerThread, raw: Raw) -> None:
    deliver(server, SIMPLE, SIMPLE)
    raw.cmd("s SELECT INBOX")
    raw.cmd("t STORE 1 +FLAGS.SILENT (\\Seen \\Deleted)")
    out = raw.cmd("a STATUS INBOX (MESSAGES UIDNEXT UNSEEN DELETED SIZE RECENT HIGHESTMODSEQ)")
    size = 2 * int(re.search(rb"SIZE (\d+)", out).group(1)) // 2  # type: ignore[union-attr]
    assert out == (
        b"* STATUS INBOX (MESSAGES 2 UIDNEXT 3 UNSEEN 1 DELETED 1 SIZE %d RECENT 0 "
        b"HIGHESTMODSEQ 4)\r\na OK [HIGHESTMODSEQ 4] STATUS completed\r\n" % size
    )
    assert raw.cmd("b STATUS Nope (MESSAGES)") == b"b NO [NONEXISTENT] No such mailbox\r\n"
    assert raw.cmd("c STATUS INBOX (BOGUS)") == b"c BAD Unknown status item BOGUS\r\n"


def test_quota(tmp_path: Path) -> None:
    srv = thread_server(tmp_path)
    try:
        srv.add_user(ALICE)
        c = Raw(srv.port("imap"))
        c.login()
        assert (
            c.cmd("a GETQUOTAROOT INBOX") == b"* QUOTAROOT INBOX\r\na OK GETQUOTAROOT completed\r\n"
        )
        assert c.cmd('b GETQUOTA ""') == b"b NO [NONEXISTENT] No such quota root\r\n"
        srv.call(srv.store.set_quota(ALICE, 10 * 1024 * 1024))
        deliver(srv, SIMPLE)
        assert c.cmd("c GETQUOTAROOT INBOX") == (
            b'* QUOTAROOT INBOX ""\r\n* QUOTA "" (STORAGE 1 10240)\r\n'
            b"c OK GETQUOTAROOT completed\r\n"
        )
        assert (
            c.cmd('d GETQUOTA ""') == b'* QUOTA "" (STORAGE 1 10240)\r\nd OK GETQUOTA completed\r\n'
        )
        assert c.cmd('e SETQUOTA "" (STORAGE 1)') == (
            b"e NO [NOPERM] Quotas are set by the administrator\r\n"
        )
        srv.call(srv.store.set_quota(ALICE, 100))
        assert c.cmd(b"f APPEND INBOX {%d+}\r\n%s" % (len(SIMPLE), SIMPLE)) == (
            b"f NO [OVERQUOTA] Quota exceeded\r\n"
        )
    finally:
        stop(srv)


# --- TLS ------------------------------------------------------------------------------
def test_starttls_and_imaps(server: ServerThread) -> None:
    c = Raw(server.port("imap"))
    # bytes pipelined after STARTTLS are discarded, never run inside TLS
    c.send(b"a STARTTLS\r\nb NOOP\r\n")
    assert c.until(b"a") == b"a OK Begin TLS negotiation now\r\n"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c.sock = ctx.wrap_socket(c.sock)  # the plain socket is closed with it
    c.buf = b""
    caps = PRE_CAPS.replace(b" STARTTLS", b"")
    assert c.cmd("c CAPABILITY") == b"* CAPABILITY " + caps + b"\r\nc OK CAPABILITY completed\r\n"
    assert c.cmd("d STARTTLS") == b"d BAD TLS is already active\r\n"
    c.login()
    s = Raw(server.port("imaps"), tls=True)
    assert (
        s.greeting
        == b"* OK [CAPABILITY " + caps + b"] mail.example.test IMAP4rev2 server ready\r\n"
    )
    s.login()


# --- errors and limits ----------------------------------------------------------------
def test_bad_commands_limit_ends_with_bye(tmp_path: Path) -> None:
    srv = thread_server(tmp_path, "[imap]\nmax_bad_commands = 3\n")
    try:
        c = Raw(srv.port("imap"))
        assert c.cmd("a BOGUS") == b"a BAD Unknown command\r\n"
        assert c.cmd("b NOOP") == b"b OK NOOP completed\r\n"  # resets the count
        assert c.cmd("c BOGUS") == b"c BAD Unknown command\r\n"
        assert c.cmd("d FETCH 1 FLAGS") == b"d BAD Log in first\r\n"
        c.send(b"e BOGUS\r\n")
        assert c.line() == b"e BAD Unknown command\r\n"
        assert c.line() == b"* BYE Too many invalid commands\r\n"
        with pytest.raises(EOFError):
            c.line()
    finally:
        stop(srv)


def test_line_length_and_unauthenticated_literal_limits(tmp_path: Path) -> None:
    srv = thread_server(tmp_path, "[imap]\nmax_line_length = 200\nmax_unauth_literal = 10\n")
    try:
        srv.add_user(ALICE)
        c = Raw(srv.port("imap"))
        assert c.cmd("a NOOP " + "x" * 300) == b"a BAD [TOOBIG] Command line too long\r\n"
        assert c.cmd("b LOGIN {11}") == b"b NO [TOOBIG] Literal too large before authentication\r\n"
        c.send(b"c LOGIN {5}\r\n")
        assert c.line() == b"+ Ready for literal data\r\n"
        assert (
            c.cmd(b'alice "x"', tag=b"c") == b"c NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"
        )
        c.login()
        c.send(b"d LOGIN {11}\r\n")
        assert c.line() == b"+ Ready for literal data\r\n"
    finally:
        stop(srv)


def test_idle_timeout_says_bye(tmp_path: Path) -> None:
    srv = thread_server(tmp_path, '[imap]\nidle_timeout = "1s"\n')
    try:
        srv.add_user(ALICE)
        c = Raw(srv.port("imap"))
        c.login()
        assert c.line() == b"* BYE Autologout: idle for too long\r\n"
        with pytest.raises(EOFError):
            c.line()
    finally:
        stop(srv)


def test_shutdown_says_bye_to_idling_clients(tmp_path: Path) -> None:
    import threading

    srv = thread_server(tmp_path)
    srv.add_user(ALICE)
    c = Raw(srv.port("imap"))
    c.login()
    c.cmd("s SELECT INBOX")
    c.send(b"i IDLE\r\n")
    assert c.line() == b"+ idling\r\n"
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    try:
        assert c.line() == b"* BYE [UNAVAILABLE] Server shutting down\r\n"
        with pytest.raises(EOFError):
            c.line()
    finally:
        stopper.join(30)
        close_clients()


def test_idling_sessions_hold_no_task_beyond_their_own(server: ServerThread) -> None:
    """Issue 14: an IDLE waits on its socket and the change feed with the session's
    own task (no read task, no feed task, no stop task), and still wakes on a
    delivery and ends on DONE."""

    async def tasks() -> int:
        return len(asyncio.all_tasks()) - 1  # not this one

    clients = [Raw(server.port("imap")) for _ in range(3)]
    for c in clients:
        c.login()
        c.cmd("s SELECT INBOX")
    before = server.call(tasks())
    for c in clients:
        c.send(b"i IDLE\r\n")
        assert c.line() == b"+ idling\r\n"
    assert server.call(tasks()) == before
    deliver(server, SIMPLE)
    for c in clients:
        assert c.line() == b"* 1 EXISTS\r\n"
    assert server.call(tasks()) == before
    for c in clients:
        c.send(b"DONE\r\n")
        assert c.until(b"i").endswith(b"i OK IDLE terminated\r\n")


def test_select_parameters_and_unselect(server: ServerThread, raw: Raw) -> None:
    deliver(server, SIMPLE)
    assert raw.cmd("a SELECT INBOX (QRESYNC (1 1))") == b"a BAD QRESYNC is not enabled\r\n"
    out = raw.cmd("b SELECT INBOX (CONDSTORE)")
    assert out.endswith(b"b OK [READ-WRITE] SELECT completed\r\n")
    # CONDSTORE is now on: FETCH FLAGS changes carry MODSEQ
    assert raw.cmd("c STORE 1 +FLAGS.SILENT (\\Seen)") == (
        b"* 1 FETCH (UID 1 MODSEQ (3))\r\nc OK STORE completed\r\n"  # RFC 7162 §3.1
    )
    assert raw.cmd("d CHECK") == b"d OK CHECK completed\r\n"
    raw.cmd("e STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert raw.cmd("f UNSELECT") == b"f OK UNSELECT completed\r\n"
    assert raw.cmd("g STATUS INBOX (MESSAGES)") == (  # UNSELECT does not expunge
        b"* STATUS INBOX (MESSAGES 1)\r\ng OK STATUS completed\r\n"
    )
    assert raw.cmd("h UNSELECT") == b"h BAD No mailbox selected\r\n"


# --- conformance and robustness (issue 11: FETCH, STORE, LIST, names, CATENATE) ------
def test_list_hostile_pattern_is_linear_and_blocks_no_one(server: ServerThread) -> None:
    """``LIST "" "*%*%…x"`` once hung the server for good (a backtracking regex on
    the event loop): now it is answered at once, another client meanwhile too."""
    user = server.call(server.store.get_user(ALICE))
    for i in range(100):
        server.call(server.store.create_mailbox(user.id, f"folder-{i:03d}/sub-{i}"))
    a, b = Raw(server.port("imap")), Raw(server.port("imap"))
    a.login()
    b.login()
    start = time.perf_counter()
    a.send(b'a LIST "" "' + b"*%" * 500 + b'x"\r\n')
    assert b.cmd("n NOOP") == b"n OK NOOP completed\r\n"
    assert a.until(b"a") == b"a OK LIST completed\r\n"
    assert a.cmd('b LIST "" "' + "*%" * 500 + 'sub-7"') == (
        b'* LIST (\\HasNoChildren) "/" folder-007/sub-7\r\nb OK LIST completed\r\n'
    )
    assert time.perf_counter() - start < 1.0
    assert a.cmd('c LIST "" "' + "%" * 1025 + '"') == (b"c NO [LIMIT] Mailbox pattern too long\r\n")
    assert a.cmd('d LSUB "" "' + "*" * 1025 + '"') == (b"d NO [LIMIT] Mailbox pattern too long\r\n")


QP_PARTS = (
    b"From: Carol <carol@remote.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: parts\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"caf=C3=A9  \r\n"  # trailing white space is transport padding (RFC 2045 §6.7)
    b"soft= \r\n"  # "=" then white space: still a soft line break
    b"break\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"--b1\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAw==\r\n"
    b"--b1--\r\n"
)


def test_binary_size_is_the_decoded_size(server: ServerThread, raw: Raw) -> None:
    """RFC 3516 §4.2: BINARY.SIZE is the size of the decoded content, the length
    of what BINARY returns."""
    deliver(server, QP_PARTS)
    raw.cmd("s EXAMINE INBOX")
    assert raw.cmd("a FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1] BINARY.SIZE[3] BINARY.PEEK[3])") == (
        b"* 1 FETCH (BINARY.SIZE[1] 16 BINARY[1] {16}\r\ncaf\xc3\xa9\r\nsoftbreak "
        b"BINARY.SIZE[3] 4 BINARY[3] ~{4}\r\n\x00\x01\x02\x03)\r\na OK FETCH completed\r\n"
    )


def test_empty_part_is_an_empty_string_everywhere(server: ServerThread, raw: Raw) -> None:
    """An empty body part: BODY[n], BINARY[n] and BINARY.SIZE[n] agree (an empty
    literal, 0), through delivery and through APPEND, and real clients read it."""
    deliver(server, QP_PARTS)
    raw.send(b"p APPEND INBOX {%d+}\r\n%s\r\n" % (len(QP_PARTS), QP_PARTS))
    assert raw.until(b"p").startswith(b"p OK [APPENDUID ")
    raw.cmd("s EXAMINE INBOX")
    assert raw.cmd(
        "a FETCH 1:2 (BODY.PEEK[2] BINARY.PEEK[2] BINARY.SIZE[2] BODY.PEEK[2]<0.5>)"
    ) == (
        b"* 1 FETCH (BODY[2] {0}\r\n BINARY[2] {0}\r\n BINARY.SIZE[2] 0 BODY[2]<0> {0}\r\n)\r\n"
        b"* 2 FETCH (BODY[2] {0}\r\n BINARY[2] {0}\r\n BINARY.SIZE[2] 0 BODY[2]<0> {0}\r\n)\r\n"
        b"a OK FETCH completed\r\n"
    )
    assert raw.cmd("b FETCH 2 BODY.PEEK[]") == (
        b"* 2 FETCH (BODY[] {%d}\r\n%s)\r\nb OK FETCH completed\r\n" % (len(QP_PARTS), QP_PARTS)
    )
    import imapclient  # type: ignore[import-untyped]

    with imapclient.IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False) as c:
        c.login(ALICE, PASSWORD)
        c.select_folder("INBOX", readonly=True)
        got = c.fetch([1, 2], ["BODY.PEEK[2]", "BINARY.PEEK[2]", "BINARY.SIZE[2]"])
        assert [(m[b"BODY[2]"], m[b"BINARY[2]"], m[b"BINARY.SIZE[2]"]) for m in got.values()] == [
            (b"", b"", 0),
            (b"", b"", 0),
        ]


def test_condstore_enabled_by_a_command_reports_highestmodseq(
    server: ServerThread, raw: Raw
) -> None:
    """RFC 7162 §3.1: the first CONDSTORE-enabling command (here FETCH MODSEQ, or
    STORE UNCHANGEDSINCE) while a mailbox is selected gets HIGHESTMODSEQ in its OK;
    from then on every untagged FETCH carries UID and MODSEQ."""
    deliver(server, SIMPLE, SIMPLE)
    raw.cmd("s SELECT INBOX")
    assert raw.cmd("a STORE 1 +FLAGS (\\Flagged)") == (
        b"* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\na OK STORE completed\r\n"
    )
    assert raw.cmd("b FETCH 1 (FLAGS MODSEQ)") == (
        b"* 1 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ (4))\r\n"
        b"b OK [HIGHESTMODSEQ 4] FETCH completed\r\n"
    )
    assert raw.cmd("c FETCH 1 MODSEQ") == b"* 1 FETCH (MODSEQ (4))\r\nc OK FETCH completed\r\n"
    assert raw.cmd("d STORE 1 -FLAGS (\\Flagged)") == (
        b"* 1 FETCH (UID 1 FLAGS (\\Recent) MODSEQ (5))\r\nd OK STORE completed\r\n"
    )
    assert raw.cmd("e FETCH 2 BODY[TEXT]") == (  # implicit \Seen: UID and MODSEQ too
        b"* 2 FETCH (BODY[TEXT] {24}\r\nShall we meet at noon?\r\n FLAGS (\\Seen \\Recent) "
        b"UID 2 MODSEQ (6))\r\ne OK FETCH completed\r\n"
    )
    other = Raw(server.port("imap"))
    other.login()
    other.cmd("s SELECT INBOX")
    other.cmd("a STORE 1 +FLAGS.SILENT (\\Answered)")
    assert raw.cmd("f NOOP") == (
        b"* 1 FETCH (UID 1 FLAGS (\\Answered \\Recent) MODSEQ (7))\r\nf OK NOOP completed\r\n"
    )
    # STORE UNCHANGEDSINCE as the enabling command
    assert other.cmd("b STORE 2 (UNCHANGEDSINCE 100) +FLAGS.SILENT (\\Draft)") == (
        b"* 2 FETCH (UID 2 MODSEQ (8))\r\nb OK [HIGHESTMODSEQ 8] STORE completed\r\n"
    )


def test_new_keywords_are_announced_before_they_are_shown(server: ServerThread, raw: Raw) -> None:
    """RFC 9051 §7.3.5 (RFC 3501 §7.2.6): a keyword new to the mailbox comes with
    FLAGS (and PERMANENTFLAGS) before any FETCH that shows it: to the session that
    stored it, to other sessions, and for APPEND into the selected mailbox."""
    deliver(server, SIMPLE)
    other = Raw(server.port("imap"))
    other.login()
    for c in (raw, other):
        c.cmd("x ENABLE IMAP4rev2")
        c.cmd("s SELECT INBOX")
    flags = b"\\Answered \\Flagged \\Deleted \\Seen \\Draft"
    assert raw.cmd("a STORE 1 +FLAGS ($Todo)") == (
        b"* FLAGS (" + flags + b" $Todo)\r\n"
        b"* OK [PERMANENTFLAGS (" + flags + b" $Todo \\*)] Flags permitted\r\n"
        b"* 1 FETCH (FLAGS ($Todo))\r\na OK STORE completed\r\n"
    )
    assert raw.cmd("b STORE 1 +FLAGS ($Todo)") == (  # known now: no FLAGS again
        b"* 1 FETCH (FLAGS ($Todo))\r\nb OK STORE completed\r\n"
    )
    assert other.cmd("c NOOP") == (
        b"* FLAGS (" + flags + b" $Todo)\r\n"
        b"* OK [PERMANENTFLAGS (" + flags + b" $Todo \\*)] Flags permitted\r\n"
        b"* 1 FETCH (UID 1 FLAGS ($Todo))\r\nc OK NOOP completed\r\n"
    )
    third = Raw(server.port("imap"))  # selecting a mailbox with keywords: FLAGS has them
    third.login()
    third.cmd("x ENABLE IMAP4rev2")
    assert third.cmd("s EXAMINE INBOX").startswith(b"* FLAGS (" + flags + b" $Todo)\r\n")
    assert third.cmd("t FETCH 1 FLAGS") == b"* 1 FETCH (FLAGS ($Todo))\r\nt OK FETCH completed\r\n"
    raw.send(b"d APPEND INBOX ($Later) {%d+}\r\n%s\r\n" % (len(SIMPLE), SIMPLE))
    assert raw.until(b"d").startswith(
        b"* FLAGS (" + flags + b" $Later $Todo)\r\n"
        b"* OK [PERMANENTFLAGS (" + flags + b" $Later $Todo \\*)] Flags permitted\r\n"
        b"* 2 EXISTS\r\nd OK [APPENDUID "
    )


def test_unknown_system_flags_are_refused(server: ServerThread, raw: Raw) -> None:
    """\\Bogus and \\Recent cannot be stored: BAD, as Dovecot answers, nothing
    changes (RFC 9051 §2.3.2)."""
    deliver(server, SIMPLE)
    raw.cmd("s SELECT INBOX")
    assert raw.cmd("a STORE 1 +FLAGS (\\Bogus)") == b"a BAD Invalid system flag \\Bogus\r\n"
    assert raw.cmd("b STORE 1 FLAGS (\\Seen \\recent)") == (
        b"b BAD Invalid system flag \\Recent\r\n"
    )
    assert raw.cmd("c APPEND INBOX (\\Bogus) {3+}\r\nabc") == (
        b"c BAD Invalid system flag \\Bogus\r\n"
    )
    assert raw.cmd("d FETCH 1:* FLAGS") == (
        b"* 1 FETCH (FLAGS (\\Recent))\r\nd OK FETCH completed\r\n"
    )


def test_nul_octets_never_in_a_plain_literal(server: ServerThread, raw: Raw) -> None:
    """RFC 9051 §4.3: a literal has no NUL (CHAR8). A message stored from a
    literal8 keeps its NUL for BINARY (literal8, RFC 3516 §4.2); BODY[] sends it
    as 0x80, as Dovecot does. A plain APPEND literal with NUL is BAD."""
    msg = b"Subject: nul\r\n\r\nab\x00cd\r\n"
    raw.send(b"a APPEND INBOX ~{%d+}\r\n%s\r\n" % (len(msg), msg))
    assert raw.until(b"a").startswith(b"a OK [APPENDUID ")
    raw.cmd("s EXAMINE INBOX")
    assert raw.cmd("b FETCH 1 (BODY.PEEK[] BINARY.PEEK[] BINARY.PEEK[1] RFC822.TEXT)") == (
        b"* 1 FETCH (BODY[] {23}\r\nSubject: nul\r\n\r\nab\x80cd\r\n "
        b"BINARY[] ~{23}\r\nSubject: nul\r\n\r\nab\x00cd\r\n BINARY[1] ~{7}\r\nab\x00cd\r\n "
        b"RFC822.TEXT {7}\r\nab\x80cd\r\n)\r\nb OK FETCH completed\r\n"
    )
    assert raw.cmd(b"c APPEND INBOX {3+}\r\na\x00b") == b"c BAD NUL in literal (use literal8)\r\n"


def test_mailbox_names_not_modified_utf7_are_no(raw: Raw) -> None:
    """A well-formed astring that is not valid modified UTF-7 names no mailbox:
    NO [CANNOT], not BAD. With UTF8=ACCEPT names are UTF-8 and "&" is itself."""
    assert raw.cmd("a SELECT &Jjo") == (
        b"a NO [CANNOT] Mailbox name is not valid modified UTF-7\r\n"
    )
    assert raw.cmd('b CREATE "&AGE-"') == (
        b"b NO [CANNOT] Mailbox name is not valid modified UTF-7\r\n"
    )
    assert raw.cmd('c LIST "" "&Jjo*"') == (
        b"c NO [CANNOT] Mailbox name is not valid modified UTF-7\r\n"
    )
    assert raw.cmd("d NOOP") == b"d OK NOOP completed\r\n"
    raw.cmd("e ENABLE UTF8=ACCEPT")
    assert raw.cmd("f CREATE &Jjo") == b"f OK CREATE completed\r\n"
    assert raw.cmd('g LIST "" "&*"') == (
        b'* LIST (\\HasNoChildren) "/" &Jjo\r\ng OK LIST completed\r\n'
    )
    other = Raw(raw.sock.getpeername()[1])
    other.login()
    assert other.cmd('h LIST "" "&-*"') == (
        b'* LIST (\\HasNoChildren) "/" &-Jjo\r\nh OK LIST completed\r\n'
    )


def test_subscriptions_outlive_their_mailbox(raw: Raw) -> None:
    """RFC 9051 §6.3.7: DELETE does not unsubscribe. LIST (SUBSCRIBED) shows the
    name \\NonExistent (RFC 5258 §3.1), LSUB \\Noselect (as Dovecot), RECURSIVEMATCH
    gives the parent with CHILDINFO (§3.5); UNSUBSCRIBE of the name works."""
    for line in ("a CREATE Foo/Bar", "b SUBSCRIBE Foo/Bar", "c DELETE Foo/Bar", "d DELETE Trash"):
        assert raw.cmd(line).endswith(b" OK " + line.split()[1].encode() + b" completed\r\n")
    assert raw.cmd('e LIST (SUBSCRIBED) "" *') == (
        b'* LIST (\\HasNoChildren \\Subscribed \\Archive) "/" Archive\r\n'
        b'* LIST (\\HasNoChildren \\Subscribed \\Drafts) "/" Drafts\r\n'
        b'* LIST (\\Subscribed \\NonExistent) "/" Foo/Bar\r\n'
        b'* LIST (\\HasNoChildren \\Subscribed) "/" INBOX\r\n'
        b'* LIST (\\HasNoChildren \\Subscribed \\Junk) "/" Junk\r\n'
        b'* LIST (\\HasNoChildren \\Subscribed \\Sent) "/" Sent\r\n'
        b'* LIST (\\Subscribed \\NonExistent) "/" Trash\r\n'
        b"e OK LIST completed\r\n"
    )
    assert raw.cmd('f LSUB "" T*') == b'* LSUB (\\Noselect) "/" Trash\r\nf OK LSUB completed\r\n'
    assert raw.cmd('g LIST (SUBSCRIBED RECURSIVEMATCH) "" F%') == (
        b'* LIST (\\HasNoChildren) "/" Foo ("CHILDINFO" ("SUBSCRIBED"))\r\ng OK LIST completed\r\n'
    )
    raw.cmd("h DELETE Foo")
    assert raw.cmd('i LIST (SUBSCRIBED RECURSIVEMATCH) "" F%') == (
        b'* LIST (\\NonExistent) "/" Foo ("CHILDINFO" ("SUBSCRIBED"))\r\ni OK LIST completed\r\n'
    )
    assert raw.cmd('j LIST "" T* RETURN (SUBSCRIBED)') == b"j OK LIST completed\r\n"
    assert raw.cmd("k CREATE Trash") == b"k OK CREATE completed\r\n"
    assert raw.cmd('l LIST "" T* RETURN (SUBSCRIBED STATUS (MESSAGES))') == (
        b'* LIST (\\HasNoChildren \\Subscribed) "/" Trash\r\n* STATUS Trash (MESSAGES 0)\r\n'
        b"l OK LIST completed\r\n"
    )
    assert raw.cmd("m UNSUBSCRIBE Foo/Bar") == b"m OK UNSUBSCRIBE completed\r\n"
    assert raw.cmd('n LSUB "" F*') == b"n OK LSUB completed\r\n"
    assert raw.cmd("o UNSUBSCRIBE Foo/Bar") == b"o NO [NONEXISTENT] No such mailbox\r\n"


def test_rev2_session_has_no_recent_and_lists_nonexistent(server: ServerThread, raw: Raw) -> None:
    """After ENABLE IMAP4rev2 (RFC 9051 Appendix E): no \\Recent flag, no RECENT
    response, \\Recent cannot be stored, LIST-STATUS and \\NonExistent work."""
    deliver(server, SIMPLE)
    assert raw.cmd("e ENABLE IMAP4rev2") == b"* ENABLED IMAP4rev2\r\ne OK ENABLE completed\r\n"
    assert b"RECENT" not in raw.cmd("s SELECT INBOX")
    deliver(server, SIMPLE)
    assert raw.cmd("n NOOP") == b"* 2 EXISTS\r\nn OK NOOP completed\r\n"
    assert raw.cmd("f FETCH 1:2 FLAGS") == (
        b"* 1 FETCH (FLAGS ())\r\n* 2 FETCH (FLAGS ())\r\nf OK FETCH completed\r\n"
    )
    assert raw.cmd("g STORE 1 +FLAGS (\\Recent)") == b"g BAD Invalid system flag \\Recent\r\n"
    assert raw.cmd('h LIST "" INBOX RETURN (STATUS (MESSAGES UNSEEN))') == (
        b'* LIST (\\HasNoChildren) "/" INBOX\r\n* STATUS INBOX (MESSAGES 2 UNSEEN 2)\r\n'
        b"h OK LIST completed\r\n"
    )
    raw.cmd("i DELETE Junk")
    assert raw.cmd('j LIST (SUBSCRIBED) "" J*') == (
        b'* LIST (\\Subscribed \\NonExistent) "/" Junk\r\nj OK LIST completed\r\n'
    )


def test_catenate_composes_from_text_and_urls(server: ServerThread, raw: Raw) -> None:
    """RFC 4469: APPEND ... CATENATE (TEXT literal / URL), URLs relative to the
    selected mailbox (as Dovecot) or absolute on this server, sections and
    PARTIAL as in FETCH; a URL naming nothing is NO [BADURL url] and stores
    nothing."""
    deliver(server, MULTIPART)
    deliver(server, SIMPLE, to="bob@example.test")
    uv = _uidvalidity(raw)
    drafts = _uidvalidity(raw, "Drafts")
    raw.cmd("s SELECT INBOX")
    head = (
        b"From: alice@example.test\r\nSubject: Fwd\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\n'
    )
    tail = b"\r\n--x--\r\n"
    raw.send(b"a APPEND Drafts (\\Draft) CATENATE (TEXT {%d}\r\n" % len(head))
    assert raw.line() == b"+ Ready for literal data\r\n"
    raw.send(
        head + b' URL ";UID=1/;SECTION=2.MIME" URL "/INBOX;UIDVALIDITY=%d/;UID=1/;SECTION=2"'
        b' TEXT {%d+}\r\n%s URL "'
        b"imap://alice%%40example.test@MAIL.example.test/INBOX/;UID=1/;SECTION=1/;PARTIAL=0.4"
        b'" TEXT {0+}\r\n)\r\n' % (uv, len(tail), tail)
    )
    assert raw.until(b"a") == b"a OK [APPENDUID %d 1] APPEND completed\r\n" % drafts
    mime_header = (
        b"Content-Type: application/octet-stream; name=data.bin\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
    )
    composed = head + mime_header + b"AAECAw==" + tail + b"Voil"
    raw.cmd("t EXAMINE Drafts")
    assert raw.cmd("b FETCH 1 (FLAGS BODY.PEEK[])") == (
        b"* 1 FETCH (FLAGS (\\Draft \\Recent) BODY[] {%d}\r\n%s)\r\nb OK FETCH completed\r\n"
        % (len(composed), composed)
    )
    raw.cmd("u SELECT INBOX")
    refusals = [
        ("/INBOX/;UID=9", "No such message"),
        ("/INBOX;UIDVALIDITY=1/;UID=1", "UIDVALIDITY does not match"),
        ("/Nope/;UID=1", "No such mailbox"),
        ("/INBOX", "URL names no message"),
        ("/INBOX/;UID=1/;SECTION=7", "No such section"),
        ("/INBOX/;UID=1/;SECTION=FOO", "Invalid section: unknown section text 'FOO'"),
        ("imap://elsewhere.test/INBOX/;UID=1", "URL names another server"),
        ("imap://bob%40example.test@mail.example.test/INBOX/;UID=1", "URL names another user"),
        ("/INBOX/;UID=1;URLAUTH=anonymous", "URLAUTH URLs are not accepted here"),
        ("/INBOX/;UID=1/;SECTION", "Invalid IMAP URL: Invalid URL"),
    ]
    for url, text in refusals:
        assert raw.cmd(f'c APPEND Drafts CATENATE (URL "{url}" TEXT {{1+}}\r\nx)') == (
            f"c NO [BADURL {url}] {text}\r\n".encode()
        ), url
    raw.cmd("v UNSELECT")
    assert raw.cmd('d APPEND Drafts CATENATE (URL ";UID=1")') == (
        b"d NO [BADURL ;UID=1] Invalid IMAP URL: Invalid mailbox\r\n"
    )
    assert raw.cmd("e APPEND Drafts CATENATE (TEXT {0+}\r\n)") == (
        b"e NO Empty message refused\r\n"
    )
    assert raw.cmd("f APPEND Drafts CATENATE (FILE x)") == (b"f BAD Unknown CATENATE part FILE\r\n")
    assert raw.cmd("g STATUS Drafts (MESSAGES)") == (
        b"* STATUS Drafts (MESSAGES 1)\r\ng OK STATUS completed\r\n"
    )


def test_catenate_result_is_held_to_appendlimit(tmp_path: Path) -> None:
    srv = thread_server(tmp_path, "[imap]\nmax_literal_size = 1000\nspool_threshold = 100\n")
    try:
        srv.add_user(ALICE)
        deliver(srv, SIMPLE)
        c = Raw(srv.port("imap"))
        c.login()
        four = " ".join(['URL "/INBOX/;UID=1"'] * 4)
        assert c.cmd(f"a APPEND INBOX CATENATE ({four})") == (
            b"a NO [TOOBIG] Composed message grows too big\r\n"
        )
        assert c.cmd('b APPEND INBOX CATENATE (URL "/INBOX/;UID=1")').startswith(
            b"b OK [APPENDUID "
        )
        # a TEXT beyond spool_threshold is spooled to a file by the adapter and read back
        text = b"X-Note: " + b"n" * 300 + b"\r\n"
        c.send(
            b's APPEND INBOX CATENATE (TEXT {%d+}\r\n%s URL "/INBOX/;UID=1")\r\n'
            % (len(text), text)
        )
        assert c.until(b"s").startswith(b"s OK [APPENDUID ")
        c.cmd("t EXAMINE INBOX")
        assert c.cmd("u FETCH 3 BODY.PEEK[HEADER.FIELDS (X-Note)]") == (
            b"* 3 FETCH (BODY[HEADER.FIELDS (X-Note)] {%d}\r\n%s\r\n)\r\nu OK FETCH completed\r\n"
            % (len(text) + 2, text)
        )
        c.cmd("v UNSELECT")
        # one message named fifty times is read once; reading more than twice
        # APPENDLIMIT of messages for one command is refused
        fifty = " ".join(['URL "/INBOX/;UID=1/;PARTIAL=0.1"'] * 50)
        assert c.cmd(f"c APPEND INBOX CATENATE ({fifty})").startswith(b"c OK [APPENDUID ")
        deliver(srv, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE)
        many = " ".join(f'URL "/INBOX/;UID={u}/;PARTIAL=0.1"' for u in range(5, 10))
        assert re.fullmatch(
            rb"d NO \[BADURL /INBOX/;UID=\d/;PARTIAL=0\.1\] "
            rb"Too much message data named in one command\r\n",
            c.cmd(f"d APPEND INBOX CATENATE ({many})"),
        )
    finally:
        stop(srv)


# --- THREAD (RFC 5256) ------------------------------------------------------------------
def _mail(mid: str, subject: str, date: str | None, *extra: str) -> bytes:
    head = [
        "From: Bob <bob@remote.test>",
        "To: alice@example.test",
        f"Subject: {subject}",
        f"Message-ID: <{mid}@remote.test>",
        *extra,
    ]
    if date is not None:
        head.append(f"Date: {date}")
    return ("\r\n".join(head) + "\r\n\r\nText\r\n").encode()


THREADED = (
    _mail("p1", "Project", "Thu, 2 Mar 2000 10:00:00 +0000"),
    _mail(
        "p2",
        "Re: Project",
        "Thu, 2 Mar 2000 12:00:00 +0100",  # 11:00 UTC
        "In-Reply-To: <p1@remote.test>",
    ),
    _mail("l1", "Lunch", "Thu, 2 Mar 2000 09:00:00 +0000"),
    _mail(
        "p3",
        "Re: Project",
        "Thu, 2 Mar 2000 10:30:00 +0000",
        "References: <p1@remote.test> <p2@remote.test>",
    ),
    _mail(
        "l2",
        "Re: Lunch",
        "Thu, 2 Mar 2000 12:00:00 +0000",
        "References: <lost@remote.test>",
    ),
    _mail(
        "p4",
        "RE: [team] Project",
        "Thu, 2 Mar 2000 10:45:00 +0000",
        "References: <p1@remote.test>\r\n <p2@remote.test>",
        "In-Reply-To: <l1@remote.test>",  # References win
    ),
    _mail("n1", "Notes", None),  # no Date: INTERNALDATE, the newest
)


def test_thread(server: ServerThread, raw: Raw) -> None:
    deliver(server, SIMPLE, *THREADED)
    raw.cmd("s SELECT INBOX")
    raw.cmd("t STORE 1 +FLAGS.SILENT (\\Deleted)")
    raw.cmd("u EXPUNGE")  # sequence numbers 1-7 are now UIDs 2-8
    assert raw.cmd("a THREAD REFERENCES UTF-8 ALL") == (
        b"* THREAD (3 5)(1 2 (4)(6))(7)\r\na OK THREAD completed\r\n"
    )
    assert raw.cmd("b THREAD ORDEREDSUBJECT UTF-8 ALL") == (
        b"* THREAD (3 5)(1 (4)(6)(2))(7)\r\nb OK THREAD completed\r\n"
    )
    assert raw.cmd("c UID THREAD REFERENCES UTF-8 ALL") == (
        b"* THREAD (4 6)(2 3 (5)(7))(8)\r\nc OK THREAD completed\r\n"
    )
    assert raw.cmd("d UID THREAD orderedsubject US-ASCII SUBJECT project") == (
        b"* THREAD (2 (5)(7)(3))\r\nd OK THREAD completed\r\n"
    )
    # only matching messages are threaded: without 1, its reply heads the thread
    assert raw.cmd("e THREAD REFERENCES UTF-8 NOT 1") == (
        b"* THREAD (3 5)(2 (4)(6))(7)\r\ne OK THREAD completed\r\n"
    )
    assert raw.cmd("f THREAD REFERENCES UTF-8 SUBJECT nothing") == (
        b"* THREAD\r\nf OK THREAD completed\r\n"
    )
    assert raw.cmd("g THREAD FOO UTF-8 ALL") == b"g BAD Unsupported thread algorithm FOO\r\n"
    assert raw.cmd("h THREAD REFERENCES KLINGON ALL") == (
        b"h NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n"
    )
    raw.cmd("i UNSELECT")
    assert raw.cmd("j THREAD REFERENCES UTF-8 ALL") == b"j BAD No mailbox selected\r\n"
