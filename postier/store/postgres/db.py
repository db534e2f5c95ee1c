"""PostgreSQL access with asyncpg: one writer connection with group commit, a reader pool.

Rules:
- Every write runs as a job ``await fn(tx)`` on the writer connection. The writer
  task takes every job waiting (up to `max_batch`), runs them in ONE transaction,
  each inside its own SAVEPOINT, and commits once: one WAL flush for the whole
  batch, as the SQLite backend does (`postier.store.sqlite.db`). That is group
  commit; PostgreSQL's ``synchronous_commit`` (on by default) makes COMMIT return
  only once the WAL is flushed (and, with synchronous replicas, replicated).
- A job that raises is rolled back alone; the others still commit. Its caller
  gets the exception; nothing of it is durable. A batch first runs without
  savepoints (jobs rarely fail, and a savepoint per job is a round trip per job);
  when a job of a batch of several raises, the batch is rolled back and run again
  with each job inside its own SAVEPOINT.
- A deadlock or serialization failure (several nodes writing the same rows in
  another order) rolls the whole batch back and runs it again, up to `retries`
  times: jobs are functions of the database alone (their after-commit actions are
  collected afresh each run), so running one again is safe.
- A job's future resolves only after COMMIT returned; if COMMIT fails (or the
  connection drops), every job of the batch fails and the next batch reconnects.
- A job may also name a `Many`: a function that does the work of several jobs of
  its kind at once (deliveries: their statements pipelined in one round trip).
  A batch run without savepoints hands each such group of two or more to it;
  if it raises, the batch is run again job by job, with savepoints.
- `Database.before_commit` gives SQL that travels with the batch's COMMIT in one
  message (the change feed's NOTIFY): a batch of one job costs three round trips,
  BEGIN, the job's statement and COMMIT. For a batch of many changes it runs in
  a thread (nothing else calls it meanwhile: the writer task waits for it).
- After COMMIT, each job's `Tx.after_commit` callbacks run on the event loop
  before any future resolves, so in-process subscribers hear of a change no later
  than its writer's caller.
- Reads take a connection of the pool for one call (`read`); a read that needs a
  consistent view of several statements opens its own transaction. Reads leave
  no session state behind, so connections go back to the pool without a reset.

Why hand-written: asyncpg's pool gives each caller its own transaction, one
WAL flush per write; nothing in it batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

log = logging.getLogger(__name__)

T = TypeVar("T")

#: past this many changes in a batch, `Database.before_commit` runs in a thread
_BEFORE_COMMIT_INLINE = 256

#: errors after which running the batch again can succeed
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)


class _RunWithSavepoints(Exception):
    """A job of a batch run without savepoints raised: run the batch with them."""


class Tx:
    """What a write job sees: the connection and a list of post-commit actions."""

    __slots__ = ("after_commit", "changes", "conn")

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.after_commit: list[Callable[[], None]] = []
        #: what the job changed, for `Database.before_commit` (the change feed)
        self.changes: list[Any] = []

    async def execute(self, sql: str, *args: Any) -> str:
        result: str = await self.conn.execute(sql, *args)
        return result

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(sql, *args)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(sql, *args)
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.conn.fetchval(sql, *args)


#: does the work of several jobs at once: their items in, their results out (in
#: order); whatever it raises sends the batch back to run job by job
Many = Callable[[Tx, list[Any]], Awaitable[list[Any]]]


@dataclass
class _Job:
    fn: Callable[[Tx], Awaitable[Any]]
    future: asyncio.Future[Any]
    #: (the group's function, this job's item), or None
    many: tuple[Many, Any] | None = None


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """A pooled connection goes back as it is: reads leave no session state (no
    LISTEN, no session locks, no settings), so asyncpg's reset query would only
    cost a round trip per read."""


def rowcount(status: str) -> int:
    """The row count of a command status ("UPDATE 3", "DELETE 0", "INSERT 0 1")."""
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else 0


class Database:
    def __init__(
        self, dsn: str, *, max_batch: int = 256, readers: int = 4, retries: int = 5
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if readers < 1:
            raise ValueError("readers must be at least 1")
        self.dsn = dsn
        self.max_batch = max_batch
        self.retries = retries
        self._readers = readers
        self._jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._wconn: asyncpg.Connection | None = None
        self._pool: asyncpg.Pool | None = None
        #: commits so far (tests and metrics: proves batching)
        self.commits = 0
        #: called once per batch with the jobs that succeeded (their `Tx.changes`),
        #: returns SQL (simple query protocol: no parameters) sent with the COMMIT in
        #: one message: one NOTIFY for the whole batch and no round trip of its own
        self.before_commit: Callable[[list[Tx]], str] | None = None

    async def start(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=self._readers, reset=_keep_session
        )
        try:
            self._wconn = await asyncpg.connect(self.dsn)
        except BaseException:
            await self._pool.close()
            self._pool = None
            raise
        self._writer = asyncio.get_running_loop().create_task(
            self._run(), name="postier-store-pg-write"
        )

    async def stop(self) -> None:
        """Run the jobs already queued, then close the connections."""
        if self._writer is not None:
            self._jobs.put_nowait(None)
            await self._writer
            self._writer = None
        if self._wconn is not None:
            await self._wconn.close()
            self._wconn = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    # --- writes ------------------------------------------------------------
    async def write(
        self, fn: Callable[[Tx], Awaitable[T]], many: tuple[Many, Any] | None = None
    ) -> T:
        """Run `fn` in the next batch; `many`: (a function that does the work of
        several such jobs at once, this job's item for it), the same as `fn`'s."""
        if self._writer is None:
            raise RuntimeError("store is not open")
        job = _Job(fn, asyncio.get_running_loop().create_future(), many)
        self._jobs.put_nowait(job)
        result: T = await asyncio.shield(job.future)
        return result

    async def _run(self) -> None:
        while True:
            job = await self._jobs.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._jobs.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                await self._run_batch(batch)
            except Exception as e:  # never leave a caller waiting
                log.exception("store write batch failed")
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(e)
            if stop:
                return

    async def _connection(self) -> asyncpg.Connection:
        if self._wconn is None or self._wconn.is_closed():
            self._wconn = await asyncpg.connect(self.dsn)
        return self._wconn

    async def _run_batch(self, batch: list[_Job]) -> None:
        attempt = 0
        savepoints = False
        while True:
            attempt += 1
            try:
                conn = await self._connection()
                done, failed = await self._attempt(conn, batch, savepoints)
            except _RunWithSavepoints:
                savepoints = True
                attempt -= 1
                continue
            except _RETRYABLE:
                if attempt > self.retries:
                    raise
                log.info("store write batch conflicted with another node; running it again")
                continue
            except (OSError, asyncpg.exceptions.InterfaceError, asyncpg.PostgresError) as e:
                log.exception("store commit failed; %d job(s) rolled back", len(batch))
                # a broken connection is dropped; the next batch opens a new one
                broken = isinstance(e, (OSError, asyncpg.exceptions.InterfaceError))
                if broken and self._wconn is not None and not self._wconn.is_closed():
                    self._wconn.terminate()
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(e)
                return
            break
        self.commits += 1
        for _j, _result, tx in done:
            for action in tx.after_commit:
                try:
                    action()
                except Exception:
                    log.exception("post-commit action failed")
        for j, result, _tx in done:
            if not j.future.done():
                j.future.set_result(result)
        for j, exc in failed:
            if not j.future.done():
                j.future.set_exception(exc)

    async def _attempt(
        self, conn: asyncpg.Connection, batch: list[_Job], savepoints: bool
    ) -> tuple[list[tuple[_Job, Any, Tx]], list[tuple[_Job, BaseException]]]:
        """One run of the batch in one transaction. Round trips are what a batch
        costs: BEGIN, the jobs' statements, then COMMIT with `before_commit`'s SQL.
        Without `savepoints`, groups of two or more jobs naming the same `Many`
        go to it first, then each other job; a job (or group) that raises fails
        the batch of one it is alone in, and sends a batch of several back to be
        run with savepoints (`_RunWithSavepoints`), job by job; then the
        savepoint commands travel together (one simple-protocol message each
        time), and a job that succeeds last needs none."""
        done: list[tuple[_Job, Any, Tx]] = []
        failed: list[tuple[_Job, BaseException]] = []
        groups: dict[Many, list[_Job]] = {}
        if not savepoints:
            for j in batch:
                if j.many is not None:
                    groups.setdefault(j.many[0], []).append(j)
        await conn.execute("BEGIN; SAVEPOINT job" if savepoints else "BEGIN")
        try:
            alone = batch
            for many, js in groups.items():
                if len(js) < 2:
                    continue
                tx = Tx(conn)
                try:
                    results = await many(tx, [j.many[1] for j in js if j.many is not None])
                except _RETRYABLE:
                    raise
                except Exception as e:
                    log.debug("a group of %d jobs failed (%r): run one by one", len(js), e)
                    raise _RunWithSavepoints from e
                if len(results) != len(js):
                    raise _RunWithSavepoints
                # the group's one Tx (its changes and actions) goes with its first job
                done.append((js[0], results[0], tx))
                done.extend((j, r, Tx(conn)) for j, r in zip(js[1:], results[1:], strict=True))
                members = {id(j) for j in js}
                alone = [j for j in alone if id(j) not in members]
            for i, j in enumerate(alone):
                tx = Tx(conn)
                try:
                    result = await j.fn(tx)
                except _RETRYABLE:
                    raise
                except Exception as e:
                    if not savepoints:
                        if len(batch) > 1:
                            raise _RunWithSavepoints from e
                        failed.append((j, e))
                        break
                    # the savepoint stays defined: the next job runs under it
                    await conn.execute("ROLLBACK TO SAVEPOINT job")
                    failed.append((j, e))
                else:
                    if savepoints and i < len(alone) - 1:
                        await conn.execute("RELEASE SAVEPOINT job; SAVEPOINT job")
                    done.append((j, result, tx))
            if not done:
                await conn.execute("ROLLBACK")
                return done, failed
            extra = ""
            if self.before_commit is not None:
                txs = [tx for _j, _r, tx in done]
                if sum(len(tx.changes) for tx in txs) <= _BEFORE_COMMIT_INLINE:
                    extra = self.before_commit(txs)
                else:  # the NOTIFYs of 50,000 changes held the loop ~20 ms
                    extra = await asyncio.to_thread(self.before_commit, txs)
            await conn.execute(extra + "COMMIT")
        except BaseException:
            if not conn.is_closed():
                try:
                    await conn.execute("ROLLBACK")
                except Exception:
                    log.exception("rollback failed")
                    conn.terminate()
            raise
        return done, failed

    # --- reads -------------------------------------------------------------
    async def read(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async with self.pool.acquire() as conn:
            result: T = await fn(conn)
            return result

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.pool.fetch(sql, *args)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.pool.fetchrow(sql, *args)
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.pool.fetchval(sql, *args)
