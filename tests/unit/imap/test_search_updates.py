"""`postier.imap.commands.updates`: ADDTO and REMOVEFROM (RFC 5267 §4.3) computed for
crafted contexts; a client applying them in order gets the server's new result."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from postier.imap.commands import updates
from postier.imap.parse import SearchAll, SortCriterion
from postier.imap.sequence import SequenceSet
from postier.imap.session import LiveSearch, MailboxView, Session
from postier.store.models import BlobId, Mailbox, MailboxId, Message, ModSeq, Uid, UserId

MBOX = Mailbox(MailboxId(7), UserId(1), "INBOX", None, True, 42, 100, 20)


def msg(uid: int) -> Message:
    return Message(
        MailboxId(7), Uid(uid), ModSeq(1), frozenset(), datetime(2026, 1, 1, tzinfo=UTC), 1,
        BlobId(f"b{uid}"),
    )  # fmt: skip


def expand(text: str) -> list[int]:
    out: list[int] = []
    for a, b in SequenceSet.parse(text).ranges:
        out.extend(range(min(a, b), max(a, b) + 1))
    return out


def apply(result: list[int], line: bytes) -> list[int]:
    """What a client does with one ESEARCH update (RFC 5267 §4.3.2: in order)."""
    out = list(result)
    for name, payload in re.findall(rb"(REMOVEFROM|ADDTO) \(([^)]*)\)", line):
        words = payload.decode().split()
        for pos_text, ids_text in zip(words[::2], words[1::2], strict=True):
            pos, ids = int(pos_text), expand(ids_text)
            if name == b"ADDTO":
                out[pos - 1 : pos - 1] = ids  # the first id takes position pos
            else:
                assert out[pos - 1 : pos - 1 + len(ids)] == ids, line
                del out[pos - 1 : pos - 1 + len(ids)]
    return out


def sort_context(sizes: dict[int, int], *, uid: bool = True) -> LiveSearch:
    live = LiveSearch("S1", uid, SearchAll(), (SortCriterion("SIZE", reverse=True),))
    live.values = {u: (s,) for u, s in sizes.items()}
    live.members = sorted(sizes, key=lambda u: (-sizes[u], u))
    return live


def test_sort_context_positions_replay_to_the_new_order() -> None:
    view = MailboxView(MBOX, [msg(u) for u in range(1, 10)], readonly=False)
    live = sort_context({1: 40, 2: 30, 3: 30, 4: 20, 5: 10})  # order 1 2 3 4 5
    before = list(live.members)
    line = updates._update(
        view, live, {1, 4, 6, 7, 8}, [2, 3, 5, 6, 7, 8],
        {6: (35,), 7: (30,), 8: (1,)},
    )  # fmt: skip
    assert live.members == [1, 6, 7, 4, 8]  # 7 ties with nothing left: after 6 (35)
    assert line == (b'* ESEARCH (TAG "S1") UID REMOVEFROM (5 5 2 2:3) ADDTO (2 6:7 5 8)\r\n')
    assert apply(before, line) == live.members


def test_sort_context_in_sequence_numbers() -> None:
    view = MailboxView(MBOX, [msg(u) for u in (10, 20, 30, 40)], readonly=False)
    live = sort_context({10: 1, 30: 3}, uid=False)  # result: 30 10 (seqs 3 1)
    line = updates._update(view, live, {10, 20, 30, 40}, [20, 40], {20: (2,), 40: (9,)})
    assert line == b'* ESEARCH (TAG "S1") ADDTO (1 4 3 2)\r\n'
    assert apply([3, 1], line) == [4, 3, 2, 1]


def test_search_context_uses_position_zero() -> None:
    view = MailboxView(MBOX, [msg(u) for u in range(1, 6)], readonly=False)
    live = LiveSearch("A", False, SearchAll(), None, members=[1, 2, 4])
    line = updates._update(view, live, {1, 3, 5}, [2, 3, 5], {})
    assert line == b'* ESEARCH (TAG "A") REMOVEFROM (0 2) ADDTO (0 3,5)\r\n'
    assert live.members == [1, 3, 4, 5]
    assert updates._update(view, live, {3}, [3], {}) == b""  # nothing changed


def test_expunged_members_are_removed_in_the_numbers_still_valid() -> None:
    s = Session("t", tls=False)
    s.live["A"] = LiveSearch("A", False, SearchAll(), None, members=[2, 5, 9])
    s.live["S1"] = sort_context({2: 1, 5: 2, 9: 3})  # order 9 5 2
    s.live["C"] = LiveSearch("C", True, SearchAll(), None, members=[7])
    lines = updates.on_expunge(s, [(6, 9), (3, 5)])  # (seq, uid), highest first
    assert lines == [
        b'* ESEARCH (TAG "A") REMOVEFROM (0 3,6)\r\n',
        b'* ESEARCH (TAG "S1") UID REMOVEFROM (1 9,5)\r\n',
    ]
    assert s.live["A"].members == [2] and s.live["S1"].members == [2]
    assert apply([9, 5, 2], lines[1]) == [2]
