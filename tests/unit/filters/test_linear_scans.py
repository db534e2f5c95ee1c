"""No backtracking on untrusted text (issue 11, item 4): each pattern that was
super-linear on message text or headers, with the input that showed it.

Each case is timed at n and 4n (CPU time, best of a few runs, so load on the
machine does not decide): linear work grows about 4x, the old quadratic code 16x or more (the
old link regex was cubic: 43 s on 32 KB). Then a 64 KB adversarial input must
finish well under a second.
"""

from __future__ import annotations

import gc
import re
import sys
import time
from collections.abc import Callable

import pytest

import postier.mime
from postier.filters import bayes, headers
from postier.mailauth import dkimpy, spf
from postier.mime.address import addresses
from postier.smtp.headers import HeaderScanner

preview = sys.modules["postier.mime.preview"]


def _best(fn: Callable[[], object], runs: int = 5) -> float:
    """The fastest of `runs` runs in CPU time of this thread (wall time counts
    whatever else the machine does), the garbage collector off (its passes over
    every live object would be counted against whoever allocates)."""
    best = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(runs):
            t = time.thread_time()
            fn()
            best = min(best, time.thread_time() - t)
    finally:
        gc.enable()
    return best


def assert_linear(work: Callable[[int], object], n: int) -> None:
    """work(n) and work(4n): a 4x input may cost at most 8x (+5 ms of noise)."""
    work(n)  # warm up
    small = _best(lambda: work(n))
    big = _best(lambda: work(4 * n))
    assert big < 8 * small + 0.005, f"{n}: {small * 1000:.2f} ms, {4 * n}: {big * 1000:.2f} ms"


CASES: list[tuple[str, Callable[[int], object], int]] = [
    # filters/headers.py: <a\s[^>]*?href...(.*?)</a\s*> was cubic (43 s on 3,200 repeats)
    ("headers.links", lambda n: list(headers.links("<a href=x " * (n // 10))), 2000),
    ("headers.links-unclosed", lambda n: list(headers.links("<a href=x>" * (n // 10))), 2000),
    ("headers.links-close-abbr", lambda n: list(headers.links("<a href=x>" + "</abbr" * n)), 500),
    ("headers._TAG", lambda n: headers._TAG.sub("", "<" * n), 4000),
    ("bayes._TAG", lambda n: bayes._TAG.sub(" ", "<" * n), 4000),
    ("bayes.tokenize", lambda n: bayes.tokenize(b"", [("text/html", "<" * n)]), 4000),
    # mime/preview.py: <(script|style|head|title)\b.*?</\1\s*> from every "<script"
    ("preview.html_to_text", lambda n: preview.html_to_text("<script" * (n // 7)), 4000),
    (
        "preview.html_to_text-closes",
        lambda n: preview.html_to_text("<title>" + "</title " * n),
        500,
    ),
    # mailauth/spf.py: the toplabel ABNF as a regex, alternatives overlapping
    ("spf._is_toplabel", lambda n: spf._is_toplabel("a" * n + "!"), 2000),
    # dkimpy relaxed body canonicalisation: [\t ]+\r\n from every blank of a run
    (
        "dkimpy.strip_trailing_whitespace",
        lambda n: dkimpy.strip_trailing_whitespace(b" " * n + b"x\r\n"),
        4000,
    ),
    # the header scanner holds at most a field name back: trickled bytes stay linear
    (
        "HeaderScanner-trickle",
        lambda n: [HeaderScanner().feed(b"X" * n) for _ in range(1)],
        4000,
    ),
]


@pytest.mark.parametrize(("name", "work", "n"), CASES, ids=[c[0] for c in CASES])
def test_scan_is_linear(name, work, n):
    assert_linear(work, n)


@pytest.mark.parametrize(("name", "work", "n"), CASES, ids=[c[0] for c in CASES])
def test_64_kb_of_adversarial_input_under_a_second(name, work, n):
    t = time.thread_time()
    work(64 * 1024)
    assert time.thread_time() - t < 1.0


def test_from_with_thousands_of_parentheses_is_no_recursion_error():
    """email.utils.getaddresses recursed once per "(": RecursionError at ~1000."""
    assert addresses(["(" * 20_000 + "a@b.test"]) == []  # all one comment
    nested = "(" * 20_000 + ")" * 20_000
    assert addresses([f"x {nested} <a@b.test>"]) == ["a@b.test"]


def test_strip_trailing_whitespace_is_dkimpys_byte_for_byte():
    old = re.compile(rb"[\t ]+\r\n")
    for sample in (
        b"a \r\nb\t\t\r\n \r\n\r\n",
        b"  x  \r\n\t\r\n  ",
        b"a \r \r\n",
        b" \t \t\r\n\r\n\t",
        b"",
    ):
        assert dkimpy.strip_trailing_whitespace(sample) == old.sub(b"\r\n", sample)


def test_long_signature_fields_never_reach_dkimpys_quadratic_checks():
    assert dkimpy.usable_field(b"v=1; b=" + b"A" * 4000)
    assert not dkimpy.usable_field(b"v=1; b=" + b"A" * 9000)
    assert not dkimpy.usable_field(b"v=1; b=A" + b" " * 600 + b"!")
    assert not dkimpy.usable_field(b"v=1; b=" + b"\r\n " * 200)


def test_postier_mime_preview_module_is_the_one_tested():
    assert preview.__name__ == "postier.mime.preview"
    assert postier.mime.preview is not preview  # the package exports the function
