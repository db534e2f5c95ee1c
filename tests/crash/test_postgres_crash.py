"""Rule zero across nodes: a node killed mid-stream loses nothing it acknowledged.

Two nodes over one PostgreSQL database. 500 messages go over 20 concurrent SMTP
connections to node A; A is killed with SIGKILL in the middle. Every message that
got a 250 from A is readable through node B (IMAP), exactly once and byte for
byte; one that got no reply may be there or not (A may have committed it before
it could answer), but never twice.
"""

from __future__ import annotations

import imaplib
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.test_postgres_nodes import PASSWORD, cli, node_config
from tests.support.killload import send_then_kill
from tests.support.postgres import pg_dsn  # noqa: F401  (a fixture)
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.postgres, pytest.mark.crash]

MESSAGES = 500
CONNECTIONS = 20
BODY = "body line\r\n" * 50


def _message(n: int) -> bytes:
    return (
        f"From: s@remote.test\r\nTo: alice@example.test\r\nSubject: {n}\r\n"
        f"Message-ID: <crash-{n}@test>\r\n\r\n{BODY}"
    ).encode()


def test_node_killed_mid_stream_every_acknowledged_message_readable_once_on_the_other(
    tmp_path: Path,
    pg_dsn: str,  # noqa: F811
) -> None:
    a = ServerProcess(node_config(tmp_path, "a", pg_dsn))
    b = ServerProcess(node_config(tmp_path, "b", pg_dsn))
    try:
        with ThreadPoolExecutor(2) as pool:
            for started in [pool.submit(n.start) for n in (a, b)]:
                started.result()
        cli(a.config, "domain", "add", "example.test")
        cli(
            a.config, "user", "add", "alice@example.test", "--password-stdin", stdin=PASSWORD + "\n"
        )
        acked = send_then_kill(
            a.ports["mx"],
            messages=MESSAGES,
            connections=CONNECTIONS,
            message=_message,
            kill=a.kill,
        )

        imap = imaplib.IMAP4("127.0.0.1", b.ports["imap"], timeout=30)
        imap.login("alice@example.test", PASSWORD)
        typ, data = imap.select("INBOX")
        assert typ == "OK"
        stored: list[int] = []
        if int(data[0] or 0):
            typ, fetched = imap.fetch("1:*", "(BODY.PEEK[])")
            assert typ == "OK"
            for item in fetched:
                if not isinstance(item, tuple):
                    continue
                raw = item[1]
                found = re.search(rb"Message-ID: <crash-(\d+)@test>", raw)
                assert found, raw[:300]
                n = int(found.group(1))
                # what was accepted, whole: A's trace on top, then the bytes sent
                assert raw.endswith(_message(n)), raw[-300:]
                stored.append(n)
        imap.logout()
        assert len(stored) == len(set(stored)), "a message is stored twice"
        missing = set(acked) - set(stored)
        assert not missing, f"acknowledged but lost: {sorted(missing)}"
        assert b.terminate() == 0
    finally:
        for node in (a, b):
            if node.proc is not None and node.proc.poll() is None:
                node.kill()
