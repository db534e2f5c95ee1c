"""`postier.imap.commands.mailboxes.Pattern`: LIST/LSUB wildcards (RFC 9051 §6.3.9)
matched without backtracking."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postier.imap.commands.mailboxes import Pattern


def reference(pattern: str, name: str) -> bool:
    """The regex translation the matcher replaced (fine on short inputs only)."""
    if pattern[:5].upper() == "INBOX":
        pattern = "INBOX" + pattern[5:]
    rx = "".join(".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, name, re.DOTALL) is not None


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "a/b/c", True),
        ("%", "a/b", False),
        ("%", "a", True),
        ("a/%", "a/b", True),
        ("a/%", "a/b/c", False),
        ("a/*", "a/b/c", True),
        ("%/%", "a/b", True),
        ("a%*%b", "a/x/b", True),  # a run with a "*" is "*"
        ("a%%b", "a/b", False),  # a run of "%" is "%"
        ("inbox", "INBOX", True),  # RFC 9051 §5.1
        ("Inbox/%", "INBOX/x", True),
        ("INBOX", "inbox", False),  # names are stored canonically: INBOX
        ("", "", True),
        ("x", "", False),
        ("*x", "abc", False),
    ],
)
def test_wildcards(pattern: str, name: str, expected: bool) -> None:
    assert Pattern(pattern).matches(name) is expected


@settings(max_examples=500)
@given(
    st.text(alphabet="ab/*%", max_size=8),
    st.text(alphabet="ab/", max_size=8),
)
def test_same_answers_as_the_regex_translation(pattern: str, name: str) -> None:
    assert Pattern(pattern).matches(name) == reference(pattern, name)


def test_hostile_patterns_take_linear_time() -> None:
    # each of these made the regex translation backtrack for good
    patterns = ["*%" * 500 + "x", "%*" * 500, "a*" * 500 + "b", "*a" * 300 + "%b" * 200]
    names = ["a" * 200, "folder-7" + "/sub" * 50, "a/" * 100 + "c"]
    start = time.perf_counter()
    for p in patterns:
        for n in names:
            Pattern(p).matches(n)
    assert time.perf_counter() - start < 0.5
    assert not Pattern("*%" * 500 + "x").matches("a" * 200)
    assert Pattern("a*" * 100 + "b").matches("a" * 150 + "b")
