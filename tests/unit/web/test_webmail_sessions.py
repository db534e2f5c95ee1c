"""Webmail sessions: ids made here only, a new one at login, signed anonymous
tokens, expiry, one table for every process (the store's)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postier.store.sqlite import SqliteStore
from postier.web.webmail.sessions import IDLE, MAX_AGE, TOUCH, Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    """Two store instances over one data dir: two worker processes."""
    one, two = SqliteStore(tmp_path), SqliteStore(tmp_path)
    await one.open()
    await two.open()
    await one.add_domain("example.test")
    await one.add_user("a@example.test", "x")
    try:
        yield one, two
    finally:
        await two.close()
        await one.close()


async def _uid(store: SqliteStore):  # type: ignore[no-untyped-def]
    u = await store.get_user("a@example.test")
    assert u is not None
    return u.id


async def test_login_makes_a_new_id_and_drops_the_old(stores) -> None:  # type: ignore[no-untyped-def]
    one, two = stores
    s, elsewhere = Sessions(one), Sessions(two)
    anon = await s.anonymous()
    got = await elsewhere.get(anon.id)  # signed with the server's secret: any worker
    assert got is not None and not got.logged_in and got.csrf == anon.csrf
    user = await s.login(anon, await _uid(one), "a@example.test")
    assert user.id != anon.id and user.csrf != anon.csrf
    assert len(user.id) == 43  # 256 bits, urlsafe base64
    got = await elsewhere.get(user.id)
    assert got is not None and got.logged_in and got.csrf == user.csrf
    assert got.address == "a@example.test"
    assert await s.get("made-up-by-a-client") is None
    assert await s.get("x" * 43) is None  # the form of an id, not one we made
    assert await s.get("") is None and await s.get(None) is None
    # only a hash of the id is in the database
    rows = await one._read(lambda c: c.execute("SELECT key FROM web_sessions").fetchall())
    assert [len(r[0]) for r in rows] == [32] and user.id.encode() not in rows[0][0]


async def test_anonymous_tokens_are_ours_only(stores) -> None:  # type: ignore[no-untyped-def]
    one, _ = stores
    clock = Clock()
    s = Sessions(one, clock)
    anon = await s.anonymous()
    _, nonce, issued, mac = anon.id.split(".")
    assert await s.get(f"a.{nonce}.{issued}.{'A' * len(mac)}") is None
    assert await s.get(f"a.{nonce}x.{issued}.{mac}") is None
    assert await s.get(f"a.{nonce}.{int(issued) + 1}.{mac}") is None
    assert (await s.anonymous()).id != anon.id
    clock.now += IDLE + 1
    assert await s.get(anon.id) is None  # the login form expired


async def test_csrf_check(stores) -> None:  # type: ignore[no-untyped-def]
    sess = await Sessions(stores[0]).anonymous()
    assert sess.csrf_ok(sess.csrf)
    assert not sess.csrf_ok(None)
    assert not sess.csrf_ok("")
    assert not sess.csrf_ok(sess.csrf + "x")


async def test_idle_and_absolute_expiry(stores) -> None:  # type: ignore[no-untyped-def]
    one, _ = stores
    clock = Clock()
    s = Sessions(one, clock)
    uid = await _uid(one)
    user = await s.login(None, uid, "a@example.test")
    clock.now += IDLE - 1
    assert await s.get(user.id) is not None  # use refreshes the idle timer
    clock.now += IDLE + 1
    assert await s.get(user.id) is None
    user = await s.login(None, uid, "a@example.test")
    for _ in range(int(MAX_AGE // (IDLE / 2)) + 1):
        clock.now += IDLE / 2
        await s.get(user.id)
    assert await s.get(user.id) is None  # kept busy, it still ends at MAX_AGE


async def test_last_use_written_at_most_once_per_touch(stores) -> None:  # type: ignore[no-untyped-def]
    one, _ = stores
    clock = Clock()
    s = Sessions(one, clock)
    user = await s.login(None, await _uid(one), "a@example.test")
    commits = one.commits
    for _ in range(10):
        clock.now += TOUCH / 10 - 0.01
        assert await s.get(user.id) is not None
    assert one.commits == commits  # reads only
    clock.now += 1
    assert await s.get(user.id) is not None
    assert one.commits == commits + 1


async def test_alive_does_not_refresh_and_ends_with_logout_anywhere(stores) -> None:  # type: ignore[no-untyped-def]
    one, two = stores
    clock = Clock()
    s, elsewhere = Sessions(one, clock), Sessions(two, clock)
    uid = await _uid(one)
    user = await s.login(None, uid, "a@example.test")
    assert await s.alive(user)
    clock.now += IDLE - 1
    assert await s.alive(user)  # a live update stream asking...
    clock.now += 2
    assert not await s.alive(user)  # ...did not keep the session from idling out
    other = await s.login(None, uid, "a@example.test")
    theirs = await elsewhere.get(other.id)
    assert theirs is not None
    await elsewhere.drop(theirs)  # logout through another worker
    assert not await s.alive(other)
    assert await s.get(other.id) is None
    assert not await s.alive(await s.anonymous())


async def test_disabled_account_loses_its_sessions(stores) -> None:  # type: ignore[no-untyped-def]
    one, two = stores
    s = Sessions(one)
    user = await s.login(None, await _uid(one), "a@example.test")
    await two.set_disabled("a@example.test", True)
    assert await s.get(user.id) is None
    assert not await s.alive(user)
