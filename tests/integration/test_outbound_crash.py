"""Restart safety: SIGKILL the sending server while messages are queued and
deliveries are in flight; after a restart every message reaches the peer, with
duplicates only for transactions the kill caught between the peer's 250 and our
commit (bounded by the per-destination concurrency)."""

from __future__ import annotations

import asyncio
import collections
import re
import smtplib
from pathlib import Path

import pytest

from postier.auth.passwords import hash_password
from postier.store.sqlite import SqliteStore
from tests.integration.test_outbound import outbound_toml, wait_for
from tests.support.dnsserver import DnsTestServer
from tests.support.server import PASSWORD, ServerProcess, write_config
from tests.support.smtppeer import ThreadPeer
from tests.unit.queue.conftest import free_port

pytestmark = pytest.mark.crash

N = 30
PER_DESTINATION = 3


async def _add_user(data_dir: Path) -> None:
    store = SqliteStore(data_dir)
    await store.open()
    await store.add_domain("a.test")
    await store.add_user("alice@a.test", hash_password(PASSWORD))
    await store.close()


def test_sigkill_with_deliveries_in_flight(tmp_path: Path) -> None:
    port = free_port()
    with DnsTestServer() as dns:
        dns.set("b.test", {"MX": [(10, "mx.b.test")]})
        dns.set("mx.b.test", {"A": ["127.0.0.3"]})
        peer = ThreadPeer(host="127.0.0.3", port=port, data_delay=0.2).start()
        try:
            extra = (
                outbound_toml(dns, port)
                + f"[smtp.outbound]\nmax_per_destination = {PER_DESTINATION}\n"
            )
            config = write_config(tmp_path, extra, address="127.0.0.2", hostname="mx.a.test")
            asyncio.run(_add_user(tmp_path / "data"))
            srv = ServerProcess(config).start()
            try:
                with smtplib.SMTP("127.0.0.2", srv.ports["submission"], timeout=10) as c:
                    c.login("alice@a.test", PASSWORD)
                    for i in range(N):
                        c.sendmail(
                            "alice@a.test",
                            ["bob@b.test"],
                            f"From: alice@a.test\r\nSubject: msg-{i}\r\n\r\nbody {i}\r\n",
                        )
                wait_for(lambda: len(peer.peer.transactions) >= 4)
            finally:
                srv.kill()  # SIGKILL: deliveries in flight, most messages still queued
            seen_at_kill = len(peer.peer.transactions)
            assert seen_at_kill < N
            srv = ServerProcess(config).start()
            try:

                def subjects() -> collections.Counter[str]:
                    return collections.Counter(
                        m.group(1).decode()
                        for t in list(peer.peer.transactions)
                        if (m := re.search(rb"Subject: (msg-\d+)", t.data))
                    )

                wait_for(lambda: len(subjects()) == N, timeout=60)
            finally:
                assert srv.terminate() == 0
            counts = subjects()
            assert set(counts) == {f"msg-{i}" for i in range(N)}
            duplicates = sum(n - 1 for n in counts.values())
            # At most the transactions in flight: the runner commits what a host said
            # before the connection carries another message, so each of the
            # PER_DESTINATION connections holds at most one uncommitted transaction.
            assert duplicates <= PER_DESTINATION
        finally:
            peer.stop()
