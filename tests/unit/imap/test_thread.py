"""THREAD (RFC 5256): base subjects, the ORDEREDSUBJECT and REFERENCES algorithms on
crafted messages, and the exact bytes of the ``* THREAD`` response."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from postier.imap import responses as r
from postier.imap.commands.thread import (
    Candidate,
    message_ids,
    ordered_subject,
    parent_ids,
    references,
)
from postier.imap.sortkeys import base_subject, extract_base_subject

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
N = r.ThreadNode


def msg(
    seq: int,
    subject: str = "",
    mid: str = "",
    refs: str = "",
    minute: int | None = None,
) -> Candidate:
    """Message `seq`, sent `minute` minutes after T0 (default: `seq`)."""
    return Candidate(
        id=seq,
        seq=seq,
        sent=T0 + timedelta(minutes=seq if minute is None else minute),
        subject=subject,
        message_id=f"<{mid}@x.test>" if mid else "",
        references=tuple(f"{ref}@x.test" for ref in refs.split()),
    )


def answer(nodes: list[r.ThreadNode]) -> bytes:
    return r.thread(nodes)


# --- response syntax (RFC 5256 §4) -------------------------------------------------------
@pytest.mark.parametrize(
    ("roots", "expected"),
    [
        ([], b"* THREAD\r\n"),
        ([N(1)], b"* THREAD (1)\r\n"),
        # RFC 5256 §4: "(2)(3 6 (4 23)(44 7 96))"
        (
            [N(2), N(3, (N(6, (N(4, (N(23),)), N(44, (N(7, (N(96),)),)))),))],
            b"* THREAD (2)(3 6 (4 23)(44 7 96))\r\n",
        ),
        # RFC 5256 §4: a thread whose parent is missing: "((3)(5))"
        ([N(None, (N(3), N(5)))], b"* THREAD ((3)(5))\r\n"),
        ([N(1, (N(2),)), N(3, (N(4), N(5)))], b"* THREAD (1 2)(3 (4)(5))\r\n"),
    ],
)
def test_thread_response_bytes(roots: list[r.ThreadNode], expected: bytes) -> None:
    assert r.thread(roots) == expected


def test_thread_response_deep_chain_needs_no_recursion() -> None:
    node = N(5000)
    for i in range(4999, 0, -1):
        node = N(i, (node,))
    out = r.thread([node])
    assert out == b"* THREAD (" + b" ".join(b"%d" % i for i in range(1, 5001)) + b")\r\n"


# --- base subject (RFC 5256 §2.1) ---------------------------------------------------------
@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        ("Lunch plans", "Lunch plans", False),
        ("Re: Lunch plans", "Lunch plans", True),
        ("RE:  Re: FWD: fw: Lunch", "Lunch", True),
        ("Re [2]: Lunch", "Lunch", True),  # subj-refwd with a blob before the colon
        ("[list] Re: Lunch", "Lunch", True),  # *subj-blob subj-refwd
        ("[list] Lunch", "Lunch", False),  # a blob alone is no reply
        ("[list]", "[list]", False),  # step 4: the blob stays when nothing follows
        ("[a] [b]", "[b]", False),
        ("Lunch (fwd)", "Lunch", True),  # step 2
        ("Lunch (FWD) (fwd)  ", "Lunch", True),
        ("[Fwd: Re: Lunch]", "Lunch", True),  # step 6, then again from step 2
        ("Re: [fwd: [list] Lunch] (fwd)", "Lunch", True),
        ("\tLunch \t  plans ", "Lunch plans", False),  # step 1
        ("Re:", "", True),
        ("", "", False),
        ("Reply: Lunch", "Reply: Lunch", False),  # only re / fw / fwd
        ("Fwd Lunch", "Fwd Lunch", False),  # the colon is required
    ],
)
def test_base_subject(subject: str, base: str, reply: bool) -> None:
    assert extract_base_subject(subject) == (base, reply)
    assert base_subject(subject) == base.lower()


def test_message_ids_and_parent_ids() -> None:
    assert message_ids(" <a@x> (comment) <b@y>\t<no-at> <c d@x>") == ["a@x", "b@y"]
    # References win; In-Reply-To's first valid ID only when References has none
    assert parent_ids(["<a@x> <b@x>"], ["<c@x>"]) == ("a@x", "b@x")
    assert parent_ids(["junk"], ["bob's <bad> <c@x> <d@x>"]) == ("c@x",)
    assert parent_ids([], []) == ()


# --- ORDEREDSUBJECT (RFC 5256 §3.1) ---------------------------------------------------------
def test_ordered_subject_groups_by_base_subject_and_date() -> None:
    messages = [
        msg(1, "Apples", minute=50),
        msg(2, "Re: pears"),
        msg(3, "Pears", minute=1),  # sent before 2: first of its thread
        msg(4, "Re: apples (fwd)"),
        msg(5, "[list] Re: Pears"),
        msg(6, "Plums"),
        msg(7, "re: plums"),
        msg(8, ""),
        msg(9, "Re: "),  # empty base subject too
    ]
    assert answer(ordered_subject(messages)) == (b"* THREAD (3 (2)(5))(4 1)(6 7)(8 9)\r\n")


def test_ordered_subject_ties_by_sequence_and_zones() -> None:
    plus_one = timezone(timedelta(hours=1))
    messages = [
        msg(1, "b"),
        Candidate(2, 2, datetime(2026, 3, 2, 11, 1, tzinfo=plus_one), "a"),  # 10:01 UTC
        msg(3, "c", minute=1),
    ]
    assert answer(ordered_subject(messages)) == b"* THREAD (1)(2)(3)\r\n"


# --- REFERENCES (RFC 5256 §3.2) -------------------------------------------------------------
def test_references_chain_and_branches() -> None:
    # the shape of RFC 5256 §4's "(2)(3 6 (4 23)(44 7 96))", numbered 1..8
    messages = [
        msg(1, "other", "m1"),
        msg(2, "topic", "m2"),
        msg(3, "Re: topic", "m3", "m2"),
        msg(4, "Re: topic", "m4", "m2 m3"),
        msg(5, "Re: topic", "m5", "m2 m3 m4"),
        msg(6, "Re: topic", "m6", "m2 m3"),
        msg(7, "Re: topic", "m7", "m2 m3 m6"),
        msg(8, "Re: topic", "m8", "m2 m3 m6 m7"),
    ]
    assert answer(references(messages)) == b"* THREAD (1)(2 3 (4 5)(6 7 8))\r\n"


def test_references_missing_parent_keeps_a_dummy_at_the_top() -> None:
    messages = [
        msg(1, "a", "m1"),
        msg(2, "Re: b", "m2", "gone"),
        msg(3, "c", "m3"),
        msg(4, "Re: d", "m4", "gone"),
    ]
    assert answer(references(messages)) == b"* THREAD (1)((2)(4))(3)\r\n"


def test_references_dummies_are_pruned() -> None:
    messages = [
        msg(1, "a", "m1", "gone1"),  # lone child of a dummy at the top: promoted
        msg(2, "b", "m2", "m1 gone2"),  # dummy in the middle: its child moves up
        msg(3, "c", "m3", "m1 gone2"),
        msg(4, "d", "m4", "gone3 gone4"),  # a chain of dummies above one message
    ]
    assert answer(references(messages)) == b"* THREAD (1 (2)(3))(4)\r\n"


def test_references_existing_parents_and_the_last_reference() -> None:
    messages = [
        msg(1, "x", "m1"),
        msg(2, "y", "m2", "m1"),
        msg(3, "z", "m3", "m2"),
        msg(4, "w", "m4", "m1 m3"),  # truncated: m3 keeps its parent m2 (step 1.A)
    ]
    assert answer(references(messages)) == b"* THREAD (1 2 3 4)\r\n"
    relinked = [
        msg(1, "a", "m1"),
        msg(2, "b", "m2", "m1 m3"),  # makes m3 a child of m1 ...
        msg(3, "c", "m3", "m9"),  # ... until m3's own reference wins (step 1.B)
    ]
    assert answer(references(relinked)) == b"* THREAD (1)(3 2)\r\n"


def test_references_duplicate_and_missing_message_ids() -> None:
    messages = [
        msg(1, "a", "dup"),
        msg(2, "b", "dup"),  # the second one gets an ID of its own
        msg(3, "c", "", "dup"),  # a reply to the first
        msg(4, "d"),
    ]
    assert answer(references(messages)) == b"* THREAD (1 3)(2)(4)\r\n"


def test_references_loops_are_not_made() -> None:
    messages = [
        msg(1, "a", "m1", "m2"),
        msg(2, "b", "m2", "m1"),  # would make 1 and 2 each other's parent
        msg(3, "c", "m3", "m3"),  # refers to itself
        msg(4, "d", "m4", "m5 m4 m5"),
    ]
    assert answer(references(messages)) == b"* THREAD (2 1)(3)(4)\r\n"


def test_references_subject_grouping() -> None:
    messages = [
        msg(1, "Lunch", "m1"),
        msg(2, "Re: Lunch", "m2"),  # a reply without references: under 1
        msg(3, "Dinner", "m3"),
        msg(4, "dinner", "m4"),  # two originals: a new dummy holds both
        msg(5, "Re: Dinner", "m5"),  # then joins the dummy
        msg(6, "", "m6"),  # empty subjects are never gathered
        msg(7, "", "m7"),
        msg(8, "Re: Tea", "m8"),  # the table keeps the non-reply ...
        msg(9, "Tea", "m9"),
        msg(10, "Re: Tea", "m10"),  # ... and both replies go under it
    ]
    assert answer(references(messages)) == (b"* THREAD (1 2)((3)(4)(5))(6)(7)(9 (8)(10))\r\n")


def test_references_subject_grouping_with_dummies() -> None:
    messages = [
        msg(1, "Plan", "m1", "gone"),
        msg(2, "Re: Plan", "m2", "gone"),  # dummy (1 2)
        msg(3, "Re: Plan", "m3", "gone2"),
        msg(4, "Re: Plan", "m4", "gone2"),  # dummy (3 4): merged with the first dummy
        msg(5, "Re: Plan", "m5"),  # a lone reply: under the dummy
        msg(6, "Other", "m6", "gone3"),
        msg(7, "Re: Other", "m7", "gone3"),  # dummy whose subject comes from 6
        msg(8, "Other", "m8"),  # a message: the dummy wins the table, 8 goes under
    ]
    assert answer(references(messages)) == (b"* THREAD ((1)(2)(3)(4)(5))((6)(7)(8))\r\n")


def test_references_sorts_siblings_by_sent_date() -> None:
    messages = [
        msg(1, "a", "m1", minute=30),
        msg(2, "Re: a", "m2", "m1", minute=40),
        msg(3, "Re: a", "m3", "m1", minute=35),
        msg(4, "Re: a", "m4", "m1 m3", minute=50),
        msg(5, "Re: a", "m5", "m1 m3", minute=36),
        msg(6, "b", "m6", minute=30),  # ties with 1: sequence order
        msg(7, "c", "m7", "gone", minute=60),
        msg(8, "d", "m8", "gone", minute=5),  # the dummy sorts by its first child
    ]
    assert answer(references(messages)) == (b"* THREAD ((8)(7))(1 (3 (5)(4))(2))(6)\r\n")


def test_references_deep_chain_needs_no_recursion() -> None:
    messages = [msg(1, "a", "m1")]
    for i in range(2, 3001):
        messages.append(msg(i, "Re: a", f"m{i}", f"m{i - 1}"))
    out = answer(references(messages))
    assert out == b"* THREAD (" + b" ".join(b"%d" % i for i in range(1, 3001)) + b")\r\n"


def test_only_the_given_messages_are_threaded() -> None:
    # a search that left out the parent: the reply stands alone, under no dummy
    assert answer(references([msg(2, "Re: a", "m2", "m1")])) == b"* THREAD (2)\r\n"
    assert answer(references([])) == b"* THREAD\r\n"
    assert answer(ordered_subject([])) == b"* THREAD\r\n"
