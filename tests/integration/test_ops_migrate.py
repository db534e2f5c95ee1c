"""`postier import` / `postier export`: crafted Maildir trees and mbox files in,
Maildir out; no duplicates on a second import; export → import is byte-identical
with flags, keywords, folders and internal dates kept."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from postier.auth.passwords import hash_password
from postier.config.load import load
from postier.store import open_store
from tests.support.server import write_config

T1, T2, T3, T4 = 1_600_000_000, 1_650_000_000, 1_700_000_000, 1_710_000_000


def msg(n: int) -> bytes:
    return f"From: a{n}@example.net\nSubject: message {n}\n\nbody {n}\n".encode()


def put(folder: Path, sub: str, name: str, data: bytes, mtime: int) -> None:
    for s in ("cur", "new", "tmp"):
        (folder / s).mkdir(parents=True, exist_ok=True)
    p = folder / sub / name
    p.write_bytes(data)
    os.utime(p, (mtime, mtime))


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    """Dovecot Maildir++: INBOX (one new, one seen+answered), Sent, Work/2024 with a
    keyword, and a message left in tmp/ (never imported)."""
    root = tmp_path / "Maildir"
    put(root, "new", "1600000000.M1P1.old", msg(1), T1)
    put(root, "cur", "1650000000.M2P1.old,S=60:2,RS", msg(2), T2)
    put(root, "tmp", "1650000001.M3P1.old", msg(99), T2)
    put(root / ".Sent", "cur", "1700000000.M4P1.old:2,S", msg(3), T3)
    put(root / ".Work.2024", "cur", "1710000000.M5P1.old:2,FSa", msg(4).replace(b"\n", b"\r\n"), T4)
    (root / ".Work.2024" / "dovecot-keywords").write_text("0 project-x\n")
    return root


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path)

    async def setup() -> None:
        store = open_store(load(path))
        await store.open()
        try:
            await store.add_domain("example.test")
            for user in ("alice", "bob"):
                await store.add_user(f"{user}@example.test", hash_password("x"))
        finally:
            await store.close()

    asyncio.run(setup())
    return path


def postier(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postier", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def contents(config: Path, address: str) -> dict[str, list[tuple[bytes, frozenset[str], datetime]]]:
    """mailbox → [(bytes, flags, internal date)] of every non-empty mailbox."""

    async def go() -> dict[str, Any]:
        store = open_store(load(config))
        await store.open()
        try:
            user = await store.get_user(address)
            out: dict[str, Any] = {}
            for mb in await store.list_mailboxes(user.id):
                msgs = await store.list_messages(mb.id)
                if msgs:
                    out[mb.name] = [
                        (await store.read_blob(m.blob_id), m.flags, m.internal_date) for m in msgs
                    ]
            return out
        finally:
            await store.close()

    return asyncio.run(go())


def subscribed(config: Path, address: str) -> set[str]:
    async def go() -> set[str]:
        store = open_store(load(config))
        await store.open()
        try:
            user = await store.get_user(address)
            return {mb.name for mb in await store.list_mailboxes(user.id) if mb.subscribed}
        finally:
            await store.close()

    return asyncio.run(go())


def crlf(n: int) -> bytes:
    return msg(n).replace(b"\n", b"\r\n")


def at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def test_import_maildir_then_again(config: Path, maildir: Path) -> None:
    r = postier(config, "import", "alice@example.test", str(maildir))
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        "imported 4 messages into 3 folders; 0 already present, 0 failed\n"
        "  INBOX: 2\n  Sent: 1\n  Work/2024: 1\n"
    )
    assert r.stderr == ""  # not a terminal: no progress bar
    assert contents(config, "alice@example.test") == {
        "INBOX": [
            (crlf(1), frozenset(), at(T1)),
            (crlf(2), frozenset({"\\Seen", "\\Answered"}), at(T2)),
        ],
        "Sent": [(crlf(3), frozenset({"\\Seen"}), at(T3))],
        "Work/2024": [(crlf(4), frozenset({"\\Flagged", "\\Seen", "project-x"}), at(T4))],
    }
    # the new folder is subscribed, so clients showing subscribed folders show it
    assert "Work/2024" in subscribed(config, "alice@example.test")
    again = postier(config, "import", "alice@example.test", str(maildir), "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout) == {
        "imported": 0,
        "duplicates": 4,
        "failed": 0,
        "exported": 0,
        "folders": {"INBOX": 0, "Sent": 0, "Work/2024": 0},
        "errors": [],
        "warnings": [],
    }
    assert sum(len(v) for v in contents(config, "alice@example.test").values()) == 4


def test_import_under_folder(config: Path, maildir: Path) -> None:
    r = postier(config, "import", "bob@example.test", str(maildir), "--folder", "Old/mail")
    assert r.returncode == 0, r.stderr
    assert sorted(contents(config, "bob@example.test")) == [
        "Old/mail",
        "Old/mail/Sent",
        "Old/mail/Work/2024",
    ]
    assert {"Old/mail", "Old/mail/Sent", "Old/mail/Work/2024"} <= subscribed(
        config, "bob@example.test"
    )


def test_export_then_import_is_identical(config: Path, maildir: Path, tmp_path: Path) -> None:
    assert postier(config, "import", "alice@example.test", str(maildir)).returncode == 0
    out = tmp_path / "export"
    r = postier(config, "export", "alice@example.test", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "exported 4 messages in 8 folders"  # + parent Work
    assert sorted(p.name for p in out.iterdir()) == [
        ".Archive",
        ".Drafts",
        ".Junk",
        ".Sent",
        ".Trash",
        ".Work",
        ".Work.2024",
        "cur",
        "new",
        "subscriptions",
        "tmp",
    ]
    (work,) = (out / ".Work.2024" / "cur").iterdir()
    assert work.name.endswith(":2,FSa")
    assert (out / ".Work.2024" / "dovecot-keywords").read_text() == "0 project-x\n"
    assert work.stat().st_mtime == T4
    r = postier(config, "import", "bob@example.test", str(out))
    assert r.returncode == 0, r.stderr
    assert contents(config, "bob@example.test") == contents(config, "alice@example.test")
    # an export never writes into a directory that holds something
    again = postier(config, "export", "alice@example.test", str(out))
    assert (again.returncode, again.stderr) == (
        2,
        f"postier: {out}: exists and is not an empty directory\n",
    )


def test_import_mbox_file_and_directory(config: Path, tmp_path: Path) -> None:
    box = tmp_path / "mail.mbox"
    box.write_bytes(
        b"From x@example.net Wed Jan  3 10:20:30 2024\nSubject: a\nStatus: RO\n\n"
        b">From quoted\n\nFrom y@example.net Thu Jan  4 10:20:30 2024\n"
        b"Subject: b\n\nb\n"
    )
    r = postier(config, "import", "alice@example.test", str(box))
    assert r.returncode == 0, r.stderr
    assert contents(config, "alice@example.test") == {
        "INBOX": [
            (
                b"Subject: a\r\n\r\nFrom quoted\r\n",
                frozenset({"\\Seen"}),
                datetime(2024, 1, 3, 10, 20, 30, tzinfo=UTC),
            ),
            (b"Subject: b\r\n\r\nb\r\n", frozenset(), datetime(2024, 1, 4, 10, 20, 30, tzinfo=UTC)),
        ]
    }
    mutt = tmp_path / "Mail"
    (mutt / "lists.sbd").mkdir(parents=True)
    (mutt / "inbox").write_bytes(b"From z Thu Jan  4 10:20:30 2024\nSubject: c\n\nc\n")
    (mutt / "lists.sbd" / "python").write_bytes(
        b"From z Thu Jan  4 10:20:30 2024\nSubject: d\n\nd\n"
    )
    (mutt / "notes.txt").write_text("not mail\n")
    r = postier(config, "import", "bob@example.test", str(mutt))
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        "imported 2 messages into 2 folders; 0 already present, 0 failed\n"
        "  INBOX: 1\n  lists/python: 1\n"
    )


def test_import_failures(config: Path, maildir: Path, tmp_path: Path) -> None:
    unknown = postier(config, "import", "nobody@example.test", str(maildir))
    assert (unknown.returncode, unknown.stderr) == (
        2,
        "postier: unknown user nobody@example.test\n",
    )
    missing = postier(config, "import", "alice@example.test", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr == f"postier: {tmp_path / 'nope'}: no such file or directory\n"
    (tmp_path / "empty").mkdir()
    empty = postier(config, "import", "alice@example.test", str(tmp_path / "empty"))
    assert empty.stderr == (
        f"postier: {tmp_path / 'empty'}: neither a Maildir tree nor mbox files\n"
    )
    put(maildir, "cur", "1700000009.M9P1.old:2,S", b"Subject: big\n\n" + b"x" * 100 + b"\n", T1)
    small = write_config(config.parent, "[smtp.limits]\nmax_message_size = 60\n")
    r = postier(small, "import", "alice@example.test", str(maildir))
    assert r.returncode == 1
    assert r.stdout.startswith("imported 4 messages into 3 folders; 0 already present, 1 failed")
    big = maildir / "cur" / "1700000009.M9P1.old:2,S"
    assert r.stderr == f"postier: {big}: 115 bytes, over the limit of 60\n"
