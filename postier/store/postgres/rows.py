"""Rows of the PostgreSQL store in the neutral terms of `store.tables`, for `store copy`.

What it owns: reading every table of a database in key order and writing rows
into another, with the message bytes (``blob_chunks``) and the copy's progress
record, in one transaction per batch.

Rules:
- The schema is the store's own: open the `PostgresStore` once (it creates or
  migrates it) before using this on a database.
- Text keys are ordered ``COLLATE "C"`` (by code point, as SQLite orders them),
  so both backends list a table in the same order.
- A scan reads one snapshot (a REPEATABLE READ, read-only transaction with a
  cursor): a table is read once, however large, without sorting it per batch.
- A write and its progress record (`STATE_TABLE`) commit together: a copy killed
  at any point resumes exactly after the last batch that committed. The
  casefolded search columns of ``blobs`` are computed here, as the store does
  when it stores a message.
"""

# ruff: noqa: S608  -- table and column names come from `store.tables`, never from input
from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence

import asyncpg

from postier.store.postgres import schema
from postier.store.tables import TABLES, Row, Table

#: the progress of a `store copy` into this database (key → JSON)
STATE_TABLE = "postier_copy"

#: columns of the PostgreSQL schema that `store.tables` leaves out, and why
NOT_COPIED: dict[str, frozenset[str] | None] = {
    # derived from the summary text (`schema._V4`): computed on write
    "blobs": frozenset({"subject_fold", "from_fold", "to_fold", "cc_fold", "bcc_fold"}),
    # a runner's lease: never outlives a move
    "queue": frozenset({"claimed_until", "claimed_by", "claimed_pid", "claimed_start"}),
    # the mailbox's counts, kept by triggers on messages: they count the copied rows
    "mailboxes": frozenset({"n_messages", "n_unseen", "n_octets"}),
    "blob_chunks": None,  # message bytes: `read_data`
    "dkim_keys": None,  # files with SQLite: `dkim_keys`
    # state of running nodes (UNLOGGED): gone with the nodes that held it
    "maildrop_locks": None,
    "login_failures": None,
    "client_connections": None,
    "recent_claims": None,
    # webmail sessions (a copy logs nobody in) and the secrets they sign with
    # (schema 10): made again on the other side
    "web_sessions": None,
    "server_secrets": None,
    "schema_version": None,
    STATE_TABLE: None,
}

_FOLDED = {
    "subject": "subject_fold",
    "from_addr": "from_fold",
    "to_addr": "to_fold",
    "cc": "cc_fold",
    "bcc": "bcc_fold",
}

_BATCH = 500


def _to_native(kind: str, value: object) -> object:
    if value is None:
        return None
    if kind == "list":
        return list(value)  # type: ignore[call-overload]
    if kind == "stext":
        return schema.bytes_of(str(value))
    return value


def _from_native(kind: str, value: object) -> object:
    if value is None:
        return None
    if kind == "list":
        return tuple(value)  # type: ignore[arg-type]
    if kind == "stext":
        return schema.text_of(value)  # type: ignore[arg-type]
    if kind == "bytes" and isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


def _order(table: Table) -> list[str]:
    """The key columns as ORDER BY / row comparison terms (text by code point)."""
    return [f'{k} COLLATE "C"' if table.kind_of(k) == "text" else k for k in table.key]


class PostgresRows:
    """One database's rows. `open()`, use, `close()`."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: asyncpg.Connection | None = None

    def describe(self) -> str:
        return redact(self.dsn)

    async def open(self) -> None:
        self._conn = await asyncpg.connect(self.dsn)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    @property
    def conn(self) -> asyncpg.Connection:
        if self._conn is None:
            raise RuntimeError("rows not open")
        return self._conn

    # --- reading -------------------------------------------------------------
    async def count(self, table: Table) -> int:
        return int(await self.conn.fetchval(f"SELECT count(*) FROM {table.name}"))

    async def has_rows(self) -> bool:
        for t in TABLES:
            if await self.conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {t.name})"):
                return True
        return False

    async def scan(
        self, table: Table, after: Row | None = None, batch: int = _BATCH
    ) -> AsyncGenerator[list[Row], None]:
        """The table's rows after key `after`, in key order, `batch` at a time,
        from one snapshot."""
        order = _order(table)
        where = ""
        params: list[object] = []
        if after is not None:
            marks = ", ".join(f"${i + 1}" for i in range(len(table.key)))
            where = f" WHERE ({', '.join(order)}) > ({marks})"
            params = [
                _to_native(table.kind_of(k), v) for k, v in zip(table.key, after, strict=True)
            ]
        sql = (
            f"SELECT {', '.join(table.names)} FROM {table.name}{where} ORDER BY {', '.join(order)}"
        )
        kinds = [c.kind for c in table.columns]
        # a connection of its own: its snapshot stays open across batches
        conn = await asyncpg.connect(self.dsn)
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                cur = await conn.cursor(sql, *params)
                while True:
                    rows = await cur.fetch(batch)
                    if not rows:
                        break
                    yield [
                        tuple(_from_native(k, v) for k, v in zip(kinds, r, strict=True))
                        for r in rows
                    ]
        finally:
            await conn.close()

    async def read_data(self, blob_ids: Sequence[str]) -> dict[str, bytes]:
        """The message bytes of these blobs (missing ids are left out)."""
        parts: dict[str, list[bytes]] = {}
        for blob_id, data in await self.conn.fetch(
            "SELECT blob_id, data FROM blob_chunks WHERE blob_id = ANY($1::text[]) "
            "ORDER BY blob_id, seq",
            list(blob_ids),
        ):
            parts.setdefault(blob_id, []).append(bytes(data))
        return {b: b"".join(p) for b, p in parts.items()}

    # --- writing -------------------------------------------------------------
    async def prepare(self) -> None:
        """Make the progress table (a destination)."""
        await self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )

    async def state(self) -> dict[str, str]:
        exists = await self.conn.fetchval("SELECT to_regclass($1) IS NOT NULL", STATE_TABLE)
        if not exists:
            return {}
        rows = await self.conn.fetch(f"SELECT key, value FROM {STATE_TABLE}")
        return {r[0]: r[1] for r in rows}

    async def write(
        self,
        table: Table,
        rows: Sequence[Row],
        data: dict[str, bytes],
        state: dict[str, str],
    ) -> None:
        """Insert `rows` (with their message bytes) and record `state`, in one transaction."""
        names = list(table.names)
        kinds = [c.kind for c in table.columns]
        records = [[_to_native(k, v) for k, v in zip(kinds, r, strict=True)] for r in rows]
        if table.name == "blobs":
            texts = [names.index(c) for c in _FOLDED]
            names += list(_FOLDED.values())
            for rec, row in zip(records, rows, strict=True):
                rec += [schema.folded(str(row[i])) for i in texts]
        written = int(time.time() * 1_000_000)
        chunks = [
            (blob_id, i, written, d[off : off + schema.CHUNK])
            for blob_id, d in data.items()
            for i, off in enumerate(range(0, max(len(d), 1), schema.CHUNK))
        ]
        conn = self.conn
        async with conn.transaction():
            if chunks:
                await conn.copy_records_to_table(
                    "blob_chunks", records=chunks, columns=("blob_id", "seq", "written", "data")
                )
            if records:
                await conn.copy_records_to_table(
                    table.name, records=[tuple(r) for r in records], columns=names
                )
            if state:
                await conn.executemany(
                    f"INSERT INTO {STATE_TABLE} (key, value) VALUES ($1, $2) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    list(state.items()),
                )

    async def set_state(self, state: dict[str, str]) -> None:
        await self.write(TABLES[0], (), {}, state)

    # --- DKIM keys ---------------------------------------------------------------
    async def dkim_keys(self) -> list[tuple[str, str, bytes]]:
        """(domain, selector, PEM) of every key, sorted."""
        rows = await self.conn.fetch(
            'SELECT domain, selector, private_pem FROM dkim_keys ORDER BY domain COLLATE "C", '
            'selector COLLATE "C"'
        )
        return [(r[0], r[1], bytes(r[2])) for r in rows]

    async def put_dkim_keys(self, keys: Sequence[tuple[str, str, bytes]]) -> None:
        """Keep these keys (one already there for a selector stays)."""
        now = int(time.time() * 1_000_000)
        await self.conn.executemany(
            "INSERT INTO dkim_keys (domain, selector, private_pem, created) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (domain, selector) DO NOTHING",
            [(d, s, pem, now) for d, s, pem in keys],
        )

    # --- identity high-water marks --------------------------------------------
    async def _sequence(self, table: Table) -> str | None:
        name: str | None = await self.conn.fetchval(
            "SELECT pg_get_serial_sequence($1, $2)", table.name, table.serial
        )
        return name

    async def serial(self, table: Table) -> int:
        """The highest id the table ever handed out (ids are never reused)."""
        top = int(
            await self.conn.fetchval(f"SELECT coalesce(max({table.serial}), 0) FROM {table.name}")
        )
        seq = await self._sequence(table)
        if seq is None:
            return top
        row = await self.conn.fetchrow(f"SELECT last_value, is_called FROM {seq}")
        return max(top, int(row[0]) if row is not None and row[1] else 0)

    async def set_serial(self, table: Table, value: int) -> None:
        """New ids of `table` start above `value`."""
        seq = await self._sequence(table)
        if seq is None or value < 1:
            return
        await self.conn.execute(
            f"SELECT setval($1, greatest($2::bigint, (SELECT coalesce(max({table.serial}), 1) "
            f"FROM {table.name})))",
            seq,
            value,
        )

    # --- schema (tests) ---------------------------------------------------------
    async def columns(self) -> dict[str, set[str]]:
        """Every table of the schema with its columns."""
        out: dict[str, set[str]] = {}
        for name, column in await self.conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema()"
        ):
            out.setdefault(name, set()).add(column)
        return out


def redact(dsn: str) -> str:
    """The DSN without its password (for messages and the copy's source name)."""
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        return dsn
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return dsn
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}@{hostpart}"
