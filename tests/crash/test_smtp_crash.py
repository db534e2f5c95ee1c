"""Rule zero under SIGKILL: every message that got a 250 is in the mailbox, once.

200 messages go over 20 concurrent connections to a real `postier serve` child;
the child is killed with SIGKILL in the middle; a restarted server must hold
every acknowledged message exactly once (matched by a unique Message-ID), and
nothing half-present.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import smtplib
import threading
import time
from pathlib import Path

import pytest

from postier.auth.passwords import hash_password
from postier.config.load import load
from postier.store import open_store
from tests.support.server import ServerProcess, write_config

pytestmark = pytest.mark.crash

MESSAGES = 200
CONNECTIONS = 20


def _setup(cfg: Path) -> None:
    async def go() -> None:
        store = open_store(load(cfg))
        await store.open()
        await store.add_domain("example.test")
        await store.add_user("alice@example.test", hash_password("x"))
        await store.close()

    asyncio.run(go())


def _stored_ids(cfg: Path) -> list[str]:
    async def go() -> list[str]:
        store = open_store(load(cfg))
        await store.open()
        try:
            user = await store.get_user("alice@example.test")
            mb = await store.get_mailbox(user.id, "INBOX")
            ids = []
            for m in await store.list_messages(mb.id):
                data = await store.read_blob(m.blob_id)  # raises if half-present
                assert len(data) == m.size
                found = re.search(rb"Message-ID: <(crash-\d+)@test>", data)
                assert found, data[:300]
                ids.append(found.group(1).decode())
            return ids
        finally:
            await store.close()

    return asyncio.run(go())


def test_sigkill_during_intake_loses_no_acknowledged_message(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    _setup(cfg)
    srv = ServerProcess(cfg).start()
    port = srv.ports["mx"]
    acked: list[str] = []
    lock = threading.Lock()
    counter = iter(range(MESSAGES))

    def sender() -> None:
        try:
            c = smtplib.SMTP("127.0.0.1", port, timeout=10)
        except OSError:
            return
        try:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                msg = (
                    f"From: s@remote.test\r\nSubject: {n}\r\n"
                    f"Message-ID: <crash-{n}@test>\r\n\r\n" + "body line\r\n" * 50
                ).encode()
                try:
                    c.sendmail("s@remote.test", ["alice@example.test"], msg)
                except (smtplib.SMTPException, OSError):
                    return  # killed mid-transaction: no 250, no promise
                with lock:
                    acked.append(f"crash-{n}")
        finally:
            with contextlib.suppress(OSError):
                c.close()

    threads = [threading.Thread(target=sender) for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    # kill once a good part of the load is acknowledged, while the rest is in flight
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= MESSAGES // 3:
                break
        time.sleep(0.005)
    srv.kill()
    for t in threads:
        t.join(30)
    assert MESSAGES // 3 <= len(acked) < MESSAGES, "the kill must fall mid-stream"

    # restart the server (recovery path: sweep temp files, reopen WAL), then check
    srv2 = ServerProcess(cfg).start()
    assert srv2.terminate() == 0
    stored = _stored_ids(cfg)
    assert len(stored) == len(set(stored)), "a message is stored twice"
    missing = set(acked) - set(stored)
    assert not missing, f"acknowledged but lost: {sorted(missing)}"
    # nothing is left half-written in the spool or blob temp files
    # the dead session's spool file is swept at start; blob temp files are kept for
    # the store's orphan grace period (another process may be writing one) and
    # swept after it, which the store's own tests check
    assert list((tmp_path / "data" / "spool").glob("*")) == []
