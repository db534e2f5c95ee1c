"""The outbound queue shared by two nodes over one PostgreSQL database (issue 16).

1,000 messages are submitted through both nodes and both runners deliver them to
one sink peer. With both nodes alive every message arrives exactly once: a
runner claims entries with ``FOR UPDATE SKIP LOCKED`` and keeps its claim for the
whole round, so two live runners never hold one entry.

Then the same load with node A killed (SIGKILL) mid-queue, holding the entries of
its rounds: B finishes the work at once (A's leases die with its database
session; without that B would wait 30 minutes and the test times out) and every
message arrives. What a kill may double, and the test allows: the transactions
the kill caught between the peer's acceptance of the data and A's commit of
that outcome, at most one per connection A had open to the peer (the queue's
rule 3, `queue/runner.py`) — SMTP cannot do better (RFC 1047: the sender that
dies before it records the 250 must send again). So each doubled message was
taken first from A, within the last moments before the kill, then from B; A
and B never take one message twice each, and no more are doubled than A's
connections.
"""

from __future__ import annotations

import asyncio
import collections
import re
import smtplib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from postier.auth.passwords import hash_password
from postier.store.postgres import PostgresStore
from tests.integration.test_outbound import outbound_toml, wait_for
from tests.support.dnsserver import DnsTestServer
from tests.support.postgres import pg_dsn  # noqa: F401  (a fixture)
from tests.support.server import PASSWORD, ServerProcess, write_config
from tests.support.smtppeer import ThreadPeer, Txn
from tests.unit.queue.conftest import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.crash]

N = 1000
PER_DESTINATION = 4  # connections of each node to the peer
SUBMITTERS = 2  # connections per node that queue the messages


class TimedList(list[Txn]):
    """The peer's transactions, each with the time it took it."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, txn: Txn) -> None:
        self.times.append(time.monotonic())
        super().append(txn)


@dataclass
class Site:
    a: ServerProcess
    b: ServerProcess
    peer: ThreadPeer
    transactions: TimedList
    dsn: str


async def _add_user(dsn: str) -> None:
    store = PostgresStore(dsn)
    await store.open()
    try:
        await store.add_domain("a.test")
        await store.add_user("alice@a.test", hash_password(PASSWORD))
    finally:
        await store.close()


async def _queued(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT COUNT(*) FROM queue"))
    finally:
        await conn.close()


def _submit(address: str, port: int, numbers: range) -> None:
    with smtplib.SMTP(address, port, timeout=30) as c:
        c.login("alice@a.test", PASSWORD)
        for i in numbers:
            c.sendmail(
                "alice@a.test",
                ["bob@b.test"],
                f"From: alice@a.test\r\nSubject: msg-{i}\r\n\r\nbody {i}\r\n",
            )


def _submit_all(site: Site) -> None:
    """N messages, half through each node, over SUBMITTERS connections each."""
    per = N // (2 * SUBMITTERS)
    jobs: list[Any] = []
    with ThreadPoolExecutor(2 * SUBMITTERS) as pool:
        for k in range(2 * SUBMITTERS):
            node, address = (site.a, "127.0.0.2") if k % 2 == 0 else (site.b, "127.0.0.4")
            numbers = range(k * per, (k + 1) * per)
            jobs.append(pool.submit(_submit, address, node.ports["submission"], numbers))
        for job in jobs:
            job.result()


def _taken(site: Site) -> list[tuple[str, str, float]]:
    """(subject, the node that sent it, when the peer took it) per transaction."""
    out = []
    for txn, at in zip(list(site.transactions), list(site.transactions.times), strict=False):
        m = re.search(rb"Subject: (msg-\d+)", txn.data)
        assert m is not None
        out.append((m.group(1).decode(), txn.helo, at))
    return out


@pytest.fixture
def site(tmp_path: Path, pg_dsn: str) -> Iterator[Site]:  # noqa: F811
    port = free_port()
    asyncio.run(_add_user(pg_dsn))
    transactions = TimedList()
    with DnsTestServer() as dns:
        dns.set("b.test", {"MX": [(10, "mx.b.test")]})
        dns.set("mx.b.test", {"A": ["127.0.0.3"]})
        peer = ThreadPeer(host="127.0.0.3", port=port, transactions=transactions).start()
        nodes: list[ServerProcess] = []
        try:
            for name, address in (("a", "127.0.0.2"), ("b", "127.0.0.4")):
                d = tmp_path / name
                d.mkdir()
                extra = (
                    outbound_toml(dns, port)
                    + f"[smtp.outbound]\nmax_per_destination = {PER_DESTINATION}\n"
                    + f'[store]\nbackend = "postgres"\npostgres_dsn = "{pg_dsn}"\n'
                )
                config = write_config(d, extra, address=address, hostname=f"mx{name}.a.test")
                nodes.append(ServerProcess(config))
            with ThreadPoolExecutor(2) as pool:
                for started in [pool.submit(n.start) for n in nodes]:
                    started.result()
            yield Site(nodes[0], nodes[1], peer, transactions, pg_dsn)
        finally:
            for node in nodes:
                if node.proc is not None and node.proc.poll() is None:
                    node.kill()
            peer.stop()


def test_1000_messages_two_live_runners_each_delivered_once(site: Site) -> None:
    _submit_all(site)
    wait_for(lambda: len({s for s, _, _ in _taken(site)}) == N, timeout=90)
    wait_for(lambda: asyncio.run(_queued(site.dsn)) == 0, timeout=30)
    taken = _taken(site)
    counts = collections.Counter(s for s, _, _ in taken)
    assert set(counts) == {f"msg-{i}" for i in range(N)}
    assert [s for s, n in counts.items() if n > 1] == []  # exactly once
    senders = collections.Counter(node for _, node, _ in taken)
    assert set(senders) == {"mxa.a.test", "mxb.a.test"}, senders  # both runners worked
    assert site.a.terminate() == 0
    assert site.b.terminate() == 0


def test_1000_messages_a_node_killed_mid_queue(site: Site) -> None:
    site.peer.peer.data_delay = 0.05  # transactions in flight when the kill comes
    _submit_all(site)
    wait_for(lambda: len(site.transactions) >= N // 4, timeout=60)
    site.a.kill()  # deliveries in flight, claims held: B must take them over
    killed = time.monotonic()
    assert len({s for s, _, _ in _taken(site)}) < N
    wait_for(lambda: len({s for s, _, _ in _taken(site)}) == N, timeout=90)
    wait_for(lambda: asyncio.run(_queued(site.dsn)) == 0, timeout=30)
    taken = _taken(site)
    # nothing lost
    assert {s for s, _, _ in taken} == {f"msg-{i}" for i in range(N)}
    # neither node sent one message twice
    for node in ("mxa.a.test", "mxb.a.test"):
        counts = collections.Counter(s for s, n, _ in taken if n == node)
        assert [s for s, c in counts.items() if c > 1] == [], node
    # a message taken twice was in flight on A when it died: A's copy came within
    # the last moments before the kill (between the peer's 250 and A's commit),
    # and then B's
    copies: dict[str, list[tuple[str, float]]] = collections.defaultdict(list)
    for subject, node, at in taken:
        copies[subject].append((node, at))
    doubled = {s: c for s, c in copies.items() if len(c) > 1}
    for subject, ((first, at), (second, _)) in doubled.items():
        assert (first, second) == ("mxa.a.test", "mxb.a.test"), subject
        assert killed - 5.0 < at, (subject, killed - at)
    assert len(doubled) <= PER_DESTINATION, doubled
    assert site.b.terminate() == 0
