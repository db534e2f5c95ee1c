"""The SQLite writer thread: group commit, per-job rollback, connection settings."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from postier.store.sqlite.db import Database
from tests.support.wakeups import count_wakeups


@pytest.fixture
async def db(tmp_path):
    d = Database(tmp_path / "t.db")
    d.start()
    await d.write(lambda tx: tx.execute("CREATE TABLE t (v INTEGER UNIQUE)"))
    yield d
    await d.stop()


async def values(db):
    return [
        r[0] for r in await db.read(lambda c: c.execute("SELECT v FROM t ORDER BY v").fetchall())
    ]


async def test_connection_settings(db):
    def settings(c):
        return (
            c.execute("PRAGMA journal_mode").fetchone()[0],
            c.execute("PRAGMA synchronous").fetchone()[0],
            c.execute("PRAGMA foreign_keys").fetchone()[0],
        )

    assert await db.read(settings) == ("wal", 2, 1)  # synchronous 2 = FULL
    assert await db.write(lambda tx: settings(tx.conn)) == ("wal", 2, 1)


async def test_savepoint_journals_stay_in_memory_once_asked(db):
    """A job's savepoint journal (one delivery: more than SQLite's 64 KiB spill
    threshold) stays in memory from `memory_temp` on, not in a temp file written
    at every delivery; a job that fails is still rolled back alone."""

    def temp_store(tx):
        return tx.execute("PRAGMA temp_store").fetchone()[0]

    assert await db.write(temp_store) == 0  # default: migrations may sort on disk
    db.memory_temp()
    assert await db.write(temp_store) == 2  # MEMORY

    def fails(tx):
        tx.execute("INSERT INTO t (v) VALUES (?)", (7,))
        raise RuntimeError("refused")

    results = await asyncio.gather(
        db.write(lambda tx: tx.execute("INSERT INTO t (v) VALUES (1)")),
        db.write(fails),
        return_exceptions=True,
    )
    assert isinstance(results[1], RuntimeError)
    assert await values(db) == [1]


async def test_concurrent_writes_are_group_committed(db):
    before = db.commits
    await asyncio.gather(
        *(
            db.write(lambda tx, i=i: tx.execute("INSERT INTO t VALUES (?)", (i,)))
            for i in range(100)
        )
    )
    assert await values(db) == list(range(100))
    assert db.commits - before < 100


async def test_a_batch_s_results_reach_the_loop_with_one_wake_up(db, monkeypatch):
    wakeups = count_wakeups(monkeypatch)
    before = db.commits
    results = await asyncio.gather(
        *(
            db.write(lambda tx, i=i: tx.execute("INSERT INTO t VALUES (?)", (i,)).rowcount)
            for i in range(100)
        )
    )
    assert results == [1] * 100
    assert wakeups() == db.commits - before < 100  # one per batch, not one per job


async def test_max_batch_one_commits_each_job(tmp_path):
    d = Database(tmp_path / "t.db", max_batch=1)
    d.start()
    try:
        await d.write(lambda tx: tx.execute("CREATE TABLE t (v INTEGER)"))
        before = d.commits
        await asyncio.gather(
            *(d.write(lambda tx: tx.execute("INSERT INTO t VALUES (1)")) for _ in range(20))
        )
        assert d.commits - before == 20
    finally:
        await d.stop()


async def test_failed_job_is_rolled_back_alone(db):
    ran = []

    def good(i):
        def job(tx):
            tx.execute("INSERT INTO t VALUES (?)", (i,))
            tx.after_commit.append(lambda: ran.append(i))

        return job

    def bad(tx):
        tx.execute("INSERT INTO t VALUES (1000)")
        tx.after_commit.append(lambda: ran.append("bad"))
        tx.execute("INSERT INTO t VALUES (1)")  # UNIQUE violation: the whole job goes

    results = await asyncio.gather(
        db.write(good(1)), db.write(bad), db.write(good(2)), return_exceptions=True
    )
    assert results[0] is None
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert results[2] is None
    assert await values(db) == [1, 2]
    assert ran == [1, 2]


async def test_results_and_exceptions_reach_the_caller(db):
    assert await db.write(lambda tx: 42) == 42
    with pytest.raises(ZeroDivisionError):
        await db.write(lambda tx: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        await db.read(lambda c: 1 / 0)
    assert await db.read(lambda c: c.execute("SELECT 7").fetchone()[0]) == 7


async def test_reads_are_read_only(db):
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await db.read(lambda c: c.execute("INSERT INTO t VALUES (5)"))


async def test_stop_finishes_queued_jobs(tmp_path):
    d = Database(tmp_path / "t.db")
    d.start()
    await d.write(lambda tx: tx.execute("CREATE TABLE t (v INTEGER)"))
    pending = [
        asyncio.ensure_future(d.write(lambda tx: tx.execute("INSERT INTO t VALUES (1)")))
        for _ in range(10)
    ]
    await asyncio.sleep(0)
    await d.stop()
    await asyncio.gather(*pending)
    with pytest.raises(RuntimeError, match="not open"):
        await d.write(lambda tx: None)
    with pytest.raises(RuntimeError, match="not open"):
        await d.read(lambda c: None)
    conn = sqlite3.connect(tmp_path / "t.db")
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 10
    conn.close()


@pytest.mark.parametrize(
    ("kw", "msg"), [({"max_batch": 0}, "max_batch"), ({"readers": 0}, "readers")]
)
def test_limits_validated(tmp_path, kw, msg):
    with pytest.raises(ValueError, match=msg):
        Database(tmp_path / "t.db", **kw)
