"""DKIM private keys kept by the store (`Store.dkim_keys`, `add_dkim_key`): files of
the data dir with SQLite, a table with PostgreSQL; the first key kept wins."""

from __future__ import annotations

import asyncio

import pytest

from postier.store.errors import Invalid


async def test_dkim_keys_first_writer_wins(store, store_factory):
    assert await store.dkim_keys("example.test") == {}
    assert await store.add_dkim_key("example.test", "s1", b"PEM one") == b"PEM one"
    # a second writer (another process or node) gets the key kept first
    other = await store_factory()
    assert await other.add_dkim_key("example.test", "s1", b"PEM two") == b"PEM one"
    await store.add_dkim_key("Example.TEST", "s2", b"PEM three")  # names are case-blind
    assert await other.dkim_keys("example.test") == {"s1": b"PEM one", "s2": b"PEM three"}
    assert await other.dkim_keys("other.test") == {}  # no domain needed, none there


async def test_dkim_keys_racing_writers_keep_one(store, store_factory):
    other = await store_factory()
    kept = await asyncio.gather(
        *(
            s.add_dkim_key("race.test", "s1", f"PEM {i}".encode())
            for i, s in enumerate([store, other] * 4)
        )
    )
    assert len(set(kept)) == 1
    assert await store.dkim_keys("race.test") == {"s1": kept[0]}


async def test_dkim_key_names_are_checked(store):
    with pytest.raises(Invalid):
        await store.add_dkim_key("example.test", "../escape", b"PEM")
    with pytest.raises(Invalid):
        await store.add_dkim_key("a/b", "s1", b"PEM")
    with pytest.raises(Invalid):
        await store.dkim_keys("../etc")
