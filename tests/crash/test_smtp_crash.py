"""Rule zero under SIGKILL: every message that got a 250 is in the mailbox, once.

200 messages go over 20 concurrent connections to a real `postier serve` child;
the child is killed with SIGKILL in the middle; a restarted server must hold
every acknowledged message exactly once (matched by a unique Message-ID), and
nothing half-present.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest

from postier.auth.passwords import hash_password
from postier.config.load import load
from postier.store import open_store
from tests.support.killload import send_then_kill
from tests.support.server import ServerProcess, write_config

pytestmark = pytest.mark.crash

MESSAGES = 200
CONNECTIONS = 20


def _message(n: int) -> bytes:
    return (
        f"From: s@remote.test\r\nSubject: {n}\r\n"
        f"Message-ID: <crash-{n}@test>\r\n\r\n" + "body line\r\n" * 50
    ).encode()


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
    acked = send_then_kill(
        srv.ports["mx"],
        messages=MESSAGES,
        connections=CONNECTIONS,
        message=_message,
        kill=srv.kill,
        timeout=10,
    )

    # restart the server (recovery path: sweep temp files, reopen WAL), then check
    srv2 = ServerProcess(cfg).start()
    assert srv2.terminate() == 0
    # the header index entries the kill left pending were made at the restart
    with sqlite3.connect(tmp_path / "data" / "postier.db") as db:
        pending, indexed, rows = (
            db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("header_pending", "header_index", "messages")
        )
    db.close()
    assert (pending, indexed) == (0, rows)
    stored = _stored_ids(cfg)
    assert len(stored) == len(set(stored)), "a message is stored twice"
    missing = {f"crash-{n}" for n in acked} - set(stored)
    assert not missing, f"acknowledged but lost: {sorted(missing)}"
    # nothing is left half-written in the spool or blob temp files
    # the dead session's spool file is swept at start; blob temp files are kept for
    # the store's orphan grace period (another process may be writing one) and
    # swept after it, which the store's own tests check
    assert list((tmp_path / "data" / "spool").glob("*")) == []
