"""The SQLite header index is filled in batches after the commits (schema 14):
a search answers the same before and after a row is indexed, and every row gets
indexed — soon after its commit, or at the next start when the process stopped
first."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from postier.store.api import SEARCH_FIELDS
from postier.store.models import DeliveryTarget
from postier.store.sqlite import SqliteStore
from postier.store.sqlite import store as sqlite_store
from tests.contract.test_store_search import MESSAGES, NEEDLES, message, scan
from tests.support.messages import new_message


def _counts(data: Path) -> tuple[int, int]:
    """(rows pending, rows in the index)."""
    with sqlite3.connect(data / "postier.db") as conn:
        pending = conn.execute("SELECT count(*) FROM header_pending").fetchone()[0]
        indexed = conn.execute("SELECT count(*) FROM header_index").fetchone()[0]
    conn.close()
    return pending, indexed


@pytest.fixture
async def opened(tmp_path: Path):
    store = SqliteStore(tmp_path / "data")
    await store.open()
    await store.add_domain("example.test")
    user = await store.add_user("u@example.test", "h")
    try:
        yield store, user, tmp_path / "data"
    finally:
        await store.close()


async def _answers(
    store: SqliteStore, mailbox_id: int
) -> dict[tuple[str, tuple[str, ...]], list[int]]:
    out = {}
    for fields in [("subject",), ("from",), ("bcc",), tuple(SEARCH_FIELDS)]:
        for needle in [*NEEDLES, "\x00", "a\x00b"]:
            got = await store.search_headers(mailbox_id, needle, fields)
            assert got == await scan(store, mailbox_id, needle, fields), (needle, fields)
            out[needle, fields] = got
    return out


async def test_pending_indexed_and_mixed_rows_answer_alike(opened) -> None:
    store, user, data = opened
    inbox = await store.get_mailbox(user.id, "INBOX")
    for raw in MESSAGES[:4]:
        await store.append(inbox.id, new_message(raw))
    await store.index_headers()
    for raw in MESSAGES[4:]:
        await store.append(inbox.id, new_message(raw))
    assert _counts(data) == (len(MESSAGES) - 4, 4)  # some indexed, some not
    mixed = await _answers(store, inbox.id)
    await store.index_headers()
    assert _counts(data) == (0, len(MESSAGES))
    assert await _answers(store, inbox.id) == mixed
    assert mixed["STRASSE", ("subject",)] == [2, 3]  # the comparison means something
    assert mixed["JÖRG", ("bcc",)] == [4]


async def test_rows_are_indexed_soon_after_their_commit(opened, monkeypatch) -> None:
    store, user, data = opened
    monkeypatch.setattr(sqlite_store, "INDEX_BATCH", 2)  # several batches, one after the other
    for i in range(7):
        await store.deliver(
            new_message(message(f"report {i}", "boss@remote.test")), [DeliveryTarget(user.id)]
        )
    assert _counts(data)[0] > 0
    for _ in range(100):
        if _counts(data) == (0, 7):
            break
        await asyncio.sleep(0.05)
    assert _counts(data) == (0, 7)
    inbox = await store.get_mailbox(user.id, "INBOX")
    assert await store.search_headers(inbox.id, "REPORT 6", ["subject"]) == [7]


async def test_a_row_removed_before_indexing_leaves_nothing(opened) -> None:
    store, user, data = opened
    inbox = await store.get_mailbox(user.id, "INBOX")
    await store.append(inbox.id, new_message(message("gone soon", "a@remote.test")))
    await store.append(inbox.id, new_message(message("stays", "a@remote.test")))
    await store.store_flags(inbox.id, [1], frozenset({"\\Deleted"}), "add")
    assert await store.expunge(inbox.id) == [1]
    assert _counts(data) == (1, 0)
    await store.index_headers()
    assert _counts(data) == (0, 1)
    assert await store.search_headers(inbox.id, "gone", ["subject"]) == []
    assert await store.search_headers(inbox.id, "stays", ["subject"]) == [2]


async def test_rows_left_pending_at_stop_are_indexed_at_the_next_start(tmp_path: Path) -> None:
    """Pending rows commit with their messages; a store that stopped (or was
    killed) before its batch leaves them in the file, and the next one indexes
    them as it opens."""
    data = tmp_path / "data"
    store = SqliteStore(data)
    await store.open()
    await store.add_domain("example.test")
    user = await store.add_user("u@example.test", "h")
    inbox = await store.get_mailbox(user.id, "INBOX")
    await store.append(inbox.id, new_message(message("before the stop", "a@remote.test")))
    await store.close()  # before INDEX_DELAY: nothing indexed
    assert _counts(data) == (1, 0)

    store = SqliteStore(data)
    await store.open()
    try:
        assert _counts(data) == (0, 1)  # indexed before the store serves
        assert await store.search_headers(inbox.id, "the stop", ["subject"]) == [1]
    finally:
        await store.close()
