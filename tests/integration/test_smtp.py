"""The SMTP server against real clients: MX, submission, relay rules, limits, abuse."""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import pytest

from tests.conftest import need_tool
from tests.integration.smtp_helpers import Raw, body_after_trace, inbox
from tests.support.server import PASSWORD, ServerThread, thread_server

MESSAGE = (
    b"From: Sender <sender@remote.test>\r\nTo: alice@example.test\r\n"
    b"Subject: exact bytes\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <m1@remote.test>\r\n\r\n"
    b"line one\r\n.leading dot\r\n..two dots\r\n\r\ntrailing\r\n"
)


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- MX: delivery, exact bytes, trace fields --------------------------------------------


def test_mx_delivers_exact_bytes_with_trace_fields(server: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("mx")) as c:
        code, _ = c.ehlo("client.remote.test")
        assert code == 250
        assert "pipelining" in c.esmtp_features and "chunking" in c.esmtp_features
        assert "auth" not in c.esmtp_features  # no AUTH on the MX port
        c.mail("sender@remote.test")
        c.rcpt("alice@example.test")
        code, text = c.data(MESSAGE)
    assert code == 250
    m = re.fullmatch(rb"2\.0\.0 Ok: queued as ([0-9A-Z]{16})", text)
    assert m, text
    qid = m.group(1)
    [stored] = inbox(server, "alice@example.test")
    assert stored.startswith(
        b"Return-Path: <sender@remote.test>\r\nReceived: from client.remote.test"
    )
    assert b"with ESMTP id " + qid in stored
    assert b"for <alice@example.test>;" in stored
    assert body_after_trace(stored) == MESSAGE


def test_mx_smtputf8_and_8bit(server: ServerThread) -> None:
    msg = "From: josé@remote.test\r\nSubject: ünïcode\r\n\r\nnaïve café\r\n".encode()
    with smtplib.SMTP("127.0.0.1", server.port("mx")) as c:
        c.ehlo()
        c.sendmail(
            "josé@remote.test",
            ["alice@example.test"],
            msg,
            mail_options=["SMTPUTF8", "BODY=8BITMIME"],
        )
    [stored] = inbox(server, "alice@example.test")
    assert body_after_trace(stored) == msg
    assert b"with UTF8SMTP id" in stored


def test_bdat_chunking(server: ServerThread) -> None:
    with Raw(server.port("mx")) as r:
        assert r.reply().startswith(b"220 ")
        r.send(b"EHLO c.test\r\n")
        assert b"CHUNKING" in r.reply()
        assert r.cmd(b"MAIL FROM:<s@remote.test>").startswith(b"250 2.1.0")
        assert r.cmd(b"RCPT TO:<alice@example.test>").startswith(b"250 2.1.5")
        r.send(b"BDAT 17\r\nSubject: bdat\r\n\r\n")
        assert r.reply().startswith(b"250 ")
        r.send(b"BDAT 9 LAST\r\n.x\r\nbody\n")
        assert re.match(rb"250 2\.0\.0 Ok: queued as [0-9A-Z]{16}\r\n", r.reply())
    [stored] = inbox(server, "alice@example.test")
    # BDAT data is raw: no dot-unstuffing, the bare LF is the client's business
    assert body_after_trace(stored) == b"Subject: bdat\r\n\r\n.x\r\nbody\n"


def test_pipelined_transaction_answered_in_order(server: ServerThread) -> None:
    with Raw(server.port("mx")) as r:
        r.reply()
        r.send(b"EHLO c.test\r\n")
        r.reply()
        r.send(
            b"MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
            b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
        )
        assert r.reply().startswith(b"250 2.1.0")
        assert r.reply().startswith(b"250 2.1.5")
        assert r.reply() == (
            b"550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown\r\n"
        )
        assert r.reply().startswith(b"250 2.1.5")
        assert r.reply().startswith(b"354 ")
        r.send(b"Subject: p\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        assert r.reply().startswith(b"250 2.0.0 Ok: queued as ")
        assert r.reply().startswith(b"221 ")
    assert len(inbox(server, "alice@example.test")) == 1
    assert len(inbox(server, "bob@example.test")) == 1


# --- relay rules on the MX port -----------------------------------------------------------


@pytest.mark.parametrize(
    ("rcpt", "reply"),
    [
        ("bob@other.test", b"554 5.7.1 <bob@other.test>: Relay access denied\r\n"),
        (
            "user%other.test@example.test",
            b"550 5.1.1 <user%other.test@example.test>: Recipient address rejected: "
            b"User unknown\r\n",
        ),
        ("@a.test:user@other.test", b"554 5.7.1 <user@other.test>: Relay access denied\r\n"),
        (
            "@a.test,@b.test:user@other.test",
            b"554 5.7.1 <user@other.test>: Relay access denied\r\n",
        ),
        (
            '"user@other.test"@example.test',
            b'550 5.1.1 <"user@other.test"@example.test>: Recipient address rejected: '
            b"User unknown\r\n",
        ),
        (
            "other.test!user@example.test",
            b"550 5.1.1 <other.test!user@example.test>: Recipient address rejected: "
            b"User unknown\r\n",
        ),
        ("alice@other.test.", b"554 5.7.1 <alice@other.test>: Relay access denied\r\n"),
        (
            "alice@example.test.evil.test",
            b"554 5.7.1 <alice@example.test.evil.test>: Relay access denied\r\n",
        ),
    ],
)
def test_relay_tricks_refused(server: ServerThread, rcpt: str, reply: bytes) -> None:
    with Raw(server.port("mx")) as r:
        r.reply()
        r.cmd(b"EHLO c.test")
        assert r.cmd(b"MAIL FROM:<s@remote.test>").startswith(b"250")
        assert r.cmd(f"RCPT TO:<{rcpt}>".encode()) == reply
    assert server.call(server.store.queue_list()) == []


@pytest.mark.parametrize(
    "rcpt", ["ALICE@EXAMPLE.TEST", "alice@example.test.", "Alice@Example.Test."]
)
def test_local_domain_case_and_trailing_dot_map_to_the_user(
    server: ServerThread, rcpt: str
) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("mx")) as c:
        c.sendmail("s@remote.test", [rcpt], b"Subject: x\r\n\r\nx\r\n")
    assert len(inbox(server, "alice@example.test")) == 1
    assert server.call(server.store.queue_list()) == []


def test_loopback_is_not_trusted_on_mx(server: ServerThread) -> None:
    """Even from 127.0.0.1, a foreign recipient on port 25 is refused."""
    with (
        smtplib.SMTP("127.0.0.1", server.port("mx")) as c,
        pytest.raises(smtplib.SMTPRecipientsRefused),
    ):
        c.sendmail("alice@example.test", ["x@far.test"], b"Subject: x\r\n\r\nx\r\n")


def test_alias_and_catch_all(server: ServerThread) -> None:
    server.call(server.store.add_alias("postmaster@example.test", ["alice@example.test"]))
    server.call(
        server.store.add_alias("team@example.test", ["alice@example.test", "bob@example.test"])
    )
    with smtplib.SMTP("127.0.0.1", server.port("mx")) as c:
        c.sendmail(
            "s@remote.test",
            ["postmaster@example.test", "team@example.test"],
            b"Subject: a\r\n\r\nx\r\n",
        )
    # one copy per user even when two recipients lead to alice
    assert len(inbox(server, "alice@example.test")) == 1
    assert len(inbox(server, "bob@example.test")) == 1
    server.call(server.store.add_alias("@example.test", ["bob@example.test"]))
    with smtplib.SMTP("127.0.0.1", server.port("mx")) as c:
        c.sendmail("s@remote.test", ["anything@example.test"], b"Subject: b\r\n\r\nx\r\n")
    assert len(inbox(server, "bob@example.test")) == 2


# --- submission -----------------------------------------------------------------------------


def test_submission_starttls_auth_plain_local_and_remote(server: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as c:
        c.ehlo()
        assert "starttls" in c.esmtp_features
        c.starttls(context=_tls())
        c.ehlo()
        assert "starttls" not in c.esmtp_features
        assert "PLAIN" in c.esmtp_features["auth"] and "LOGIN" in c.esmtp_features["auth"]
        c.login("alice@example.test", PASSWORD)
        refused = c.sendmail(
            "alice@example.test",
            ["bob@example.test", "carol@far.test"],
            b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\n"
            b"Subject: hello\r\n\r\nhi\r\n",
        )
    assert refused == {}
    [stored] = inbox(server, "bob@example.test")
    assert b"(using TLSv1.3 with cipher" in stored
    assert b"(Authenticated sender: alice@example.test)" in stored
    assert b"with ESMTPSA id" in stored
    # RFC 6409 §8: Date: and Message-ID: completed
    assert re.search(rb"\r\nDate: [A-Z][a-z]{2}, ", stored)
    assert re.search(rb"\r\nMessage-ID: <[^>]+@mail\.example\.test>\r\n", stored)
    [entry] = server.call(server.store.queue_list())
    assert entry.sender == "alice@example.test"
    assert [r.address for r in entry.recipients] == ["carol@far.test"]
    assert entry.auth_user == "alice@example.test"


def test_submissions_implicit_tls_auth_login(server: ServerThread) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", server.port("submissions"), context=_tls()) as c:
        c.ehlo()
        assert "starttls" not in c.esmtp_features
        c.user, c.password = "alice@example.test", PASSWORD
        code, _ = c.auth("LOGIN", c.auth_login)
        assert code == 235
        c.sendmail(
            "alice@example.test",
            ["bob@example.test"],
            b"From: alice@example.test\r\nSubject: s\r\n\r\nx\r\n",
        )
    assert len(inbox(server, "bob@example.test")) == 1


def test_submission_requires_auth(server: ServerThread) -> None:
    with Raw(server.port("submission")) as r:
        r.reply()
        r.cmd(b"EHLO c.test")
        assert r.cmd(b"MAIL FROM:<alice@example.test>") == b"530 5.7.0 Authentication required\r\n"


def test_bad_password_is_535(server: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as c:
        c.starttls(context=_tls())
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            c.login("alice@example.test", "wrong")
    assert e.value.smtp_code == 535
    assert e.value.smtp_error == b"5.7.8 Authentication credentials invalid"


@pytest.mark.parametrize(
    ("mail_from", "header_from", "reply"),
    [
        (
            "bob@example.test",
            "alice@example.test",
            (553, b"5.7.1 <bob@example.test>: Sender address rejected: not owned by user"),
        ),
        (
            "alice@example.test",
            "bob@example.test",
            (553, b"5.7.1 From: header address not owned by user"),
        ),
        (
            "alice@example.test",
            "Alice <alice@example.test>, Bob <bob@example.test>",
            (553, b"5.7.1 From: header address not owned by user"),
        ),
        ("alice@example.test", None, (550, b"5.6.0 Message has no From: header")),
    ],
)
def test_no_spoofing_on_submission(
    server: ServerThread, mail_from: str, header_from: str | None, reply: tuple[int, bytes]
) -> None:
    msg = (
        f"From: {header_from}\r\n".encode() if header_from else b""
    ) + b"Subject: spoof\r\n\r\nx\r\n"
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as c:
        c.starttls(context=_tls())
        c.login("alice@example.test", PASSWORD)
        c.ehlo()
        code, text = c.mail(mail_from)
        if code == 250:
            c.rcpt("bob@example.test")
            code, text = c.data(msg)
        assert (code, text) == reply
    assert inbox(server, "bob@example.test") == []


def test_alias_owner_may_send_as_alias(server: ServerThread) -> None:
    server.call(server.store.add_alias("sales@example.test", ["alice@example.test"]))
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as c:
        c.starttls(context=_tls())
        c.login("alice@example.test", PASSWORD)
        c.sendmail(
            "sales@example.test",
            ["bob@example.test"],
            b"From: Sales <sales@example.test>\r\nSubject: s\r\n\r\nx\r\n",
        )
    assert len(inbox(server, "bob@example.test")) == 1


def test_aiosmtplib_submission(server: ServerThread) -> None:
    async def go() -> None:
        await aiosmtplib.send(
            b"From: alice@example.test\r\nSubject: aio\r\n\r\nhello\r\n",
            sender="alice@example.test",
            recipients=["bob@example.test"],
            hostname="127.0.0.1",
            port=server.port("submission"),
            start_tls=True,
            username="alice@example.test",
            password=PASSWORD,
            tls_context=_tls(),
        )

    asyncio.run(go())
    [stored] = inbox(server, "bob@example.test")
    assert stored.endswith(b"From: alice@example.test\r\nSubject: aio\r\n\r\nhello\r\n")


@pytest.mark.tools
def test_swaks_submission_and_mx(server: ServerThread) -> None:
    swaks = need_tool("swaks")
    out = subprocess.run(
        [
            swaks,
            "--server",
            "127.0.0.1",
            "--port",
            str(server.port("submission")),
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice@example.test",
            "--auth-password",
            PASSWORD,
            "--from",
            "alice@example.test",
            "--to",
            "bob@example.test",
            "--header",
            "Subject: via swaks",
            "--body",
            "swaks body",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"<~  250 2\.0\.0 Ok: queued as [0-9A-Z]{16}", out.stdout)
    out = subprocess.run(
        [
            swaks,
            "--server",
            "127.0.0.1",
            "--port",
            str(server.port("mx")),
            "--from",
            "x@remote.test",
            "--to",
            "nobody@example.test",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown" in out.stdout
    [stored] = inbox(server, "bob@example.test")
    assert b"Subject: via swaks" in stored and b"swaks body" in stored


@pytest.mark.tools
def test_msmtp_submission(server: ServerThread, tmp_path: Path) -> None:
    msmtp = need_tool("msmtp")
    conf = tmp_path / "msmtprc"
    conf.write_text(
        f"account default\nhost 127.0.0.1\nport {server.port('submission')}\n"
        "tls on\ntls_starttls on\ntls_certcheck off\nauth plain\n"
        f"user alice@example.test\npassword {PASSWORD}\nfrom alice@example.test\n"
    )
    conf.chmod(0o600)
    msg = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: msmtp\r\n\r\nvia msmtp\r\n"
    out = subprocess.run(
        [msmtp, "-C", str(conf), "bob@example.test"], input=msg, capture_output=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    [stored] = inbox(server, "bob@example.test")
    # msmtp sends the message as given; submission adds Date:/Message-ID: on top
    assert stored.endswith(msg)


# --- smuggling and data rules ---------------------------------------------------------------


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"])
def test_smuggling_sequences_never_end_data(server: ServerThread, fake_end: bytes) -> None:
    with Raw(server.port("mx")) as r:
        r.reply()
        r.cmd(b"EHLO c.test")
        r.cmd(b"MAIL FROM:<s@remote.test>")
        r.cmd(b"RCPT TO:<alice@example.test>")
        assert r.cmd(b"DATA").startswith(b"354")
        r.send(
            b"Subject: one\r\n\r\nfirst"
            + fake_end
            + b"MAIL FROM:<evil@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nx\r\n.\r\n"
        )
        assert r.reply() == (
            b"554 5.5.2 Message contains bare LF/CR, rejected (see RFC 5321 section 2.3.8)\r\n"
        )
        # the smuggled "second message" was part of the first; nothing more is pending
        assert r.cmd(b"NOOP").startswith(b"250")
    assert inbox(server, "bob@example.test") == []
    assert inbox(server, "alice@example.test") == []


# --- limits ---------------------------------------------------------------------------------


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[ServerThread]:
    srv = thread_server(
        tmp_path,
        """
[smtp.limits]
max_message_size = 2000
max_line_length = 600
max_recipients = 3
max_errors = 5
idle_timeout = "1s"
command_timeout = "1s"
data_timeout = "2s"
""",
    )
    try:
        srv.add_user("alice@example.test")
        yield srv
    finally:
        srv.stop()


def _session(srv: ServerThread) -> Raw:
    r = Raw(srv.port("mx"))
    assert r.reply().startswith(b"220 ")
    assert r.cmd(b"EHLO c.test").startswith(b"250-")
    return r


def test_size_advertised_and_enforced_while_streaming(limited: ServerThread) -> None:
    with _session(limited) as r:
        r.send(b"EHLO again\r\n")
        assert b"250-SIZE 2000\r\n" in r.reply()
        assert r.cmd(b"MAIL FROM:<s@remote.test> SIZE=5000") == (
            b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
        )
        r.cmd(b"MAIL FROM:<s@remote.test>")
        r.cmd(b"RCPT TO:<alice@example.test>")
        r.cmd(b"DATA")
        r.send(
            b"Subject: big\r\n\r\n"
            + b"x" * 70
            + b"\r\n" * 0
            + (b"y" * 78 + b"\r\n") * 40
            + b".\r\n"
        )
        assert r.reply() == b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
        assert r.cmd(b"NOOP").startswith(b"250")
    assert inbox(limited, "alice@example.test") == []


def test_line_too_long_then_resync(limited: ServerThread) -> None:
    with _session(limited) as r:
        assert r.cmd(b"NOOP " + b"a" * 700) == b"500 5.5.2 Line too long\r\n"
        assert r.cmd(b"NOOP").startswith(b"250")


def test_too_many_recipients(limited: ServerThread) -> None:
    with _session(limited) as r:
        r.cmd(b"MAIL FROM:<s@remote.test>")
        for _ in range(3):
            assert r.cmd(b"RCPT TO:<alice@example.test>").startswith(b"250")
        assert r.cmd(b"RCPT TO:<alice@example.test>") == b"452 4.5.3 Too many recipients\r\n"


def test_too_many_errors_closes(limited: ServerThread) -> None:
    with _session(limited) as r:
        for _ in range(4):
            assert r.cmd(b"BOGUS").startswith(b"500")
        assert r.cmd(b"BOGUS").startswith(b"500 5.5.")
        assert r.reply() == b"421 4.7.0 Too many errors, closing connection\r\n"
        assert r.closed()


TIMEOUT_421 = b"421 4.4.2 mail.example.test Error: timeout exceeded\r\n"


def _trickle(r: Raw, data: bytes, interval: float, limit: float = 6.0) -> float:
    """Send `data` a byte every `interval` seconds (so the idle timer never fires)
    until the server closes; the seconds it took (`limit` when it never did)."""
    start = time.monotonic()
    data = data * int(limit / interval + 1)
    for i in range(len(data)):
        if time.monotonic() - start > limit:
            break
        try:
            r.send(data[i : i + 1])
        except OSError:
            return time.monotonic() - start
        r.sock.settimeout(interval)
        try:
            chunk = r.sock.recv(4096)
        except TimeoutError:
            continue
        r.buf += chunk
        if not chunk:
            return time.monotonic() - start
        if r.closed(timeout=2):
            return time.monotonic() - start
    return limit


def test_idle_timeout(limited: ServerThread) -> None:
    with _session(limited) as r:
        time.sleep(1.5)
        assert r.reply() == TIMEOUT_421
        assert r.closed()


def test_command_line_trickled_a_byte_at_a_time_is_cut_off(limited: ServerThread) -> None:
    """A byte every 0.3 s never trips the 1 s idle timer; the whole line must still
    arrive within command_timeout (1 s here), else 421 and close."""
    with _session(limited) as r:
        took = _trickle(r, b"NOOP ", 0.3)
        assert r.buf == TIMEOUT_421
        assert 0.9 < took < 4


def test_commands_sent_slowly_but_whole_are_not_cut_off(limited: ServerThread) -> None:
    with _session(limited) as r:
        for _ in range(5):  # 2 s in all, each line whole: only the idle timer counts
            assert r.cmd(b"NOOP") == b"250 2.0.0 Ok\r\n"
            time.sleep(0.4)
        r.send(b"NO")  # a line in two parts, well within command_timeout
        time.sleep(0.4)
        assert r.cmd(b"OP") == b"250 2.0.0 Ok\r\n"


def test_slow_data_timeout(limited: ServerThread) -> None:
    with _session(limited) as r:
        r.cmd(b"MAIL FROM:<s@remote.test>")
        r.cmd(b"RCPT TO:<alice@example.test>")
        r.cmd(b"DATA")
        took = _trickle(r, b"x", 0.3)
        assert r.buf == TIMEOUT_421
        assert 1.9 < took < 5


def test_data_at_a_fair_rate_outlives_data_timeout(limited: ServerThread) -> None:
    """min_data_rate (1024 B/s by default) earns more time: 2400 B/s for 3 s is past
    data_timeout (2 s) and still gets its answer (here 552: larger than 2000)."""
    with _session(limited) as r:
        r.cmd(b"MAIL FROM:<s@remote.test>")
        r.cmd(b"RCPT TO:<alice@example.test>")
        assert r.cmd(b"DATA").startswith(b"354 ")
        start = time.monotonic()
        while time.monotonic() - start < 3:
            r.send(b"y" * 598 + b"\r\n")
            time.sleep(0.25)
        r.send(b".\r\n")
        assert r.reply() == b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    assert inbox(limited, "alice@example.test") == []


# --- flood and abuse: the server stays up and serves the next client ---------------------------


def _still_serves(srv: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port("mx"), timeout=10) as c:
        assert c.noop()[0] == 250


def test_100kb_command_line(server: ServerThread) -> None:
    with Raw(server.port("mx")) as r:
        r.reply()
        assert r.cmd(b"EHLO " + b"a" * 100_000) == b"500 5.5.2 Line too long\r\n"
        assert r.cmd(b"NOOP").startswith(b"250")
    _still_serves(server)


def test_50mb_line_without_newline(server: ServerThread) -> None:
    with Raw(server.port("mx"), timeout=60) as r:
        r.reply()
        chunk = b"A" * (1024 * 1024)
        try:
            for _ in range(50):
                r.send(chunk)
        except OSError:
            pass  # the server may close on us: fine, as long as it survives
        try:
            r.send(b"\r\nNOOP\r\n")
            first = r.reply()
            assert first == b"500 5.5.2 Line too long\r\n"
            assert r.reply().startswith(b"250")
        except OSError:
            pass
    _still_serves(server)


def test_nul_bytes(server: ServerThread) -> None:
    with Raw(server.port("mx")) as r:
        r.reply()
        assert r.cmd(b"EHLO a\x00b") == b"500 5.5.2 Error: bad character in command\r\n"
        assert r.cmd(b"\x00\x00\x00").startswith(b"500 5.5.2")
    _still_serves(server)


def test_1000_recipients(server: ServerThread) -> None:
    with Raw(server.port("mx"), timeout=60) as r:
        r.reply()
        r.cmd(b"EHLO c.test")
        r.cmd(b"MAIL FROM:<s@remote.test>")
        r.send(b"".join(b"RCPT TO:<alice@example.test>\r\n" for _ in range(1000)))
        replies = [r.reply() for _ in range(1000)]
        assert all(x.startswith(b"250 2.1.5") for x in replies)
        assert r.cmd(b"RCPT TO:<alice@example.test>") == b"452 4.5.3 Too many recipients\r\n"
        assert r.cmd(b"DATA").startswith(b"354")
        r.send(b"Subject: many\r\n\r\nx\r\n.\r\n")
        assert r.reply().startswith(b"250 2.0.0 Ok: queued as")
    assert len(inbox(server, "alice@example.test")) == 1  # one copy per user
    _still_serves(server)


def test_commands_before_greeting_are_not_obeyed(server: ServerThread) -> None:
    with Raw(server.port("mx")) as r:
        r.send(b"EHLO early\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\n")
        greeting = r.reply()
        assert greeting.startswith((b"220 ", b"554 "))
    _still_serves(server)
    assert inbox(server, "alice@example.test") == []


def test_starttls_injection_discarded(server: ServerThread) -> None:
    """CVE-2011-0411: commands sent with STARTTLS in one packet are dropped."""
    with Raw(server.port("submission")) as r:
        r.reply()
        r.cmd(b"EHLO c.test")
        r.send(b"STARTTLS\r\nRSET\r\n")
        assert r.reply().startswith(b"220 2.0.0")
        tls = _tls().wrap_socket(r.sock, server_hostname="mail.example.test")
        tls.sendall(b"NOOP\r\n")
        assert tls.recv(1000).startswith(b"250 2.0.0")  # not the RSET's reply first
        tls.close()


# --- spooling, connection limits, AUTH before TLS from a remote client ------------------------


def test_large_message_spooled_and_delivered_intact(tmp_path: Path) -> None:
    srv = thread_server(tmp_path, "[smtp.limits]\nspool_threshold = 4096\n")
    try:
        srv.add_user("alice@example.test")
        body = b"".join(b"line %06d " % i + b"x" * 60 + b"\r\n" for i in range(20_000))
        msg = b"Subject: big\r\n\r\n" + body
        with smtplib.SMTP("127.0.0.1", srv.port("mx")) as c:
            c.sendmail("s@remote.test", ["alice@example.test"], msg)
        [stored] = inbox(srv, "alice@example.test")
        assert body_after_trace(stored) == msg
        assert list((tmp_path / "data" / "spool").glob("*")) == []  # consumed by the store
    finally:
        srv.stop()


def test_connection_limit_per_client(tmp_path: Path) -> None:
    srv = thread_server(tmp_path, "[smtp.limits]\nmax_connections_per_ip = 2\n")
    try:
        a, b = Raw(srv.port("mx")), Raw(srv.port("mx"))
        assert a.reply().startswith(b"220 ")
        assert b.reply().startswith(b"220 ")
        with Raw(srv.port("mx")) as c:
            assert c.reply() == b"421 4.7.0 Too many connections, try again later\r\n"
            assert c.closed()
        a.close()
        b.close()
        time.sleep(0.2)
        with Raw(srv.port("mx")) as d:
            assert d.reply().startswith(b"220 ")
    finally:
        srv.stop()


# --- hop limit and empty messages (issue 11) ------------------------------------------


def _hops(n: int) -> bytes:
    received = b"".join(
        b"Received: from h%d.remote.test by h%d.remote.test; Mon, 30 Nov 2026 10:00:00 +0000\r\n"
        % (i, i + 1)
        for i in range(n)
    )
    return received + MESSAGE


def test_mx_refuses_a_mail_loop_above_50_hops(server: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("mx")) as c:
        c.ehlo("client.remote.test")
        c.mail("sender@remote.test")
        c.rcpt("alice@example.test")
        assert c.data(_hops(200)) == (554, b"5.4.6 Too many hops")
        c.mail("sender@remote.test")
        c.rcpt("alice@example.test")
        # Delivered-To: counts too (a local loop through an alias)
        assert c.data(b"Delivered-To: alice@example.test\r\n" + _hops(50)) == (
            554,
            b"5.4.6 Too many hops",
        )
        c.mail("sender@remote.test")
        c.rcpt("alice@example.test")
        code, _ = c.data(_hops(50))  # Postfix's hopcount_limit: 50 is still fine
        assert code == 250
    [stored] = inbox(server, "alice@example.test")
    assert stored.endswith(_hops(50))
    assert stored.count(b"\r\nReceived: ") == 51  # ours below Return-Path:, then theirs


def test_submission_refuses_a_mail_loop_too(server: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as c:
        c.ehlo("client.test")
        c.login("alice@example.test", PASSWORD)
        c.mail("alice@example.test")
        c.rcpt("bob@example.test")
        message = _hops(51).replace(b"Sender <sender@remote.test>", b"alice@example.test")
        assert c.data(message) == (554, b"5.4.6 Too many hops")
    assert inbox(server, "bob@example.test") == []


def test_empty_message_refused_in_data_and_bdat(server: ServerThread) -> None:
    with Raw(server.port("mx")) as r:
        assert r.reply().startswith(b"220 ")
        r.cmd(b"EHLO c.test")
        assert r.cmd(b"MAIL FROM:<s@remote.test>") == b"250 2.1.0 Ok\r\n"
        assert r.cmd(b"RCPT TO:<alice@example.test>") == b"250 2.1.5 Ok\r\n"
        assert r.cmd(b"DATA").startswith(b"354 ")
        assert r.cmd(b".") == b"554 5.6.0 Message is empty\r\n"
        assert r.cmd(b"MAIL FROM:<s@remote.test>") == b"250 2.1.0 Ok\r\n"
        assert r.cmd(b"RCPT TO:<alice@example.test>") == b"250 2.1.5 Ok\r\n"
        assert r.cmd(b"BDAT 0 LAST") == b"554 5.6.0 Message is empty\r\n"
        assert r.cmd(b"QUIT").startswith(b"221 ")
    assert inbox(server, "alice@example.test") == []


# --- postmaster and abuse (RFC 5321 §4.5.1, RFC 2142) ---------------------------------


def _rcpt_replies(port: int, rcpts: list[str]) -> list[bytes]:
    out = []
    with Raw(port) as r:
        r.reply()
        r.cmd(b"EHLO c.remote.test")
        assert r.cmd(b"MAIL FROM:<s@remote.test>") == b"250 2.1.0 Ok\r\n"
        for rcpt in rcpts:
            out.append(r.cmd(f"RCPT TO:<{rcpt}>".encode()))
        if any(x.startswith(b"250") for x in out):
            assert r.cmd(b"DATA").startswith(b"354 ")
            assert r.cmd(b"Subject: to the postmaster\r\n\r\nhello\r\n.").startswith(b"250 ")
    return out


@pytest.mark.parametrize("rcpt", ["Postmaster", "postmaster", "POSTMASTER", "PostMaster"])
def test_postmaster_without_domain_reaches_the_primary_domain(
    server: ServerThread, rcpt: str
) -> None:
    """<Postmaster> must be accepted (RFC 5321 §4.5.1); it was qualified with the
    host name (mail.example.test, not a local domain) and refused as relay. With no
    postmaster alias in example.test it goes to the domain's first account."""
    assert _rcpt_replies(server.port("mx"), [rcpt]) == [b"250 2.1.5 Ok\r\n"]
    [stored] = inbox(server, "alice@example.test")
    assert f"for <{rcpt}@mail.example.test>;".encode() in stored
    assert inbox(server, "bob@example.test") == []


def test_postmaster_and_abuse_of_every_local_domain_are_accepted(server: ServerThread) -> None:
    server.call(server.store.add_alias("abuse@example.test", ["bob@example.test"]))
    server.add_user("carol@second.test")
    server.add_user("dave@second.test")
    server.call(server.store.add_domain("empty.test"))  # no account at all
    replies = _rcpt_replies(
        server.port("mx"),
        [
            "postmaster@example.test",  # no alias: the domain's first account (alice)
            "Abuse@Example.Test",  # an alias: bob
            "abuse@second.test",  # carol, second.test's first account
            "postmaster@empty.test",  # the primary domain's first account (alice)
            "webmaster@example.test",  # not a role this server vouches for
        ],
    )
    assert replies == [b"250 2.1.5 Ok\r\n"] * 4 + [
        b"550 5.1.1 <webmaster@example.test>: Recipient address rejected: User unknown\r\n"
    ]
    assert len(inbox(server, "alice@example.test")) == 1
    assert len(inbox(server, "bob@example.test")) == 1
    assert len(inbox(server, "carol@second.test")) == 1
    assert inbox(server, "dave@second.test") == []


def test_postmaster_is_never_greylisted(tmp_path: Path) -> None:
    srv = thread_server(tmp_path, '[greylist]\nallow = []\ndelay = "1h"\n')
    try:
        srv.add_user("alice@example.test")
        assert _rcpt_replies(srv.port("mx"), ["alice@example.test", "postmaster"]) == [
            b"451 4.7.1 Greylisting in action, please come back later\r\n",
            b"250 2.1.5 Ok\r\n",
        ]
        assert len(inbox(srv, "alice@example.test")) == 1
    finally:
        srv.stop()


def test_forged_fields_are_removed_from_the_header_only(server: ServerThread) -> None:
    """The header's end is the one the scanner found: with bare-LF lines (BDAT is raw)
    the old search for CRLF CRLF took the whole message for header, and a body line
    that looked like X-Spam-Status: was removed from the text."""
    message = (
        b"From: a@remote.test\nX-Spam-Status: No, forged\nSubject: lf\n\n"
        b"X-Spam-Status: quoted in the body\n"
    )
    with Raw(server.port("mx")) as r:
        r.reply()
        r.cmd(b"EHLO c.test")
        assert r.cmd(b"MAIL FROM:<s@remote.test>") == b"250 2.1.0 Ok\r\n"
        assert r.cmd(b"RCPT TO:<alice@example.test>") == b"250 2.1.5 Ok\r\n"
        r.send(b"BDAT %d LAST\r\n" % len(message) + message)
        assert r.reply().startswith(b"250 2.0.0 Ok: queued as ")
    [stored] = inbox(server, "alice@example.test")
    assert stored.endswith(
        b"From: a@remote.test\nSubject: lf\n\nX-Spam-Status: quoted in the body\n"
    )
