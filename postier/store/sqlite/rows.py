"""Rows of the SQLite store in the neutral terms of `store.tables`, for `store copy`.

What it owns: reading every table of a data dir in key order and writing rows
into another, with the message bytes (inline rows, files, heads) and the copy's
progress record, in one transaction per batch.

Rules:
- The schema is the store's own: open the `SqliteStore` once (it creates or
  migrates it) before using this on a data dir.
- Message bytes are read as the store gives them (``head + file[skip:]``) and
  written as the store would keep them under the same id: an inline id
  (``i…``) as a ``blob_data`` row, any other as a file, fsynced and renamed into
  place before the transaction that names it commits (a crash in between leaves
  an orphan file the store's startup sweep removes).
- A write and its progress record (`STATE_TABLE`) commit together: a copy
  killed at any point resumes exactly after the last batch that committed.
"""

# ruff: noqa: S608  -- table and column names come from `store.tables`, never from input
from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

from postier.durable import fsync_dir
from postier.store.blobs import BlobFiles, is_inline
from postier.store.sqlite import keyfiles
from postier.store.sqlite.db import connect
from postier.store.sqlite.store import BLOB_DIR, DB_NAME
from postier.store.tables import TABLES, Row, Table

#: the progress of a `store copy` into this data dir (key → JSON)
STATE_TABLE = "postier_copy"

#: columns of the SQLite schema that `store.tables` leaves out, and why
NOT_COPIED: dict[str, frozenset[str] | None] = {
    # subscribed: unused since schema 7 (`subscriptions`); n_*: the mailbox's counts,
    # kept by triggers on messages (schema 12), so they count the copied rows
    "mailboxes": frozenset({"subscribed", "n_messages", "n_unseen", "n_octets"}),
    "queue": frozenset({"claimed_until"}),  # a runner's lease: never outlives a move
    "changes": None,  # the change feed between processes of one host
    "blob_data": None,  # message bytes: `read_data`
    "blob_heads": None,  # message bytes: `read_data`
    "header_index": None,  # derived from blobs (schema 11)
    "header_pending": None,  # the rows the header index has yet to take (schema 14)
    # webmail sessions (a copy logs nobody in) and the secrets they sign with
    # (schema 13): made again on the other side
    "web_sessions": None,
    "server_secrets": None,
    "schema_version": None,
    STATE_TABLE: None,
}

#: values the SQLite schema needs that the neutral row has not
_EXTRA: dict[str, dict[str, object]] = {"mailboxes": {"subscribed": 0}}

_BATCH = 500


def _to_native(kind: str, value: object) -> object:
    if value is None:
        return None
    if kind == "bool":
        return 1 if value else 0
    if kind == "list":
        return json.dumps(list(value))  # type: ignore[call-overload]
    return value


def _from_native(kind: str, value: object) -> object:
    if value is None:
        return None
    if kind == "bool":
        return bool(value)
    if kind == "list":
        return tuple(json.loads(str(value)))
    if kind == "bytes" and isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


class SqliteRows:
    """One data dir's rows. `open()`, use, `close()`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.blobs = BlobFiles(self.data_dir / BLOB_DIR)
        self._conn: sqlite3.Connection | None = None

    def describe(self) -> str:
        return f"sqlite:{self.data_dir.resolve()}"

    async def open(self) -> None:
        self._conn = await asyncio.to_thread(connect, self.data_dir / DB_NAME, 30.0)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(conn.close)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("rows not open")
        return self._conn

    # --- reading -------------------------------------------------------------
    async def count(self, table: Table) -> int:
        row = await asyncio.to_thread(
            lambda: self.conn.execute(f"SELECT count(*) FROM {table.name}").fetchone()
        )
        return int(row[0])

    async def has_rows(self) -> bool:
        def any_rows() -> bool:
            return any(
                self.conn.execute(f"SELECT 1 FROM {t.name} LIMIT 1").fetchone() for t in TABLES
            )

        return await asyncio.to_thread(any_rows)

    async def scan(
        self, table: Table, after: Row | None = None, batch: int = _BATCH
    ) -> AsyncGenerator[list[Row], None]:
        """The table's rows after key `after`, in key order, `batch` at a time,
        from one read transaction."""
        keys = ", ".join(table.key)
        where = ""
        params: tuple[object, ...] = ()
        if after is not None:
            where = f" WHERE ({keys}) > ({', '.join('?' for _ in table.key)})"
            params = tuple(
                _to_native(table.kind_of(k), v) for k, v in zip(table.key, after, strict=True)
            )
        sql = f"SELECT {', '.join(table.names)} FROM {table.name}{where} ORDER BY {keys}"
        # a connection of its own: its read transaction stays open across batches
        conn = await asyncio.to_thread(connect, self.data_dir / DB_NAME, 30.0)
        try:
            await asyncio.to_thread(conn.execute, "BEGIN")
            cur = await asyncio.to_thread(conn.execute, sql, params)
            kinds = [c.kind for c in table.columns]
            while True:
                rows = await asyncio.to_thread(cur.fetchmany, batch)
                if not rows:
                    break
                yield [
                    tuple(_from_native(k, v) for k, v in zip(kinds, r, strict=True)) for r in rows
                ]
        finally:
            await asyncio.to_thread(conn.close)

    async def read_data(self, blob_ids: Sequence[str]) -> dict[str, bytes]:
        """The message bytes of these blobs (missing ids are left out)."""
        return await asyncio.to_thread(self._read_data, list(blob_ids))

    def _read_data(self, blob_ids: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        ids = json.dumps(blob_ids)
        for blob_id, data in self.conn.execute(
            "SELECT id, data FROM blob_data WHERE id IN (SELECT value FROM json_each(?))", (ids,)
        ):
            out[blob_id] = bytes(data)
        heads = {
            r[0]: (bytes(r[1]), int(r[2]))
            for r in self.conn.execute(
                "SELECT id, head, skip FROM blob_heads "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (ids,),
            )
        }
        for blob_id in blob_ids:
            if is_inline(blob_id) or blob_id in out:
                continue
            head, skip = heads.get(blob_id, (b"", 0))
            try:
                out[blob_id] = head + self.blobs.read(blob_id, skip)
            except FileNotFoundError:
                continue
        return out

    # --- writing -------------------------------------------------------------
    async def prepare(self) -> None:
        """Make the progress table (a destination)."""
        await asyncio.to_thread(
            self.conn.execute,
            f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        )
        await asyncio.to_thread(self.blobs.create_dirs)

    async def state(self) -> dict[str, str]:
        def read() -> dict[str, str]:
            exists = self.conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (STATE_TABLE,)
            ).fetchone()
            if not exists:
                return {}
            return dict(self.conn.execute(f"SELECT key, value FROM {STATE_TABLE}").fetchall())

        return await asyncio.to_thread(read)

    async def write(
        self,
        table: Table,
        rows: Sequence[Row],
        data: dict[str, bytes],
        state: dict[str, str],
    ) -> None:
        """Insert `rows` (with their message bytes) and record `state`, in one transaction."""
        await asyncio.to_thread(self._write, table, rows, data, state)

    def _write(
        self, table: Table, rows: Sequence[Row], data: dict[str, bytes], state: dict[str, str]
    ) -> None:
        files = [b for b in data if not is_inline(b)]
        for blob_id in files:
            self.blobs.put_as(blob_id, data[blob_id], sync_dir=False)
        for d in {self.blobs.path(b).parent for b in files}:
            fsync_dir(d)
        extra = _EXTRA.get(table.name, {})
        names = (*table.names, *extra)
        sql = (
            f"INSERT INTO {table.name} ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)})"
        )
        kinds = [c.kind for c in table.columns]
        native = [
            (*(_to_native(k, v) for k, v in zip(kinds, r, strict=True)), *extra.values())
            for r in rows
        ]
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(sql, native)
            conn.executemany(
                "INSERT INTO blob_data (id, data) VALUES (?, ?)",
                [(b, d) for b, d in data.items() if is_inline(b)],
            )
            conn.executemany(
                f"INSERT INTO {STATE_TABLE} (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(state.items()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def set_state(self, state: dict[str, str]) -> None:
        await asyncio.to_thread(self._write, TABLES[0], (), {}, state)

    # --- DKIM keys (files of the data dir: `keyfiles`) ------------------------
    async def dkim_keys(self) -> list[tuple[str, str, bytes]]:
        """(domain, selector, PEM) of every key, sorted."""
        return await asyncio.to_thread(keyfiles.all_keys, self.data_dir)

    async def put_dkim_keys(self, keys: Sequence[tuple[str, str, bytes]]) -> None:
        """Keep these keys (one already there for a selector stays)."""

        def put() -> None:
            for domain, selector, pem in keys:
                keyfiles.keep_key(self.data_dir, domain, selector, pem)

        await asyncio.to_thread(put)

    # --- identity high-water marks --------------------------------------------
    async def serial(self, table: Table) -> int:
        """The highest id the table ever handed out (ids are never reused)."""

        def read() -> int:
            seq = self.conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = ?", (table.name,)
            ).fetchone()
            top = self.conn.execute(f"SELECT max({table.serial}) FROM {table.name}").fetchone()
            return max(int(seq[0]) if seq else 0, int(top[0] or 0))

        return await asyncio.to_thread(read)

    async def set_serial(self, table: Table, value: int) -> None:
        """New ids of `table` start above `value`."""

        def write() -> None:
            uses_sequence = self.conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = ? AND sql LIKE '%AUTOINCREMENT%'",
                (table.name,),
            ).fetchone()
            if not uses_sequence:
                return  # a plain rowid: the next one is max(id) + 1
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                cur = self.conn.execute(
                    "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?",
                    (value, table.name),
                )
                if cur.rowcount == 0:
                    self.conn.execute(
                        "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table.name, value)
                    )
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

        await asyncio.to_thread(write)

    # --- schema (tests) ---------------------------------------------------------
    async def columns(self) -> dict[str, set[str]]:
        """Every table of the schema with its columns."""

        def read() -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            for (name,) in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'header_index_%'"
            ).fetchall():
                out[name] = {r[1] for r in self.conn.execute(f"PRAGMA table_info({name})")}
            return out

        return await asyncio.to_thread(read)
