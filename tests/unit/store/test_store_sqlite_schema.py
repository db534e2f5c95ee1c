"""`postier.store.sqlite.schema`: migrations keep what older databases hold."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from postier.mime import summarize
from postier.store.sqlite import SqliteStore
from postier.store.sqlite.schema import MIGRATIONS, migrate
from tests.support.downgrade import SQLITE_12, SQLITE_13, SQLITE_14, sqlite_drop
from tests.support.messages import inbox_and_sent, new_message


def test_v7_turns_subscribed_mailboxes_into_subscriptions() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version (version) VALUES (4)")
    for statements in MIGRATIONS[:4]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("INSERT INTO domains (name, created) VALUES ('example.test', 0)")
    conn.execute(
        "INSERT INTO users (id, address, domain, password_hash, quota_bytes, created) "
        "VALUES (1, 'a@example.test', 'example.test', 'h', 0, 0)"
    )
    for name, subscribed in (("INBOX", 1), ("Sent", 1), ("Work", 0)):
        conn.execute(
            "INSERT INTO mailboxes (user_id, name, subscribed, uidvalidity, uidnext, "
            "highestmodseq) VALUES (1, ?, ?, 1, 1, 1)",
            (name, subscribed),
        )
    assert migrate(conn) == 4
    assert conn.execute("SELECT user_id, name FROM subscriptions ORDER BY name").fetchall() == [
        (1, "INBOX"),
        (1, "Sent"),
    ]


async def test_v11_indexes_the_messages_of_an_existing_database(tmp_path: Path) -> None:
    """A database from before the header index (version 10) gets every message of
    every mailbox indexed by the migration, and searches as a new one does."""
    data = tmp_path / "data"
    store = SqliteStore(data)
    await store.open()
    inbox, sent = await inbox_and_sent(store)
    subjects = ["Grüße aus STRASSE", "=?utf-8?q?Stra=C3=9Fe?=", "lunch", "Re: lunch"]
    for i, subject in enumerate(subjects):
        raw = f"From: p{i}@remote.test\r\nSubject: {subject}\r\n\r\nx\r\n".encode()
        await store.append(inbox.id if i % 2 else sent.id, new_message(raw))
    await store.close()

    conn = sqlite3.connect(data / "postier.db")  # as version 10 left it
    sqlite_drop(conn, SQLITE_14, SQLITE_13, SQLITE_12)
    conn.executescript(
        "DROP TRIGGER header_index_add; DROP TRIGGER header_index_remove;"
        "DROP TABLE header_index; ALTER TABLE blobs DROP COLUMN bcc;"
        "UPDATE schema_version SET version = 10;"
    )
    conn.close()

    store = SqliteStore(data)
    await store.open()
    try:
        assert await store.search_headers(inbox.id, "straße", ["subject"]) == [1]
        assert await store.search_headers(sent.id, "STRASSE", ["subject"]) == [1]
        assert await store.search_headers(inbox.id, "lunch", ["subject"]) == [2]
        assert await store.search_headers(sent.id, "P2@", ["from"]) == [2]
        await store.store_flags(inbox.id, [1], frozenset({"\\Deleted"}), "add")
        await store.expunge(inbox.id)
        assert await store.search_headers(inbox.id, "straße", ["subject"]) == []
    finally:
        await store.close()


async def test_v11_fills_bcc_from_the_stored_envelope(tmp_path: Path) -> None:
    """A database of version 10 (no Bcc: text in the summary) gets it from each
    stored ENVELOPE, as intake would have computed it, and SEARCH BCC from the index."""
    raw = (
        b"From: me@example.test\r\nSubject: plans\r\n"
        b'Bcc: =?utf-8?q?J=C3=B6rg?= <joerg@remote.test>, Team: a@x.test, "Doe, J" <j@y.test>;\r\n'
        b"\r\nx\r\n"
    )
    data = tmp_path / "data"
    store = SqliteStore(data)
    await store.open()
    _, sent = await inbox_and_sent(store)
    await store.append(sent.id, new_message(raw))
    await store.close()

    conn = sqlite3.connect(data / "postier.db")  # as version 10 left it
    sqlite_drop(conn, SQLITE_14, SQLITE_13, SQLITE_12)
    conn.executescript(
        "DROP TRIGGER header_index_add; DROP TRIGGER header_index_remove;"
        "DROP TABLE header_index; ALTER TABLE blobs DROP COLUMN bcc;"
        "UPDATE schema_version SET version = 10;"
    )
    conn.close()

    store = SqliteStore(data)
    await store.open()
    try:
        m = await store.get_message(sent.id, 1)
        assert m is not None
        assert m.summary.bcc == summarize(raw).bcc
        assert "Jörg <joerg@remote.test>" in m.summary.bcc
        assert await store.search_headers(sent.id, "JÖRG", ["bcc"]) == [1]
        assert await store.search_headers(sent.id, "team:", ["bcc"]) == [1]
        assert await store.search_headers(sent.id, "jörg", ["cc"]) == []
    finally:
        await store.close()


async def test_v12_counts_the_messages_of_an_existing_database(tmp_path: Path) -> None:
    """A database from before the stored counts (version 11) gets every mailbox's
    messages, unseen messages and octets counted by the migration, and the triggers
    keep them from then on."""
    data = tmp_path / "data"
    store = SqliteStore(data)
    await store.open()
    inbox, sent = await inbox_and_sent(store)
    for i in range(5):
        flags = frozenset({"\\Seen"}) if i % 2 else frozenset()
        await store.append(inbox.id if i < 4 else sent.id, new_message(b"x" * (10 + i)), flags)
    await store.close()

    conn = sqlite3.connect(data / "postier.db")  # as version 11 left it
    sqlite_drop(conn, SQLITE_14, SQLITE_13, SQLITE_12)
    conn.execute("UPDATE schema_version SET version = 11")
    conn.commit()
    conn.close()

    store = SqliteStore(data)
    await store.open()
    try:
        counts = {
            m.name: (m.messages, m.unseen, m.size)
            for m in await store.list_mailboxes(inbox.user_id)
        }
        assert counts["INBOX"] == (4, 2, 10 + 11 + 12 + 13)
        assert counts["Sent"] == (1, 1, 14)
        assert counts["Trash"] == (0, 0, 0)
        await store.store_flags(inbox.id, [1], frozenset({"\\Seen"}), "add")
        inbox = await store.get_mailbox_by_id(inbox.id)
        assert inbox is not None and (inbox.messages, inbox.unseen) == (4, 1)
    finally:
        await store.close()
