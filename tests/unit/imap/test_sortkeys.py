"""`postier.imap.sortkeys`: SORT keys (RFC 5256 §3, RFC 5957 §3) from crafted
messages, and the base subject (RFC 5256 §2.1) in linear time."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from postier.imap.parse import SortCriterion
from postier.imap.sortkeys import base_subject, extract_base_subject, sort_messages, sort_value
from postier.mime import summarize
from postier.store.models import BlobId, MailboxId, Message, ModSeq, Uid

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def message(uid: int, header: str, *, size: int = 100, arrived: int = 0) -> Message:
    data = header.encode() + b"\r\n\r\nbody\r\n"
    return Message(
        MailboxId(1), Uid(uid), ModSeq(uid), frozenset(), T0 + timedelta(minutes=arrived),
        size, BlobId(f"b{uid}"), summarize(data),
    )  # fmt: skip


def order(messages: list[Message], *criteria: str) -> list[int]:
    crit = [SortCriterion(c.removeprefix("REVERSE "), c.startswith("REVERSE ")) for c in criteria]
    return [m.uid for m in sort_messages(messages, crit)]


def test_cc_sorts_by_the_first_cc_mailbox() -> None:
    """RFC 5256 §3: CC is the addr-mailbox of the first Cc address: a display name with
    a comma is not an address, and case does not matter."""
    msgs = [
        message(1, 'Cc: "Zed, Anna" <Carol@x.test>, aaa@x.test'),
        message(2, "Cc: bob@y.test"),
        message(3, "Subject: no cc"),
        message(4, "Cc: =?utf-8?q?A?= <alice@z.test>"),
        message(5, "Cc: BOB@w.test"),
    ]
    assert order(msgs, "CC") == [3, 4, 2, 5, 1]
    assert order(msgs, "REVERSE CC") == [1, 2, 5, 4, 3]  # ties stay in sequence order
    assert sort_value("CC", msgs[0]) == "carol"


def test_from_and_to_use_the_first_address_a_group_by_its_name() -> None:
    msgs = [
        message(1, "From: zoe@x.test\r\nTo: undisclosed: beth@x.test, al@y.test;"),
        message(2, "From: Adam <yves@x.test>\r\nTo: carl@x.test"),
        message(3, "To: aaron@x.test, zz@x.test"),
    ]
    assert order(msgs, "FROM") == [3, 2, 1]
    assert order(msgs, "TO") == [3, 2, 1]  # "undisclosed" (the group) after "carl"


def test_display_sorts_by_name_else_address() -> None:
    """RFC 5957 §3: the decoded display name, else mailbox@host."""
    msgs = [
        message(1, "From: zed@a.test"),
        message(2, "From: =?utf-8?q?=C3=89mile?= <aaa@b.test>"),
        message(3, 'From: "Bob" <zzz@c.test>'),
        message(4, "From: alice@d.test"),
        message(5, "To: Carol <c@x.test>"),
    ]
    assert order(msgs, "DISPLAYFROM") == [5, 4, 3, 1, 2]  # "" < alice@ < bob < zed@ < émile
    assert sort_value("DISPLAYFROM", msgs[1]) == "émile"
    assert sort_value("DISPLAYTO", msgs[4]) == "carol"
    assert sort_value("DISPLAYTO", msgs[0]) == ""


def test_subject_date_arrival_size_and_ties() -> None:
    msgs = [
        message(1, "Subject: Re: [list] Beta\r\nDate: Tue, 3 Mar 2026 01:00:00 +0200", size=5),
        message(2, "Subject: alpha (fwd)\r\nDate: Mon, 2 Mar 2026 23:30:00 +0000", size=5),
        message(3, "Subject: [fwd: Alpha]", size=1, arrived=-60),  # no Date: its arrival
        message(4, "Subject: beta\r\nDate: junk", size=9, arrived=10),
    ]
    assert order(msgs, "SUBJECT") == [2, 3, 1, 4]
    assert order(msgs, "DATE") == [3, 4, 1, 2]  # 1 is 2 Mar 23:00 UTC; 4: no valid Date:
    assert order(msgs, "ARRIVAL") == [3, 1, 2, 4]
    assert order(msgs, "SIZE", "REVERSE SUBJECT") == [3, 1, 2, 4]
    assert order(msgs, "REVERSE SIZE", "SUBJECT") == [4, 2, 1, 3]


@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        ("Re: [list] Re: Fw: lunch", "lunch", True),
        ("[list] [other] lunch", "lunch", False),
        ("[list] [other]", "[other]", False),
        ("[fwd: [fwd: Re: x] (fwd)]", "x", True),
        ("Re [blob] : x", "x", True),  # subj-blob takes the WSP after it
        ("Re x: y", "Re x: y", False),
        ("  ", "", False),
    ],
)
def test_base_subject_steps(subject: str, base: str, reply: bool) -> None:
    assert extract_base_subject(subject) == (base, reply)


@pytest.mark.parametrize(
    "subject",
    [
        "[a]" * 40_000 + "x",  # each blob once, not once per blob removed
        "[a] " * 30_000,
        "Re: " * 30_000 + "x",
        "[fwd: " * 10_000 + "x" + "]" * 10_000,
        "x" + " (fwd)" * 30_000,
        "[" * 100_000,
    ],
)
def test_base_subject_is_linear(subject: str) -> None:
    started = time.process_time()
    base_subject(subject)
    assert time.process_time() - started < 1.0
