"""URLAUTH (RFC 4467) over IMAP and BURL (RFC 4468) on the submission port, end to
end: a draft APPENDed over IMAP, signed with GENURLAUTH for ``submit+alice``, sent
with ``BURL <url> LAST``, found in the recipient's INBOX with our trace fields; with
raw sockets (exact bytes) and with imaplib + smtplib's docmd."""

from __future__ import annotations

import base64
import imaplib
import re
import smtplib
import socket

from tests.integration.test_imap import _OPEN, Raw
from tests.integration.test_imap import _close_sockets as _close_sockets
from tests.support.server import PASSWORD, ServerThread

HOST = "mail.example.test"
A = "alice%40example.test"
DRAFT = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Bob <bob@example.test>\r\n"
    b"Subject: Draft sent by BURL\r\n"
    b"Date: Mon, 2 Mar 2026 10:00:00 +0000\r\n"
    b"Message-ID: <draft1@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n"
    b"--b1\r\nContent-Type: text/plain; name=notes.txt\r\n\r\nnotes\r\n--b1--\r\n"
)


def imap(server: ServerThread, user: str = "alice@example.test") -> Raw:
    c = Raw(server.port("imap"))
    c.login(user)
    return c


def append_draft(c: Raw, data: bytes = DRAFT) -> tuple[int, int]:
    reply = c.cmd(b"A APPEND Drafts (\\Draft) {%d+}\r\n" % len(data) + data)
    m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", reply)
    assert m is not None, reply
    return int(m.group(1)), int(m.group(2))


def genurlauth(c: Raw, rump: str, mechanism: str = "INTERNAL") -> str:
    reply = c.cmd(f'G GENURLAUTH "{rump}" {mechanism}')
    m = re.fullmatch(rb'\* GENURLAUTH "([^"]+)"\r\nG OK GENURLAUTH completed\r\n', reply)
    assert m is not None, reply
    return m.group(1).decode()


class Submission:
    """A raw submission client returning exact reply bytes."""

    def __init__(self, server: ServerThread, user: str = "alice@example.test") -> None:
        self.c = Raw.__new__(Raw)  # its line reader, on an SMTP socket
        self.c.sock = socket.create_connection(("127.0.0.1", server.port("submission")), 10)
        self.c.buf = b""
        _OPEN.append(self.c)
        assert self.c.line().startswith(b"220 ")
        self.ehlo = self.cmd("EHLO client.test")
        token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
        assert self.cmd(f"AUTH PLAIN {token}") == b"235 2.7.0 Authentication successful\r\n"

    def cmd(self, line: str) -> bytes:
        self.c.send(line.encode() + b"\r\n")
        out = b""
        while True:
            got = self.c.line()
            out += got
            if got[3:4] == b" ":
                return out

    def close(self) -> None:
        self.c.sock.close()


def bob_inbox(server: ServerThread) -> list[bytes]:
    c = imap(server, "bob@example.test")
    c.cmd("S SELECT INBOX")
    reply = c.cmd("F FETCH 1:* BODY.PEEK[]")
    c.close()
    return re.findall(rb"BODY\[\] \{\d+\}\r\n(.*?)\)\r\n(?=\*|F OK)", reply, re.DOTALL)


def test_burl_sends_a_draft(server: ServerThread) -> None:
    c = imap(server)
    caps = c.cmd("C CAPABILITY")
    assert b" URLAUTH" in caps
    uv, uid = append_draft(c)
    rump = f"imap://{A}@{HOST}/Drafts;UIDVALIDITY={uv}/;UID={uid};URLAUTH=submit+{A}"
    url = genurlauth(c, rump)
    assert re.fullmatch(re.escape(rump) + ":INTERNAL:[0-9a-f]{64}", url)
    # submit+ URLs are for the submission server, not for IMAP sessions (RFC 5092 §6.1.2)
    assert c.cmd(f'U URLFETCH "{url}"') == (
        f'* URLFETCH "{url}" NIL\r\nU OK URLFETCH completed\r\n'.encode()
    )
    s = Submission(server)
    assert s.ehlo.endswith(b"250-CHUNKING\r\n250 BURL imap\r\n"), s.ehlo
    assert s.cmd("MAIL FROM:<alice@example.test>") == b"250 2.1.0 Ok\r\n"
    assert s.cmd("RCPT TO:<bob@example.test>") == b"250 2.1.5 Ok\r\n"
    reply = s.cmd(f"BURL {url} LAST")
    m = re.fullmatch(rb"250 2\.0\.0 Ok: queued as (\S+)\r\n", reply)
    assert m is not None, reply
    qid = m.group(1).decode()
    s.close()
    [got] = bob_inbox(server)
    head, sep, rest = got.partition(b"\r\n\r\n")
    # our trace fields on top, then the draft exactly as stored
    assert re.fullmatch(
        rb"Return-Path: <alice@example\.test>\r\n"
        rb"Received: from client\.test \(unknown \[127\.0\.0\.1\]\)\r\n"
        rb"\t\(Authenticated sender: alice@example\.test\)\r\n"
        rb"\tby mail\.example\.test \(postier\) with ESMTPA id " + qid.encode() + rb"\r\n"
        rb"\tfor <bob@example\.test>; [^\r\n]+\r\n" + re.escape(DRAFT.split(b"\r\n\r\n")[0]),
        head,
    ), head
    assert sep + rest == DRAFT[DRAFT.index(b"\r\n\r\n") :]
    # the draft is still there, not \Seen (BODY.PEEK semantics)
    assert c.cmd("S STATUS Drafts (MESSAGES UNSEEN)") == (
        b"* STATUS Drafts (MESSAGES 1 UNSEEN 1)\r\nS OK STATUS completed\r\n"
    )


def test_burl_parts_and_bdat(server: ServerThread) -> None:
    """A message assembled from a header sent with BDAT and a part of the draft."""
    c = imap(server)
    _, uid = append_draft(c)
    part = genurlauth(c, f"imap://{A}@{HOST}/Drafts/;UID={uid}/;SECTION=2;URLAUTH=submit+{A}")
    s = Submission(server)
    s.cmd("MAIL FROM:<alice@example.test>")
    s.cmd("RCPT TO:<bob@example.test>")
    header = (
        b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: notes\r\n"
        b"Date: Mon, 2 Mar 2026 11:00:00 +0000\r\nMessage-ID: <n@example.test>\r\n\r\n"
    )
    s.c.send(b"BDAT %d\r\n" % len(header) + header)
    assert s.c.line() == b"250 2.0.0 Ok: %d bytes\r\n" % len(header)
    assert s.cmd(f"BURL {part}") == (b"250 2.5.0 Waiting for additional BURL or BDAT commands\r\n")
    assert s.cmd("BDAT 0 LAST").startswith(b"250 2.0.0 Ok: queued as ")
    [got] = bob_inbox(server)
    assert got.endswith(header + b"notes")


def test_burl_refusals(server: ServerThread) -> None:
    c = imap(server)
    uv, uid = append_draft(c)
    base = f"imap://{A}@{HOST}/Drafts;UIDVALIDITY={uv}/;UID={uid}"
    url = genurlauth(c, f"{base};URLAUTH=submit+{A}")
    s = Submission(server)

    def burl(target: str, session: Submission = s) -> bytes:
        assert session.cmd("MAIL FROM:<alice@example.test>") == b"250 2.1.0 Ok\r\n"
        assert session.cmd("RCPT TO:<bob@example.test>") == b"250 2.1.5 Ok\r\n"
        return session.cmd(f"BURL {target} LAST")

    denied = b"554 5.7.0 IMAP URL authorization failed\r\n"
    trust = b"554 5.7.8 URL resolution requires trust relationship\r\n"
    gone = b"554 5.6.6 IMAP URL resolution failed\r\n"
    assert burl(url[:-4] + "0000") == denied  # a wrong token
    assert burl(url.replace("Drafts;", "drafts;")) == denied  # the token covers the text
    assert burl(url.replace(HOST, "other.example")) == trust
    assert burl(base) == trust  # a plain URL would need a trust relationship
    assert burl("not-a-url") == gone
    bob = Submission(server, "bob@example.test")
    assert bob.cmd("MAIL FROM:<bob@example.test>") == b"250 2.1.0 Ok\r\n"
    assert bob.cmd("RCPT TO:<alice@example.test>") == b"250 2.1.5 Ok\r\n"
    assert bob.cmd(f"BURL {url} LAST") == denied  # submit+alice is alice's only
    user_url = genurlauth(c, f"{base};URLAUTH=user+{A}")
    assert burl(user_url) == denied  # user+ is for IMAP sessions
    # after a refusal the transaction is gone (RFC 4468 §3.2)
    assert s.cmd(f"BURL {url} LAST") == b"503 5.5.1 Error: need MAIL command\r\n"
    # RESETKEY revokes every URL signed before
    assert c.cmd("K RESETKEY Drafts INTERNAL") == (
        b"K OK [URLMECH INTERNAL] RESETKEY completed\r\n"
    )
    assert burl(url) == denied
    url = genurlauth(c, f"{base};URLAUTH=submit+{A}")
    assert c.cmd("K RESETKEY") == b"K OK [URLMECH INTERNAL] RESETKEY completed\r\n"
    assert burl(url) == denied
    # the message expunged
    url = genurlauth(c, f"{base};URLAUTH=submit+{A}")
    c.cmd("S SELECT Drafts")
    c.cmd(f"X UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
    c.cmd("X EXPUNGE")
    assert burl(url) == gone
    # a message with NUL octets cannot go out as 8BITMIME (RFC 4468 §4)
    binary = b"From: alice@example.test\r\nSubject: b\r\n\r\n\x00\x01\r\n"
    c.send(b"A APPEND Drafts ~{%d+}\r\n" % len(binary) + binary + b"\r\n")
    m = re.search(rb"APPENDUID \d+ (\d+)", c.until(b"A"))
    assert m is not None
    url = genurlauth(c, f"imap://{A}@{HOST}/Drafts/;UID={int(m.group(1))};URLAUTH=submit+{A}")
    assert burl(url) == b"554 5.6.3 Conversion required but not supported\r\n"
    s.close()
    bob.close()
    assert bob_inbox(server) == []


def test_urlauth_commands(server: ServerThread) -> None:
    c = imap(server)
    _, uid = append_draft(c)
    base = f"imap://{A}@{HOST}/Drafts/;UID={uid}"
    # two URLs in one GENURLAUTH; URLFETCH of an authuser URL and of a section
    reply = c.cmd(
        f'G GENURLAUTH "{base};URLAUTH=authuser" INTERNAL '
        f'"{base}/;SECTION=1.MIME;URLAUTH=user+{A}" internal'
    )
    urls = re.findall(rb'"([^"]+)"', reply.split(b"\r\n")[0])
    assert len(urls) == 2
    assert urls[1].endswith(b":INTERNAL:" + urls[1][-64:])  # mechanisms are case-insensitive
    b = imap(server, "bob@example.test")
    assert b.cmd(b'U URLFETCH "' + urls[0] + b'" "' + urls[1] + b'"') == (
        b'* URLFETCH "%s" {%d}\r\n%s "%s" NIL\r\nU OK URLFETCH completed\r\n'
        % (urls[0], len(DRAFT), DRAFT, urls[1])
    )
    assert c.cmd(b'U URLFETCH "' + urls[1] + b'"') == (
        b'* URLFETCH "%s" {28}\r\nContent-Type: text/plain\r\n\r\n\r\nU OK URLFETCH completed\r\n'
        % urls[1]
    )
    # refusals: another user's URL, a foreign host, an unknown mechanism, expired
    assert b.cmd(f'G GENURLAUTH "{base};URLAUTH=authuser" INTERNAL') == (
        b"G NO GENURLAUTH refused: Only URLs of your own mailboxes can be signed\r\n"
    )
    assert c.cmd(f'G GENURLAUTH "{base.replace(HOST, "x.test")};URLAUTH=authuser" INTERNAL') == (
        b"G NO GENURLAUTH refused: The URL names another server\r\n"
    )
    assert c.cmd(f'G GENURLAUTH "{base};URLAUTH=authuser" HMAC') == (
        b"G NO GENURLAUTH refused: Unsupported URLAUTH mechanism HMAC\r\n"
    )
    assert (
        c.cmd(f'G GENURLAUTH "{base};EXPIRE=2001-01-01T00:00:00Z;URLAUTH=authuser" INTERNAL')
        == b"G NO GENURLAUTH refused: The URL has expired\r\n"
    )
    assert c.cmd(f'G GENURLAUTH "{base};URLAUTH=anonymous" INTERNAL') == (
        b"G NO GENURLAUTH refused: Anonymous URLAUTH is not allowed here\r\n"
    )
    assert c.cmd("G GENURLAUTH x") == b"G BAD Missing argument\r\n"
    assert c.cmd("G GENURLAUTH x IN/TERNAL") == b"G BAD Expected URLAUTH mechanism\r\n"
    assert c.cmd("K RESETKEY Nope") == b"K NO [NONEXISTENT] No such mailbox\r\n"
    assert c.cmd("K RESETKEY INBOX HMAC") == b"K NO Unsupported URLAUTH mechanism HMAC\r\n"
    assert c.cmd("U URLFETCH junk") == b"* URLFETCH junk NIL\r\nU OK URLFETCH completed\r\n"
    pre = Raw(server.port("imap"))
    assert pre.cmd("U URLFETCH x") == b"U BAD Log in first\r\n"


def test_with_imaplib_and_smtplib(server: ServerThread) -> None:
    for name in ("GENURLAUTH", "URLFETCH", "RESETKEY"):
        imaplib.Commands.setdefault(name, ("AUTH", "SELECTED"))
    m = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    try:
        m.login("alice@example.test", PASSWORD)
        typ, data = m.append("Drafts", r"(\Draft)", None, DRAFT)
        assert typ == "OK"
        found = re.search(rb"APPENDUID (\d+) (\d+)", data[0])
        assert found is not None
        rump = f"imap://{A}@{HOST}/Drafts/;UID={int(found.group(2))};URLAUTH=submit+{A}"
        typ, data = m._simple_command("GENURLAUTH", f'"{rump}"', "INTERNAL")
        assert typ == "OK"
        typ, data = m._untagged_response(typ, data, "GENURLAUTH")
        url = data[0].decode().strip('"')
        assert url.startswith(rump + ":INTERNAL:")
    finally:
        m.logout()
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as s:
        s.ehlo("client.test")
        assert s.has_extn("burl")
        assert s.esmtp_features["burl"] == "imap"
        s.login("alice@example.test", PASSWORD)
        assert s.docmd("MAIL", "FROM:<alice@example.test>") == (250, b"2.1.0 Ok")
        assert s.docmd("RCPT", "TO:<bob@example.test>") == (250, b"2.1.5 Ok")
        code, text = s.docmd("BURL", f"{url} LAST")
        assert code == 250
        assert text.startswith(b"2.0.0 Ok: queued as ")
    [got] = bob_inbox(server)
    assert got.endswith(DRAFT[DRAFT.index(b"\r\n\r\n") :])
