"""The list's sorts, filters and conversations."""

from __future__ import annotations

import functools
from dataclasses import replace
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


def test_rendered_rows_are_reused_only_for_the_same_values() -> None:
    """`Webmail._row_html` keeps each row's markup keyed by every value the row
    shows: the same row again is the same markup; a row whose flags, subject,
    folder or shown size differ is rendered anew; hostile text stays escaped."""
    from collections import OrderedDict
    from types import SimpleNamespace

    import jinja2

    from postier.web.webmail import routes

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(routes.WEB_DIR / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["filesize"] = routes._filesize
    web = SimpleNamespace(env=env, row_cache=OrderedDict())
    render = functools.partial(routes.Webmail._row_html, web)  # type: ignore[arg-type]
    seen, unseen = page_rows([[MSGS[0]], [MSGS[1]]], 1, 50)
    first = render(MailboxId(1), [seen, unseen], "date")
    assert "unread" not in first[0] and 'class="unread"' in first[1]
    assert render(MailboxId(1), [seen], "date")[0] is first[0]
    read = replace(unseen, unread=False)
    assert 'class="unread"' not in render(MailboxId(1), [read], "date")[0]
    assert "/folder/2/1" in render(MailboxId(2), [seen], "date")[0]
    assert "300 bytes" in render(MailboxId(1), [seen], "size")[0]
    assert "300 bytes" not in first[0]
    evil = replace(seen, subject="<script>alert(1)</script>")
    html = render(MailboxId(1), [evil], "date")[0]
    assert "<script>" not in html and "&lt;script&gt;" in html
    web.row_cache.clear()
    assert render(MailboxId(1), [seen], "date")[0] == first[0]
