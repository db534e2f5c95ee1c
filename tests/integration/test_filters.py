"""Inbound defences end to end: a real server, real SMTP, a real test DNS server."""

from __future__ import annotations

import imaplib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postier.filters.virus import EICAR
from tests.integration.smtp_helpers import Raw, body_after_trace, inbox
from tests.support.dnsserver import DnsTestServer, dns_server  # noqa: F401 (fixture)
from tests.support.server import PASSWORD, ServerThread, thread_server
from tests.unit.mailauth.dkim_keys import rsa_key, sign

MSG = (
    b"From: Alice <alice@bank.test>\r\nTo: bob@example.test\r\nSubject: statement\r\n"
    b"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@bank.test>\r\n\r\n"
    b"Your statement is ready.\r\n"
)


def start(tmp_path: Path, extra: str) -> ServerThread:
    srv = thread_server(tmp_path, extra)
    srv.add_user("bob@example.test")
    return srv


def send(
    port: int, sender: str, rcpt: str, data: bytes, helo: bytes = b"client.remote.test"
) -> list[bytes]:
    """One transaction; the replies to EHLO-less HELO, MAIL, RCPT, DATA, end of data."""
    out = []
    with Raw(port) as r:
        assert r.reply().startswith(b"220 ")
        out.append(r.cmd(b"HELO " + helo))
        out.append(r.cmd(f"MAIL FROM:<{sender}>".encode()))
        out.append(r.cmd(f"RCPT TO:<{rcpt}>".encode()))
        if out[-1].startswith(b"250"):
            out.append(r.cmd(b"DATA"))
            r.send(data.replace(b"\r\n.", b"\r\n..") + b".\r\n")
            out.append(r.reply())
        r.cmd(b"QUIT")
    return out


def qid_of(reply: bytes) -> str:
    m = re.match(rb"250 2\.0\.0 Ok: queued as ([0-9A-Z]+)\r\n", reply)
    assert m, reply
    return m.group(1).decode()


# --- greylisting -------------------------------------------------------------------


@pytest.fixture
def greylisting(tmp_path: Path) -> Iterator[ServerThread]:
    srv = start(tmp_path, '[greylist]\nallow = []\ndelay = "1s"\nwindow = "1h"\n')
    try:
        yield srv
    finally:
        srv.stop()


def test_greylisting_defers_then_accepts_and_whitelists_network(greylisting):
    port = greylisting.port("mx")
    first = send(port, "a@remote.test", "bob@example.test", MSG)
    assert first[2] == b"451 4.7.1 Greylisting in action, please come back later\r\n"
    again = send(port, "a@remote.test", "bob@example.test", MSG)
    assert again[2] == b"451 4.7.1 Greylisting in action, please come back later\r\n"
    time.sleep(1.1)
    ok = send(port, "a@remote.test", "bob@example.test", MSG)
    assert ok[2] == b"250 2.1.5 Ok\r\n"
    qid = qid_of(ok[4])
    # another sender from the same /24: not delayed
    other = send(port, "z@elsewhere.test", "bob@example.test", MSG)
    assert other[2] == b"250 2.1.5 Ok\r\n"
    assert len(inbox(greylisting, "bob@example.test")) == 2
    trace = [
        e.detail for e in greylisting.call(greylisting.store.trace_get(qid)) if e.event == "filter"
    ]
    assert (
        "rcpt greylist: accept (retry-passed 127.0.0.0/24 <a@remote.test> "
        "<bob@example.test>)" in trace
    )


def test_unknown_recipient_is_refused_before_greylisting(greylisting):
    replies = send(greylisting.port("mx"), "a@remote.test", "nobody@example.test", MSG)
    assert replies[2] == (
        b"550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown\r\n"
    )


# --- content: antivirus, headers, spam report --------------------------------------


@pytest.fixture
def mx(tmp_path: Path) -> Iterator[ServerThread]:
    srv = start(tmp_path, "[spam]\njunk_threshold = 3.0\n")
    try:
        yield srv
    finally:
        srv.stop()


def test_eicar_refused_with_signature_name(mx):
    data = b"Subject: test\r\n\r\n" + EICAR + b"\r\n"
    replies = send(mx.port("mx"), "a@remote.test", "bob@example.test", data)
    assert replies[4] == b"554 5.7.1 Message rejected: infected with Eicar-Test-Signature\r\n"
    assert inbox(mx, "bob@example.test") == []


def test_headerless_message_goes_to_junk_with_report(mx):
    data = (
        b"Subject: cheap\r\nContent-Type: text/html\r\n\r\n"
        b'<html><a href="http://198.51.100.7/x">http://bank.test/login</a></html>\r\n'
    )
    replies = send(mx.port("mx"), "a@remote.test", "bob@example.test", data, helo=b"localhost")
    qid_of(replies[4])
    assert inbox(mx, "bob@example.test") == []
    [stored] = inbox(mx, "bob@example.test", "Junk")
    head = stored.split(b"\r\n\r\n")[0]
    assert b"Authentication-Results: mail.example.test; none\r\n" in head
    assert (
        b"X-Spam-Status: Yes, score=9.1 required=3.0\r\n"
        b"\ttests=HELO_NOT_FQDN,HTML_ONLY,MISSING_DATE,MISSING_FROM,\r\n"
        b"\tMISSING_MESSAGE_ID,MISSING_TO,URL_IP_HOST,URL_TEXT_MISMATCH\r\n"
    ) in head
    assert (
        b"X-Spam-Report: * +1.0 HELO_NOT_FQDN HELO localhost is not fully qualified\r\n"
        b"\t* +1.0 MISSING_FROM no From: header\r\n"
        b"\t* +0.5 MISSING_TO no To: header\r\n"
        b"\t* +1.4 MISSING_DATE no Date: header\r\n"
        b"\t* +0.5 MISSING_MESSAGE_ID no Message-ID: header\r\n"
        b"\t* +0.7 HTML_ONLY HTML without a text/plain part\r\n"
        b"\t* +1.5 URL_IP_HOST link to an IP address: http://198.51.100.7/x\r\n"
        b"\t* +2.5 URL_TEXT_MISMATCH text bank.test links to 198.51.100.7\r\n"
        b"Subject: cheap\r\n"
    ) in stored
    assert body_after_trace(stored) == data


def test_forged_authentication_results_removed(mx):
    data = (
        b"Authentication-Results: mail.example.test; dmarc=pass header.from=bank.test\r\n"
        b"Authentication-Results: other.test; spf=pass\r\n"
        b"X-Spam-Status: No, score=-50\r\n" + MSG
    )
    replies = send(mx.port("mx"), "a@remote.test", "bob@example.test", data)
    qid_of(replies[4])
    [stored] = inbox(mx, "bob@example.test")
    assert stored.count(b"Authentication-Results: mail.example.test") == 1
    assert b"dmarc=pass header.from=bank.test" not in stored
    assert b"Authentication-Results: other.test; spf=pass\r\n" in stored
    assert b"score=-50" not in stored
    assert stored.endswith(
        b"X-Spam-Status: No, score=0.0 required=3.0 tests=none\r\n"
        b"Authentication-Results: other.test; spf=pass\r\n" + MSG
    )


def test_large_spooled_message_gets_fields_and_is_scanned(tmp_path):
    srv = start(tmp_path, "[smtp.limits]\nspool_threshold = 1024\n")
    try:
        big = MSG + b"x" * 4000 + b"\r\n"
        replies = send(srv.port("mx"), "a@remote.test", "bob@example.test", big)
        qid_of(replies[4])
        [stored] = inbox(srv, "bob@example.test")
        assert b"X-Spam-Status: No, score=0.0 required=5.0 tests=none\r\n" in stored
        assert body_after_trace(stored) == big
        infected = MSG + b"y" * 4000 + b"\r\n" + EICAR + b"\r\n"
        replies = send(srv.port("mx"), "a@remote.test", "bob@example.test", infected)
        assert replies[4] == (b"554 5.7.1 Message rejected: infected with Eicar-Test-Signature\r\n")
    finally:
        srv.stop()


# --- SPF, DKIM, DMARC with a real DNS server --------------------------------------


def zones() -> dict:
    return {
        # 127.0.0.1 is not allowed to send for any of these: SPF fails
        "bank.test": {"TXT": ["v=spf1 ip4:192.0.2.1 -all"]},
        "_dmarc.bank.test": {"TXT": ["v=DMARC1; p=reject"]},
        "sel._domainkey.bank.test": {"TXT": [rsa_key()[1]]},
        "shop.test": {"TXT": ["v=spf1 ip4:192.0.2.1 -all"]},
        "_dmarc.shop.test": {"TXT": ["v=DMARC1; p=quarantine"]},
        "news.test": {"TXT": ["v=spf1 ip4:192.0.2.1 ~all"]},
        "_dmarc.news.test": {"TXT": ["v=DMARC1; p=none"]},
        "good.test": {"TXT": ["v=spf1 ip4:127.0.0.0/8 -all"]},
        "_dmarc.good.test": {"TXT": ["v=DMARC1; p=reject"]},
        "1.0.0.127.in-addr.arpa": {"PTR": ["client.good.test"]},
        "client.good.test": {"A": ["127.0.0.1"]},
    }


@pytest.fixture
def dmarc_mx(tmp_path: Path) -> Iterator[ServerThread]:
    with DnsTestServer(zones()) as dns:
        srv = start(
            tmp_path, f'[dns]\noffline = false\nnameservers = ["{dns.nameserver}"]\ntimeout = 2\n'
        )
        try:
            yield srv
        finally:
            srv.stop()


def from_(domain: str) -> bytes:
    return MSG.replace(b"alice@bank.test", f"alice@{domain}".encode())


def test_dmarc_reject_refuses_forged_message(dmarc_mx):
    replies = send(dmarc_mx.port("mx"), "alice@bank.test", "bob@example.test", MSG)
    assert replies[1] == b"250 2.1.0 Ok\r\n"  # SPF fail only scores by default
    assert replies[4] == b"550 5.7.1 Message rejected: DMARC policy of bank.test is reject\r\n"
    assert inbox(dmarc_mx, "bob@example.test") == []


def test_dmarc_signed_message_passes(dmarc_mx):
    signed = sign(MSG, "bank.test")
    replies = send(dmarc_mx.port("mx"), "alice@bank.test", "bob@example.test", signed)
    qid = qid_of(replies[4])
    [stored] = inbox(dmarc_mx, "bob@example.test")
    b = re.search(rb"header\.b=([^\s;]+)", stored).group(1)
    assert (
        b"Authentication-Results: mail.example.test;\r\n"
        b"\tiprev=pass policy.iprev=127.0.0.1 (client.good.test);\r\n"
        b"\tspf=fail smtp.mailfrom=bank.test;\r\n"
        b"\tdkim=pass header.d=bank.test header.s=sel header.b=" + b + b";\r\n"
        b"\tdmarc=pass (p=REJECT dis=NONE dkim aligned) header.from=bank.test;\r\n"
        b"\tarc=none\r\n"
    ) in stored
    assert (
        b"X-Spam-Status: No, score=3.0 required=5.0 tests=DKIM_VALID,SPF_FAIL\r\n"
        b"X-Spam-Report: * +3.5 SPF_FAIL fail for bank.test from 127.0.0.1\r\n"
        b"\t* -0.5 DKIM_VALID pass d=bank.test s=sel\r\n"
    ) in stored
    assert b"Received: from client.remote.test (client.good.test [127.0.0.1])" in stored
    assert body_after_trace(stored) == signed
    trace = [e.detail for e in dmarc_mx.call(dmarc_mx.store.trace_get(qid))]
    assert "mail spf: score SPF_FAIL=+3.5 (fail for bank.test from 127.0.0.1)" in trace


def test_dmarc_quarantine_goes_to_junk(dmarc_mx):
    replies = send(dmarc_mx.port("mx"), "alice@shop.test", "bob@example.test", from_("shop.test"))
    qid_of(replies[4])
    assert inbox(dmarc_mx, "bob@example.test") == []
    [stored] = inbox(dmarc_mx, "bob@example.test", "Junk")
    assert (
        b"X-Spam-Status: Yes, score=6.5 required=5.0 tests=DMARC_QUARANTINE,SPF_FAIL\r\n"
        b"X-Spam-Report: * +3.5 SPF_FAIL fail for shop.test from 127.0.0.1\r\n"
        b"\t* +3.0 DMARC_QUARANTINE fail header.from=shop.test p=quarantine "
        b"dis=quarantine no aligned spf or dkim pass\r\n"
    ) in stored


def test_dmarc_none_scores_and_delivers(dmarc_mx):
    replies = send(dmarc_mx.port("mx"), "alice@news.test", "bob@example.test", from_("news.test"))
    qid_of(replies[4])
    [stored] = inbox(dmarc_mx, "bob@example.test")
    assert (
        b"X-Spam-Status: No, score=3.0 required=5.0 tests=DMARC_FAIL,SPF_SOFTFAIL\r\n"
        b"X-Spam-Report: * +1.5 SPF_SOFTFAIL softfail for news.test from 127.0.0.1\r\n"
        b"\t* +1.5 DMARC_FAIL fail header.from=news.test p=none dis=none "
        b"no aligned spf or dkim pass\r\n"
    ) in stored
    assert (
        b"\tdmarc=fail (p=NONE dis=NONE no aligned spf or dkim pass) header.from=news.test"
        in stored
    )


def test_spf_pass_aligned_passes_dmarc(dmarc_mx):
    replies = send(dmarc_mx.port("mx"), "alice@good.test", "bob@example.test", from_("good.test"))
    qid_of(replies[4])
    [stored] = inbox(dmarc_mx, "bob@example.test")
    assert b"\tspf=pass smtp.mailfrom=good.test;\r\n" in stored
    assert b"\tdmarc=pass (p=REJECT dis=NONE spf aligned) header.from=good.test;\r\n" in stored


def test_spf_fail_rejects_at_mail_when_configured(tmp_path):
    with DnsTestServer(zones()) as dns:
        srv = start(
            tmp_path,
            f'[dns]\noffline = false\nnameservers = ["{dns.nameserver}"]\n'
            "[spf]\nreject_fail = true\n",
        )
        try:
            replies = send(srv.port("mx"), "alice@bank.test", "bob@example.test", MSG)
            assert replies[1] == (
                b"550 5.7.23 SPF fail: 127.0.0.1 is not allowed to send mail for bank.test\r\n"
            )
        finally:
            srv.stop()


def test_dnsbl_listing_scores_or_rejects(tmp_path):
    z = zones() | {"1.0.0.127.bl.test": {"A": ["127.0.0.2"], "TXT": ["spam source"]}}
    with DnsTestServer(z) as dns:
        srv = start(
            tmp_path,
            f'[dns]\noffline = false\nnameservers = ["{dns.nameserver}"]\n'
            '[dnsbl]\nenabled = true\nzones = ["bl.test"]\nreject = true\n',
        )
        try:
            replies = send(
                srv.port("mx"), "alice@good.test", "bob@example.test", from_("good.test")
            )
            assert replies[1] == (
                b"554 5.7.1 Service unavailable; client [127.0.0.1] blocked "
                b"using bl.test: spam source\r\n"
            )
        finally:
            srv.stop()


# --- a message typed by hand, with no empty line after its header --------------------


def test_hand_typed_message_without_empty_line_is_delivered(dmarc_mx):
    """The session of a person on port 25 (lower-case commands, no empty line between
    the Subject: and the text). Postfix's cleanup ends the header at the first line
    that is no field; before this, dkimpy raised inside the DKIM stage: 451 forever."""
    with Raw(dmarc_mx.port("mx")) as r:
        assert r.reply().startswith(b"220 ")
        assert r.cmd(b"helo client.good.test") == b"250 mail.example.test\r\n"
        assert r.cmd(b"mail from:<alice@good.test>") == b"250 2.1.0 Ok\r\n"
        assert r.cmd(b"rcpt to:<bob@example.test>") == b"250 2.1.5 Ok\r\n"
        assert r.cmd(b"data").startswith(b"354 ")
        r.send(b"subject: A l'attention de Nicolas\r\n")
        r.send(b"Bonjour Nicolas, voici le dossier.\r\n")
        reply = r.cmd(b".")
        qid_of(reply)
    [stored] = inbox(dmarc_mx, "bob@example.test")
    assert body_after_trace(stored) == (
        b"subject: A l'attention de Nicolas\r\n\r\nBonjour Nicolas, voici le dossier.\r\n"
    )
    with imaplib.IMAP4("127.0.0.1", dmarc_mx.port("imap")) as imap:
        imap.login("bob@example.test", PASSWORD)
        imap.select("INBOX")
        typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])")
    assert typ == "OK"
    assert data[0][1] == b"subject: A l'attention de Nicolas\r\n\r\n"
    assert data[1][1] == b"Bonjour Nicolas, voici le dossier.\r\n"
