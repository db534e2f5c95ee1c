"""`postier store copy` (issue 16): a single-node SQLite install moved to PostgreSQL
and back, byte for byte, verified, resumable after a kill -9.

The source is built through the store's own interface (several users and
domains, folders, flags and keywords, UIDs with expunged gaps, a message whose
bytes are a file with a head, a queued message, an alias, greylisting and Bayes
state, a mailbox access key); the copies are made by the command line in a
process of its own and compared through the store interface again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from postier.mailauth import dkim
from postier.store.api import Store
from postier.store.copy import copy, open_rows, verify
from postier.store.models import DeliveryTarget, NewQueueEntry, QueueRecipient, UserId
from postier.store.postgres import PostgresStore
from postier.store.postgres.rows import NOT_COPIED as PG_NOT_COPIED
from postier.store.sqlite import SqliteStore
from postier.store.sqlite.rows import NOT_COPIED as SQLITE_NOT_COPIED
from postier.store.tables import TABLES
from tests.support.messages import new_message
from tests.support.postgres import pg_dsn  # noqa: F401  (a fixture)
from tests.support.server import write_config

pytestmark = pytest.mark.postgres


def message(n: int, size: int = 0) -> bytes:
    body = (f"line {n} of the body, ünïcödé\r\n" * max(1, size // 30)).encode()
    return (
        f"From: Sender {n} <s{n}@remote.test>\r\nTo: alice@example.test\r\n"
        f"Subject: message {n} — Grüße\r\nMessage-ID: <m{n}@remote.test>\r\n"
        f"Date: Mon, 6 Jul 2026 10:{n % 60:02d}:00 +0200\r\n\r\n"
    ).encode() + body


async def build_source(data_dir: Path) -> None:
    """A small but complete install: every kind of row the store holds."""
    s = SqliteStore(data_dir, inline_max=2048)  # larger messages become files
    await s.open()
    try:
        await s.add_domain("example.test")
        await s.add_domain("other.test")
        rsa_key, _ = await dkim.make_keys(s, "example.test", year=2026, rsa_bits=1024)
        await s.set_dkim_selector("example.test", rsa_key.selector)
        await dkim.make_keys(s, "other.test", year=2025, rsa_bits=1024)
        alice = await s.add_user("alice@example.test", "$argon2id$v=19$m=65536,t=3,p=4$alice")
        bob = await s.add_user("bob@other.test", "$argon2id$v=19$m=65536,t=3,p=4$bob", 10**7)
        carol = await s.add_user("carol@example.test", "$argon2id$v=19$carol")
        await s.set_admin("alice@example.test", True)
        await s.set_disabled("carol@example.test", True)
        await s.delete_user("carol@example.test")  # ids are not reused after the move
        await s.add_alias("postmaster@example.test", ["alice@example.test"])
        await s.add_alias("team@example.test", ["alice@example.test", "bob@other.test"])
        work = await s.create_mailbox(alice.id, "Work/Projects")
        await s.set_subscribed(alice.id, "Work/Projects", True)
        await s.set_subscribed(alice.id, "Work", True)
        gone = await s.create_mailbox(alice.id, "Old")
        await s.set_subscribed(alice.id, "Old", True)
        await s.delete_mailbox(alice.id, "Old")  # a subscription outlives its mailbox
        assert gone.id
        inbox = await s.get_mailbox(alice.id, "INBOX")
        assert inbox is not None
        for n in range(12):
            flags = {"\\Seen"} if n % 2 else set()
            if n % 3 == 0:
                flags |= {"$Important", "project-x"}
            when = datetime(2026, 7, 1, 12, n, 30, 123456, tzinfo=UTC)
            await s.append(
                inbox.id,
                new_message(message(n, 5000 if n % 4 == 0 else 100)),
                frozenset(flags),
                when,
            )
        uids = [m.uid for m in await s.list_messages(inbox.id)]
        await s.store_flags(inbox.id, [uids[2], uids[3], uids[7]], frozenset({"\\Deleted"}), "add")
        await s.expunge(inbox.id)  # gaps in the UIDs, and `expunged` rows
        await s.copy(inbox.id, [uids[0], uids[5]], work.id)  # one blob, two mailboxes
        # a spool file with a head kept in the index (blob_heads)
        spool = data_dir / "spool-1"
        spool.write_bytes(b"X-Dropped: 1\r\n" + message(99, 4000))
        spooled = new_message(b"Received: by example.test; Mon, 6 Jul 2026\r\n" + message(99, 4000))
        await s.deliver(
            type(spooled)(
                spool,
                spooled.summary,
                head=b"Received: by example.test; Mon, 6 Jul 2026\r\n",
                skip=len(b"X-Dropped: 1\r\n"),
            ),
            [DeliveryTarget(bob.id, "INBOX", frozenset({"\\Flagged"}))],
        )
        # a queued message (and a local copy of it)
        await s.deliver(
            new_message(message(50)),
            [DeliveryTarget(bob.id)],
            queue=NewQueueEntry(
                "alice@example.test",
                (QueueRecipient("friend@remote.test"), QueueRecipient("x@far.test")),
                envid="env-1",
                ret="HDRS",
                auth_user="alice@example.test",
                return_path_size=31,
                dkim_signature=b"DKIM-Signature: v=1; a=rsa-sha256; d=example.test\r\n",
            ),
            trace=[("received", "from client.test"), ("queued", "2 recipients")],
        )
        now = datetime.now(UTC)
        await s.greylist_check(
            "192.0.2.0/24", "a@remote.test", "alice@example.test",
            now=now, delay=300, window=86400, whitelist_period=86400 * 36,
        )  # fmt: skip
        await s.bayes_learn(alice.id, "digest-1", ["cheap", "pills", "now"], True)
        await s.bayes_learn(UserId(0), "digest-2", ["meeting", "agenda"], False)
        await s.access_key(inbox.id, new=b"k" * 32)
        assert carol.id
    finally:
        await s.close()


async def snapshot(s: Store) -> dict[str, Any]:
    """Everything a client can see, through the store interface."""
    out: dict[str, Any] = {
        "domains": await s.list_domains(),
        "users": await s.list_users(),
        "aliases": await s.list_aliases(),
        "queue": await s.queue_list(),
        "dkim": {d: await s.dkim_keys(d) for d in ("example.test", "other.test")},
    }
    for user in out["users"]:
        boxes = await s.list_mailboxes(user.id)
        out[f"{user.address} mailboxes"] = boxes
        out[f"{user.address} subscriptions"] = await s.list_subscriptions(user.id)
        for box in boxes:
            msgs = await s.list_messages(box.id)
            out[f"{user.address} {box.name}"] = msgs
            out[f"{user.address} {box.name} bytes"] = [await s.read_blob(m.blob_id) for m in msgs]
            out[f"{user.address} {box.name} vanished"] = await s.vanished_since(box.id, 0)
            out[f"{user.address} {box.name} key"] = await s.access_key(box.id)
    for entry in out["queue"]:
        out[f"queue {entry.id} bytes"] = await s.read_blob(entry.blob_id)
        out[f"queue {entry.id} trace"] = [(e.event, e.detail) for e in await s.trace_get(entry.id)]
    out["bayes"] = await s.bayes_counts(UserId(1), ["cheap", "pills", "agenda"])
    out["bayes global"] = await s.bayes_counts(UserId(0), ["meeting"])
    return out


async def sqlite_snapshot(data_dir: Path) -> dict[str, Any]:
    s = SqliteStore(data_dir)
    await s.open()
    try:
        return await snapshot(s)
    finally:
        await s.close()


async def pg_snapshot(dsn: str) -> dict[str, Any]:
    s = PostgresStore(dsn)
    await s.open()
    try:
        return await snapshot(s)
    finally:
        await s.close()


def postier(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "postier", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=config.parent,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def pg_config(directory: Path, dsn: str) -> Path:
    directory.mkdir()
    return write_config(directory, f'[store]\nbackend = "postgres"\npostgres_dsn = "{dsn}"\n')


def test_round_trip_sqlite_postgres_sqlite_keeps_everything(tmp_path: Path, pg_dsn: str) -> None:  # noqa: F811
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    config = write_config(src_dir)
    asyncio.run(build_source(src_dir / "data"))
    before = asyncio.run(sqlite_snapshot(src_dir / "data"))

    there = postier(config, "store", "copy", "--to", pg_dsn)
    assert "verified" in there.stdout
    assert "4 message bod" not in there.stdout
    assert "copy" in there.stderr  # progress, plain lines (no terminal)
    assert asyncio.run(pg_snapshot(pg_dsn)) == before

    back_dir = tmp_path / "back"
    pg = pg_config(tmp_path / "node", pg_dsn)
    postier(pg, "store", "copy", "--to", f"sqlite:{back_dir}")
    after = asyncio.run(sqlite_snapshot(back_dir))
    assert after == before
    # UIDs with their gaps, keywords and UIDVALIDITY, spelled out
    inbox = next(b for b in after["alice@example.test mailboxes"] if b.name == "INBOX")
    assert [m.uid for m in after["alice@example.test INBOX"]] == [1, 2, 5, 6, 7, 9, 10, 11, 12]
    assert {"$Important", "project-x"} <= after["alice@example.test INBOX"][0].flags
    inbox_before = next(b for b in before["alice@example.test mailboxes"] if b.name == "INBOX")
    assert inbox.uidvalidity == inbox_before.uidvalidity and inbox.uidnext == 13
    assert {"Old", "Work", "Work/Projects"} <= set(after["alice@example.test subscriptions"])
    assert after["alice@example.test INBOX vanished"] == [3, 4, 8]
    assert len(after["queue"]) == 1
    assert sorted(after["dkim"]["example.test"]) == ["postier2026e", "postier2026r"]
    assert (back_dir / "dkim" / "example.test" / "postier2026r.key").exists()

    # new ids continue above the source's (carol's id 3 is not handed out again)
    async def add_dave() -> int:
        s = SqliteStore(back_dir)
        await s.open()
        try:
            return int((await s.add_user("dave@example.test", "h")).id)
        finally:
            await s.close()

    assert asyncio.run(add_dave()) == 4

    # a second run into a finished copy changes nothing and verifies again
    again = postier(config, "store", "copy", "--to", pg_dsn)
    assert "already holds a finished copy" in again.stdout


def test_verify_catches_one_altered_byte(tmp_path: Path, pg_dsn: str) -> None:  # noqa: F811
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    config = write_config(src_dir)
    asyncio.run(build_source(src_dir / "data"))
    postier(config, "store", "copy", "--to", pg_dsn)
    assert postier(config, "store", "copy", "--to", pg_dsn, "--verify-only").returncode == 0

    async def alter() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(
                "UPDATE blob_chunks SET data = overlay(data placing '\\x21'::bytea from 40 for 1) "
                "WHERE blob_id = (SELECT min(blob_id) FROM blob_chunks)"
            )
        finally:
            await conn.close()

    asyncio.run(alter())
    bad = postier(config, "store", "copy", "--to", pg_dsn, "--verify-only", check=False)
    assert bad.returncode == 1
    assert "SHA-256 differs" in bad.stderr
    assert "does not match the source" in bad.stderr


def test_destination_must_be_empty_or_a_copy_of_this_source(tmp_path: Path, pg_dsn: str) -> None:  # noqa: F811
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    config = write_config(src_dir)
    asyncio.run(build_source(src_dir / "data"))

    async def fill() -> None:
        s = PostgresStore(pg_dsn)
        await s.open()
        try:
            await s.add_domain("elsewhere.test")
        finally:
            await s.close()

    asyncio.run(fill())
    refused = postier(config, "store", "copy", "--to", pg_dsn, check=False)
    assert refused.returncode == 1
    assert "is not empty" in refused.stderr

    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = write_config(other_dir)
    asyncio.run(build_source(other_dir / "data"))
    target = tmp_path / "copy"
    postier(config, "store", "copy", "--to", f"sqlite:{target}")
    mixed = postier(other, "store", "copy", "--to", f"sqlite:{target}", check=False)
    assert mixed.returncode == 1
    assert "holds a copy of sqlite:" in mixed.stderr


def test_kill_9_mid_copy_then_rerun_completes_without_duplicates(
    tmp_path: Path,
    pg_dsn: str,  # noqa: F811
) -> None:
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    config = write_config(src_dir)

    async def many() -> None:
        s = SqliteStore(src_dir / "data")
        await s.open()
        try:
            await s.add_domain("example.test")
            user = await s.add_user("alice@example.test", "h")
            box = await s.get_mailbox(user.id, "INBOX")
            assert box is not None
            await asyncio.gather(
                *(s.append(box.id, new_message(message(n, 200))) for n in range(600))
            )
        finally:
            await s.close()

    asyncio.run(many())
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "postier",
            "-c",
            str(config),
            "store",
            "copy",
            "--to",
            pg_dsn,
            "--batch",
            "1",
        ],
        cwd=src_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def progress() -> dict[str, str]:
        conn = await asyncpg.connect(pg_dsn)
        try:
            if not await conn.fetchval("SELECT to_regclass('postier_copy') IS NOT NULL"):
                return {}
            return {r[0]: r[1] for r in await conn.fetch("SELECT key, value FROM postier_copy")}
        finally:
            await conn.close()

    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = asyncio.run(progress())
            blobs = json.loads(state.get("table:blobs", "{}"))
            if blobs.get("rows", 0) >= 100:
                break
            assert proc.poll() is None, "the copy ended before it could be killed"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    state = asyncio.run(progress())
    assert "done" not in state
    assert json.loads(state["table:blobs"]).get("rows", 0) < 600  # really mid-way

    again = postier(config, "store", "copy", "--to", pg_dsn)
    assert "went on with an interrupted copy" in again.stdout
    assert "verified" in again.stdout

    async def counts() -> tuple[int, int, int, int]:
        conn = await asyncpg.connect(pg_dsn)
        try:
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM blobs), (SELECT count(DISTINCT blob_id) FROM "
                "blob_chunks), (SELECT count(*) FROM blob_chunks), (SELECT count(*) FROM messages)"
            )
            assert row is not None
            return (int(row[0]), int(row[1]), int(row[2]), int(row[3]))
        finally:
            await conn.close()

    assert asyncio.run(counts()) == (600, 600, 600, 600)
    assert asyncio.run(pg_snapshot(pg_dsn)) == asyncio.run(sqlite_snapshot(src_dir / "data"))


def test_every_column_is_copied_or_named_as_not_copied(tmp_path: Path, pg_dsn: str) -> None:  # noqa: F811
    """A column added to either schema must be added to `store.tables` (or said not
    to be copied): otherwise a move would drop it without a word."""

    async def columns() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        sq = await open_rows("sqlite", tmp_path / "data")
        pg = await open_rows("postgres", pg_dsn)
        try:
            return await sq.columns(), await pg.columns()  # type: ignore[attr-defined]
        finally:
            await sq.close()
            await pg.close()

    sqlite_columns, pg_columns = asyncio.run(columns())
    for schema_columns, not_copied in (
        (sqlite_columns, SQLITE_NOT_COPIED),
        (pg_columns, PG_NOT_COPIED),
    ):
        spec = {t.name: set(t.names) for t in TABLES}
        for table, cols in schema_columns.items():
            if table in not_copied and not_copied[table] is None:
                continue
            left_out = not_copied.get(table) or frozenset()
            assert cols - left_out == spec.get(table), table


def test_copy_api_reverse_direction_and_verify(tmp_path: Path, pg_dsn: str) -> None:  # noqa: F811
    """PostgreSQL → SQLite through the module: what the command does, without a process."""

    async def go() -> None:
        await build_source(tmp_path / "src")
        src = await open_rows("sqlite", tmp_path / "src")
        pg = await open_rows("postgres", pg_dsn)
        back = await open_rows("sqlite", tmp_path / "back")
        try:
            first = await copy(src, pg, batch=3)
            assert first.ok, first.problems
            second = await copy(pg, back, batch=2, max_batch_bytes=1)
            assert second.ok, second.problems
            assert second.counts["messages"] == first.counts["messages"] == 13
            assert (await verify(src, back)).ok
        finally:
            for r in (src, pg, back):
                await r.close()

    asyncio.run(go())
    assert asyncio.run(sqlite_snapshot(tmp_path / "back")) == asyncio.run(
        sqlite_snapshot(tmp_path / "src")
    )
