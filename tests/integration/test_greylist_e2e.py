"""Greylisting against a real retrying MTA: a second postier delivering through its
outbound queue (issue 7). The first attempt gets 451 4.7.1, the retry after the
delay is accepted, and the network that passed is not delayed again."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_outbound import World, inbox, outbound_toml, submit, wait_for
from tests.support.server import ServerThread, thread_server


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[World, ServerThread, ServerThread]]:
    w = World(tmp_path)
    try:
        sender = w.postier("a", "127.0.0.2", "a.test")
        d = tmp_path / "b"
        d.mkdir()
        receiver = thread_server(
            d,
            outbound_toml(w.dns, w.port)
            + '[greylist]\nenabled = true\ndelay = "2s"\nwindow = "1h"\nallow = []\n',
            address="127.0.0.3",
            hostname="mx.b.test",
            ports={"mx": w.port},
        )
        w.servers.append(receiver)
        w.dns.set("b.test", {"MX": [(10, "mx.b.test")]})
        w.dns.set("mx.b.test", {"A": ["127.0.0.3"]})
        sender.add_user("alice@a.test")
        sender.add_user("carol@a.test")
        receiver.add_user("bob@b.test")
        yield w, sender, receiver
    finally:
        w.stop()


def _trace(srv: ServerThread, qid: str) -> list[tuple[str, str]]:
    return [(e.event, e.detail) for e in srv.call(srv.store.trace_get(qid))]


def _events_until_done(srv: ServerThread, qid: str) -> list[str]:
    events = [e for e, _ in _trace(srv, qid)]
    return events if "done" in events else []


def _only_qid(srv: ServerThread) -> str:
    [entry] = srv.call(srv.store.queue_list())
    return str(entry.id)


def test_greylisted_then_delivered_then_network_trusted(pair) -> None:  # type: ignore[no-untyped-def]
    _, sender, receiver = pair
    submit(sender, "alice@a.test", ["bob@b.test"], subject="first")
    qid = wait_for(lambda: _only_qid(sender))
    # the first attempt is greylisted: the queue keeps it and says why
    deferred = wait_for(lambda: [d for e, d in _trace(sender, qid) if e == "deferred"], timeout=10)
    assert "451 4.7.1 Greylisting in action, please come back later" in deferred[0]
    assert inbox(receiver, "bob@b.test") == []
    # a retry after the delay passes
    [got] = wait_for(lambda: inbox(receiver, "bob@b.test"), timeout=20)
    assert b"Subject: first" in got
    wait_for(lambda: sender.call(sender.store.queue_list()) == [], timeout=10)
    # the trace is told after the entry is settled (the runner's rule 6): wait for "done"
    events = wait_for(lambda: _events_until_done(sender, qid), timeout=10)
    assert events.count("deferred") >= 1
    assert "delivered" in events
    # another sender, same client network: whitelisted, delivered at the first try
    submit(sender, "carol@a.test", ["bob@b.test"], subject="second")
    wait_for(lambda: len(inbox(receiver, "bob@b.test")) == 2, timeout=10)
    [second] = [m for m in inbox(receiver, "bob@b.test") if b"Subject: second" in m]
    # the receiver's own trace says why it let the second message straight in
    rqid = re.search(rb"by mx\.b\.test \(postier\) with ESMTPS? id ([0-9A-Z]{16})", second)
    assert rqid is not None
    lines = [d for e, d in _trace(receiver, rqid.group(1).decode()) if e == "filter"]
    assert any("greylist" in d and "whitelisted-network" in d for d in lines), lines
