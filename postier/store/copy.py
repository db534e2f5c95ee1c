"""`postier store copy`: move a whole store to another backend, resumably, verified.

What it owns: copying every table of `store.tables` from one store's rows to
another's (SQLite → PostgreSQL to grow from one node to several, PostgreSQL →
SQLite back), resuming an interrupted copy, and proving the result equal.

Rules:
- One algorithm for both directions: rows travel in the neutral terms of
  `store.tables`; each backend's row module (`sqlite/rows.py`,
  `postgres/rows.py`) reads and writes its own tables. Ids, UIDs,
  UIDVALIDITY, MODSEQs, flags, internal dates and blob ids are kept as they are,
  so IMAP clients see the same mailboxes (no resynchronisation) and identity
  counters continue above the source's (`Table.serial`).
- The source must not change meanwhile: stop the server (the command refuses
  while one runs on a SQLite data dir). The destination is migrated to the
  current schema first (the store's own `open`).
- The destination must be empty, or hold an unfinished copy of the same source
  (its ``postier_copy`` table names the source): anything else is refused, so a
  copy never mixes two installs.
- Resumable: tables are copied in `TABLES` order (parents first), in key order,
  in batches of `batch` rows (message rows: also at most `max_batch_bytes` of
  message bytes); each batch commits together with the key it reached, so after
  a kill -9 a new run goes on after the last committed batch, never writing a
  row twice.
- Verified at the end (and on demand, `verify`): every table is read from both
  sides in key order and compared row by row (counts, keys, every value), and
  the bytes of every message are compared by SHA-256. A copy that does not
  verify is not marked done.
- DKIM private keys travel too (files of the data dir with SQLite, a table with
  PostgreSQL: `Store.dkim_keys`), after the tables; a key already in the
  destination for a selector is kept, and the verification says if it differs.
- Not copied: TLS certificates and the spool (files each node has), queue
  leases, SQLite's change log between processes of one host.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from postier.store.tables import TABLES, Row, Table

#: `(phase, table, rows done, rows in the table)`; phase is "copy" or "verify"
ProgressFn = Callable[[str, str, int, int], None]

#: problems listed before the rest are only counted
_MAX_PROBLEMS = 20


class CopyError(Exception):
    """The copy cannot start or did not verify; the message says why."""


class Rows(Protocol):
    """One store's tables, as `sqlite.rows.SqliteRows` and `postgres.rows.PostgresRows`
    give them."""

    def describe(self) -> str: ...
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def count(self, table: Table) -> int: ...
    async def has_rows(self) -> bool: ...
    def scan(
        self, table: Table, after: Row | None = None, batch: int = ...
    ) -> AsyncGenerator[list[Row], None]: ...
    async def read_data(self, blob_ids: Sequence[str]) -> dict[str, bytes]: ...
    async def prepare(self) -> None: ...
    async def state(self) -> dict[str, str]: ...
    async def set_state(self, state: dict[str, str]) -> None: ...
    async def write(
        self, table: Table, rows: Sequence[Row], data: dict[str, bytes], state: dict[str, str]
    ) -> None: ...
    async def dkim_keys(self) -> list[tuple[str, str, bytes]]: ...
    async def put_dkim_keys(self, keys: Sequence[tuple[str, str, bytes]]) -> None: ...
    async def serial(self, table: Table) -> int: ...
    async def set_serial(self, table: Table, value: int) -> None: ...


@dataclass
class Report:
    """What a copy or a verification found."""

    source: str
    destination: str
    counts: dict[str, int] = field(default_factory=dict)  # rows per table (source)
    blobs_checked: int = 0  # message bytes compared by SHA-256
    bytes_checked: int = 0
    copied: int = 0  # rows written by this run
    resumed: bool = False  # this run went on with an interrupted copy
    already_done: bool = False  # the copy had finished before this run
    problems: list[str] = field(default_factory=list)
    more_problems: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self.more_problems += 1


def parse_target(text: str) -> tuple[str, str]:
    """``postgresql://…`` / ``postgres://…`` → ("postgres", dsn);
    ``sqlite:DIR`` → ("sqlite", DIR). `CopyError` otherwise."""
    if text.startswith(("postgresql://", "postgres://")):
        return "postgres", text
    if text.startswith("sqlite:"):
        where = text.removeprefix("sqlite:").removeprefix("//")
        if not where:
            raise CopyError("sqlite:DIR needs a directory")
        return "sqlite", where
    raise CopyError(f"--to {text!r}: expected postgresql://user@host:port/db or sqlite:DIR")


async def open_rows(backend: str, where: str | Path) -> Rows:
    """The rows of the store at `where`, its schema created or migrated first (the
    store's own `open`), opened."""
    rows: Rows
    if backend == "sqlite":
        from postier.store.sqlite import SqliteStore
        from postier.store.sqlite.rows import SqliteRows

        store = SqliteStore(Path(where))
        await store.open()
        await store.close()
        rows = SqliteRows(Path(where))
    elif backend == "postgres":
        from postier.store.postgres import PostgresStore
        from postier.store.postgres.rows import PostgresRows

        pg = PostgresStore(str(where))
        await pg.open()
        await pg.close()
        rows = PostgresRows(str(where))
    else:
        raise CopyError(f"unknown backend {backend!r}")
    await rows.open()
    return rows


def _key_json(key: Row) -> list[object]:
    return list(key)


async def copy(
    src: Rows,
    dst: Rows,
    *,
    batch: int = 500,
    max_batch_bytes: int = 16 * 1024 * 1024,
    progress: ProgressFn | None = None,
) -> Report:
    """Copy every table of `src` into `dst` (or go on with an interrupted copy),
    then verify. Raises `CopyError` when the destination is refused or the
    result does not verify."""
    source = src.describe()
    report = Report(source, dst.describe())
    state = await dst.state()
    if state:
        if state.get("source") != source:
            raise CopyError(
                f"{report.destination} holds a copy of {state.get('source', 'another store')}, "
                f"not of {source}: copy into an empty destination"
            )
        report.resumed = True
        if "done" in state:
            report.already_done = True
            await verify(src, dst, report=report, progress=progress)
            return report
    else:
        if await dst.has_rows():
            raise CopyError(
                f"{report.destination} is not empty: copy into an empty database or directory"
            )
        await dst.prepare()
        await dst.set_state({"source": source, "started": _now()})
    for table in TABLES:
        report.copied += await _copy_table(
            src, dst, table, state, batch, max_batch_bytes, progress, report
        )
    await dst.put_dkim_keys(await src.dkim_keys())
    for table in TABLES:
        if table.serial:
            await dst.set_serial(table, await src.serial(table))
    await verify(src, dst, report=report, progress=progress)
    if report.ok:
        await dst.set_state({"done": _now()})
    return report


async def _copy_table(
    src: Rows,
    dst: Rows,
    table: Table,
    state: dict[str, str],
    batch: int,
    max_batch_bytes: int,
    progress: ProgressFn | None,
    report: Report,
) -> int:
    key = f"table:{table.name}"
    mark = json.loads(state.get(key, "{}"))
    if mark.get("done"):
        return 0
    after = tuple(mark["after"]) if mark.get("after") is not None else None
    done = int(mark.get("rows", 0))
    total = await src.count(table)
    copied = 0
    if progress:
        progress("copy", table.name, done, total)
    async with contextlib.aclosing(src.scan(table, after, batch)) as batches:
        async for rows in batches:
            for part in _by_size(table, rows, max_batch_bytes):
                data: dict[str, bytes] = {}
                if table.data:
                    ids = [str(r[0]) for r in part]
                    data = await src.read_data(ids)
                    missing = [b for b in ids if b not in data]
                    if missing:
                        raise CopyError(
                            f"{report.source}: the bytes of message blob {missing[0]} are "
                            f"missing ({len(missing)} in this batch); repair the source first"
                        )
                done += len(part)
                copied += len(part)
                last = table.key_of(part[-1])
                await dst.write(
                    table, part, data, {key: json.dumps({"after": _key_json(last), "rows": done})}
                )
                if progress:
                    progress("copy", table.name, done, total)
    await dst.set_state({key: json.dumps({"done": True, "rows": done})})
    return copied


def _by_size(table: Table, rows: list[Row], max_bytes: int) -> list[list[Row]]:
    """`rows` in parts of at most `max_bytes` of message bytes (blobs rows)."""
    if not table.data:
        return [rows]
    size_at = table.names.index("size")
    parts: list[list[Row]] = [[]]
    size = 0
    for r in rows:
        n = int(r[size_at])  # type: ignore[call-overload]
        if parts[-1] and size + n > max_bytes:
            parts.append([])
            size = 0
        parts[-1].append(r)
        size += n
    return parts


async def verify(
    src: Rows,
    dst: Rows,
    *,
    report: Report | None = None,
    progress: ProgressFn | None = None,
    batch: int = 500,
) -> Report:
    """Compare every table row by row and every message's bytes by SHA-256;
    the differences are `Report.problems` (empty: equal)."""
    report = report or Report(src.describe(), dst.describe())
    for table in TABLES:
        total = await src.count(table)
        report.counts[table.name] = total
        other = await dst.count(table)
        if other != total:
            report.problem(f"{table.name}: {total} row(s) in the source, {other} in the copy")
        await _compare_table(src, dst, table, total, batch, progress, report)
    ours = {(d, s): pem for d, s, pem in await src.dkim_keys()}
    theirs = {(d, s): pem for d, s, pem in await dst.dkim_keys()}
    report.counts["dkim_keys"] = len(ours)
    for d, s in sorted(ours.keys() | theirs.keys()):
        if (d, s) not in theirs:
            report.problem(f"DKIM key {s}._domainkey.{d}: missing in the copy")
        elif (d, s) not in ours:
            report.problem(f"DKIM key {s}._domainkey.{d}: in the copy, not in the source")
        elif ours[d, s] != theirs[d, s]:
            report.problem(f"DKIM key {s}._domainkey.{d}: differs")
    return report


async def _rows_of(rows: Rows, table: Table, batch: int) -> AsyncGenerator[Row, None]:
    async with contextlib.aclosing(rows.scan(table, None, batch)) as batches:
        async for part in batches:
            for r in part:
                yield r


async def _compare_table(
    src: Rows,
    dst: Rows,
    table: Table,
    total: int,
    batch: int,
    progress: ProgressFn | None,
    report: Report,
) -> None:
    """Merge the two key-ordered streams; message bytes are compared in groups."""
    pending: list[str] = []  # blob ids on both sides, bytes not compared yet
    seen = 0
    end = object()
    async with (
        contextlib.aclosing(_rows_of(src, table, batch)) as left,
        contextlib.aclosing(_rows_of(dst, table, batch)) as right,
    ):
        a = await anext(left, end)
        b = await anext(right, end)
        while a is not end or b is not end:
            ka = table.key_of(a) if a is not end else None  # type: ignore[arg-type]
            kb = table.key_of(b) if b is not end else None  # type: ignore[arg-type]
            if kb is None or (ka is not None and _less(ka, kb)):
                report.problem(f"{table.name} {_show(ka)}: missing in the copy")
                a = await anext(left, end)
                seen += 1
            elif ka is None or _less(kb, ka):
                report.problem(f"{table.name} {_show(kb)}: in the copy, not in the source")
                b = await anext(right, end)
            else:
                if a != b:
                    diff = [
                        n
                        for n, x, y in zip(table.names, a, b, strict=True)  # type: ignore[call-overload]
                        if x != y
                    ]
                    report.problem(f"{table.name} {_show(ka)}: differs in {', '.join(diff)}")
                if table.data:
                    pending.append(str(ka[0]))
                    if len(pending) >= 100:
                        await _compare_bytes(src, dst, pending, report)
                a = await anext(left, end)
                b = await anext(right, end)
                seen += 1
            if progress and seen % batch == 0:
                progress("verify", table.name, seen, total)
    if pending:
        await _compare_bytes(src, dst, pending, report)
    if progress:
        progress("verify", table.name, seen, total)


async def _compare_bytes(src: Rows, dst: Rows, blob_ids: list[str], report: Report) -> None:
    ours = await src.read_data(blob_ids)
    theirs = await dst.read_data(blob_ids)
    for blob_id in blob_ids:
        a, b = ours.get(blob_id), theirs.get(blob_id)
        if a is None:
            report.problem(f"message blob {blob_id}: its bytes are missing in the source")
        elif b is None:
            report.problem(f"message blob {blob_id}: its bytes are missing in the copy")
        elif hashlib.sha256(a).digest() != hashlib.sha256(b).digest():
            report.problem(f"message blob {blob_id}: SHA-256 differs (the bytes were altered)")
        else:
            report.blobs_checked += 1
            report.bytes_checked += len(a)
    blob_ids.clear()


def _less(a: Row, b: Row) -> bool:
    """Key order as both backends sort (integers; text by code point)."""
    return a < b


def _show(key: Row | None) -> str:
    return "(" + ", ".join(repr(k) for k in key or ()) + ")"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
