"""SQLite access off the event loop: one writer thread with group commit, a reader pool.

Rules:
- Every write runs as a job ``fn(tx)`` in the single writer thread. The thread
  takes every job waiting (up to `max_batch`), runs them in ONE ``BEGIN IMMEDIATE``
  transaction, each inside its own SAVEPOINT, and commits once: one WAL fsync
  (``synchronous=FULL``) for the whole batch. That is group commit.
- A job that raises is rolled back to its savepoint alone; the others still
  commit. Its caller gets the exception; nothing of it is durable.
- A job's future resolves only after COMMIT returned: a caller that sees a
  result sees a durable change. If COMMIT fails, every job of the batch fails.
  The results of a batch reach each event loop with one wake-up
  (``call_soon_threadsafe`` once per batch, not a concurrent future chained to
  an asyncio one per job).
- After COMMIT, each job's `Tx.after_commit` callbacks run in the writer thread
  (freeing blob files, scheduling change-feed events on the loop) before any
  future resolves, so in-process subscribers hear of a change no later than its
  writer's caller.
- Reads run in a small thread pool, each thread with its own connection, each call
  in one read transaction (a consistent WAL snapshot). Point look-ups (a row or
  two by key) may run on the event loop itself (`read_now`): cheaper than the
  hop to a thread, and a WAL reader does not wait for the writer. WAL lets them run while the
  writer writes; `busy_timeout` covers other processes holding the write lock.
- `foreign_keys=ON` and `synchronous=FULL` on every connection; WAL set once; the
  SQL functions of `schema.register_functions` on every connection.
- Several processes (the workers of one server) each run a writer thread on one
  database. Before ``BEGIN IMMEDIATE`` a writer takes an exclusive `flock` on
  ``<database>.write-lock`` and drops it after COMMIT: SQLite alone would make
  the loser of a race poll its lock with sleeps of 1, 2, 5... ms, longer than a
  whole commit takes; the kernel hands the flock over the moment it is released,
  and the jobs queued meanwhile join the next batch. The flock only orders
  writers; SQLite's own lock still decides (a process without it, such as an
  admin command, waits through `busy_timeout` as before).

Why hand-written: aiosqlite runs one thread per connection and has no group commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from postier.store.sqlite.schema import register_functions

log = logging.getLogger(__name__)

T = TypeVar("T")


class Tx:
    """What a write job sees: the connection and a list of post-commit actions."""

    __slots__ = ("after_commit", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.after_commit: list[Callable[[], None]] = []

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)


class _Job:
    """One write: its function, and the future its caller awaits on `loop`."""

    __slots__ = ("fn", "future", "loop")

    def __init__(
        self, fn: Callable[[Tx], Any], loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future = future


def _settle(outcomes: list[tuple[asyncio.Future[Any], BaseException | None, Any]]) -> None:
    """On the callers' loop: the results of one batch's jobs."""
    for future, error, result in outcomes:
        if future.done():  # the caller was cancelled meanwhile
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


def _hand_over(
    outcomes: list[tuple[_Job, BaseException | None, Any]],
) -> None:
    """From the writer thread: each loop gets its jobs' results with one wake-up."""
    by_loop: dict[
        asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], BaseException | None, Any]]
    ] = {}
    for job, error, result in outcomes:
        by_loop.setdefault(job.loop, []).append((job.future, error, result))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle, items)


_STOP = None

#: page cache of each reader connection, in KiB (PRAGMA cache_size takes it negated).
#: SQLite's default, 2 MiB, filled up with the overflow pages of message bytes a
#: large FETCH or SEARCH read once, and stayed allocated for the life of the
#: connection (bench/imap.py: a worker's SQLite memory 2.3 -> 5.2 MB after the
#: FETCH of 10,000 messages); the readers' working set, the B-tree pages above
#: the rows, fits in far less, and what the cache misses the OS page cache has.
READER_CACHE_KIB = 512


def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")
    register_functions(conn)  # the header search calls postier_fold
    return conn


class Database:
    def __init__(
        self, path: Path, *, max_batch: int = 256, readers: int = 2, busy_timeout: float = 30.0
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if readers < 1:
            raise ValueError("readers must be at least 1")
        self.path = path
        self.max_batch = max_batch
        self.busy_timeout = busy_timeout
        self._readers = readers
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write_lock: int | None = None  # fd of <database>.write-lock
        #: commits so far (tests and metrics: proves batching)
        self.commits = 0
        #: called in the writer thread after a COMMIT whose transaction noted a
        #: change of the directory (`note_directory_change`: directory.py's triggers)
        self.on_directory_change: Callable[[], None] | None = None
        self._directory_changed = False
        self._memory_temp = False  # asked for (`memory_temp`)
        self._memory_temp_set = False  # done, on the writer's connection

    def start(self) -> None:
        # the database holds password hashes and mail: owner only. SQLite gives its
        # -wal and -shm files the database file's permissions.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        wconn = connect(self.path, self.busy_timeout)
        mode = wconn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            wconn.close()
            raise RuntimeError(f"{self.path}: cannot switch to WAL (journal_mode={mode})")
        self._write_lock = os.open(
            f"{self.path}.write-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._readers, thread_name_prefix="postier-store-read"
        )
        self._thread = threading.Thread(
            target=self._run, args=(wconn,), name="postier-store-write", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        """Run the jobs already queued, then stop the threads and close connections."""
        if self._thread is not None:
            self._jobs.put(_STOP)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._write_lock is not None:
            os.close(self._write_lock)
            self._write_lock = None
        if self._pool is not None:
            pool = self._pool
            self._pool = None
            await asyncio.to_thread(pool.shutdown, True)
        with self._lock:
            for c in self._reader_conns:
                c.close()
            self._reader_conns.clear()

    # --- writes ------------------------------------------------------------
    async def write(self, fn: Callable[[Tx], T]) -> T:
        if self._thread is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop, loop.create_future())
        self._jobs.put(job)
        result: T = await job.future
        return result

    def _run(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                job = self._jobs.get()
                if job is _STOP:
                    return
                lock = self._write_lock
                if lock is not None:  # the other processes' writers (module rules)
                    fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    # jobs queued while another process committed join this batch
                    batch = [job]
                    stop = False
                    while len(batch) < self.max_batch:
                        try:
                            nxt = self._jobs.get_nowait()
                        except queue.Empty:
                            break
                        if nxt is _STOP:
                            stop = True
                            break
                        batch.append(nxt)
                    self._run_batch(conn, batch)
                finally:
                    if lock is not None:
                        fcntl.flock(lock, fcntl.LOCK_UN)
                if stop:
                    return
        finally:
            conn.close()

    def memory_temp(self) -> None:
        """From the next batch on, the writer keeps its temp storage in memory.

        Each job's SAVEPOINT keeps the pages it changes in a sub-journal, which
        SQLite spills to a temp file past 64 KiB; one delivery changes more than
        that (about 23 pages), so each wrote ~95 KB to a temp file that only a
        rollback to the savepoint reads. In memory the sub-journal is emptied at
        every RELEASE: one job's pages at a time. Asked for once the schema is
        migrated: a migration's sorts (CREATE INDEX over a large table) keep
        spilling to temp files, not to memory. Before any TEMP object is made on
        the connection: changing temp_store drops them."""
        self._memory_temp = True

    def note_directory_change(self) -> None:
        """From a trigger, in the writer thread: this transaction edits the directory."""
        self._directory_changed = True

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        # a caller cancelled before its job started: the job does not run
        live = [j for j in batch if not j.future.cancelled()]
        if not live:
            return
        self._directory_changed = False
        try:
            if self._memory_temp and not self._memory_temp_set:
                conn.execute("PRAGMA temp_store = MEMORY")  # outside a transaction
                self._memory_temp_set = True
            conn.execute("BEGIN IMMEDIATE")
        except Exception as e:
            _hand_over([(j, e, None) for j in live])
            return
        done: list[tuple[_Job, Any, Tx]] = []
        failed: list[tuple[_Job, BaseException]] = []
        try:
            for j in live:
                tx = Tx(conn)
                conn.execute("SAVEPOINT job")
                try:
                    result = j.fn(tx)
                except Exception as e:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    failed.append((j, e))
                else:
                    conn.execute("RELEASE job")
                    done.append((j, result, tx))
            conn.execute("COMMIT")
        except Exception as e:
            # the transaction as a whole failed (I/O error, disk full, lock timeout)
            log.exception("store commit failed; %d job(s) rolled back", len(live))
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except Exception:
                    log.exception("rollback failed")
            _hand_over([(j, e, None) for j in live])
            return
        self.commits += 1
        if self._directory_changed and self.on_directory_change is not None:
            try:
                self.on_directory_change()
            except Exception:
                log.exception("directory change hook failed")
        for _j, _result, tx in done:
            for action in tx.after_commit:
                try:
                    action()
                except Exception:
                    log.exception("post-commit action failed")
        _hand_over(
            [(j, None, result) for j, result, _tx in done] + [(j, e, None) for j, e in failed]
        )

    # --- reads -------------------------------------------------------------
    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._pool is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._read_job, fn)

    def read_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a small read on the calling thread (the event loop), for point
        look-ups that cost less than a hop to the reader pool. WAL readers never
        wait for the writer; should the database be busy anyway (recovery), this
        raises `sqlite3.OperationalError` after a short wait and the caller falls
        back to `read`."""
        if self._pool is None:
            raise RuntimeError("store is not open")
        conn: sqlite3.Connection | None = getattr(self._local, "now", None)
        if conn is None:
            conn = connect(self.path, 0.05)
            conn.execute("PRAGMA query_only = ON")
            conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
            self._local.now = conn
            with self._lock:
                self._reader_conns.append(conn)
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("ROLLBACK")

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, self.busy_timeout)
            conn.execute("PRAGMA query_only = ON")
            conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    def _read_job(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("ROLLBACK")
