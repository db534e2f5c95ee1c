"""The search box's terms become the IMAP search keys the matcher runs."""

from __future__ import annotations

import time
from datetime import date

import pytest

from postier.imap import parse as p
from postier.web.webmail.search import MAX_TERMS, QueryError, program, tokens


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
