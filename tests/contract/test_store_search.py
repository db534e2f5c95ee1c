"""Contract: `Store.search_headers` answers exactly what a scan of the summaries
answers (casefolded substring), kept in step with deliver, append, copy, move,
expunge and mailbox deletion."""

from __future__ import annotations

import base64
import random

import pytest

from postier.store.api import SEARCH_FIELDS
from postier.store.models import DeliveryTarget
from tests.support.messages import new_message


@pytest.fixture
async def user(store):
    await store.add_domain("example.test")
    return await store.add_user("u@example.test", "h")


def message(
    subject: str, from_: str, to: str = "u@example.test", cc: str = "", bcc: str = ""
) -> bytes:
    head = f"From: {from_}\r\nTo: {to}\r\nSubject: {subject}\r\n"
    if cc:
        head += f"Cc: {cc}\r\n"
    if bcc:
        head += f"Bcc: {bcc}\r\n"
    return (head + "\r\nbody\r\n").encode()


MESSAGES = [
    message("Hello world", "Alice <alice@remote.test>"),
    message("=?utf-8?q?Stra=C3=9Fe_und_M=C3=BCnchen?=", "Bob <bob@remote.test>"),
    message("re: STRASSE", '"Zoë Ünlü" <zoe@remote.test>', cc="carol@remote.test"),
    message("plans", "me@example.test", bcc="=?utf-8?q?J=C3=B6rg?= <boss@remote.test>, carol@x"),
    message('Quote " and {braces} : AND OR NOT *', "=?iso-8859-1?q?J=F6rg?= <j@remote.test>"),
    message("ΣΊΣΥΦΟΣ ﬁle", "δ <d@remote.test>", to="x@elsewhere.test"),
    message("hi", "ab@remote.test"),
]


async def scan(store, mailbox_id, needle, fields):
    """The reference: every summary tested in Python."""
    folded = needle.casefold()
    out = []
    for m in await store.list_messages(mailbox_id):
        s = m.summary
        values = {"from": s.from_, "to": s.to, "cc": s.cc, "bcc": s.bcc, "subject": s.subject}
        if any(folded in values[f].casefold() for f in fields):
            out.append(m.uid)
    return out


NEEDLES = [
    "", "h", "HI", "hello", "WORLD", "o w", "straße", "STRASSE", "ss", "münchen", "MÜNCHEN",
    "zoë", "ünlü", "jörg", "JÖRG", '"', 'quote "', "{braces}", "and or not *", ": and",
    "σίσυφος", "ΣΊΣΥΦΟΣ", "file", "fi", "alice@remote", "remote.test", "@", "carol",
    "nothing like this", "x@elsewhere",
]  # fmt: skip


@pytest.mark.parametrize(
    "fields", [("subject",), ("from",), ("to",), ("cc",), ("bcc",), SEARCH_FIELDS]
)
async def test_search_headers_equals_a_scan(store, user, fields):
    inbox = await store.get_mailbox(user.id, "INBOX")
    for data in MESSAGES:
        await store.append(inbox.id, new_message(data))
    for needle in NEEDLES:
        assert await store.search_headers(inbox.id, needle, fields) == await scan(
            store, inbox.id, needle, fields
        ), needle


async def test_search_headers_found_what_a_scan_finds(store, user):
    """Spot checks of the reference itself, so the comparison above means something."""
    inbox = await store.get_mailbox(user.id, "INBOX")
    for data in MESSAGES:
        await store.append(inbox.id, new_message(data))
    assert await store.search_headers(inbox.id, "strasse", ["subject"]) == [2, 3]
    assert await store.search_headers(inbox.id, "Zoë", ["from"]) == [3]
    assert await store.search_headers(inbox.id, "jörg", ["from"]) == [5]
    assert await store.search_headers(inbox.id, "jörg", ["subject"]) == []
    assert await store.search_headers(inbox.id, "jörg", ["bcc"]) == [4]
    assert await store.search_headers(inbox.id, "fi", ["subject"]) == [6]
    assert await store.search_headers(inbox.id, "carol", ["cc", "subject"]) == [3]
    assert await store.search_headers(inbox.id, "carol", ["bcc"]) == [4]
    assert await store.search_headers(inbox.id, "", ["cc"]) == [1, 2, 3, 4, 5, 6, 7]


async def test_search_headers_follows_the_mailbox(store, user):
    inbox = await store.get_mailbox(user.id, "INBOX")
    work = await store.create_mailbox(user.id, "Work")
    r = await store.deliver(
        new_message(message("Quarterly report", "boss@remote.test")), [DeliveryTarget(user.id)]
    )
    await store.append(inbox.id, new_message(message("Quarterly numbers", "cfo@remote.test")))
    await store.append(inbox.id, new_message(message("lunch", "friend@remote.test")))
    assert await store.search_headers(inbox.id, "quarterly", ["subject"]) == [1, 2]
    assert await store.search_headers(work.id, "quarterly", ["subject"]) == []

    assert await store.copy(inbox.id, [r.delivered[0].uid], work.id) == [(1, 1)]
    assert await store.move(inbox.id, [2], work.id) == [(2, 2)]
    assert await store.search_headers(inbox.id, "quarterly", ["subject"]) == [1]
    assert await store.search_headers(work.id, "quarterly", ["subject"]) == [1, 2]

    await store.store_flags(inbox.id, [1], frozenset({"\\Deleted"}), "add")
    assert await store.expunge(inbox.id) == [1]
    assert await store.search_headers(inbox.id, "quarterly", ["subject"]) == []
    assert await store.search_headers(inbox.id, "l", ["subject"]) == [3]
    assert await store.search_headers(work.id, "quarterly", ["subject"]) == [1, 2]

    await store.delete_mailbox(user.id, "Work")
    again = await store.create_mailbox(user.id, "Work")
    await store.append(again.id, new_message(message("other", "x@remote.test")))
    assert await store.search_headers(again.id, "quarterly", ["subject"]) == []
    assert await store.search_headers(again.id, "ot", ["subject"]) == [1]


async def test_search_headers_on_a_generated_corpus(store, user):
    """Property: index answer == scan answer, on random text from a small alphabet
    (so needles hit often) with case pairs, folding oddities and encoded words."""
    rnd = random.Random(14)
    alphabet = "aAbBsSßẞ iİıIΣσς fﬁ\"'{}:*-@."
    inbox = await store.get_mailbox(user.id, "INBOX")

    def text(n: int) -> str:
        return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, n)))

    for _ in range(60):
        subject = text(12)
        if rnd.random() < 0.3:  # the same text as an encoded word
            subject = "=?utf-8?b?" + base64.b64encode(subject.encode()).decode() + "?="
        await store.append(
            inbox.id,
            new_message(message(subject, f"{text(6)} <a@b.test>", cc=text(5), bcc=text(4))),
        )
    await store.store_flags(inbox.id, list(range(1, 61, 7)), frozenset({"\\Deleted"}), "add")
    await store.expunge(inbox.id)
    for _ in range(150):
        needle = text(4)
        fields = rnd.sample(SEARCH_FIELDS, rnd.randint(1, 4))
        assert await store.search_headers(inbox.id, needle, fields) == await scan(
            store, inbox.id, needle, fields
        ), (needle, fields)
