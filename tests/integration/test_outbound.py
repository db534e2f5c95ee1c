"""Outbound delivery end to end: postier instances, a test DNS server and scripted
SMTP peers on 127.0.0.x, every one on the same port (the port the queue dials)."""

from __future__ import annotations

import email
import email.policy
import smtplib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dkim as dkimpy
import dns.resolver
import pytest

from postier.cli.dnsrecords import ensure_dkim
from tests.support.dnsserver import DnsTestServer
from tests.support.server import PASSWORD, ServerThread, thread_server
from tests.support.smtppeer import ThreadPeer
from tests.unit.queue.conftest import free_port


def wait_for(cond: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


def outbound_toml(dns: DnsTestServer, port: int) -> str:
    return (
        f'[dns]\nnameservers = ["{dns.nameserver}"]\noffline = false\ntimeout = "2s"\n'
        f'[smtp.outbound]\nport = {port}\nconnect_timeout = "2s"\n'
        f'command_timeout = "10s"\n'
        f'[queue]\nfirst_retry = "1s"\nmax_backoff = "2s"\n'
    )


class World:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.dns = DnsTestServer().start()
        self.servers: list[ServerThread] = []
        self.peers: list[ThreadPeer] = []

    def postier(self, name: str, ip: str, domain: str) -> ServerThread:
        d = self.tmp / name
        d.mkdir()
        srv = thread_server(
            d,
            outbound_toml(self.dns, self.port),
            address=ip,
            hostname=f"mx.{domain}",
            ports={"mx": self.port},
        )
        self.servers.append(srv)
        self.dns.set(domain, {"MX": [(10, f"mx.{domain}")]})
        self.dns.set(f"mx.{domain}", {"A": [ip]})
        return srv

    def peer(self, ip: str, domain: str, **kw: Any) -> ThreadPeer:
        p = ThreadPeer(host=ip, port=self.port, name=f"mx.{domain}", **kw).start()
        self.peers.append(p)
        self.dns.set(domain, {"MX": [(10, f"mx.{domain}")]})
        self.dns.set(f"mx.{domain}", {"A": [ip]})
        return p

    def stop(self) -> None:
        for s in self.servers:
            s.stop()
        for p in self.peers:
            p.stop()
        self.dns.stop()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        yield w
    finally:
        w.stop()


def submit(
    srv: ServerThread,
    sender: str,
    rcpts: list[str],
    body: str = "Hello.",
    subject: str = "outbound test",
    extra: str = "",
) -> str:
    msg = (
        f"From: <{sender}>\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n{extra}\r\n{body}\r\n"
    )
    with smtplib.SMTP(
        srv.app.listeners["submission"].address,  # type: ignore[union-attr]
        srv.port("submission"),
        timeout=10,
    ) as c:
        c.login(sender, PASSWORD)
        c.sendmail(sender, rcpts, msg)
        reply = c.noop()
    assert reply[0] == 250
    return msg


def inbox(srv: ServerThread, address: str) -> list[bytes]:
    async def go() -> list[bytes]:
        user = await srv.store.get_user(address)
        mb = await srv.store.get_mailbox(user.id, "INBOX")
        return [await srv.store.read_blob(m.blob_id) for m in await srv.store.list_messages(mb.id)]

    return srv.call(go())  # type: ignore[no-any-return]


def test_one_transaction_per_domain_local_copy_and_dkim(world: World) -> None:
    a = world.postier("a", "127.0.0.2", "a.test")
    a.add_user("alice@a.test")
    a.add_user("andy@a.test")
    keys = a.call(ensure_dkim(a.store, a.settings, "a.test"))
    for k in keys:
        world.dns.set(f"{k.selector}._domainkey.a.test", {"TXT": [k.txt_record()]})
    b = world.peer("127.0.0.3", "b.test")
    c = world.peer("127.0.0.4", "c.test")
    submit(a, "alice@a.test", ["bob@b.test", "carol@c.test", "bert@b.test", "andy@a.test"])
    wait_for(lambda: b.peer.transactions and c.peer.transactions)
    assert [(t.mail_from, t.rcpts) for t in b.peer.transactions] == [
        ("alice@a.test", ["bob@b.test", "bert@b.test"])
    ]
    assert [(t.mail_from, t.rcpts) for t in c.peer.transactions] == [
        ("alice@a.test", ["carol@c.test"])
    ]
    assert b.peer.transactions[0].helo == "mx.a.test"
    [local] = inbox(a, "andy@a.test")
    assert b"Subject: outbound test" in local
    data = b.peer.transactions[0].data
    assert not data.startswith(b"Return-Path:")
    assert data.count(b"DKIM-Signature:") == 2
    # the receiving side verifies against the keys served by the test DNS server
    res = dns.resolver.Resolver(configure=False)
    host, port = world.dns.nameserver.split(":")
    res.nameservers = [host]
    res.port = int(port)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        answer = res.resolve(name.decode(), "TXT")
        return b"".join(answer[0].strings)

    verifier = dkimpy.DKIM(data)
    assert verifier.verify(idx=0, dnsfunc=dnsfunc)
    assert verifier.verify(idx=1, dnsfunc=dnsfunc)
    assert b"a=rsa-sha256;" in data
    assert b"a=ed25519-sha256;" in data


@pytest.mark.parametrize("size", [10, 300 * 1024], ids=["in-memory", "spooled"])
def test_submission_is_signed_once_when_queued_not_at_each_attempt(world: World, size: int) -> None:
    a = world.postier("a", "127.0.0.2", "a.test")
    a.add_user("alice@a.test")
    keys = a.call(ensure_dkim(a.store, a.settings, "a.test"))
    records = {f"{k.selector}._domainkey.a.test.".encode(): k.txt_record().encode() for k in keys}
    b = world.peer("127.0.0.3", "b.test", data_reply="451 4.3.0 not now")
    submit(a, "alice@a.test", ["bob@b.test"], body=("x" * 70 + "\r\n") * (size // 72 + 1))
    wait_for(lambda: b.peer.transactions)
    [entry] = a.call(a.store.queue_list())
    assert entry.dkim_signature.count(b"DKIM-Signature:") == 2  # stored at submission
    assert entry.return_path_size == len(b"Return-Path: <alice@a.test>\r\n")
    b.peer.data_reply = "250 2.0.0 Ok"  # the retry, >= 1 s later: a new signature's t= differs
    wait_for(lambda: len(b.peer.transactions) == 2)
    first, second = (t.data for t in b.peer.transactions)
    assert first == second
    assert first.startswith(entry.dkim_signature)
    assert not first.startswith(b"Return-Path:")
    verifier = dkimpy.DKIM(first)
    for i in range(2):  # both signatures hold over the bytes sent
        assert verifier.verify(idx=i, dnsfunc=lambda name, timeout=5: records.get(name))


def test_unknown_user_at_other_postier_bounces_to_sender_inbox(world: World) -> None:
    a = world.postier("a", "127.0.0.2", "a.test")
    d = world.postier("d", "127.0.0.5", "d.test")
    a.add_user("alice@a.test")
    d.add_user("dave@d.test")
    submit(a, "alice@a.test", ["dave@d.test", "nobody@d.test"])
    wait_for(lambda: inbox(d, "dave@d.test"))
    [bounce] = wait_for(lambda: inbox(a, "alice@a.test"))
    msg = email.message_from_bytes(bounce, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    text, status, original = msg.iter_parts()
    assert (
        "<nobody@d.test>: failed: host mx.d.test said: 550 5.1.1 <nobody@d.test>: "
        "Recipient address rejected: User unknown"
    ) in text.get_content()
    groups = status.get_payload()
    assert groups[1]["Final-Recipient"] == "rfc822;nobody@d.test"
    assert groups[1]["Action"] == "failed"
    assert groups[1]["Status"] == "5.1.1"
    assert groups[1]["Remote-MTA"] == "dns; mx.d.test"
    assert original.get_content_type() == "message/rfc822"
    [delivered] = inbox(d, "dave@d.test")
    assert b"Subject: outbound test" in delivered


def test_greylisting_peer_gets_the_message_on_retry(world: World) -> None:
    a = world.postier("a", "127.0.0.2", "a.test")
    a.add_user("alice@a.test")
    g = world.peer("127.0.0.3", "g.test", greylist={"gina@g.test"})
    t0 = time.monotonic()
    submit(a, "alice@a.test", ["gina@g.test"])
    wait_for(lambda: g.peer.transactions)
    assert time.monotonic() - t0 >= 0.9  # first_retry = 1s
    assert [t.rcpts for t in g.peer.transactions] == [["gina@g.test"]]
    assert [c for c in g.peer.commands if c.startswith("RCPT")] == [
        "RCPT TO:<gina@g.test>",
        "RCPT TO:<gina@g.test>",
    ]
    assert inbox(a, "alice@a.test") == []


def test_mx_fallback_implicit_mx_and_null_mx(world: World) -> None:
    a = world.postier("a", "127.0.0.2", "a.test")
    a.add_user("alice@a.test")
    p2 = world.peer("127.0.0.6", "second.test")
    world.dns.set("two.test", {"MX": [(10, "down.two.test"), (20, "mx.second.test")]})
    world.dns.set("down.two.test", {"A": ["127.0.0.7"]})  # nothing listens
    p3 = world.peer("127.0.0.8", "plain.test")
    world.dns.set("plain.test", {"A": ["127.0.0.8"]})  # no MX: implicit MX
    world.dns.set("null.test", {"MX": [(0, ".")]})
    submit(a, "alice@a.test", ["x@two.test", "y@plain.test", "z@null.test"])
    wait_for(lambda: p2.peer.transactions and p3.peer.transactions)
    assert p2.peer.transactions[0].rcpts == ["x@two.test"]
    assert p3.peer.transactions[0].rcpts == ["y@plain.test"]
    [bounce] = wait_for(lambda: inbox(a, "alice@a.test"))
    assert b"Final-Recipient: rfc822;z@null.test\r\nAction: failed\r\nStatus: 5.1.10\r\n" in bounce
