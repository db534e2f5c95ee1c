"""The outbound queue shared by two nodes over one PostgreSQL database (issue 16).

Messages are submitted through both nodes; both runners deliver to one peer. One
node is killed (SIGKILL) mid-queue, holding the entries of its rounds: the other
finishes the work at once (the dead node's leases die with its database session;
without that it would wait 30 minutes and the test times out), every message
arrives, and the only duplicates are the transactions the kill caught between
the peer's 250 and the dead node's commit (bounded by its per-destination
concurrency): two live runners never deliver one entry twice.
"""

from __future__ import annotations

import asyncio
import collections
import re
import smtplib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from postier.auth.passwords import hash_password
from postier.store.postgres import PostgresStore
from tests.integration.test_outbound import outbound_toml, wait_for
from tests.support.dnsserver import DnsTestServer
from tests.support.postgres import pg_dsn  # noqa: F401  (a fixture)
from tests.support.server import PASSWORD, ServerProcess, write_config
from tests.support.smtppeer import ThreadPeer
from tests.unit.queue.conftest import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.crash]

N = 120  # half through each node
PER_DESTINATION = 3


async def _add_user(dsn: str) -> None:
    store = PostgresStore(dsn)
    await store.open()
    try:
        await store.add_domain("a.test")
        await store.add_user("alice@a.test", hash_password(PASSWORD))
    finally:
        await store.close()


def _submit(address: str, port: int, numbers: range) -> None:
    with smtplib.SMTP(address, port, timeout=30) as c:
        c.login("alice@a.test", PASSWORD)
        for i in numbers:
            c.sendmail(
                "alice@a.test",
                ["bob@b.test"],
                f"From: alice@a.test\r\nSubject: msg-{i}\r\n\r\nbody {i}\r\n",
            )


def test_two_runners_and_a_killed_node(tmp_path: Path, pg_dsn: str) -> None:  # noqa: F811
    port = free_port()
    asyncio.run(_add_user(pg_dsn))
    with DnsTestServer() as dns:
        dns.set("b.test", {"MX": [(10, "mx.b.test")]})
        dns.set("mx.b.test", {"A": ["127.0.0.3"]})
        peer = ThreadPeer(host="127.0.0.3", port=port, data_delay=0.2).start()
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
                nodes.append(ServerProcess(config).start())
            a, b = nodes
            with ThreadPoolExecutor(2) as pool:
                half = N // 2
                jobs = [
                    pool.submit(_submit, "127.0.0.2", a.ports["submission"], range(half)),
                    pool.submit(_submit, "127.0.0.4", b.ports["submission"], range(half, N)),
                ]
                for job in jobs:
                    job.result()

            def subjects() -> collections.Counter[str]:
                return collections.Counter(
                    m.group(1).decode()
                    for t in list(peer.peer.transactions)
                    if (m := re.search(rb"Subject: (msg-\d+)", t.data))
                )

            wait_for(lambda: len(peer.peer.transactions) >= N // 4, timeout=60)
            a.kill()  # deliveries in flight, claims held: b must take them over
            assert len(subjects()) < N
            wait_for(lambda: len(subjects()) == N, timeout=60)
            counts = subjects()
            assert set(counts) == {f"msg-{i}" for i in range(N)}
            duplicates = sum(n - 1 for n in counts.values())
            # two live runners never deliver one entry twice; the kill may catch
            # one transaction per connection of a between the peer's 250 and its commit
            assert duplicates <= PER_DESTINATION
            assert b.terminate() == 0
        finally:
            for node in nodes:
                if node.proc is not None and node.proc.poll() is None:
                    node.kill()
            peer.stop()
