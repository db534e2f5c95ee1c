"""The list's sorts, filters and conversations."""

from __future__ import annotations

from datetime import UTC, datetime

from postier.mail.summary import MessageSummary
from postier.store.models import BlobId, MailboxId, Message, ModSeq, Uid
from postier.web.webmail.listing import arrange, base_subject, keep, page_rows


def msg(uid: int, subject: str, from_: str, day: int, size: int, flags: str = "") -> Message:
    return Message(
        mailbox_id=MailboxId(1),
        uid=Uid(uid),
        blob_id=BlobId("b"),
        flags=frozenset(flags.split()),
        internal_date=datetime(2026, 1, day, tzinfo=UTC),
        size=size,
        modseq=ModSeq(1),
        summary=MessageSummary(subject=subject, from_=from_),
    )


MSGS = [
    msg(1, "Trip", "Zed <z@x.test>", 1, 300, "\\Seen"),
    msg(2, "Re: Trip", "amy@x.test", 2, 100),
    msg(3, "Budget", '"Moe" <m@x.test>', 3, 200, "\\Seen \\Flagged"),
]


def subjects(entries: list[list[Message]]) -> list[str]:
    return [e[0].summary.subject for e in entries]


def test_base_subject() -> None:
    assert base_subject("Re: RE: Fwd:  [list] Trip") == "trip"
    assert base_subject("AW: Reise") == "reise"
    assert base_subject("Re:") == ""
    assert base_subject("[unclosed tag") == "[unclosed tag"


def test_sorts() -> None:
    assert subjects(arrange(MSGS, "date", True, False)) == ["Budget", "Re: Trip", "Trip"]
    assert subjects(arrange(MSGS, "from", False, False)) == ["Re: Trip", "Budget", "Trip"]
    assert subjects(arrange(MSGS, "subject", False, False)) == ["Budget", "Trip", "Re: Trip"]
    assert subjects(arrange(MSGS, "size", True, False)) == ["Trip", "Budget", "Re: Trip"]


def test_filters() -> None:
    assert [m.uid for m in keep(MSGS, "unread")] == [2]
    assert [m.uid for m in keep(MSGS, "flagged")] == [3]
    assert keep(MSGS, "all") == MSGS


def test_conversations() -> None:
    entries = arrange(MSGS, "date", True, True)
    assert [[m.uid for m in e] for e in entries] == [[3], [2, 1]]
    rows = page_rows(entries, 1, 50)
    assert [(r.subject, r.count, r.unread) for r in rows] == [
        ("Budget", 1, False),
        ("Re: Trip", 2, True),
    ]
