"""Writes the seed corpus: ``python -m tests.fuzz.seeds`` (re-run after changing it).

Seeds are small real inputs: typical sessions of each protocol, the MIME samples of
tests/data/mime, real-world SPF/DMARC records, a DKIM-signed message. Files named
``seed-*`` are (re)written here; every other file in corpus/ is a found input kept
as a regression test and is never touched.
"""

from __future__ import annotations

from pathlib import Path

from tests.fuzz.harness import CORPUS

DATA = Path(__file__).resolve().parents[1] / "data"

ENVELOPE = b"EHLO client.example\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<alice@example.test>\r\n"
MESSAGE = (
    b"From: Alice <a@example.test>\r\nTo: alice@example.test\r\nSubject: hi\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@example.test>\r\n\r\n"
    b"Hello\r\n..stuffed line\r\n"
)


def _b64(text: bytes) -> bytes:
    import base64

    return base64.b64encode(text)


SMTP = {
    # first octet: core options (drivers.smtp_options)
    "seed-data": b"\x00" + ENVELOPE + b"DATA\r\n" + MESSAGE + b".\r\nQUIT\r\n",
    "seed-bdat": b"\x00" + ENVELOPE + b"BDAT 5\r\nHello BDAT 7 LAST\r\n world\r\nQUIT\r\n",
    "seed-pipelined-params": b"\x00EHLO c\r\nMAIL FROM:<a@example.test> SIZE=100 BODY=8BITMIME "
    b"RET=HDRS ENVID=x+2By SMTPUTF8\r\nRCPT TO:<nobody@example.test> NOTIFY=SUCCESS,FAILURE "
    b"ORCPT=rfc822;x+40y\r\nRCPT TO:<busy@example.test>\r\nRCPT TO:<b@[192.0.2.1]>\r\n"
    b"DATA\r\nRSET\r\nNOOP\r\nVRFY x\r\nEXPN y\r\nHELP\r\nQUIT\r\n",
    "seed-auth-plain": b"\x02EHLO c\r\nAUTH PLAIN " + _b64(b"\x00alice\x00secret") + b"\r\n"
    b"AUTH LOGIN\r\n" + _b64(b"bob") + b"\r\n" + _b64(b"pw") + b"\r\nQUIT\r\n",
    "seed-auth-login": b"\x00EHLO c\r\nAUTH LOGIN\r\n"
    + _b64(b"alice")
    + b"\r\n"
    + _b64(b"secret")
    + b"\r\nAUTH PLAIN\r\n*\r\nQUIT\r\n",
    "seed-starttls": b"\x00EHLO c\r\nSTARTTLS\r\nEHLO c\r\nQUIT\r\n",
    "seed-bare-lf-normalize": b"\x01" + ENVELOPE + b"DATA\r\nline\nbare\r.\n\r\n.\r\nQUIT\r\n",
    "seed-bare-lf-reject": b"\x00" + ENVELOPE + b"DATA\r\nline\nbare\r\n.\n.\r\n.\r\n",
    "seed-small-limits": b"\xc0HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\n"
    b"RCPT TO:<@r1,@r2:x@example.test>\r\nRCPT TO:<c@d.test>\r\nRCPT TO:<e@f.test>\r\n"
    b"DATA\r\n" + b"x" * 400 + b"\r\n.\r\n" + b"Y" * 600 + b"\r\nQUIT\r\n",
    "seed-binarymime": b"\x20" + b"EHLO c\r\nMAIL FROM:<a@example.test> BODY=BINARYMIME\r\n"
    b"RCPT TO:<c@d.test>\r\nDATA\r\nBDAT 3 LAST\r\n\x00\r\n",
    "seed-errors": b"\x00MAIL FROM:<a@b>\r\nEHLO reject.example\r\nHELO\r\nTURN\r\n\xff\xfe\r\n"
    b"EHLO c\r\nMAIL FROM:<bye@example.test>\r\n",
}

POP3 = {
    "seed-session": b"\x00USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nLIST 2\r\nUIDL\r\n"
    b"UIDL 3\r\nRETR 1\r\nTOP 2 1\r\nTOP 2 7\r\nDELE 1\r\nRETR 1\r\nRSET\r\nNOOP\r\n"
    b"DELE 3\r\nQUIT\r\n",
    "seed-capa-stls": b"\x02CAPA\r\nSTLS\r\nCAPA\r\nUSER alice\r\nPASS secret\r\nQUIT\r\n",
    "seed-auth-plain": b"\x04AUTH PLAIN " + _b64(b"\x00alice\x00secret") + b"\r\nSTAT\r\nQUIT\r\n",
    "seed-auth-continuation": b"\x00AUTH PLAIN\r\n"
    + _b64(b"alice\x00alice\x00secret")
    + b"\r\nAUTH\r\nAUTH PLAIN\r\n*\r\nQUIT\r\n",
    "seed-failures": b"\x00USER bob\r\nPASS x\r\nUSER locked\r\nPASS y\r\nUSER broken\r\n"
    b"PASS z\r\nAPOP a b\r\nSTAT\r\nPASS q\r\nUSER empty\r\nPASS s\r\nLIST\r\nQUIT\r\n",
    "seed-long-lines": b"\x08USER " + b"a" * 100 + b"\r\nNOOP\r\n" + b"b" * 300 + b"\nQUIT\r\n",
}

IMAP = {
    # first octet: options (drivers.imap_limits, UTF8=ACCEPT 0x04, refuse literals 0x08)
    "seed-login-select-fetch": b"\x00a1 CAPABILITY\r\na2 LOGIN alice {6}\r\nsecret\r\n"
    b"a3 SELECT INBOX (CONDSTORE)\r\na4 FETCH 1:* (FLAGS UID RFC822.SIZE "
    b"BODY.PEEK[HEADER.FIELDS (From Subject)]<0.100> BODYSTRUCTURE ENVELOPE)\r\n"
    b"a5 UID FETCH 1:4,7 (BINARY.PEEK[1.2] MODSEQ) (CHANGEDSINCE 12 VANISHED)\r\n"
    b"a6 LOGOUT\r\n",
    "seed-append-literals": b"\x00a1 APPEND Drafts (\\Seen $Junk) "
    b'"17-Jul-1996 02:44:25 -0700" {10+}\r\nFrom: a\r\n\r\n ~{3}\r\na\x00b\r\n'
    b"a2 APPEND INBOX {4}\r\nabcd\r\n",
    "seed-search-sort-thread": b"\x00a1 UID SEARCH RETURN (MIN MAX COUNT SAVE) CHARSET UTF-8 "
    b'OR (FROM "x" SINCE 1-Jan-2020) NOT (LARGER 100 KEYWORD $Junk) UID 1:* MODSEQ 5\r\n'
    b"a2 SORT (REVERSE DATE SUBJECT) UTF-8 ALL\r\na3 THREAD REFERENCES UTF-8 TEXT {3}\r\nabc\r\n"
    b"a4 SEARCH $\r\n",
    "seed-store-copy-move": b"\x00a1 UID STORE 1:3 (UNCHANGEDSINCE 9) +FLAGS.SILENT "
    b"(\\Deleted)\r\na2 COPY 1 Archive\r\na3 UID MOVE 2:* Trash\r\n"
    b"a4 UID EXPUNGE 1:3\r\na5 EXPUNGE\r\na6 CLOSE\r\na7 UNSELECT\r\n",
    "seed-mailboxes": b'\x04a1 LIST (SUBSCRIBED) "" ("*" %) RETURN (CHILDREN SPECIAL-USE '
    b'STATUS (MESSAGES UNSEEN))\r\na2 CREATE "Sent&AOk-" (USE (\\Sent))\r\n'
    b"a3 RENAME Old \xc3\xa9t\xc3\xa9\r\na4 STATUS INBOX (UIDNEXT SIZE)\r\n"
    b'a5 SUBSCRIBE x\r\na6 LSUB "" *\r\na7 DELETE x\r\na8 NAMESPACE\r\n',
    "seed-idle-authenticate": b"\x00a1 ENABLE QRESYNC UTF8=ACCEPT\r\na2 IDLE\r\ndone\r\n"
    b"a3 AUTHENTICATE PLAIN\r\n" + _b64(b"\x00alice\x00secret") + b"\r\n"
    b'a4 AUTHENTICATE PLAIN =\r\na5 ID ("name" "x")\r\na6 GETQUOTAROOT INBOX\r\n'
    b'a7 SETQUOTA "" (STORAGE 10)\r\na8 SELECT INBOX (QRESYNC (1 2 1:5 (1,3 1,3)))\r\n',
    "seed-tiny-limits": b"\x0ba1 LOGIN {20}\r\na2 APPEND x {3+}\r\nabc {50+}\r\n"
    + b"z" * 50
    + b"\r\na3 "
    + b"y" * 80
    + b"\r\na4 NOOP\r\n",
}

SPF = {
    "seed-typical": b"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx -all",
    "seed-include-redirect-exp": b"v=spf1 include:inc.example.test ptr exists:%{i}._spf.%{d} "
    b"~all exp=exp.example.test\nv=spf1 a/24//64 mx:mail.example.test/28 "
    b"redirect=loop.example.test\n%{c} is not one of %{d}'s servers, %{l} %{R} %{t}",
    "seed-macros": b"v=spf1 exists:%{ir}.%{v}._spf.%{d2} exists:%{l1r-}.%{h}.%{o}.%{s} "
    b"include:timeout.example.test ?all unknown=%{p} %% %_ %-",
    "seed-errors": b"v=spf1 ip4:1.2.3.4/33 a:-bad.example mx:%{x} include redirect=a.test "
    b"redirect=b.test",
}

DMARC = {
    "seed-typical": b"v=DMARC1; p=reject; sp=quarantine; pct=50; adkim=s; aspf=r; "
    b"rua=mailto:dmarc@example.test; ruf=mailto:f@example.test; fo=1\n"
    b"sub.example.test\nexample.test",
    "seed-none": b"v=DMARC1; p=none\nexample.test,other.test\nmail.example.test",
    "seed-bad": b"v=DMARC1;p=bogus;pct=x;adkim=q\nslow.test\n",
}


def _filters_and_dkim() -> dict[str, dict[str, bytes]]:
    from postier.mailauth.dkim import sign
    from tests.fuzz.fuzz_dkim import KEY

    signed = sign(MESSAGE, [KEY]) + MESSAGE
    html = (
        b"Return-Path: <bounce@other.test>\r\nFrom: Bank <a@other.test>\r\nTo: x@example.test\r\n"
        b"Subject: =?utf-8?b?w6k=?=\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p>Click <a href="http://192.0.2.1/x">https://bank.example/login</a></p>\r\n'
        b"--b--\r\n"
    )
    zip_attachment = (
        b"From: a@example.test\r\nTo: b@example.test\r\n"
        b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n"
        b"Content-Type: application/zip; name=a.zip\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=a.zip\r\n\r\n"
        b"UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==\r\n--z--\r\n"
    )
    eicar = (
        b"From: a@example.test\r\n\r\n"
        b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*\r\n"
    )
    return {
        "dkim": {
            "seed-signed": signed,
            "seed-unsigned": MESSAGE,
            "seed-key-record": b"v=DKIM1; k=ed25519; h=sha256; t=y:s; p=AAAA\x00\x00" + signed,
        },
        "filters": {
            "seed-signed": b"Return-Path: <a@example.test>\r\n" + signed,
            "seed-phish-html": html,
            "seed-zip": zip_attachment,
            "seed-eicar": eicar,
        },
    }


def main() -> None:
    sets: dict[str, dict[str, bytes]] = {
        "smtp": SMTP,
        "pop3": POP3,
        "imap": IMAP,
        "spf": SPF,
        "dmarc": DMARC,
        **_filters_and_dkim(),
    }
    samples = sorted((DATA / "mime").glob("*.eml"))
    sets["mime"] = {f"seed-{p.stem}": p.read_bytes() for p in samples}
    sets["filters"].update({f"seed-{p.stem}": p.read_bytes() for p in samples[:4]})
    sets["address"] = {
        "seed-dot-string": b"user.name+tag@example.test",
        "seed-quoted": b'"a \\" b"@[192.0.2.1]',
        "seed-utf8": "élodie@exämple.test".encode(),
        "seed-ipv6-literal": b"x@[IPv6:2001:db8::1]",
        "seed-header-block": b'From: "A, B" <a@example.test>, g: c@d.test, e@f.test;\r\n'
        b"To: =?utf-8?q?x?= <@r1,@r2:y@example.test> (comment)\r\n"
        b"Subject: folded\r\n line\r\n\r\nbody",
    }
    for target, seeds in sets.items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("seed-*"):
            old.unlink()
        for name, data in seeds.items():
            (folder / name).write_bytes(data)
        print(f"{target}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
