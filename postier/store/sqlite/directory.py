"""The directory cache: domain look-ups and recipient resolutions kept in memory.

Every RCPT asked the database where its mail goes (the domain, then the user,
alias or catch-all), and every message's From: domain whether it is ours: a
read transaction on the event loop each time, for answers that change when an
administrator edits the directory, not with the mail.

Rules:
- An answer (`Cache.get`) is given from memory while the directory's version is
  the one it was read under. The version is 8 bytes in a small file beside the
  database (``postier.db.directory``), mapped into memory by every process of
  the data dir: reading it costs no system call.
- Every process's writer changes the version (new random bytes) after it
  committed a transaction that touched ``domains``, ``users`` or ``aliases``,
  before the writer's callers hear of the commit: TEMP triggers on its
  connection (`install`) flag such a transaction. Triggers, not calls in each
  store method, so no future method that edits the directory can forget it.
- A reader takes the version before it reads the database: an answer is stored
  under a version no newer than the data it saw, so a change committed
  meanwhile makes it stale at once.
- Backstops: answers older than `ttl` seconds are read again (a change made
  behind postier's back, say with the sqlite3 shell, or a process killed
  between its commit and its bump); past `max_entries` answers (a client trying
  random recipients) the cache starts empty. Negative answers are cached too:
  they are as stale-proof as the others.
- No mapping possible (a file system without mmap): nothing is cached.
"""

from __future__ import annotations

import mmap
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: the tables whose rows decide where mail goes
TABLES = ("domains", "users", "aliases")

#: the SQL function the TEMP triggers call on the writer's connection
FUNCTION = "postier_directory_changed"

MISS: Any = object()


def install(conn: sqlite3.Connection, changed: Callable[[], None]) -> None:
    """On the writer's connection (after the schema exists): call `changed` (in
    the writer thread, inside the transaction) when a row of `TABLES` changes."""
    conn.create_function(FUNCTION, 0, changed)
    for table in TABLES:
        for op in ("INSERT", "UPDATE", "DELETE"):
            conn.execute(
                f"CREATE TEMP TRIGGER IF NOT EXISTS postier_directory_{table}_{op.lower()} "
                f"AFTER {op} ON main.{table} BEGIN SELECT {FUNCTION}(); END"
            )


class Cache:
    def __init__(self, path: Path, *, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[object, object] = {}
        self._version = b""
        self._expires = 0.0
        self._map: mmap.mmap | None = None
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                if os.fstat(fd).st_size < 8:
                    os.ftruncate(fd, 8)  # zeros; several processes may do it at once
                self._map = mmap.mmap(fd, 8)
            finally:
                os.close(fd)
        except (OSError, ValueError):
            self._map = None

    def version(self) -> bytes:
        return b"" if self._map is None else self._map[:8]

    def bump(self) -> None:
        """The directory changed (the writer thread, after COMMIT)."""
        if self._map is not None:
            self._map[:8] = secrets.token_bytes(8)

    def get(self, key: object) -> Any:
        """The answer stored for `key`, or `MISS`."""
        if self._map is None:
            return MISS
        version = self._map[:8]
        if version != self._version or time.monotonic() > self._expires:
            self._entries.clear()
            self._version = version
            self._expires = time.monotonic() + self.ttl
            return MISS
        return self._entries.get(key, MISS)

    def put(self, key: object, value: object, version: bytes) -> None:
        """Store an answer read after `version` was taken (by `version()`)."""
        if self._map is None or version != self._version:
            return  # the directory changed while it was read: not kept
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = value

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
