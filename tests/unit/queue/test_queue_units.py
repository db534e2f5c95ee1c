"""Pure pieces of outbound delivery: reply parsing, dot-stuffing, xtext, the retry
schedule, DSN decisions and layout, Return-Path stripping, DKIM keys and signing."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dkim as dkimpy
import pytest

from postier.mailauth import dkim
from postier.queue import dsn
from postier.queue.enqueue import strip_return_path
from postier.queue.schedule import Schedule
from postier.smtp.client import ProtocolViolation, ReplyParser, ServerReply, dot_stuff, xtext

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


# --- replies ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"250 ok\r\n", [ServerReply(250, ("ok",))]),
        (
            b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n",
            [ServerReply(250, ("mx.test", "PIPELINING", "SIZE 100"))],
        ),
        (b"354\r\n", [ServerReply(354, ("",))]),
        (b"220 a\n221 b\r\n", [ServerReply(220, ("a",)), ServerReply(221, ("b",))]),
    ],
)
def test_reply_parser(data: bytes, expected: list[ServerReply]) -> None:
    assert ReplyParser().feed(data) == expected
    one = ReplyParser()  # one byte at a time gives the same replies
    got = [r for i in range(len(data)) for r in one.feed(data[i : i + 1])]
    assert got == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello\r\n", "not an SMTP reply line: 'hello'"),
        (b"250-a\r\n251 b\r\n", "reply code changed inside a multi-line reply: 250 then 251"),
        (b"199 x\r\n", "reply code out of range: '199 x'"),
        (b"250x\r\n", "not an SMTP reply line: '250x'"),
    ],
)
def test_reply_parser_refuses_garbage(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolViolation) as e:
        ReplyParser().feed(data)
    assert str(e.value) == message


def test_reply_parser_limits() -> None:
    with pytest.raises(ProtocolViolation, match="longer than 10 octets"):
        ReplyParser(max_line_length=10).feed(b"250 " + b"x" * 20)
    with pytest.raises(ProtocolViolation, match="longer than 3 lines"):
        ReplyParser(max_lines=3).feed(b"250-a\r\n" * 4)


def test_reply_status_and_text() -> None:
    r = ServerReply(550, ("5.1.1 <x@y>: unknown", "second"))
    assert (r.enhanced, str(r), r.status("5.0.0")) == (
        "5.1.1",
        "550 5.1.1 <x@y>: unknown; second",
        "5.1.1",
    )
    assert ServerReply(451, ("5.1.1 mismatched class",)).enhanced is None
    assert ServerReply(451, ("busy",)).status("5.0.0") == "4.0.0"


def test_dot_stuff_and_xtext() -> None:
    assert dot_stuff(b".a\r\nb\r\n..c") == b"..a\r\nb\r\n...c\r\n.\r\n"
    assert dot_stuff(b"") == b"\r\n.\r\n"
    assert xtext("a+b=c d\u00e9") == "a+2Bb+3Dc+20d+C3+A9"


def test_strip_return_path() -> None:
    assert strip_return_path(b"Return-Path: <a@b>\r\nX: 1\r\n\r\nbody") == b"X: 1\r\n\r\nbody"
    assert strip_return_path(b"return-path: <a@b>\r\n\tfolded\r\nX: 1\r\n") == b"X: 1\r\n"
    assert strip_return_path(b"X: 1\r\nReturn-Path: <a@b>\r\n") == b"X: 1\r\nReturn-Path: <a@b>\r\n"


# --- schedule --------------------------------------------------------------------
def test_backoff_doubles_up_to_the_cap() -> None:
    s = Schedule(first_retry=300, max_backoff=3600, lifetime=5 * 86400)
    assert [s.backoff(n) for n in range(1, 7)] == [300, 600, 1200, 2400, 3600, 3600]
    assert s.backoff(10_000) == 3600


def test_next_attempt_never_after_expiry() -> None:
    s = Schedule(first_retry=300, max_backoff=3600, lifetime=1000)
    assert s.next_attempt(T0, 1, T0) == T0 + timedelta(seconds=300)
    assert s.next_attempt(T0, 3, T0 + timedelta(seconds=900)) == T0 + timedelta(seconds=1000)
    assert not s.is_expired(T0, T0 + timedelta(seconds=999))
    assert s.is_expired(T0, T0 + timedelta(seconds=1000))


def test_delay_warning() -> None:
    assert not Schedule(delay_warning=0).is_delay_warning_due(T0, T0 + timedelta(days=9))
    s = Schedule(delay_warning=4 * 3600)
    assert not s.is_delay_warning_due(T0, T0 + timedelta(hours=3))
    assert s.is_delay_warning_due(T0, T0 + timedelta(hours=4))


# --- DSN -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sender", "bounce", "notify", "action", "wanted"),
    [
        ("a@b", False, "", dsn.Action.FAILED, True),
        ("a@b", False, "", dsn.Action.DELAYED, True),
        ("a@b", False, "", dsn.Action.DELIVERED, False),
        ("", False, "", dsn.Action.FAILED, False),  # null sender
        ("a@b", True, "", dsn.Action.FAILED, False),  # a bounce
        ("a@b", False, "NEVER", dsn.Action.FAILED, False),
        ("a@b", False, "SUCCESS", dsn.Action.FAILED, False),
        ("a@b", False, "SUCCESS", dsn.Action.RELAYED, True),
        ("a@b", False, "FAILURE,DELAY", dsn.Action.DELAYED, True),
        ("a@b", False, "FAILURE", dsn.Action.DELAYED, False),
    ],
)
def test_is_report_wanted(
    sender: str, bounce: bool, notify: str, action: str, wanted: bool
) -> None:
    assert dsn.is_report_wanted(sender, bounce, notify, action) is wanted


ORIGINAL = b"From: a@a.test\r\nSubject: s\r\n\r\nbody\r\n"


def _report(**kw: object) -> bytes:
    args: dict[str, object] = {
        "hostname": "mx.a.test",
        "sender": "a@a.test",
        "original": ORIGINAL,
        "arrival": T0,
        "now": T0,
        "qid": "Q1",
        "boundary": "BOUND",
        "message_id": "<id@mx.a.test>",
        "reports": [
            dsn.RecipientReport(
                "x@b.test",
                dsn.Action.FAILED,
                "5.1.1",
                "550 5.1.1 unknown",
                remote_mta="mx.b.test",
                orcpt="rfc822;X@b.test",
                last_attempt=T0,
            )
        ],
    }
    args.update(kw)
    return dsn.build_report(**args)  # type: ignore[arg-type]


def test_dsn_exact_layout() -> None:
    raw = _report(envid="E1")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head == (
        b"From: Mail Delivery System <MAILER-DAEMON@mx.a.test>\r\n"
        b"To: <a@a.test>\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n"
        b"Date: Fri, 02 Jan 2026 03:04:05 +0000\r\n"
        b"Message-ID: <id@mx.a.test>\r\n"
        b"Auto-Submitted: auto-replied\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status;\r\n"
        b'\tboundary="BOUND"'
    )
    status = (
        b"Content-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.a.test\r\n"
        b"X-Postier-Queue-ID: Q1\r\n"
        b"Original-Envelope-Id: E1\r\n"
        b"Arrival-Date: Fri, 02 Jan 2026 03:04:05 +0000\r\n"
        b"\r\n"
        b"Original-Recipient: rfc822;X@b.test\r\n"
        b"Final-Recipient: rfc822;x@b.test\r\n"
        b"Action: failed\r\n"
        b"Status: 5.1.1\r\n"
        b"Remote-MTA: dns; mx.b.test\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 unknown\r\n"
        b"Last-Attempt-Date: Fri, 02 Jan 2026 03:04:05 +0000\r\n"
        b"\r\n--BOUND\r\n"
    )
    assert status in body
    assert body.endswith(b"Content-Type: message/rfc822\r\n\r\n" + ORIGINAL + b"\r\n--BOUND--\r\n")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert [p.get_content_type() for p in msg.iter_parts()] == [
        "text/plain",
        "message/delivery-status",
        "message/rfc822",
    ]
    text = next(iter(msg.iter_parts())).get_content()
    assert "<x@b.test>: failed: host mx.b.test said: 550 5.1.1 unknown" in text
    assert "What to do: check the address for typing mistakes" in text


@pytest.mark.parametrize(
    ("kw", "third"),
    [
        (
            {"ret": "HDRS"},
            b"Content-Type: text/rfc822-headers\r\n\r\nFrom: a@a.test\r\nSubject: s\r\n\r\n",
        ),
        ({"max_return_size": 10}, b"Content-Type: text/rfc822-headers\r\n\r\nFrom: a@a.test\r\n"),
    ],
)
def test_dsn_returns_headers_only_when_asked_or_too_big(
    kw: dict[str, object], third: bytes
) -> None:
    raw = _report(**kw)
    assert third in raw
    assert b"body\r\n" not in raw


def test_dsn_needs_a_recipient() -> None:
    with pytest.raises(ValueError, match="at least one recipient"):
        _report(reports=[])


# --- DKIM ------------------------------------------------------------------------
def test_dkim_keys_sign_and_verify(tmp_path: Path) -> None:
    rsa_key, ed_key = dkim.generate_keys(tmp_path, "a.test", year=2026, rsa_bits=2048)
    assert (rsa_key.selector, ed_key.selector) == ("postier2026r", "postier2026e")
    path = tmp_path / "dkim" / "a.test" / "postier2026r.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert rsa_key.txt_record().startswith("v=DKIM1; k=rsa; h=sha256; p=MIIBIjAN")
    assert ed_key.txt_record().startswith("v=DKIM1; k=ed25519; h=sha256; p=")
    # a second call loads the same keys instead of replacing them
    assert dkim.generate_keys(tmp_path, "a.test", year=2026) == (rsa_key, ed_key)
    keys = dkim.load_domain_keys(tmp_path, "a.test", "postier2026r")
    assert [k.algorithm for k in keys] == ["rsa", "ed25519"]
    msg = (
        b"From: Alice <alice@a.test>\r\nTo: b@b.test\r\nSubject: hi\r\n"
        b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@a.test>\r\n\r\nbody\r\n"
    )
    signed = dkim.sign(msg, keys) + msg
    assert signed.count(b"DKIM-Signature:") == 2
    records = {f"{k.selector}._domainkey.a.test.".encode(): k.txt_record().encode() for k in keys}

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return records[name]

    d = dkimpy.DKIM(signed)
    assert d.verify(idx=0, dnsfunc=dnsfunc)
    assert d.verify(idx=1, dnsfunc=dnsfunc)
    with pytest.raises(dkimpy.ValidationError, match="body hash mismatch"):
        dkimpy.DKIM(signed.replace(b"body", b"BODY")).verify(dnsfunc=dnsfunc)


def test_dkim_refuses_bad_names(tmp_path: Path) -> None:
    with pytest.raises(dkim.DkimError, match="bad DKIM selector"):
        dkim.key_path(tmp_path, "a.test", "../x")
    with pytest.raises(dkim.DkimError, match="bad domain"):
        dkim.key_path(tmp_path, "a/b", "s1")
    assert dkim.twin_selectors("postier2026r") == ("postier2026r", "postier2026e")
    assert dkim.load_domain_keys(tmp_path, "none.test", "postier2026r") == []
