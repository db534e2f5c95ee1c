"""What later schema versions add, for tests that rebuild an older database from a
new one (drop it, set the older version, reopen: the migrations run again)."""

from __future__ import annotations

import sqlite3

import asyncpg

from postier.store.sqlite.schema import MIGRATIONS

#: sqlite schema 12 (stored mailbox counts)
SQLITE_12 = (
    "DROP TRIGGER mailbox_counts_add",
    "DROP TRIGGER mailbox_counts_remove",
    "DROP TRIGGER mailbox_counts_move",
    "DROP TRIGGER mailbox_counts_flags",
    "ALTER TABLE mailboxes DROP COLUMN n_messages",
    "ALTER TABLE mailboxes DROP COLUMN n_unseen",
    "ALTER TABLE mailboxes DROP COLUMN n_octets",
)

#: sqlite schema 13 (webmail sessions, server secrets, the trace's (event, at) index)
SQLITE_13 = ("DROP TABLE web_sessions", "DROP TABLE server_secrets", "DROP INDEX trace_event_at")

#: sqlite schema 14 (the header index filled in batches): schema 11's triggers again
SQLITE_14 = (
    "DROP TRIGGER header_index_add",
    "DROP TRIGGER header_index_remove",
    "DROP TABLE header_pending",
    *(sql for sql in MIGRATIONS[10] if sql.lstrip().startswith("CREATE TRIGGER")),
)

#: postgres schema 6 (stored mailbox counts)
POSTGRES_6 = (
    *(
        f"DROP TRIGGER postier_mailbox_counts_{e} ON messages"
        for e in ("insert", "delete", "update")
    ),
    *(f"DROP FUNCTION postier_mailbox_counts_{e}()" for e in ("insert", "delete", "update")),
    "ALTER TABLE mailboxes DROP COLUMN n_messages",
    "ALTER TABLE mailboxes DROP COLUMN n_unseen",
    "ALTER TABLE mailboxes DROP COLUMN n_octets",
)


#: postgres schemas 7 and 8 (the running state nodes share) and 9 (DKIM keys)
POSTGRES_7 = ("DROP TABLE maildrop_locks, login_failures",)
POSTGRES_8 = ("DROP TABLE client_connections, recent_claims",)
POSTGRES_9 = ("DROP TABLE dkim_keys",)
#: postgres schema 10 (webmail sessions, server secrets, the trace's (event, at) index)
POSTGRES_10 = ("DROP TABLE web_sessions, server_secrets", "DROP INDEX trace_event_at")


def sqlite_drop(conn: sqlite3.Connection, *versions: tuple[str, ...]) -> None:
    for statements in versions:
        for sql in statements:
            conn.execute(sql)


async def postgres_drop(conn: asyncpg.Connection, *versions: tuple[str, ...]) -> None:
    for statements in versions:
        for sql in statements:
            await conn.execute(sql)
