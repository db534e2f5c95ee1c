"""SqliteStore specifics: configurable limits, the startup sweep, schema versioning,
lifecycle errors, `open_store`, queue ids."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from postier.config.schema import Settings, StoreSettings
from postier.mail.queueid import new_queue_id
from postier.store import open_store
from postier.store.errors import Invalid, NotFound, StoreError
from postier.store.feed import FeedOverflow
from postier.store.models import DeliveryTarget, ModSeq, NewQueueEntry, QueueRecipient
from postier.store.sqlite import SqliteStore
from postier.store.sqlite.schema import VERSION
from tests.support.downgrade import SQLITE_12, SQLITE_13, SQLITE_14, sqlite_drop
from tests.support.messages import new_message


@pytest.fixture
async def make(tmp_path):
    opened = []

    async def factory(**kw):
        s = SqliteStore(tmp_path / "data", **kw)
        await s.open()
        opened.append(s)
        return s

    yield factory
    for s in opened:
        await s.close()


async def user_of(store):
    await store.add_domain("example.test")
    return await store.add_user("a@example.test", "h")


async def test_max_mailbox_name(make):
    store = await make(max_mailbox_name=10)
    u = await user_of(store)
    await store.create_mailbox(u.id, "a" * 10)
    with pytest.raises(Invalid, match="longer than 10 octets"):
        await store.create_mailbox(u.id, "b" * 11)
    with pytest.raises(Invalid, match="longer than 10 octets"):
        await store.create_mailbox(u.id, "é" * 6)  # 12 octets in UTF-8


async def test_max_alias_depth(make):
    store = await make(max_alias_depth=2)
    u = await user_of(store)
    await store.add_alias("x1@example.test", ["a@example.test"])
    await store.add_alias("x2@example.test", ["x1@example.test"])
    await store.add_alias("x3@example.test", ["x2@example.test"])
    assert (await store.resolve("x2@example.test")).users == (u,)
    assert not (await store.resolve("x3@example.test")).found


async def test_claim_timeout(make):
    store = await make(claim_timeout=60)
    await store.deliver(
        new_message(b"m"), [], queue=NewQueueEntry("", (QueueRecipient("x@r.test"),))
    )
    now = datetime.now(UTC) + timedelta(seconds=1)
    assert len(await store.queue_due(now, 5)) == 1
    assert await store.queue_due(now + timedelta(seconds=59), 5) == []
    assert len(await store.queue_due(now + timedelta(seconds=60), 5)) == 1
    assert await store.queue_next_due() == now + timedelta(seconds=120)


async def test_queue_due_limit(make):
    store = await make()
    for _ in range(3):
        await store.deliver(
            new_message(b"m"), [], queue=NewQueueEntry("", (QueueRecipient("x@r.test"),))
        )
    now = datetime.now(UTC) + timedelta(seconds=1)
    assert len(await store.queue_due(now, 2)) == 2
    assert len(await store.queue_due(now, 2)) == 1
    assert await store.queue_due(now, 0) == []


async def test_max_pending_changes(make):
    store = await make(max_pending_changes=3)
    u = await user_of(store)
    sub = store.subscribe(u.id)
    for _ in range(4):
        await store.deliver(new_message(b"m"), [DeliveryTarget(u.id)])
    with pytest.raises(FeedOverflow):
        await sub.get()


async def test_poll_interval_and_change_retention(make):
    a = await make(poll_interval=0.05)
    b = await make()
    u = await user_of(a)
    sub = a.subscribe(u.id)
    start = time.monotonic()
    await b.deliver(new_message(b"m"), [DeliveryTarget(u.id)])
    await asyncio.wait_for(sub.get(), 1)
    assert time.monotonic() - start < 0.5
    sub.close()
    c = await make(change_retention=0)  # opening trims the log
    await c.close()
    conn = sqlite3.connect(a.data_dir / "postier.db")
    assert conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0] == 0
    conn.close()


async def test_two_processes_writing_one_mailbox_never_share_a_uid_or_modseq(make):
    """The workers of one server: two stores (two writer threads, as two processes
    have) deliver into one mailbox at once; every counter is taken inside the
    write transaction, so nothing collides."""
    a = await make()
    b = await make()
    u = await user_of(a)
    await asyncio.gather(
        *(
            s.deliver(new_message(f"m{i}".encode()), [DeliveryTarget(u.id)])
            for i in range(60)
            for s in (a, b)
        )
    )
    inbox = await b.get_mailbox(u.id, "INBOX")
    messages = await a.list_messages(inbox.id)
    assert [m.uid for m in messages] == list(range(1, 121))
    assert len({m.modseq for m in messages}) == 120
    assert inbox.uidnext == 121


async def test_idle_poller_reads_the_change_log_only_after_a_commit(make, monkeypatch):
    import postier.store.sqlite.store as module

    reads = []
    real = module._changes_after

    def counting(conn, seq):
        reads.append(seq)
        return real(conn, seq)

    monkeypatch.setattr(module, "_changes_after", counting)
    a = await make(poll_interval=0.02)
    b = await make()  # another process
    u = await user_of(a)
    sub = a.subscribe(u.id)
    await asyncio.sleep(0.3)  # some 15 ticks, nothing committed
    assert len(reads) <= 1  # the first tick reads once to learn the version
    await b.deliver(new_message(b"m"), [DeliveryTarget(u.id)])
    await asyncio.wait_for(sub.get(), 1)
    assert len(reads) >= 2
    sub.close()


async def test_open_sweeps_orphans_but_never_named_blobs(make, tmp_path):
    store = await make()
    u = await user_of(store)
    big = b"kept\r\n" * 20_000  # over inline_max: a file blob
    kept = await store.deliver(new_message(big), [DeliveryTarget(u.id)])
    await store.close()
    orphan_id, _ = store.blobs.put(b"crashed before commit")
    young_id, _ = store.blobs.put(b"another process, committing now")
    temp = store.blobs.root / "tmp" / "x.tmp"
    temp.write_bytes(b"half")
    old = time.time() - 3600
    for p in (store.blobs.path(kept.blob_id), store.blobs.path(orphan_id), temp):
        os.utime(p, (old, old))
    again = await make()
    assert again.last_sweep == (1, 1)
    assert await again.read_blob(kept.blob_id) == big
    assert not store.blobs.exists(orphan_id)
    assert store.blobs.exists(young_id)
    assert not temp.exists()


async def test_lifecycle_errors(tmp_path, make):
    s = SqliteStore(tmp_path / "data")
    with pytest.raises(StoreError, match="not open"):
        await s.add_domain("example.test")
    with pytest.raises(StoreError, match="not open"):
        s.subscribe(1)
    opened = await make()
    with pytest.raises(StoreError, match="already open"):
        await opened.open()
    await opened.close()
    await opened.close()  # idempotent
    with pytest.raises(StoreError, match="not open"):
        await opened.list_domains()


async def test_schema_version_recorded_and_newer_refused(make, tmp_path):
    s = await make()
    await s.close()
    conn = sqlite3.connect(tmp_path / "data" / "postier.db")
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(VERSION,)]
    conn.execute("UPDATE schema_version SET version = ?", (VERSION + 1,))
    conn.commit()
    conn.close()
    newer = SqliteStore(tmp_path / "data")
    with pytest.raises(RuntimeError, match="newer than this postier"):
        await newer.open()
    with pytest.raises(StoreError, match="not open"):
        await newer.list_domains()


async def test_migration_fills_the_date_zone_of_older_rows(make, tmp_path):
    """Schema 5 adds blobs.date_zone; rows stored before it get the zone of the Date:
    header in their stored ENVELOPE."""
    s = await make()
    await s.add_domain("example.test")
    u = await s.add_user("a@example.test", "h")
    r = await s.deliver(
        new_message(b"Date: Mon, 2 Mar 2026 23:30:00 +0930\r\n\r\nx\r\n"), [DeliveryTarget(u.id)]
    )
    await s.close()
    conn = sqlite3.connect(tmp_path / "data" / "postier.db")
    conn.execute("UPDATE blobs SET date_zone = NULL")
    conn.execute("UPDATE schema_version SET version = 4")
    conn.execute("ALTER TABLE blobs DROP COLUMN date_zone")
    conn.execute("DROP TABLE access_keys")  # schema 6, also gone from a schema 4 database
    conn.execute("ALTER TABLE queue DROP COLUMN return_path_size")  # schema 9, as well
    conn.execute("ALTER TABLE queue DROP COLUMN dkim_signature")
    conn.execute("ALTER TABLE users DROP COLUMN admin")  # schema 10, as well
    sqlite_drop(conn, SQLITE_14)  # schema 14, as well
    conn.execute("DROP TRIGGER header_index_add")  # schema 11, as well
    conn.execute("DROP TRIGGER header_index_remove")
    conn.execute("DROP TABLE header_index")
    conn.execute("ALTER TABLE blobs DROP COLUMN bcc")
    sqlite_drop(conn, SQLITE_13, SQLITE_12)  # schema 12, as well
    conn.commit()
    conn.close()
    s = await make()
    m = await s.get_message(r.delivered[0].mailbox_id, r.delivered[0].uid)
    assert m.summary.date is not None
    assert m.summary.date.utcoffset() == timedelta(hours=9, minutes=30)
    assert m.summary.date.isoformat() == "2026-03-02T23:30:00+09:30"


async def test_open_store(tmp_path):
    settings = Settings()
    settings = replace(
        settings,
        server=replace(settings.server, data_dir=tmp_path / "d"),
        store=StoreSettings(default_quota=123),
    )
    store = open_store(settings)
    assert isinstance(store, SqliteStore)
    await store.open()
    try:
        await store.add_domain("example.test")
        u = await store.add_user("a@example.test", "h")
        assert u.quota_bytes == 123
        assert (tmp_path / "d" / "postier.db").is_file()
    finally:
        await store.close()
    with pytest.raises(ValueError, match="postgres_dsn"):
        open_store(replace(settings, store=StoreSettings(backend="postgres")))
    with pytest.raises(ValueError, match="unknown backend"):
        open_store(replace(settings, store=StoreSettings(backend="mysql")))


def test_queue_ids_sort_and_are_unique():
    ids = [new_queue_id() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 2000
    assert all(re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{16}", q) for q in ids)  # Crockford base32


async def test_small_messages_live_in_the_database(make):
    store = await make()
    u = await user_of(store)
    small = await store.deliver(new_message(b"Subject: s\r\n\r\nsmall\r\n"), [DeliveryTarget(u.id)])
    large = await store.deliver(new_message(b"x" * (store.inline_max + 1)), [DeliveryTarget(u.id)])
    assert small.blob_id.startswith("i")
    assert await store.blob_path(small.blob_id) is None
    assert await store.read_blob(small.blob_id) == b"Subject: s\r\n\r\nsmall\r\n"
    assert not large.blob_id.startswith("i")
    assert await store.blob_path(large.blob_id) is not None
    # freeing the last reference removes the inline bytes with the row
    mb = await store.get_mailbox(u.id, "INBOX")
    await store.store_flags(mb.id, [small.delivered[0].uid], frozenset({"\\Deleted"}), "add")
    await store.expunge(mb.id)
    with pytest.raises(NotFound):
        await store.read_blob(small.blob_id)


async def test_migration_10_adds_the_admin_flag_off(make, tmp_path):
    """Accounts made before schema 10 are not admins after it."""
    s = await make()
    await s.add_domain("example.test")
    await s.add_user("a@example.test", "h")
    await s.close()
    conn = sqlite3.connect(tmp_path / "data" / "postier.db")
    conn.execute("ALTER TABLE users DROP COLUMN admin")
    sqlite_drop(conn, SQLITE_14)  # schema 14, as well
    conn.execute("DROP TRIGGER header_index_add")  # schema 11, as well
    conn.execute("DROP TRIGGER header_index_remove")
    conn.execute("DROP TABLE header_index")
    conn.execute("ALTER TABLE blobs DROP COLUMN bcc")
    sqlite_drop(conn, SQLITE_13, SQLITE_12)  # schema 12, as well
    conn.execute("UPDATE schema_version SET version = 9")
    conn.commit()
    conn.close()
    s = await make()
    u = await s.get_user("a@example.test")
    assert u is not None
    assert not u.admin
    await s.set_admin("a@example.test", True)
    u = await s.get_user("a@example.test")
    assert u is not None
    assert u.admin


async def test_message_lists_are_made_in_the_reader_thread(make, monkeypatch):
    """changed_since, list_messages and get_messages may answer for a whole
    mailbox (IMAP's sync after STORE 1:* on 8,000 messages held the loop
    30-50 ms making them): each Message is made in the reader thread, as its
    row is read."""

    from postier.store.sqlite import store as sqlite_store

    store = await make()
    u = await user_of(store)
    await store.deliver(
        new_message(b"Subject: hi\r\n\r\nhello\r\n"), [DeliveryTarget(u.id, "INBOX")]
    )
    inbox = await store.get_mailbox(u.id, "INBOX")
    loop_thread = threading.get_ident()
    threads: set[int] = set()
    for name in ("_light_message_of", "_text_message_of", "_message_of"):
        real = getattr(sqlite_store, name)

        def spy(row, real=real):
            threads.add(threading.get_ident())
            return real(row)

        monkeypatch.setattr(sqlite_store, name, spy)
    for summaries, structures in ((False, False), (True, False), (True, True)):
        got = await store.list_messages(inbox.id, summaries=summaries, structures=structures)
        assert len(got) == 1
    for structures in (False, True):
        assert len(await store.get_messages(inbox.id, [got[0].uid], structures=structures)) == 1
    assert len(await store.changed_since(inbox.id, ModSeq(0))) == 1
    assert threads
    assert loop_thread not in threads


async def test_flag_changes_are_made_in_the_writer_thread(make, monkeypatch):
    """A STORE's FLAGS changes for a subscribed user are made in the writer
    thread and handed to each subscription at once (20,000 of them took the
    loop 45 ms); nobody subscribed, none are made."""

    from postier.store.sqlite import store as sqlite_store

    store = await make()
    u = await user_of(store)
    inbox = await store.get_mailbox(u.id, "INBOX")
    for i in range(3):
        await store.append(inbox.id, new_message(b"Subject: %d\r\n\r\nbody\r\n" % i))
    made_on_loop: list[bool] = []
    real = sqlite_store._flag_changes

    def spy(*args):
        made_on_loop.append(threading.current_thread() is threading.main_thread())
        return real(*args)

    monkeypatch.setattr(sqlite_store, "_flag_changes", spy)
    await store.store_flags(inbox.id, [1, 2], frozenset({"\\Seen"}), "add")
    await asyncio.sleep(0.05)
    assert made_on_loop == []  # nobody subscribed
    sub = store.subscribe(u.id)
    await store.store_flags(inbox.id, [1, 2, 3], frozenset({"\\Flagged"}), "add")
    got = [await asyncio.wait_for(sub.get(), 5) for _ in range(3)]
    assert [c.uid for c in got] == [1, 2, 3]
    assert made_on_loop == [False]
    sub.close()


async def test_an_expunge_of_many_messages_is_a_few_statements(make, monkeypatch):
    """Inside a job's SAVEPOINT, with the sub-journal in memory, each statement
    cost more than the one before: an EXPUNGE of 10,001 messages, a statement
    per row and per blob, held the writer 16 s (and every delivery's 250 behind
    it). The rows, their `expunged` entries and their blobs go in a few
    statements whatever their number."""
    from postier.store.sqlite import db

    store = await make()
    u = await user_of(store)
    inbox = await store.get_mailbox(u.id, "INBOX")
    for i in range(60):
        await store.append(
            inbox.id,
            new_message(b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i)),
            frozenset({"\\Deleted"}),
        )
    statements: list[str] = []
    real = db.Tx.execute

    def execute(self, sql, params=()):
        statements.append(sql)
        return real(self, sql, params)

    monkeypatch.setattr(db.Tx, "execute", execute)
    gone = await store.expunge(inbox.id)
    assert gone == list(range(1, 61))
    assert len(statements) < 10, statements
    assert await store.list_messages(inbox.id) == []
    assert await store.vanished_since(inbox.id, 0) == list(range(1, 61))
    assert (await store.get_mailbox(u.id, "INBOX")).uidnext == 61
