"""The list's sorts, filters and conversations."""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from postier.mail.summary import MessageSummary
from postier.store.models import BlobId, MailboxId, Message, ModSeq, Uid
from postier.web.webmail.listing import (
    arrange,
    base_subject,
    keep,
    kept_order,
    page_rows,
    uid_order,
)


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


def test_uid_order_is_the_unthreaded_order() -> None:
    """The folder's cached order, made from each message's `SortRow`."""
    rows = [
        (m.uid, int(m.internal_date.timestamp() * 1e6), m.size, m.summary.from_, m.summary.subject)
        for m in MSGS
    ]
    for sort in ("date", "from", "subject", "size"):
        for descending in (True, False):
            order = uid_order(rows, sort, descending)
            assert list(order) == [e[0].uid for e in arrange(MSGS, sort, descending, False)]


def test_filters() -> None:
    assert [m.uid for m in keep(MSGS, "unread")] == [2]
    assert [m.uid for m in keep(MSGS, "flagged")] == [3]
    assert keep(MSGS, "all") == MSGS
    # a cached order, filtered in the web pool: its order stays
    assert kept_order([3, 2, 1], MSGS, "unread") == [2]
    assert kept_order([3, 2, 1], MSGS, "flagged") == [3]


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


async def test_page_rows_are_read_again_only_when_their_modseq_moved(tmp_path: Path) -> None:
    """`Webmail._page_rows`: a page seen again reads (UID, MODSEQ, flags) only; a
    message whose flags changed (a new MODSEQ) is read and its row made again; an
    expunged one is left out."""
    from collections import OrderedDict
    from types import SimpleNamespace

    from postier.store.sqlite import SqliteStore
    from postier.web.webmail import routes
    from tests.support.messages import new_message

    store = SqliteStore(tmp_path)
    await store.open()
    try:
        await store.add_domain("example.test")
        user = await store.add_user("a@example.test", "x")
        inbox = await store.get_mailbox(user.id, "INBOX")
        assert inbox is not None
        for n in (1, 2, 3):
            await store.append(inbox.id, new_message(f"Subject: m{n}\r\n\r\nbody\r\n".encode()))
        reads: list[tuple[int, ...]] = []
        real = store.list_messages

        async def counted(mid, lo=1, hi=None, **kw):  # type: ignore[no-untyped-def]
            reads.append((lo, hi))
            return await real(mid, lo, hi, **kw)

        web = SimpleNamespace(store=SimpleNamespace(), row_of=OrderedDict())
        web.store.list_messages = counted
        web.store.list_flags = store.list_flags
        web.store.get_message = store.get_message
        web._rows = functools.partial(routes.Webmail._rows, web)  # type: ignore[arg-type]
        web._cached_row = functools.partial(routes.Webmail._cached_row, web)  # type: ignore[arg-type]
        page = functools.partial(routes.Webmail._page_rows, web)  # type: ignore[arg-type]
        rows = await page(inbox, [3, 2, 1])
        assert [(r.uid, r.subject, r.unread) for r in rows] == [
            (3, "m3", True),
            (2, "m2", True),
            (1, "m1", True),
        ]
        assert len(reads) == 1
        assert await page(inbox, [3, 2, 1]) == rows
        assert len(reads) == 1  # nothing read but the flags
        await store.store_flags(inbox.id, [Uid(2)], frozenset({"\\Seen"}), "add")
        rows = await page(inbox, [3, 2, 1])
        assert [r.unread for r in rows] == [True, False, True]
        assert reads[1:] == [(2, 2)]  # the changed message alone
        await store.expunge(inbox.id, [Uid(1)], flagged_only=False)
        assert [r.uid for r in await page(inbox, [3, 2, 1])] == [3, 2]
    finally:
        await store.close()
