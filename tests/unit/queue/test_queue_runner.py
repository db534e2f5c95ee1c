"""The queue runner against scripted SMTP peers on loopback and a fake resolver."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import ssl
from pathlib import Path

import pytest

from postier.config.schema import SmtpOutbound
from postier.dns.fake import SERVFAIL
from postier.queue.schedule import Schedule
from postier.store.models import QueueRecipient, RcptState
from tests.unit.queue.conftest import MSG, Net, inbox

ZONE_BC = {
    "b.test": {"MX": [(10, "mx.b.test")]},
    "mx.b.test": {"A": ["127.0.0.2"]},
    "c.test": {"MX": [(10, "mx.c.test")]},
    "mx.c.test": {"A": ["127.0.0.3"]},
}


def setzone(net: Net, zone: dict[str, object]) -> None:
    for k, v in zone.items():
        net.resolver.set(k, v)  # type: ignore[arg-type]


async def test_one_transaction_per_destination_with_its_recipients(net: Net) -> None:
    setzone(net, ZONE_BC)
    b = await net.peer("127.0.0.2")
    c = await net.peer("127.0.0.3")
    qid = await net.enqueue(["bob@b.test", "carol@c.test", "bert@b.test"])
    assert await net.round(net.runner()) == 1
    assert [(t.mail_from, t.rcpts) for t in b.transactions] == [
        ("alice@a.test", ["bob@b.test", "bert@b.test"])
    ]
    assert [(t.mail_from, t.rcpts) for t in c.transactions] == [("alice@a.test", ["carol@c.test"])]
    # RFC 5321 §4.4: our Return-Path is not transmitted; dot-stuffing round-trips
    assert b.transactions[0].data == MSG[len(b"Return-Path: <alice@a.test>\r\n") :]
    assert b.transactions[0].helo == "mail.a.test"
    assert b.transactions[0].mail_params == f"SIZE={len(b.transactions[0].data)}"
    assert await net.store.queue_get(qid) is None
    events = [e.event for e in await net.store.trace_get(qid)]
    assert events.count("attempt") == 2
    assert events.count("delivered") == 3
    assert events[-1] == "done"


async def test_pipelining_sends_mail_rcpt_data_in_order(net: Net) -> None:
    setzone(net, ZONE_BC)
    b = await net.peer("127.0.0.2")
    await net.enqueue(["bob@b.test", "bert@b.test"])
    await net.round(net.runner())
    assert b.commands[:5] == [
        "EHLO mail.a.test",
        f"MAIL FROM:<alice@a.test> SIZE={len(MSG) - 29}",
        "RCPT TO:<bob@b.test>",
        "RCPT TO:<bert@b.test>",
        "DATA",
    ]


async def test_greylisted_recipient_is_delivered_on_retry(net: Net) -> None:
    setzone(net, ZONE_BC)
    b = await net.peer("127.0.0.2", greylist={"bob@b.test"})
    qid = await net.enqueue(["bob@b.test"])
    runner = net.runner()
    await net.round(runner)
    entry = await net.store.queue_get(qid)
    assert entry is not None
    assert entry.attempts == 1
    assert entry.recipients[0].state == RcptState.PENDING
    assert entry.recipients[0].last_reply == (
        "451 4.7.1 Greylisting in action, please come back later (host mx.b.test)"
    )
    assert entry.last_error == entry.recipients[0].last_reply
    assert b.transactions == []
    # not due before first_retry (60 s)
    assert await net.round(runner, advance=30) == 0
    assert await net.round(runner, advance=31) == 1
    assert [t.rcpts for t in b.transactions] == [["bob@b.test"]]
    assert await net.store.queue_get(qid) is None
    assert await inbox(net.store, "alice@a.test") == []  # no DSN for a success


async def test_unknown_user_bounces_to_local_sender_with_rfc3464_dsn(net: Net) -> None:
    setzone(net, ZONE_BC)
    await net.peer(
        "127.0.0.2",
        rcpt_reply=lambda a: (
            "550 5.1.1 <nobody@b.test>: Recipient address rejected: User unknown"
            if a == "nobody@b.test"
            else None
        ),
    )
    qid = await net.enqueue(["nobody@b.test", "bob@b.test"])
    await net.round(net.runner())
    assert await net.store.queue_get(qid) is None
    [raw] = await inbox(net.store, "alice@a.test")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mail.a.test>"
    assert b"\r\nTo: <alice@a.test>\r\n" in raw
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "message/rfc822",
    ]
    text = parts[0].get_content()
    assert (
        "<nobody@b.test>: failed: host mx.b.test said: 550 5.1.1 <nobody@b.test>: "
        "Recipient address rejected: User unknown"
    ) in text
    status = parts[1].get_payload()
    assert [dict(s.items()) for s in status] == [
        {
            "Reporting-MTA": "dns; mail.a.test",
            "X-Postier-Queue-ID": qid,
            "Arrival-Date": status[0]["Arrival-Date"],
        },
        {
            "Final-Recipient": "rfc822;nobody@b.test",
            "Action": "failed",
            "Status": "5.1.1",
            "Remote-MTA": "dns; mx.b.test",
            "Diagnostic-Code": "smtp; 550 5.1.1 <nobody@b.test>: Recipient address rejected: "
            "User unknown",
            "Last-Attempt-Date": status[1]["Last-Attempt-Date"],
        },
    ]
    returned = parts[2].get_payload()[0]
    assert returned["Subject"] == "hello"
    events = [(e.event, e.detail) for e in await net.store.trace_get(qid)]
    assert any(ev == "dsn" and "failed report" in d and "<nobody@b.test>" in d for ev, d in events)


async def test_first_mx_down_second_used(net: Net) -> None:
    setzone(
        net,
        {
            "b.test": {"MX": [(10, "mx1.b.test"), (20, "mx2.b.test")]},
            "mx1.b.test": {"A": ["127.0.0.4"]},  # nothing listens there
            "mx2.b.test": {"A": ["127.0.0.5"]},
        },
    )
    p2 = await net.peer("127.0.0.5")
    qid = await net.enqueue(["bob@b.test"])
    await net.round(net.runner())
    assert [t.rcpts for t in p2.transactions] == [["bob@b.test"]]
    details = [e.detail for e in await net.store.trace_get(qid) if e.event == "attempt"]
    assert details[0].startswith(
        f"mx1.b.test[127.0.0.4]:{net.port}: 4.4.1 connect to [127.0.0.4]:{net.port}:"
    )
    assert details[1].startswith(f"mx2.b.test[127.0.0.5]:{net.port} (no TLS): <bob@b.test> 250")


async def test_421_moves_to_next_mx(net: Net) -> None:
    setzone(
        net,
        {
            "b.test": {"MX": [(10, "mx1.b.test"), (20, "mx2.b.test")]},
            "mx1.b.test": {"A": ["127.0.0.4"]},
            "mx2.b.test": {"A": ["127.0.0.5"]},
        },
    )
    await net.peer("127.0.0.4", greeting="421 4.3.2 mx1 going down")
    p2 = await net.peer("127.0.0.5")
    await net.enqueue(["bob@b.test"])
    await net.round(net.runner())
    assert [t.rcpts for t in p2.transactions] == [["bob@b.test"]]


async def test_no_mx_uses_a_record(net: Net) -> None:
    setzone(net, {"b.test": {"A": ["127.0.0.6"]}})
    p = await net.peer("127.0.0.6")
    await net.enqueue(["bob@b.test"])
    await net.round(net.runner())
    assert [t.rcpts for t in p.transactions] == [["bob@b.test"]]


async def test_null_mx_bounces_at_once(net: Net) -> None:
    setzone(net, {"b.test": {"MX": [(0, ".")]}})
    qid = await net.enqueue(["bob@b.test"])
    await net.round(net.runner())
    assert await net.store.queue_get(qid) is None
    [raw] = await inbox(net.store, "alice@a.test")
    assert b"Status: 5.1.10\r\n" in raw
    assert (
        b"Diagnostic-Code: X-Postier; 5.1.10 Recipient address has null MX: b.test accepts no mail"
    ) in raw.replace(b"\r\n ", b" ")  # unfolded


async def test_nxdomain_is_permanent_servfail_temporary(net: Net) -> None:
    setzone(net, {"c.test": SERVFAIL})
    q1 = await net.enqueue(["bob@nx.test"])
    q2 = await net.enqueue(["carol@c.test"])
    await net.round(net.runner())
    assert await net.store.queue_get(q1) is None
    e2 = await net.store.queue_get(q2)
    assert e2 is not None
    assert e2.recipients[0].state == RcptState.PENDING
    assert e2.recipients[0].last_reply.startswith("4.4.3 Host or domain name lookup failed")
    [raw] = await inbox(net.store, "alice@a.test")
    assert b"Final-Recipient: rfc822;bob@nx.test\r\nAction: failed\r\nStatus: 5.1.2\r\n" in raw


async def test_expiry_fails_pending_recipients_with_dsn(net: Net) -> None:
    setzone(net, ZONE_BC)
    await net.peer("127.0.0.2", rcpt_reply=lambda a: "450 4.2.0 try later")
    qid = await net.enqueue(["bob@b.test"])
    runner = net.runner()
    await net.round(runner)
    assert await inbox(net.store, "alice@a.test") == []
    await net.round(runner, advance=3601)
    assert await net.store.queue_get(qid) is None
    [raw] = await inbox(net.store, "alice@a.test")
    assert (
        b"Diagnostic-Code: X-Postier; delivery time expired; last error: 450 4.2.0 try"
        b" later (host mx.b.test)"
    ) in raw.replace(b"\r\n ", b" ")
    assert b"Status: 5.4.7\r\n" in raw


async def test_backoff_doubles_and_next_attempt_is_recorded(net: Net) -> None:
    setzone(net, ZONE_BC)
    await net.peer("127.0.0.2", rcpt_reply=lambda a: "450 4.2.0 try later")
    qid = await net.enqueue(["bob@b.test"])
    runner = net.runner()
    seen = []
    for advance in (0, 61, 121):
        assert await net.round(runner, advance) == 1
        e = await net.store.queue_get(qid)
        assert e is not None
        seen.append(round((e.next_attempt - net.now()).total_seconds()))
    assert seen == [60, 120, 240]


async def test_size_limit_of_peer_fails_without_sending(net: Net) -> None:
    setzone(net, ZONE_BC)
    p = await net.peer("127.0.0.2", extensions=["PIPELINING", "SIZE 100"])
    await net.enqueue(["bob@b.test"])
    await net.round(net.runner())
    assert p.transactions == []
    assert not any(c.startswith("MAIL") for c in p.commands)
    [raw] = await inbox(net.store, "alice@a.test")
    assert b"Status: 5.3.4\r\n" in raw


async def test_smtputf8_address_to_peer_without_it_fails(net: Net) -> None:
    setzone(net, ZONE_BC)
    await net.peer("127.0.0.2", extensions=["PIPELINING"])
    await net.enqueue(["jörg@b.test", "bob@b.test"], smtputf8=True)
    await net.round(net.runner())
    peer = net.peers[0]
    assert [t.rcpts for t in peer.transactions] == [["bob@b.test"]]
    assert peer.transactions[0].mail_params == ""  # no SMTPUTF8, no SIZE offered
    [raw] = await inbox(net.store, "alice@a.test")
    assert "Final-Recipient: utf-8;jörg@b.test\r\n".encode() in raw
    assert b"Status: 5.6.7\r\n" in raw


async def test_dsn_parameters_passed_on(net: Net) -> None:
    setzone(net, ZONE_BC)
    p = await net.peer("127.0.0.2")
    await net.enqueue(
        [QueueRecipient("bob@b.test", notify="SUCCESS,FAILURE", orcpt="rfc822;Bob+x=y@b.test")],
        envid="env 1",
        ret="HDRS",
        body_8bit=True,
    )
    await net.round(net.runner())
    t = p.transactions[0]
    assert t.mail_params == f"SIZE={len(t.data)} BODY=8BITMIME RET=HDRS ENVID=env+201"
    assert t.rcpt_params == ["NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob+2Bx+3Dy@b.test"]
    assert await inbox(net.store, "alice@a.test") == []  # the peer reports success


async def test_notify_success_to_peer_without_dsn_gives_relayed_report(net: Net) -> None:
    setzone(net, ZONE_BC)
    await net.peer("127.0.0.2", extensions=["PIPELINING"])
    await net.enqueue([QueueRecipient("bob@b.test", notify="SUCCESS")])
    await net.round(net.runner())
    [raw] = await inbox(net.store, "alice@a.test")
    assert b"Subject: Successful Mail Delivery Report\r\n" in raw
    assert b"Action: relayed\r\nStatus: 2.0.0\r\n" in raw
    assert b"Content-Type: text/rfc822-headers\r\n" in raw


async def test_notify_never_and_bounces_get_no_dsn(net: Net) -> None:
    setzone(net, ZONE_BC)
    await net.peer("127.0.0.2", rcpt_reply=lambda a: "550 5.1.1 unknown")
    q1 = await net.enqueue([QueueRecipient("x@b.test", notify="NEVER")])
    q2 = await net.enqueue(["y@b.test"], sender="", is_bounce=True)
    await net.round(net.runner())
    assert await net.store.queue_get(q1) is None
    assert await net.store.queue_get(q2) is None
    assert await inbox(net.store, "alice@a.test") == []


async def test_remote_sender_bounce_is_queued_with_null_sender(net: Net) -> None:
    setzone(net, ZONE_BC)
    b = await net.peer(
        "127.0.0.2", rcpt_reply=lambda a: "550 5.1.1 unknown" if a == "x@b.test" else None
    )
    qid = await net.enqueue(["x@b.test"], sender="carol@b.test")
    runner = net.runner()
    await net.round(runner)
    assert await net.store.queue_get(qid) is None
    [bounce] = await net.store.queue_list()
    assert bounce.sender == ""
    assert bounce.is_bounce
    assert [r.address for r in bounce.recipients] == ["carol@b.test"]
    await net.round(runner)
    assert [(t.mail_from, t.rcpts) for t in b.transactions] == [("", ["carol@b.test"])]
    assert b"Subject: Undelivered Mail Returned to Sender" in b.transactions[0].data


async def test_connection_reused_with_rset_for_next_message(net: Net) -> None:
    setzone(net, ZONE_BC)
    p = await net.peer("127.0.0.2")
    await net.enqueue(["bob@b.test"])
    await net.enqueue(["bert@b.test"])
    runner = net.runner(reuse_idle=5)
    await net.round(runner)
    assert p.connections == 1
    assert [t.rcpts for t in p.transactions] == [["bob@b.test"], ["bert@b.test"]]
    assert p.commands.count("RSET") == 1
    assert runner.connections_opened == 1


async def test_starttls_when_offered(net: Net, tmp_path: Path) -> None:
    from postier.server.tls import ensure_self_signed

    cert, key = ensure_self_signed(tmp_path / "tls", "mx.b.test")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    setzone(net, ZONE_BC)
    p = await net.peer("127.0.0.2", tls_context=ctx)
    await net.enqueue(["bob@b.test"])
    await net.round(net.runner())
    assert p.commands[:3] == ["EHLO mail.a.test", "STARTTLS", "EHLO mail.a.test"]
    assert p.transactions[0].tls is True


async def test_required_tls_missing_defers(net: Net) -> None:
    setzone(net, ZONE_BC)
    p = await net.peer("127.0.0.2")
    qid = await net.enqueue(["bob@b.test"])
    runner = net.runner(outbound=SmtpOutbound(port=net.port, require_tls_domains=("b.test",)))
    await net.round(runner)
    assert p.transactions == []
    e = await net.store.queue_get(qid)
    assert e is not None
    assert e.recipients[0].last_reply == (
        f"4.7.4 TLS is required, but was not offered by host mx.b.test[127.0.0.2]:{net.port}"
        " (host mx.b.test)"
    )


async def test_smarthost_with_auth_gets_all_remote_mail(net: Net) -> None:
    setzone(net, ZONE_BC)
    relay = await net.peer("127.0.0.7", logins={"relayuser": "s3cret"})
    await net.enqueue(["bob@b.test", "carol@c.test"])
    outbound = SmtpOutbound(
        smarthost=f"127.0.0.7:{net.port}",
        smarthost_username="relayuser",
        smarthost_password="s3cret",
        smarthost_tls="none",
    )
    await net.round(net.runner(outbound=outbound))
    assert [(t.auth, t.rcpts) for t in relay.transactions] == [
        ("relayuser", ["bob@b.test", "carol@c.test"])
    ]


async def test_smarthost_wrong_password_defers(net: Net) -> None:
    relay = await net.peer("127.0.0.7", logins={"relayuser": "s3cret"})
    qid = await net.enqueue(["bob@b.test"])
    outbound = SmtpOutbound(
        smarthost=f"127.0.0.7:{net.port}",
        smarthost_username="relayuser",
        smarthost_password="wrong",
        smarthost_tls="none",
    )
    await net.round(net.runner(outbound=outbound))
    assert relay.transactions == []
    e = await net.store.queue_get(qid)
    assert e is not None
    assert e.recipients[0].last_reply.startswith(
        f"4.7.0 127.0.0.7[127.0.0.7]:{net.port} refused AUTH: 535 5.7.8"
    )


async def test_wake_starts_delivery_at_once(net: Net) -> None:
    setzone(net, ZONE_BC)
    p = await net.peer("127.0.0.2")
    runner = net.runner(max_idle=30)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.sleep(0.05)
        await net.enqueue(["bob@b.test"])
        runner.wake()
        for _ in range(100):
            if p.transactions:
                break
            await asyncio.sleep(0.01)
        assert [t.rcpts for t in p.transactions] == [["bob@b.test"]]
    finally:
        await runner.stop(1)
        task.cancel()


async def test_due_entry_starts_without_wake(net: Net) -> None:
    """A retry becomes due while the runner sleeps: it starts on time, unprompted."""
    setzone(net, ZONE_BC)
    p = await net.peer("127.0.0.2", greylist={"bob@b.test"})
    net.clock_offset = 0
    runner = net.runner(schedule=Schedule(first_retry=0.3, max_backoff=1, lifetime=60), max_idle=30)
    await net.enqueue(["bob@b.test"])
    task = asyncio.create_task(runner.run())
    try:
        for _ in range(200):
            if p.transactions:
                break
            await asyncio.sleep(0.01)
        assert [t.rcpts for t in p.transactions] == [["bob@b.test"]]
    finally:
        await runner.stop(1)
        task.cancel()


async def test_delay_warning_sent_once_after_delay(net: Net) -> None:
    setzone(net, ZONE_BC)
    await net.peer("127.0.0.2", rcpt_reply=lambda a: "450 4.2.0 try later")
    qid = await net.enqueue(["bob@b.test"])
    runner = net.runner(
        schedule=Schedule(first_retry=60, max_backoff=60, lifetime=3600, delay_warning=100)
    )
    await net.round(runner)
    assert await inbox(net.store, "alice@a.test") == []  # too early
    await net.round(runner, advance=61)
    assert await inbox(net.store, "alice@a.test") == []
    await net.round(runner, advance=61)  # 122 s old: past delay_warning
    [raw] = await inbox(net.store, "alice@a.test")
    assert b"Subject: Delayed Mail (still being retried)\r\n" in raw
    assert b"Action: delayed\r\nStatus: 4.2.0\r\n" in raw
    assert b"Will-Retry-Until: " in raw
    await net.round(runner, advance=61)
    assert len(await inbox(net.store, "alice@a.test")) == 1  # only once
    entry = await net.store.queue_get(qid)
    assert entry is not None
    assert entry.attempts == 4


async def test_log_lines_name_each_outcome(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    """An operator reading the log learns what happened to each recipient, and why."""
    caplog.set_level(logging.INFO, logger="postier.queue")
    setzone(net, ZONE_BC)
    await net.peer(
        "127.0.0.2",
        greylist={"grey@b.test"},
        rcpt_reply=lambda a: "550 5.1.1 User unknown" if a == "nobody@b.test" else None,
    )
    qid = await net.enqueue(["bob@b.test", "nobody@b.test", "grey@b.test"])
    runner = net.runner()
    await net.round(runner)
    entry = await net.store.queue_get(qid)
    assert entry is not None
    when = entry.next_attempt.isoformat(timespec="seconds")
    [dsn_event] = [e for e in await net.store.trace_get(qid) if e.event == "dsn"]
    dsn_qid = dsn_event.detail.split()[2]
    lines = [r.getMessage() for r in caplog.records if r.name == "postier.queue"]
    assert lines == [
        f"qid={qid} dsn={dsn_qid} failed report for <nobody@b.test> to <alice@a.test>",
        f"qid={qid} to=<nobody@b.test> bounced: host mx.b.test said: 550 5.1.1 User unknown",
        f"qid={qid} to=<bob@b.test> delivered: host mx.b.test said: "
        "250 2.0.0 Ok: queued as PEERQID",
        f"qid={qid} to=<grey@b.test> deferred: 451 4.7.1 Greylisting in action, please "
        f"come back later (host mx.b.test); next try {when}",
    ]
    # the bounce's own trace says where it went
    assert [(e.event, e.detail) for e in await net.store.trace_get(dsn_qid)] == [
        ("received", f"from=<> DSN (failed) for {qid} to <alice@a.test>"),
        ("delivered", "to <alice@a.test> in INBOX"),
    ]
    caplog.clear()
    await net.round(runner, advance=61)
    assert [r.getMessage() for r in caplog.records if r.name == "postier.queue"] == [
        f"qid={qid} to=<grey@b.test> delivered: host mx.b.test said: "
        "250 2.0.0 Ok: queued as PEERQID",
        f"qid={qid} done after 2 attempt(s): 2 delivered, 1 bounced; removed from the queue",
    ]
