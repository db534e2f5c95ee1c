"""`postier.store.sqlite.schema`: migrations keep what older databases hold."""

from __future__ import annotations

import sqlite3

from postier.store.sqlite.schema import MIGRATIONS, migrate


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
