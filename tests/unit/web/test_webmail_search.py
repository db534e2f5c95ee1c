"""The search box's terms become the IMAP search keys the matcher runs."""

from __future__ import annotations

import threading
import time
from datetime import date
from pathlib import Path

import pytest

from postier.imap import parse as p
from postier.store.sqlite import SqliteStore
from postier.web.webmail.search import (
    MAX_TERMS,
    QueryError,
    candidates,
    narrowed,
    program,
    search,
    tokens,
)
from tests.support.messages import new_message


def test_tokens_split_on_spaces_and_keep_quoted_runs() -> None:
    assert tokens('  budget  from:"Carol Example" "two words" ') == [
        "budget",
        "from:Carol Example",
        "two words",
    ]
    assert tokens("") == []


def test_field_terms() -> None:
    key = program("from:carol to:bob cc:dave subject:plans body:noon")
    assert key == p.SearchAnd(
        (
            p.SearchHeader("From", "carol"),
            p.SearchHeader("To", "bob"),
            p.SearchHeader("Cc", "dave"),
            p.SearchHeader("Subject", "plans"),
            p.SearchText("body", "noon"),
        )
    )


def test_dates_and_flags() -> None:
    assert program("after:2026-11-01") == p.SearchDate("sent", "since", date(2026, 11, 1))
    assert program("before:2026-12-01") == p.SearchDate("sent", "before", date(2026, 12, 1))
    assert program("is:unread") == p.SearchFlag("\\Seen", False)
    assert program("is:read") == p.SearchFlag("\\Seen", True)
    assert program("is:flagged") == p.SearchFlag("\\Flagged")
    with pytest.raises(QueryError, match="not a day"):
        program("before:soon")


def test_a_word_looks_everywhere_and_an_unknown_field_is_a_word() -> None:
    key = program("noon")
    assert isinstance(key, p.SearchOr)
    found = []
    todo: list[p.SearchKey] = [key]
    while todo:
        k = todo.pop()
        if isinstance(k, p.SearchOr):
            todo += (k.left, k.right)
        else:
            found.append(k)
    assert set(found) == {
        p.SearchHeader("From", "noon"),
        p.SearchHeader("To", "noon"),
        p.SearchHeader("Cc", "noon"),
        p.SearchHeader("Subject", "noon"),
        p.SearchText("body", "noon"),
    }
    assert program("size:big") == program("size:big")  # a word, not an error
    assert program("") is None and program("   ") is None


def test_bounded() -> None:
    with pytest.raises(QueryError):
        program(" ".join(["w"] * (MAX_TERMS + 1)))
    start = time.perf_counter()
    tokens('"' * 1_000_000 + "x" * 1_000_000)  # only the first characters are read
    assert time.perf_counter() - start < 0.5


async def test_header_terms_come_from_the_store_index(tmp_path: Path) -> None:
    """From/To/Cc/Subject terms are answered by `Store.search_headers` (the same
    index IMAP SEARCH uses), and the answer is the one the summaries give."""
    store = SqliteStore(tmp_path / "data")
    await store.open()
    try:
        await store.add_domain("example.test")
        user = await store.add_user("u@example.test", "h")
        inbox = await store.get_mailbox(user.id, "INBOX")
        assert inbox is not None
        for sender, subject in (
            ("Alice <alice@remote.test>", "Grüße"),
            ("Bob <bob@remote.test>", "=?utf-8?q?STRASSE?="),
            ("Carol <carol@remote.test>", "lunch"),
        ):
            raw = f"From: {sender}\r\nSubject: {subject}\r\n\r\nhello\r\n".encode()
            await store.append(inbox.id, new_message(raw))
        msgs = await store.list_messages(inbox.id)
        asked: list[tuple[str, list[str]]] = []
        real = store.search_headers

        async def spy(mailbox_id, needle, fields):
            asked.append((needle, list(fields)))
            return await real(mailbox_id, needle, fields)

        store.search_headers = spy  # type: ignore[method-assign]

        async def found(query: str) -> list[int]:
            key = program(query)
            assert key is not None
            return [m.uid for m in await search(store, msgs, key, 5.0)]

        # the index answers header terms: rows without their summary do as well
        light = await store.list_messages(inbox.id, summaries=False)
        key = program("subject:grüsse from:alice")
        assert key is not None
        assert [m.uid for m in await search(store, light, key, 5.0)] == [1]
        assert await found("subject:grüsse") == [1]
        assert await found("strasse") == [2]  # a word: the fields or the text
        assert await found("from:ALICE is:unread") == [1]
        assert await found("hello -nothing") == []
        calls = {(needle, tuple(fields)) for needle, fields in asked}
        assert {("grüsse", ("subject",)), ("ALICE", ("from",))} <= calls
        assert {("strasse", (f,)) for f in ("from", "to", "cc", "subject")} <= calls
    finally:
        await store.close()


def test_the_index_narrows_only_what_every_match_satisfies() -> None:
    answers = {("from", "carol"): frozenset({1, 2, 3}), ("subject", "plans"): frozenset({2, 9})}
    assert narrowed(p.SearchHeader("From", "carol"), answers) == {1, 2, 3}
    assert narrowed(program("from:carol subject:plans") or p.SearchAll(), answers) == {2}
    assert narrowed(program("from:carol is:unread") or p.SearchAll(), answers) == {1, 2, 3}
    either = p.SearchOr(p.SearchHeader("From", "carol"), p.SearchHeader("Subject", "plans"))
    assert narrowed(either, answers) == {1, 2, 3, 9}
    # a side the index does not bound (text, a flag, a negation): no bound at all
    assert (
        narrowed(p.SearchOr(p.SearchHeader("From", "carol"), p.SearchFlag("\\Seen")), answers)
        is None
    )
    assert narrowed(p.SearchNot(p.SearchHeader("From", "carol")), answers) is None
    assert narrowed(program("noon") or p.SearchAll(), answers) is None
    assert narrowed(p.SearchHeader("Message-ID", "carol"), answers) is None


async def test_a_narrowed_search_reads_only_the_messages_it_may_match(tmp_path: Path) -> None:
    """With a From/To/Cc/Subject term bounding it, the search reads the few
    messages the index names, not the folder, and finds what a search over the
    folder's every row finds."""
    store = SqliteStore(tmp_path / "data")
    await store.open()
    try:
        await store.add_domain("example.test")
        user = await store.add_user("u@example.test", "h")
        inbox = await store.get_mailbox(user.id, "INBOX")
        assert inbox is not None
        for i in range(40):
            raw = (
                f"From: p{i % 7}@remote.test\r\nSubject: {'lunch' if i % 3 else 'plans'} {i}"
                f"\r\nDate: Mon, {1 + i % 28} Dec 2026 10:00:00 +0000\r\n\r\nbody {i}\r\n"
            ).encode()
            await store.append(inbox.id, new_message(raw), frozenset({"\\Seen"} if i % 2 else ()))
        everything = await store.list_messages(inbox.id, structures=False)
        listed: list[int] = []
        real = store.list_messages

        async def spy(*args, **kw):
            listed.append(1)
            return await real(*args, **kw)

        store.list_messages = spy  # type: ignore[method-assign]
        for query in (
            "from:p3@",
            "from:p3@ is:unread",
            "from:p3@ subject:plans",
            "from:p3@ body:7",
            "from:p1@ after:2026-12-10",
        ):
            key = program(query)
            assert key is not None
            got, answers = await candidates(store, inbox.id, key)
            assert not listed, query
            assert len(got) <= 6
            want = [m.uid for m in await search(store, everything, key, 5.0)]
            assert want, query
            assert [m.uid for m in await search(store, got, key, 5.0, answers)] == want
        # not bounded by the index: the folder's rows
        got, _ = await candidates(store, inbox.id, program("body:7") or p.SearchAll())
        assert listed and len(got) == 40
    finally:
        await store.close()


async def test_the_search_of_a_folder_is_set_up_off_the_event_loop(
    tmp_path: Path, monkeypatch
) -> None:
    """Each message's `Facts` is made in a search thread: for a folder of 50,000
    that was 30-200 ms of CPU on the web worker's loop, whatever was typed."""
    from postier.web.webmail import search as web_search

    store = SqliteStore(tmp_path / "data")
    await store.open()
    try:
        await store.add_domain("example.test")
        user = await store.add_user("u@example.test", "h")
        inbox = await store.get_mailbox(user.id, "INBOX")
        assert inbox is not None
        await store.append(inbox.id, new_message(b"Subject: lunch\r\n\r\nhello\r\n"))
        msgs = await store.list_messages(inbox.id, summaries=False)
        threads: set[int] = set()
        real = web_search.Facts

        def spy(seq, m):
            threads.add(threading.get_ident())
            return real(seq, m)

        monkeypatch.setattr(web_search, "Facts", spy)
        key = program("is:unread")
        assert key is not None
        assert [m.uid for m in await search(store, msgs, key, 5.0)] == [1]
        assert threads
        assert threading.get_ident() not in threads
    finally:
        await store.close()
