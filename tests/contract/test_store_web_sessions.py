"""Contract: webmail sessions (`web_session_*`), server secrets, trace counts.

Every process of a server (every node over PostgreSQL) sees one set of sessions:
what one store instance adds, touches or deletes, another finds at once.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from postier.mail.queueid import QueueId
from postier.store.errors import NotFound

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def key(n: int) -> bytes:
    return hashlib.sha256(str(n).encode()).digest()


async def _user(store, address: str = "a@example.test"):
    if await store.get_domain("example.test") is None:
        await store.add_domain("example.test")
    return await store.add_user(address, "x")


async def add(store, k: bytes, user_id, at: datetime = T0, keep: int = 10) -> None:
    await store.web_session_add(
        k, user_id, "csrf-" + k.hex()[:8], at, keep=keep, idle_before=at - timedelta(hours=8)
    )


async def test_add_get_touch_delete_seen_by_another_process(store, store_factory):
    other = await store_factory()
    u = await _user(store)
    await add(store, key(1), u.id)
    got = await other.web_session_get(key(1))
    assert got is not None
    assert (got.user_id, got.address, got.admin) == (u.id, "a@example.test", False)
    assert got.csrf == "csrf-" + key(1).hex()[:8]
    assert got.created == T0 and got.last_seen == T0
    assert await other.web_session_get(key(2)) is None
    await other.web_session_touch(key(1), T0 + timedelta(minutes=5))
    await store.web_session_touch(key(1), T0 + timedelta(minutes=1))  # never backwards
    got = await store.web_session_get(key(1))
    assert got is not None and got.last_seen == T0 + timedelta(minutes=5)
    await store.set_admin("a@example.test", True)  # the role as it is now
    got = await other.web_session_get(key(1))
    assert got is not None and got.admin
    await other.web_session_delete(key(1))
    assert await store.web_session_get(key(1)) is None
    await store.web_session_delete(key(1))  # twice: nothing to do


async def test_disabled_and_deleted_accounts_lose_their_sessions(store):
    a = await _user(store, "a@example.test")
    b = await _user(store, "b@example.test")
    await add(store, key(1), a.id)
    await add(store, key(2), b.id)
    await store.set_disabled("a@example.test", True)
    assert await store.web_session_get(key(1)) is None
    await store.set_disabled("a@example.test", False)
    assert await store.web_session_get(key(1)) is None  # ended, not suspended
    await store.delete_user("b@example.test")
    assert await store.web_session_get(key(2)) is None
    with pytest.raises(NotFound):
        await add(store, key(3), b.id)


async def test_a_new_password_ends_the_account_s_sessions(store):
    a = await _user(store, "a@example.test")
    b = await _user(store, "b@example.test")
    await add(store, key(1), a.id)
    await add(store, key(2), b.id)
    await store.set_password("a@example.test", "new-hash")
    assert await store.web_session_get(key(1)) is None
    assert await store.web_session_get(key(2)) is not None  # another account's stays
    assert (await store.get_user("a@example.test")).password_hash == "new-hash"
    with pytest.raises(NotFound):
        await store.set_password("nobody@example.test", "h")


async def test_bounded_per_user_and_idle_ones_swept(store):
    a = await _user(store, "a@example.test")
    b = await _user(store, "b@example.test")
    await add(store, key(100), b.id, at=T0 - timedelta(hours=9))  # idle past 8 h
    for i in range(5):
        await add(store, key(i), a.id, at=T0 + timedelta(seconds=i), keep=3)
    assert await store.web_session_get(key(100)) is None
    kept = [i for i in range(5) if await store.web_session_get(key(i)) is not None]
    assert kept == [2, 3, 4]


async def test_server_secret_made_once_for_every_process(store, store_factory):
    other = await store_factory()
    s1 = await store.server_secret("web")
    assert len(s1) == 32
    assert await other.server_secret("web") == s1
    assert await store.server_secret("web") == s1
    assert await other.server_secret("another") != s1


async def test_trace_count(store):
    now = datetime.now(UTC)
    await store.trace_add(QueueId("Q1"), "received", "from=<a@x> ...")
    await store.trace_add(QueueId("Q1"), "delivered", "to <b@example.test> in INBOX")
    await store.trace_add(QueueId("Q2"), "received", "from=<c@x> ...")
    await store.trace_add(QueueId("Q2"), "delivered", "<d@remote.test> 250 ok")
    since = now - timedelta(seconds=5)
    assert await store.trace_count("received", since) == 2
    assert await store.trace_count("delivered", since) == 2
    assert await store.trace_count("delivered", since, "<") == 1
    assert await store.trace_count("received", now + timedelta(minutes=1)) == 0
    assert await store.trace_count("bounced", since) == 0
