"""The login failure limiter shared by the worker processes of one server
(`SharedLimiter`), or by every node over PostgreSQL (`DatabaseLimiter`).

Rules:
- The same rules as `service.Limiter` (they are its methods); only the records
  live in a small SQLite file, ``data_dir/run/logins.db``, that every worker
  opens: a failure counted by one worker delays and locks in all of them.
- Each `fail` is one ``BEGIN IMMEDIATE`` transaction (read, apply the rule,
  write), so two workers counting at once never lose a failure.
- The records are a run's state, not data: the supervisor makes a fresh file
  when it starts (`create`), the file is ``synchronous = OFF`` (a power cut may
  forget some failures; nothing else depends on it) and times are
  ``time.monotonic()``, which every process of the machine shares.
- Calls are short synchronous SQLite statements on the caller's thread (the
  event loop): microseconds, and a transaction of another worker holds the
  write lock for as long. A file that cannot be read or written fails open
  (logged): logins keep working without the limiter rather than not at all.
- `DatabaseLimiter` keeps the records in the database every node shares
  (`store.postgres.shared`), under the same rules; there a failure is counted
  with its keys' rows held, so failures counted at once on two nodes all count.
  Times are the nodes' wall clocks (Unix seconds): they must keep in step
  (NTP), as mail already needs. Its synchronous methods are the in-process
  ones: only the coroutines `AuthService` calls see the database.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from postier.auth.service import Limiter, _Record
from postier.config.schema import AuthSettings

if TYPE_CHECKING:
    from postier.store.postgres.shared import LoginRecord, SharedState

log = logging.getLogger("postier.auth")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, failures INTEGER NOT NULL, "
    "last REAL NOT NULL, locked_until REAL NOT NULL)"
)
_INDEX = "CREATE INDEX IF NOT EXISTS records_last ON records (last)"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous = OFF")
    return conn


def create(path: Path) -> None:
    """A fresh, empty records file (the supervisor, before any worker starts)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()
    conn = _connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(_SCHEMA)
        conn.execute(_INDEX)
    finally:
        conn.close()


class SharedLimiter(Limiter):
    def __init__(
        self, settings: AuthSettings, path: Path, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(settings, clock)
        self._conn = _connect(path)
        self._conn.execute(_SCHEMA)  # when `create` was not called (a test, a single process)
        self._fails = 0

    def close(self) -> None:
        self._conn.close()

    def _get(self, key: str) -> _Record | None:
        row = self._conn.execute(
            "SELECT failures, last, locked_until FROM records WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else _Record(int(row[0]), float(row[1]), float(row[2]))

    def locked_for(self, key: str) -> float:
        try:
            return self._locked(self._get(key), self._clock())
        except sqlite3.Error:
            log.exception("login limiter: cannot read %s", key)
            return 0.0

    def delay_for(self, key: str) -> float:
        try:
            return self._delay(self._get(key), self._clock())
        except sqlite3.Error:
            log.exception("login limiter: cannot read %s", key)
            return 0.0

    def fail(self, key: str, *, lock: bool = True) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                now = self._clock()
                r = self._get(key) or _Record()
                self._failed(r, now, lock)
                conn.execute(
                    "INSERT INTO records (key, failures, last, locked_until) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, "
                    "last = excluded.last, locked_until = excluded.locked_until",
                    (key, r.failures, r.last, r.locked_until),
                )
                self._fails += 1
                if self._fails % 1000 == 0:
                    self._prune_rows(now)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error:
            log.exception("login limiter: cannot count a failure for %s", key)

    def succeed(self, key: str) -> None:
        try:
            self._conn.execute("DELETE FROM records WHERE key = ?", (key,))
        except sqlite3.Error:
            log.exception("login limiter: cannot clear %s", key)

    def _prune_rows(self, now: float) -> None:
        """Forgotten records go; beyond `MAX_RECORDS` the least recent too."""
        self._conn.execute(
            "DELETE FROM records WHERE last < ? AND locked_until < ?", (now - self._horizon, now)
        )
        (count,) = self._conn.execute("SELECT COUNT(*) FROM records").fetchone()
        excess = int(count) - self.MAX_RECORDS // 2
        if excess > 0 and int(count) > self.MAX_RECORDS:
            self._conn.execute(
                "DELETE FROM records WHERE key IN (SELECT key FROM records ORDER BY last LIMIT ?)",
                (excess,),
            )


class DatabaseLimiter(Limiter):
    def __init__(
        self, settings: AuthSettings, state: SharedState, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(settings, clock)
        self._state = state

    async def _read(self, keys: Sequence[str]) -> dict[str, _Record]:
        records = await self._state.login_records(keys)
        return {k: _Record(r.failures, r.last, r.locked_until) for k, r in records.items()}

    async def wait_before(self, network: str) -> float:
        records = await self._read([network])
        return self._delay(records.get(network), self._clock())

    async def locked(self, keys: Sequence[str]) -> float:
        records = await self._read(keys)
        now = self._clock()
        return max((self._locked(records.get(k), now) for k in keys), default=0.0)

    async def failed(self, network: str, keys: Sequence[str]) -> float:
        now = self._clock()
        locking = dict.fromkeys(keys, True)
        locking[network] = False

        def apply(records: dict[str, LoginRecord]) -> None:
            for key, stored in records.items():
                r = _Record(stored.failures, stored.last, stored.locked_until)
                self._failed(r, now, locking[key])
                stored.failures, stored.last, stored.locked_until = (
                    r.failures,
                    r.last,
                    r.locked_until,
                )

        records = await self._state.update_login_records(
            list(locking), apply, forget_before=now - self._horizon, now=now
        )
        last = records[keys[-1]]
        return self._delay(_Record(last.failures, last.last, last.locked_until), now)

    async def succeeded(self, keys: Sequence[str]) -> None:
        await self._state.clear_login_records(keys)
