"""`postier backup DIR` while the server takes mail, and `postier restore DIR`:
consistent, verified, refused when it would be unsafe."""

from __future__ import annotations

import asyncio
import json
import smtplib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from postier.auth.passwords import hash_password
from postier.cli.status import human
from postier.config.load import load
from postier.store import open_store
from postier.store.models import DeliveryTarget
from postier.store.sqlite import SqliteStore
from postier.store.sqlite import backup as bk
from tests.support.messages import new_message
from tests.support.server import ServerThread, thread_server

BIG = b"Subject: big\r\n\r\n" + b"x" * 200_000 + b"\r\n"  # over store.inline_max: a file


def postier(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postier", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def send(srv: ServerThread, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port("mx"), timeout=10) as smtp:
        smtp.sendmail("a@remote.test", ["alice@example.test"], data)


def messages(config: Path) -> list[bytes]:
    async def go() -> list[bytes]:
        store = open_store(load(config))
        await store.open()
        try:
            user = await store.get_user("alice@example.test")
            mb = await store.get_mailbox(user.id, "INBOX")
            return [await store.read_blob(m.blob_id) for m in await store.list_messages(mb.id)]
        finally:
            await store.close()

    return asyncio.run(go())


def test_backup_online_then_restore(tmp_path: Path) -> None:
    config = tmp_path / "postier.toml"
    srv = thread_server(tmp_path)
    try:
        srv.add_user("alice@example.test")
        send(srv, b"Subject: small\r\n\r\nhi\r\n")
        send(srv, BIG)
        r = postier(config, "backup", str(tmp_path / "bk"))  # the server runs
        assert (r.returncode, r.stderr) == (0, ""), r.stderr
        manifest = bk.verify(tmp_path / "bk")
        assert r.stdout.splitlines() == [
            f"backup of {tmp_path.resolve() / 'data'} in {tmp_path / 'bk'}: 1 domain(s), "
            f"1 user(s), 2 message(s), {len(manifest.files)} file(s), "
            f"{human(manifest.size)}",
            "verified: SHA-256 of every file, SQLite integrity check, row counts",
        ]
        doc = json.loads((tmp_path / "bk" / bk.MANIFEST).read_text())
        assert doc["counts"]["messages"] == 2
        assert [p for p in doc["files"] if p.startswith("blobs/")]  # the big one, a file
        assert any(p.startswith("dkim/") or p.startswith("tls/") for p in doc["files"])
        # not while the server runs on that data dir
        r = postier(config, "restore", str(tmp_path / "bk"), "--yes")
        assert r.returncode == 1
        assert r.stderr.startswith(f"postier: a server is running on {tmp_path.resolve() / 'data'}")
        send(srv, b"Subject: after the backup\r\n\r\nlater\r\n")
    finally:
        srv.stop()
    assert len(messages(config)) == 3
    # destructive: refused without a terminal and without --yes
    r = postier(config, "restore", str(tmp_path / "bk"))
    assert r.returncode == 2
    assert r.stderr.endswith("not confirmed (no terminal to ask on; add --yes)\n")
    r = postier(config, "restore", str(tmp_path / "bk"), "--yes")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"restored the backup of {doc['created']} into ")
    assert lines[1].startswith(
        f"the previous data is in {tmp_path.resolve() / 'data'}.before-restore-"
    )
    got = messages(config)
    assert len(got) == 2 and got[1].endswith(BIG)


def test_a_damaged_backup_is_never_restored(tmp_path: Path) -> None:
    config = tmp_path / "postier.toml"
    srv = thread_server(tmp_path)
    try:
        srv.add_user("alice@example.test")
        send(srv, BIG)
    finally:
        srv.stop()
    assert postier(config, "backup", str(tmp_path / "bk")).returncode == 0
    doc = json.loads((tmp_path / "bk" / bk.MANIFEST).read_text())
    [blob] = [p for p in doc["files"] if p.startswith("blobs/")]
    damaged = bytearray((tmp_path / "bk" / blob).read_bytes())
    damaged[-5] ^= 1
    (tmp_path / "bk" / blob).write_bytes(bytes(damaged))
    r = postier(config, "restore", str(tmp_path / "bk"), "--yes")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f"postier: {tmp_path / 'bk'}: {blob} does not match its checksum\n"
    assert messages(config)[0].endswith(BIG)  # nothing touched
    r = postier(config, "backup", str(tmp_path / "bk"))
    assert r.stderr == f"postier: {tmp_path / 'bk'} is not an empty folder\n"


async def test_a_message_expunged_during_the_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its file vanishes after the first snapshot: a second snapshot is taken, and the
    backup is exactly that one (no orphan file, no missing one)."""
    data = tmp_path / "data"
    store = SqliteStore(data, inline_max=0)
    await store.open()
    try:
        await store.add_domain("example.test")
        user = await store.add_user("a@example.test", hash_password("password"))
        gone = await store.deliver(
            new_message(b"Subject: 1\r\n\r\ngone\r\n"), [DeliveryTarget(user.id)]
        )
        await store.deliver(new_message(b"Subject: 2\r\n\r\nkept\r\n"), [DeliveryTarget(user.id)])
        mb = await store.get_mailbox(user.id, "INBOX")
        assert mb is not None
    finally:
        await store.close()
    assert gone.blob_id is not None
    gone_path = f"blobs/{gone.blob_id[:2]}/{gone.blob_id}"
    real = bk._snapshot
    calls = []

    def snapshot_then_expunge(db: Path, target: Path) -> None:
        real(db, target)
        calls.append(target)
        if len(calls) == 1:  # what a running server does after the snapshot's commit
            conn = sqlite3.connect(db)
            with conn:
                conn.execute("DELETE FROM messages WHERE blob_id = ?", (gone.blob_id,))
                conn.execute("DELETE FROM blobs WHERE id = ?", (gone.blob_id,))
            conn.close()
            (data / gone_path).unlink()

    monkeypatch.setattr(bk, "_snapshot", snapshot_then_expunge)
    manifest = bk.backup(data, tmp_path / "bk")
    assert len(calls) == 2
    assert manifest.counts["messages"] == 1
    assert gone_path not in manifest.files
    assert not (tmp_path / "bk" / gone_path).exists()
    assert len([p for p in manifest.files if p.startswith("blobs/")]) == 1
