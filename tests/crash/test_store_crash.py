"""Crash safety of the SQLite store: SIGKILL a delivering child; every delivery it
reported is there, byte for byte, exactly once, and nothing is half-present."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from postier.store.models import Uid
from postier.store.sqlite import SqliteStore

pytestmark = pytest.mark.crash

CHILD = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from postier.mime.summary import summarize
    from postier.store.models import DeliveryTarget, NewMessage, NewQueueEntry, QueueRecipient
    from postier.store.sqlite import SqliteStore

    data, spool, round_ = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    async def worker(store, users, w):
        i = 0
        while True:
            i += 1
            tag = f"{round_}-{w}-{i}"
            body = (f"Subject: {tag}\\r\\n\\r\\n" + tag * 200 + "\\r\\n").encode()
            source = body
            if i % 3 == 0:
                source = spool / f"{tag}.eml"
                source.write_bytes(body)
            queue = None
            if i % 4 == 0:
                queue = NewQueueEntry("a@example.test", (QueueRecipient("x@remote.test"),))
            message = NewMessage(source, summarize(body))
            r = await store.deliver(message, [DeliveryTarget(u) for u in users], queue=queue)
            uids = ",".join(f"{d.mailbox_id}:{d.uid}" for d in r.delivered)
            print(f"done {tag} {r.blob_id} {r.qid} {int(queue is not None)} {uids}",
                  flush=True)

    async def main():
        store = SqliteStore(data)
        await store.open()
        users = [int(x) for x in sys.argv[4].split(",")]
        print("ready", flush=True)
        await asyncio.gather(*(worker(store, users, w) for w in range(4)))

    asyncio.run(main())
""")


def body_of(tag: str) -> bytes:
    return (f"Subject: {tag}\r\n\r\n" + tag * 200 + "\r\n").encode()


def run_child(data: Path, spool: Path, round_: int, users: str, lines: int) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data), str(spool), str(round_), users],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    done: list[str] = []
    try:
        assert child.stdout.readline() == "ready\n"
        while len(done) < lines:
            line = child.stdout.readline()
            assert line, "child died"
            done.append(line)
        child.send_signal(signal.SIGKILL)  # mid-stream: more deliveries are in flight
        # lines already written before the kill are reports of finished deliveries too
        done.extend(child.stdout.read().splitlines(keepends=True))
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    return [x for x in done if x.endswith("\n") and x.startswith("done ")]


def check_integrity(data: Path) -> None:
    conn = sqlite3.connect(data / "postier.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        blob_rows = {r[0] for r in conn.execute("SELECT id FROM blobs")}
        # every blob row is referenced and every reference has a row
        referenced = {
            r[0]
            for r in conn.execute("SELECT blob_id FROM messages UNION SELECT blob_id FROM queue")
        }
        assert blob_rows == referenced
        sizes = dict(conn.execute("SELECT id, size FROM blobs").fetchall())
        inline_sizes = dict(conn.execute("SELECT id, length(data) FROM blob_data").fetchall())
    finally:
        conn.close()
    files = {p.name: p for p in (data / "blobs").glob("??/*")}
    # every row's blob exists with its size (a file, or inline bytes in the
    # database); after the sweep no file is unreferenced
    inline = {i for i in blob_rows if i.startswith("i")}
    assert set(files) == blob_rows - inline
    for blob_id, size in sizes.items():
        if blob_id in inline:
            assert inline_sizes[blob_id] == size
        else:
            assert files[blob_id].stat().st_size == size
    assert list((data / "blobs" / "tmp").iterdir()) == []


async def test_sigkill_during_deliveries(tmp_path):
    data, spool = tmp_path / "data", tmp_path / "spool"
    spool.mkdir()
    setup = SqliteStore(data)
    await setup.open()
    await setup.add_domain("example.test")
    users = [await setup.add_user(f"u{i}@example.test", "h") for i in range(2)]
    await setup.close()
    user_ids = ",".join(str(u.id) for u in users)

    reported: list[list[str]] = []
    for round_ in range(3):
        lines = run_child(data, spool, round_, user_ids, lines=40)
        assert len(lines) >= 40
        reported.extend(line.split() for line in lines)

        store = SqliteStore(data, orphan_grace=0)  # sweep every unreferenced file
        await store.open()
        try:
            for _, tag, blob_id, qid, queued, uids in (r for r in reported):
                body = body_of(tag)
                assert await store.read_blob(blob_id) == body
                for pair in uids.split(","):
                    mailbox_id, uid = (int(x) for x in pair.split(":"))
                    m = await store.get_message(mailbox_id, Uid(uid))
                    assert m is not None, (tag, pair)
                    assert (m.blob_id, m.size) == (blob_id, len(body))
                if queued == "1":
                    entry = await store.queue_get(qid)
                    assert entry is not None
                    assert entry.blob_id == blob_id
            for u in users:
                box = await store.get_mailbox(u.id, "INBOX")
                msgs = await store.list_messages(box.id)
                # exactly once: one row per delivery (reported or not), uids unique
                assert len({m.blob_id for m in msgs}) == len(msgs)
                assert box.uidnext > max(m.uid for m in msgs)
                for m in msgs:
                    assert await store.read_blob(m.blob_id) != b""
        finally:
            await store.close()
        check_integrity(data)
    assert len({r[1] for r in reported}) == len(reported)
