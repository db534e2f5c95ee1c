"""SqliteStore's directory cache (store/sqlite/directory.py): RCPT look-ups come
from memory, and a directory change made by any process of the data dir is seen
by the next look-up in every other one."""

from __future__ import annotations

import sqlite3

import pytest

from postier.store.sqlite import SqliteStore
from postier.store.sqlite.directory import MISS, Cache


@pytest.fixture
async def two(tmp_path):
    """Two stores on one data dir: the workers of one server, or a worker and an
    admin command."""
    a = SqliteStore(tmp_path / "data")
    await a.open()
    b = SqliteStore(tmp_path / "data")
    await b.open()
    yield a, b
    await a.close()
    await b.close()


def count_reads(monkeypatch, store: SqliteStore) -> list[int]:
    db = store._db
    assert db is not None
    reads = [0]
    real = db.read_now

    def counting(fn):
        reads[0] += 1
        return real(fn)

    monkeypatch.setattr(db, "read_now", counting)
    return reads


async def test_lookups_come_from_memory(two, monkeypatch):
    a, b = two
    await b.add_domain("example.test")
    await b.add_user("u@example.test", "h")
    reads = count_reads(monkeypatch, a)
    for _ in range(3):
        assert (await a.get_domain("example.test")) is not None
        assert [u.address for u in (await a.resolve("u@example.test")).users] == ["u@example.test"]
        assert (await a.get_domain("elsewhere.test")) is None
        assert not (await a.resolve("nobody@example.test")).found
    assert reads[0] == 4  # the first time only


async def test_another_process_s_change_is_seen_at_once(two):
    a, b = two
    await b.add_domain("example.test")
    assert not (await a.resolve("u@example.test")).found  # a negative answer, cached
    assert (await a.get_domain("other.test")) is None
    user = await b.add_user("u@example.test", "h")
    assert (await a.resolve("u@example.test")).users == (user,)
    await b.add_domain("other.test")
    assert (await a.get_domain("other.test")) is not None

    await b.add_alias("alias@example.test", ["u@example.test"])
    assert (await a.resolve("alias@example.test")).users == (user,)
    await b.delete_alias("alias@example.test")
    await b.add_alias("alias@example.test", ["far@remote.test"])
    got = await a.resolve("alias@example.test")
    assert (got.users, got.remote) == ((), ("far@remote.test",))

    await b.set_quota("u@example.test", 1000)
    [changed] = (await a.resolve("u@example.test")).users
    assert changed.quota_bytes == 1000
    await b.delete_user("u@example.test")
    assert not (await a.resolve("u@example.test")).found
    await b.delete_alias("alias@example.test")
    await b.delete_domain("other.test")
    assert (await a.get_domain("other.test")) is None


async def test_a_change_made_by_hand_is_seen_after_the_ttl(two, tmp_path, monkeypatch):
    a, _ = two
    await a.add_domain("example.test")
    assert not (await a.resolve("u@example.test")).found
    conn = sqlite3.connect(tmp_path / "data" / "postier.db")
    with conn:
        conn.execute(
            "INSERT INTO users (address, domain, password_hash, quota_bytes, created) "
            "VALUES ('u@example.test', 'example.test', 'h', 0, 0)"
        )
    conn.close()
    assert not (await a.resolve("u@example.test")).found  # not told: still cached
    cache = a._directory
    assert cache is not None
    later = cache._expires + 0.001
    monkeypatch.setattr("postier.store.sqlite.directory.time.monotonic", lambda: later)
    assert (await a.resolve("u@example.test")).found


def test_the_cache_is_bounded(tmp_path):
    cache = Cache(tmp_path / "v", max_entries=3)
    version = cache.version()
    cache.get("x")  # takes the version
    for i in range(3):
        cache.put(i, i, version)
    assert [cache.get(i) for i in range(3)] == [0, 1, 2]
    cache.put(3, 3, version)
    assert cache.get(0) is MISS
    assert cache.get(3) == 3
    cache.bump()
    assert cache.get(3) is MISS
    cache.put(4, 4, version)  # read under the old version: not kept
    assert cache.get(4) is MISS
    cache.close()
