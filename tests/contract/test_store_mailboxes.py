"""Contract: mailbox hierarchy (create, rename incl. INBOX, delete, subscribe)."""

from __future__ import annotations

import pytest

from postier.store.errors import Conflict, Invalid, NotFound
from postier.store.models import DeliveryTarget
from tests.support.messages import new_message


@pytest.fixture
async def user(store):
    await store.add_domain("example.test")
    return await store.add_user("a@example.test", "h")


async def names(store, user):
    return [m.name for m in await store.list_mailboxes(user.id)]


async def test_create_with_parents(store, user):
    m = await store.create_mailbox(user.id, "Work/2024/Q1")
    assert m.name == "Work/2024/Q1"
    assert m.special_use is None
    assert m.subscribed is False
    assert (m.uidnext, m.highestmodseq, m.messages) == (1, 1, 0)
    assert {"Work", "Work/2024", "Work/2024/Q1"} <= set(await names(store, user))
    with pytest.raises(Conflict):
        await store.create_mailbox(user.id, "Work/2024")
    created = await store.create_mailbox(user.id, "Work/2025")
    assert created.name == "Work/2025"
    all_ = await store.list_mailboxes(user.id)
    assert len({m.uidvalidity for m in all_}) == len(all_)


async def test_create_special_use(store, user):
    m = await store.create_mailbox(user.id, "All Mail", special_use="\\All")
    assert m.special_use == "\\All"
    with pytest.raises(Invalid):
        await store.create_mailbox(user.id, "X", special_use="\\Bogus")


@pytest.mark.parametrize("bad", ["", "/a", "a/", "a//b", "a*b", "a%b", "a\x01b", "a\x7f"])
async def test_create_bad_names(store, user, bad):
    with pytest.raises(Invalid):
        await store.create_mailbox(user.id, bad)
    assert await store.get_mailbox(user.id, bad) is None


async def test_inbox_is_case_insensitive(store, user):
    inbox = await store.get_mailbox(user.id, "inbox")
    assert inbox is not None
    assert inbox.name == "INBOX"
    assert await store.get_mailbox(user.id, "InBoX") == inbox
    with pytest.raises(Conflict):
        await store.create_mailbox(user.id, "Inbox")
    child = await store.create_mailbox(user.id, "inbox/Sub")
    assert child.name == "INBOX/Sub"
    assert await store.get_mailbox_by_id(child.id) == child


async def test_unknown_user_or_mailbox(store, user):
    with pytest.raises(NotFound):
        await store.create_mailbox(9999, "X")
    assert await store.get_mailbox(user.id, "Nope") is None
    assert await store.get_mailbox_by_id(9999) is None
    with pytest.raises(NotFound):
        await store.delete_mailbox(user.id, "Nope")
    with pytest.raises(NotFound):
        await store.rename_mailbox(user.id, "Nope", "Other")
    with pytest.raises(NotFound):
        await store.set_subscribed(user.id, "Nope", True)


async def test_rename_with_children(store, user):
    top = await store.create_mailbox(user.id, "a/b/c")
    a = await store.get_mailbox(user.id, "a")
    r = await store.deliver(new_message(b"m\r\n"), [DeliveryTarget(user.id, "a/b")])
    await store.rename_mailbox(user.id, "a", "x/y")
    got = set(await names(store, user))
    assert {"x", "x/y", "x/y/b", "x/y/b/c"} <= got
    assert not {"a", "a/b", "a/b/c"} & got
    moved = await store.get_mailbox(user.id, "x/y")
    assert moved.id == a.id
    assert moved.uidvalidity == a.uidvalidity  # same mailbox, new name
    assert (await store.get_mailbox(user.id, "x/y/b/c")).id == top.id
    b = await store.get_mailbox(user.id, "x/y/b")
    assert b.id == r.delivered[0].mailbox_id
    assert [m.uid for m in await store.list_messages(b.id)] == [1]
    # the old name, created again, is a new mailbox with a new UIDVALIDITY
    again = await store.create_mailbox(user.id, "a")
    assert again.uidvalidity != a.uidvalidity


async def test_rename_errors(store, user):
    await store.create_mailbox(user.id, "a/b")
    await store.create_mailbox(user.id, "z")
    with pytest.raises(Conflict):
        await store.rename_mailbox(user.id, "a", "z")
    with pytest.raises(Invalid):
        await store.rename_mailbox(user.id, "a", "a/b/c")
    with pytest.raises(Invalid):
        await store.rename_mailbox(user.id, "a", "bad//name")
    assert {"a", "a/b", "z"} <= set(await names(store, user))


async def test_rename_inbox_moves_messages(store, user):
    await store.create_mailbox(user.id, "INBOX/keep")
    inbox = await store.get_mailbox(user.id, "INBOX")
    for i in range(3):
        await store.deliver(
            new_message(b"msg %d\r\n" % i), [DeliveryTarget(user.id, flags=frozenset({"\\Seen"}))]
        )
    before = await store.get_mailbox(user.id, "INBOX")
    await store.rename_mailbox(user.id, "inbox", "Old Mail")
    after = await store.get_mailbox(user.id, "INBOX")
    assert after.id == inbox.id
    assert after.messages == 0
    assert after.uidnext == 4  # UIDs are never reused
    assert after.highestmodseq > before.highestmodseq
    assert await store.vanished_since(inbox.id, before.highestmodseq) == [1, 2, 3]
    old = await store.get_mailbox(user.id, "Old Mail")
    assert old.uidvalidity != inbox.uidvalidity
    assert old.messages == 3
    msgs = await store.list_messages(old.id)
    assert [m.flags for m in msgs] == [frozenset({"\\Seen"})] * 3
    assert [await store.read_blob(m.blob_id) for m in msgs] == [
        b"msg 0\r\n",
        b"msg 1\r\n",
        b"msg 2\r\n",
    ]
    assert await store.get_mailbox(user.id, "INBOX/keep") is not None  # children stay
    r = await store.deliver(new_message(b"new\r\n"), [DeliveryTarget(user.id)])
    assert r.delivered[0].uid == 4


async def test_delete_mailbox(store, user):
    m = await store.create_mailbox(user.id, "Old")
    r = await store.deliver(new_message(b"bye\r\n"), [DeliveryTarget(user.id, "Old")])
    assert r.delivered[0].mailbox_id == m.id
    await store.delete_mailbox(user.id, "Old")
    assert await store.get_mailbox(user.id, "Old") is None
    assert await store.get_mailbox_by_id(m.id) is None
    with pytest.raises(NotFound):
        await store.read_blob(r.blob_id)
    again = await store.create_mailbox(user.id, "Old")
    assert again.uidvalidity != m.uidvalidity


async def test_delete_mailbox_refusals(store, user):
    with pytest.raises(Invalid):
        await store.delete_mailbox(user.id, "inbox")
    await store.create_mailbox(user.id, "p/c")
    with pytest.raises(Conflict, match="children"):
        await store.delete_mailbox(user.id, "p")
    await store.delete_mailbox(user.id, "p/c")
    await store.delete_mailbox(user.id, "p")
    assert await store.get_mailbox(user.id, "p") is None


async def test_subscribe(store, user):
    await store.create_mailbox(user.id, "News")
    await store.set_subscribed(user.id, "News", True)
    assert (await store.get_mailbox(user.id, "News")).subscribed is True
    await store.set_subscribed(user.id, "News", False)
    assert (await store.get_mailbox(user.id, "News")).subscribed is False


async def test_subscriptions_are_names_that_outlive_their_mailbox(store, user):
    """RFC 9051 §6.3.7: DELETE does not unsubscribe; RENAME moves subscriptions."""
    await store.create_mailbox(user.id, "News/Tech")
    await store.set_subscribed(user.id, "News/Tech", True)
    await store.set_subscribed(user.id, "News", True)
    await store.delete_mailbox(user.id, "News/Tech")
    subs = await store.list_subscriptions(user.id)
    assert "News/Tech" in subs and "News" in subs
    assert subs == sorted(subs) and "INBOX" in subs
    # the same name again is subscribed again
    assert (await store.create_mailbox(user.id, "News/Tech")).subscribed is True
    await store.rename_mailbox(user.id, "News", "Old")
    subs = await store.list_subscriptions(user.id)
    assert "News/Tech" not in subs and "Old/Tech" in subs
    await store.delete_mailbox(user.id, "Old/Tech")
    await store.set_subscribed(user.id, "Old/Tech", False)  # gone, still unsubscribable
    assert "Old/Tech" not in await store.list_subscriptions(user.id)
    with pytest.raises(NotFound):
        await store.set_subscribed(user.id, "Old/Tech", False)
    with pytest.raises(NotFound):
        await store.set_subscribed(user.id, "Old/Tech", True)
    await store.rename_mailbox(user.id, "INBOX", "Saved")
    assert {"INBOX", "Saved"} <= set(await store.list_subscriptions(user.id))


async def test_counts(store, user):
    await store.deliver(new_message(b"12345"), [DeliveryTarget(user.id)])
    await store.deliver(new_message(b"123"), [DeliveryTarget(user.id, flags=frozenset({"\\Seen"}))])
    inbox = await store.get_mailbox(user.id, "INBOX")
    assert (inbox.messages, inbox.unseen, inbox.size) == (2, 1, 8)
    listed = {m.name: m for m in await store.list_mailboxes(user.id)}
    assert listed["INBOX"] == inbox
    assert (listed["Sent"].messages, listed["Sent"].size) == (0, 0)


async def test_access_keys(store, user):
    """URLAUTH mailbox access keys (RFC 4467): set once, reset per mailbox or per user,
    gone with the mailbox, never another user's."""
    inbox = await store.get_mailbox(user.id, "INBOX")
    drafts = await store.get_mailbox(user.id, "Drafts")
    assert await store.access_key(inbox.id) is None
    assert await store.access_key(inbox.id, b"k" * 32) == b"k" * 32
    assert await store.access_key(inbox.id, b"x" * 32) == b"k" * 32  # the first one stays
    assert await store.access_key(inbox.id) == b"k" * 32
    assert await store.access_key(drafts.id, b"d" * 32) == b"d" * 32
    other = await store.add_user("b@example.test", "h")
    await store.reset_access_keys(other.id)  # not theirs: nothing happens
    await store.reset_access_keys(other.id, inbox.id)
    assert await store.access_key(inbox.id) == b"k" * 32
    await store.reset_access_keys(user.id, inbox.id)
    assert await store.access_key(inbox.id) is None
    assert await store.access_key(drafts.id) == b"d" * 32
    await store.access_key(inbox.id, b"n" * 32)
    await store.reset_access_keys(user.id)
    assert await store.access_key(inbox.id) is None
    assert await store.access_key(drafts.id) is None
    box = await store.create_mailbox(user.id, "Keyed")
    await store.access_key(box.id, b"z" * 32)
    await store.delete_mailbox(user.id, "Keyed")
    assert await store.access_key(box.id) is None
    with pytest.raises(NotFound):
        await store.access_key(box.id, b"z" * 32)
