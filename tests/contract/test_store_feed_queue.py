"""Contract: the change feed (in-process and from another process), queue, trace."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from postier.store.errors import NotFound, StoreError
from postier.store.models import (
    Change,
    ChangeKind,
    DeliveryTarget,
    NewQueueEntry,
    QueueRecipient,
    RcptState,
)
from tests.support.messages import new_message

MSG = b"Subject: x\r\n\r\nbody\r\n"


@pytest.fixture
async def users(store):
    await store.add_domain("example.test")
    return [await store.add_user(f"u{i}@example.test", "h") for i in range(2)]


async def next_change(sub, timeout=3.0):
    return await asyncio.wait_for(sub.get(), timeout)


async def test_feed_in_process(store, users):
    u, other = users
    box = await store.get_mailbox(u.id, "INBOX")
    sub = store.subscribe(u.id)
    assert sub.get_nowait() is None
    await store.deliver(new_message(MSG), [DeliveryTarget(other.id)])  # not ours
    r = await store.deliver(new_message(MSG), [DeliveryTarget(u.id)])
    # published before deliver() returned
    c = sub.get_nowait()
    assert c == Change(
        u.id,
        box.id,
        ChangeKind.EXISTS,
        r.delivered[0].uid,
        (await store.get_message(box.id, 1)).modseq,
    )
    changed, _ = await store.store_flags(box.id, [1], frozenset({"\\Deleted"}), "add")
    assert await next_change(sub) == Change(u.id, box.id, ChangeKind.FLAGS, 1, changed[0].modseq)
    await store.expunge(box.id)
    c = await next_change(sub)
    assert (c.kind, c.uid) == (ChangeKind.EXPUNGE, 1)
    m = await store.create_mailbox(u.id, "New")
    assert await next_change(sub) == Change(u.id, m.id, ChangeKind.MAILBOX)
    # (un)subscribing is a mailbox change too (IMAP NOTIFY SubscriptionChange)
    await store.set_subscribed(u.id, "New", True)
    assert sub.get_nowait() == Change(u.id, m.id, ChangeKind.MAILBOX)
    assert sub.get_nowait() is None
    sub.close()
    sub.close()  # idempotent
    assert [c async for c in sub] == []


async def test_feed_failed_write_publishes_nothing(store, users):
    sub = store.subscribe(users[0].id)
    with pytest.raises(NotFound):
        await store.deliver(new_message(MSG), [DeliveryTarget(users[0].id), DeliveryTarget(9999)])
    await asyncio.sleep(0.2)
    assert sub.get_nowait() is None
    sub.close()


async def test_feed_from_another_process(store_factory, users, store):
    other = await store_factory()  # a second instance on the same data: "another process"
    u = users[0]
    box = await store.get_mailbox(u.id, "INBOX")
    sub = store.subscribe(u.id)
    r = await other.deliver(new_message(MSG), [DeliveryTarget(u.id)])
    c = await next_change(sub, timeout=1.5)
    assert (c.user_id, c.mailbox_id, c.kind, c.uid) == (
        u.id,
        box.id,
        ChangeKind.EXISTS,
        r.delivered[0].uid,
    )
    await other.store_flags(box.id, [1], frozenset({"\\Seen"}), "add")
    c = await next_change(sub, timeout=1.5)
    assert (c.kind, c.uid) == (ChangeKind.FLAGS, 1)
    # our own writes are not delivered twice
    await store.store_flags(box.id, [1], frozenset({"x"}), "add")
    assert (await next_change(sub)).kind == ChangeKind.FLAGS
    await asyncio.sleep(0.3)
    assert sub.get_nowait() is None
    sub.close()


async def test_store_flags_over_mixed_rows(store_factory, users, store):
    """One STORE over messages whose flags differ (keywords with quotes, back-
    slashes, non-ASCII): each changed row gets its flags and the next MODSEQ by
    UID, the rest keep theirs; the returned rows, the rows read back, the
    unseen count and the changes seen here and from another instance agree."""
    u = users[0]
    box = await store.get_mailbox(u.id, "INBOX")
    for _ in range(8):
        await store.deliver(new_message(MSG), [DeliveryTarget(u.id)])
    odd = ['a"b', "c\\d", "é", "日本", "\U0001f600"]
    start = {1: set(), 2: {odd[0]}, 3: {odd[1], odd[2]}, 4: {"\\Seen"}, 5: {odd[3]}}
    start[6] = {"\\Seen", odd[1], "x"}  # has them already: left alone
    start |= {7: {odd[4], "\\Flagged"}, 8: {"\\Seen", odd[0]}}
    for uid, flags in start.items():
        if flags:
            await store.store_flags(box.id, [uid], frozenset(flags), "replace")
    sub = store.subscribe(u.id)
    other = await store_factory()
    seen_there = other.subscribe(u.id)
    before = (await store.get_mailbox_by_id(box.id)).highestmodseq
    kept = await store.get_message(box.id, 6)
    adding = frozenset({"\\Seen", odd[1]})
    changed, refused = await store.store_flags(box.id, [8, 1, 2, 3, 4, 5, 6, 7, 99], adding, "add")
    assert refused == []
    expect = {uid: frozenset(f | adding) for uid, f in start.items() if not adding <= f}
    assert [m.uid for m in changed] == sorted(expect) == [1, 2, 3, 4, 5, 7, 8]
    assert [m.modseq for m in changed] == list(range(before + 1, before + 1 + len(expect)))
    assert {m.uid: m.flags for m in changed} == expect
    for m in changed:
        stored = await store.get_message(box.id, m.uid)
        assert stored is not None
        assert (stored.flags, stored.modseq, stored.internal_date) == (
            m.flags,
            m.modseq,
            m.internal_date,
        )
        assert (stored.size, stored.blob_id) == (m.size, m.blob_id)
    assert await store.get_message(box.id, 6) == kept
    assert (await store.get_mailbox_by_id(box.id)).unseen == 0
    want = [Change(u.id, box.id, ChangeKind.FLAGS, m.uid, m.modseq) for m in changed]
    assert [await next_change(sub) for _ in want] == want
    assert sub.get_nowait() is None
    there: list[Change] = []  # (it may replay what came before it opened)
    while len(there) < len(want):
        c = await next_change(seen_there, timeout=1.5)
        if c.kind is ChangeKind.FLAGS and c.modseq is not None and c.modseq > before:
            there.append(c)
    assert there == want
    # and taken away: every row loses both, all unseen
    changed, _ = await store.store_flags(box.id, list(start), adding, "remove")
    assert {m.uid: m.flags for m in changed} == {
        uid: frozenset(f - adding) for uid, f in start.items()
    }
    assert (await store.get_mailbox_by_id(box.id)).unseen == 8
    sub.close()
    seen_there.close()


async def test_closed_store_ends_subscriptions(store_factory):
    s = await store_factory()
    await s.add_domain("example.test")
    u = await s.add_user("a@example.test", "h")
    sub = s.subscribe(u.id)
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    await s.close()
    with pytest.raises(StoreError):
        await asyncio.wait_for(waiter, 1)


def entry(*rcpts, sender="s@example.test"):
    return NewQueueEntry(sender=sender, recipients=tuple(QueueRecipient(r) for r in rcpts))


async def test_queue_lifecycle(store, users):
    r1 = await store.deliver(new_message(MSG), [], queue=entry("a@remote.test", "b@remote.test"))
    r2 = await store.deliver(new_message(b"two\r\n"), [], queue=entry("c@remote.test", sender=""))
    listed = await store.queue_list()
    assert [e.id for e in listed] == [r1.qid, r2.qid]
    e1 = listed[0]
    assert [r.address for r in e1.recipients] == ["a@remote.test", "b@remote.test"]
    assert all(r.state == RcptState.PENDING for r in e1.recipients)
    assert (e1.attempts, e1.held, e1.last_error, e1.sender) == (0, False, "", "s@example.test")
    assert listed[1].sender == ""
    now = datetime.now(UTC) + timedelta(seconds=1)
    assert await store.queue_next_due() == e1.next_attempt

    # claim: a second runner gets nothing until released
    due = await store.queue_due(now, 1)
    assert [e.id for e in due] == [r1.qid]
    due2 = await store.queue_due(now, 10)
    assert [e.id for e in due2] == [r2.qid]
    assert await store.queue_due(now, 10) == []
    # a restarted runner releases the claims a dead one left
    assert await store.queue_release_claims() == 2
    assert [e.id for e in await store.queue_due(now, 10)] == [r1.qid, r2.qid]
    assert await store.queue_release_claims() == 2
    # an abandoned claim also expires by itself (a crashed runner elsewhere)
    await store.queue_due(now, 10)
    later = now + timedelta(days=1)
    assert [e.id for e in await store.queue_due(later, 10)] == [r1.qid, r2.qid]

    retry = now + timedelta(minutes=5)
    rcpts = (
        QueueRecipient("a@remote.test", RcptState.DELIVERED, "250 ok"),
        QueueRecipient("b@remote.test", RcptState.PENDING, "451 greylisted"),
    )
    await store.queue_update(
        r1.qid, rcpts, next_attempt=retry, attempts=1, last_error="451 greylisted"
    )
    e = await store.queue_get(r1.qid)
    assert (e.recipients, e.next_attempt, e.attempts, e.last_error) == (
        rcpts,
        retry,
        1,
        "451 greylisted",
    )
    await store.queue_update(
        r2.qid, listed[1].recipients, next_attempt=retry, attempts=1, last_error=""
    )
    assert await store.queue_due(now, 10) == []
    assert [e.id for e in await store.queue_due(retry, 10)] == [r1.qid, r2.qid]
    await store.queue_update(r1.qid, rcpts, next_attempt=retry, attempts=1, last_error="")
    await store.queue_update(
        r2.qid, listed[1].recipients, next_attempt=retry, attempts=1, last_error=""
    )

    # hold / release / flush
    await store.queue_hold(r1.qid, True)
    assert (await store.queue_get(r1.qid)).held is True
    assert [e.id for e in await store.queue_due(retry, 10)] == [r2.qid]
    await store.queue_update(
        r2.qid, listed[1].recipients, next_attempt=retry, attempts=2, last_error=""
    )
    await store.queue_hold(r1.qid, False)
    await store.queue_set_next_attempt(r1.qid, now)
    assert await store.queue_next_due() == now
    assert [e.id for e in await store.queue_due(now, 10)] == [r1.qid]

    await store.queue_delete(r1.qid)
    assert await store.queue_get(r1.qid) is None
    with pytest.raises(NotFound):
        await store.read_blob(r1.blob_id)  # the last reference went
    assert await store.queue_next_due() == retry


async def test_queue_errors(store):
    when = datetime.now(UTC)
    for call in (
        store.queue_update("NOPE", (), next_attempt=when, attempts=1, last_error=""),
        store.queue_set_next_attempt("NOPE", when),
        store.queue_hold("NOPE", True),
        store.queue_delete("NOPE"),
    ):
        with pytest.raises(NotFound):
            await call
    assert await store.queue_get("NOPE") is None
    assert await store.queue_next_due() is None
    assert await store.queue_due(when, 10) == []


async def test_queue_blob_shared_with_local_copy(store, users):
    r = await store.deliver(
        new_message(MSG), [DeliveryTarget(users[0].id)], queue=entry("x@remote.test")
    )
    await store.queue_delete(r.qid)
    assert await store.read_blob(r.blob_id) == MSG  # the mailbox copy keeps it


async def test_trace(store):
    await store.trace_add("Q1", "received", "from [127.0.0.1]")
    await store.trace_add("Q2", "received", "other")
    await store.trace_add("Q1", "delivered", "to u@example.test")
    events = await store.trace_get("Q1")
    assert [(e.qid, e.event, e.detail) for e in events] == [
        ("Q1", "received", "from [127.0.0.1]"),
        ("Q1", "delivered", "to u@example.test"),
    ]
    assert events[0].at <= events[1].at
    assert events[0].at.tzinfo is not None
    assert await store.trace_get("Q3") == []


async def test_queue_claim_kept_through_a_round(store, users):
    """The runner records its intent (next try time) before delivering and keeps
    the claim until the round ends: a round outlasting its next try time is not
    started again by another runner meanwhile."""
    r = await store.deliver(new_message(MSG), [], queue=entry("a@remote.test"))
    now = datetime.now(UTC) + timedelta(seconds=1)
    (e,) = await store.queue_due(now, 10)
    soon = now + timedelta(seconds=5)
    await store.queue_update(
        r.qid, e.recipients, next_attempt=soon, attempts=1, last_error="", keep_claim=True
    )
    assert (await store.queue_get(r.qid)).attempts == 1
    assert await store.queue_due(soon + timedelta(seconds=1), 10) == []
    await store.queue_update(r.qid, e.recipients, next_attempt=soon, attempts=1, last_error="")
    assert [x.id for x in await store.queue_due(soon, 10)] == [r.qid]


async def test_many_messages_flagged_and_expunged(store_factory, users, store):
    """A STORE and an EXPUNGE over hundreds of messages sharing blobs (copies):
    past the sizes where a backend works in bulk (threads, one NOTIFY of many
    payloads), the MODSEQs, UIDNEXT, the answers, the changes seen here and from
    another instance, and the shared blobs are those of a few messages."""
    u = users[0]
    box = await store.get_mailbox(u.id, "INBOX")
    await store.deliver(new_message(MSG), [DeliveryTarget(u.id)])
    await store.deliver(new_message(MSG + b"2\r\n"), [DeliveryTarget(u.id)])
    while (await store.get_mailbox_by_id(box.id)).uidnext <= 320:
        n = (await store.get_mailbox_by_id(box.id)).uidnext - 1
        await store.copy(box.id, list(range(1, n + 1)), box.id)  # doubles: blobs shared
    uids = [m.uid for m in await store.list_messages(box.id, summaries=False)]
    assert uids == list(range(1, 513))
    other = await store_factory()
    sub, there = store.subscribe(u.id), other.subscribe(u.id)
    before = await store.get_mailbox_by_id(box.id)
    limit = before.highestmodseq  # every row's modseq is at most this: none refused
    changed, refused = await store.store_flags(
        box.id, uids, frozenset({"\\Deleted"}), "add", unchanged_since=limit
    )
    assert refused == []
    assert [m.uid for m in changed] == uids
    assert [m.modseq for m in changed] == list(range(limit + 1, limit + 513))
    assert all(m.flags == frozenset({"\\Deleted"}) for m in changed)
    assert changed[0].summary.envelope  # whole Messages
    want = [Change(u.id, box.id, ChangeKind.FLAGS, m.uid, m.modseq) for m in changed]
    assert [sub.get_nowait() for _ in want] == want
    got: list[Change] = []
    while len(got) < len(want):
        c = await next_change(there, timeout=3)
        if c.modseq is not None and c.modseq > limit:
            got.append(c)
    assert got == want
    # refused past UNCHANGEDSINCE: the odd UIDs changed once more
    odd = uids[::2]
    await store.store_flags(box.id, odd, frozenset({"$a"}), "add")
    changed, refused = await store.store_flags(
        box.id, uids, frozenset(), "replace", unchanged_since=limit + 512
    )
    assert refused == odd
    assert [m.uid for m in changed] == uids[1::2]
    # expunge the odd (the \Deleted ones left): blobs shared with the rest stay
    await store.store_flags(box.id, uids[1::2], frozenset({"\\Seen"}), "add")
    mid = (await store.get_mailbox_by_id(box.id)).highestmodseq
    # the copies keep their original's parity: the odd UIDs share one blob, the even another
    first, second = (
        (await store.get_message(box.id, 1)).blob_id,
        (await store.get_message(box.id, 2)).blob_id,
    )
    for c in [sub.get_nowait() for _ in range(256 * 3)]:
        assert c is not None
    gone = await store.expunge(box.id)
    assert gone == odd
    after = await store.get_mailbox_by_id(box.id)
    assert (after.uidnext, after.highestmodseq) == (before.uidnext, mid + 256)
    assert (after.messages, after.unseen) == (256, 0)
    assert sorted(await store.vanished_since(box.id, mid)) == odd
    expunged = [await next_change(sub) for _ in odd]
    assert [(c.kind, c.uid) for c in expunged] == [(ChangeKind.EXPUNGE, uid) for uid in odd]
    assert [c.modseq for c in expunged] == list(range(mid + 1, mid + 257))
    left = await store.list_messages(box.id)
    assert [m.uid for m in left] == uids[1::2]
    assert {m.blob_id for m in left} == {second}
    assert await store.read_blob(second) == MSG + b"2\r\n"
    with pytest.raises(NotFound):  # its last message expunged: the blob goes
        await store.read_blob(first)
    await store.expunge(box.id, [m.uid for m in left][:-1], flagged_only=False)
    assert await store.read_blob(second) == MSG + b"2\r\n"
    await store.expunge(box.id, [left[-1].uid], flagged_only=False)
    with pytest.raises(NotFound):
        await store.read_blob(second)
    sub.close()
    there.close()
