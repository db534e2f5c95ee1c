"""Reading SMTP replies for `postier verify`, and its rate limiter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from postier.ops.verify import (
    RateLimited,
    RateLimiter,
    is_greylisting,
    is_unknown_user,
    reply_lines,
    retry_delay,
)
from postier.smtp.client import ServerReply


def reply(code: int, text: str) -> ServerReply:
    return ServerReply(code, tuple(text.split("\n")))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("4.7.1 Greylisted, try again in 300 seconds", 300),
        ("4.7.1 greylisted: please retry in 5 minutes", 300),
        ("4.2.0 Greylisted for 60s", 60),
        ("4.7.1 Try again after 2 hours", 7200),
        ("4.7.1 wait 10 mins", 600),
        ("4.7.1 Greylisted, see http://postgrey.schweikert.ch/help/x.html", None),
        ("4.7.1 try again in a while", None),
    ],
)
def test_retry_delay(text: str, seconds: int | None) -> None:
    assert retry_delay(text) == seconds


@pytest.mark.parametrize(
    ("code", "text", "grey"),
    [
        (451, "4.7.1 Greylisted, try again later", True),
        (450, "4.2.0 <a@b>: Recipient address rejected: Greylisted", True),
        (451, "4.7.1 Please try again later", True),
        (451, "4.3.0 Local error, try again later", False),
        (452, "4.2.2 Mailbox full", False),
        (550, "5.7.1 greylisted forever", False),  # not temporary: not greylisting
        (421, "4.7.0 graylisting in effect", True),
    ],
)
def test_is_greylisting(code: int, text: str, grey: bool) -> None:
    assert is_greylisting(reply(code, text)) is grey


@pytest.mark.parametrize(
    ("code", "text", "unknown"),
    [
        (550, "5.1.1 <x@y>: Recipient address rejected: User unknown", True),
        (550, "5.1.0 Address rejected", True),
        (553, "5.1.3 Bad recipient address syntax", True),
        (551, "User not local; please try <x@z>", True),
        (550, "No such user here", True),
        (550, "Requested action not taken: mailbox unavailable", True),
        (550, "5.7.1 Relay access denied", False),
        (554, "5.7.1 Client host rejected: blocked", False),
        (550, "Access denied", False),
        (450, "4.1.1 unknown for now", False),
    ],
)
def test_is_unknown_user(code: int, text: str, unknown: bool) -> None:
    assert is_unknown_user(reply(code, text)) is unknown


def test_reply_lines_multiline() -> None:
    assert reply_lines(reply(250, "mx.example\nPIPELINING\nSIZE 10")) == [
        "250-mx.example",
        "250-PIPELINING",
        "250 SIZE 10",
    ]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_per_domain(tmp_path: Path) -> None:
    clock = Clock()
    limiter = RateLimiter(
        tmp_path / "h.json", max_per_domain=2, max_total=10, window=60, clock=clock
    )
    limiter.take("a.test")
    clock.now += 10
    limiter.take("a.test")
    with pytest.raises(
        RateLimited,
        match=r"^rate limit: 2 checks of a\.test in the last 60s; "
        r"try again in 50s$",
    ) as info:
        limiter.take("a.test")
    assert info.value.wait == 50
    limiter.take("b.test")  # another domain is not affected
    clock.now += 51  # the first check left the window
    limiter.take("a.test")
    saved = json.loads((tmp_path / "h.json").read_text())
    assert saved == {"a.test": [1010.0, 1061.0], "b.test": [1010.0]}


def test_rate_limit_total_and_shared_through_the_file(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "h.json"
    RateLimiter(path, max_per_domain=5, max_total=2, clock=clock).take("a.test")
    RateLimiter(path, max_per_domain=5, max_total=2, clock=clock).take("b.test")
    with pytest.raises(RateLimited, match=r"^rate limit: 2 checks in the last 60s"):
        RateLimiter(path, max_per_domain=5, max_total=2, clock=clock).take("c.test")


def test_rate_limit_survives_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.write_text("{not json")
    RateLimiter(path, clock=Clock()).take("a.test")
    assert json.loads(path.read_text()) == {"a.test": [1000.0]}
