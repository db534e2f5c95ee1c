"""ChangeHub / ChangeSubscription: routing, closing, the overflow limit."""

from __future__ import annotations

import asyncio

import pytest

from postier.store.feed import ChangeHub, FeedOverflow, SubscriptionClosed
from postier.store.models import Change, ChangeKind, MailboxId, Uid, UserId

A, B = UserId(1), UserId(2)


def ch(user, uid):
    return Change(user, MailboxId(10), ChangeKind.EXISTS, Uid(uid))


async def test_routing_and_order():
    hub = ChangeHub()
    sa, sa2, sb = hub.subscribe(A), hub.subscribe(A), hub.subscribe(B)
    hub.publish([ch(A, 1), ch(B, 2), ch(A, 3)])
    assert [await sa.get(), await sa.get()] == [ch(A, 1), ch(A, 3)]
    assert sa.get_nowait() is None
    assert sa2.get_nowait() == ch(A, 1)
    assert await sb.get() == ch(B, 2)


def test_subscribed_while_a_subscription_is_open():
    hub = ChangeHub()
    assert not hub.subscribed(A)
    sa, sa2 = hub.subscribe(A), hub.subscribe(A)
    assert hub.subscribed(A) and not hub.subscribed(B)
    sa.close()
    assert hub.subscribed(A)
    sa2.close()
    assert not hub.subscribed(A)


async def test_get_waits_for_publish():
    hub = ChangeHub()
    sub = hub.subscribe(A)
    task = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    assert not task.done()
    hub.publish([ch(A, 7)])
    assert await asyncio.wait_for(task, 1) == ch(A, 7)


async def test_close_ends_iteration_and_unsubscribes():
    emptied = []
    hub = ChangeHub(on_empty=lambda: emptied.append(True))
    sub = hub.subscribe(A)
    hub.publish([ch(A, 1)])
    assert hub.has_subscribers
    sub.close()
    assert not hub.has_subscribers
    assert emptied == [True]
    assert [c async for c in sub] == []  # pending changes are dropped on close
    with pytest.raises(SubscriptionClosed):
        await sub.get()
    with pytest.raises(SubscriptionClosed):
        sub.get_nowait()
    hub.publish([ch(A, 2)])  # no error, nobody listening


async def test_close_wakes_a_waiter():
    hub = ChangeHub()
    sub = hub.subscribe(A)
    task = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    hub.close_all()
    with pytest.raises(SubscriptionClosed):
        await asyncio.wait_for(task, 1)


async def test_overflow_cuts_the_subscriber_off():
    hub = ChangeHub(max_pending=2)
    slow, other = hub.subscribe(A), hub.subscribe(A)
    hub.publish([ch(A, 1), ch(A, 2)])
    assert other.get_nowait() == ch(A, 1)
    hub.publish([ch(A, 3)])  # slow now has 3 pending > 2
    assert slow.closed
    assert not other.closed
    with pytest.raises(FeedOverflow, match="more than 2 changes"):
        await slow.get()
    with pytest.raises(FeedOverflow):
        async for _ in slow:
            pass
    assert [other.get_nowait(), other.get_nowait()] == [ch(A, 2), ch(A, 3)]


def test_max_pending_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        ChangeHub(max_pending=0)


async def test_on_change_calls_back_once_for_a_change_or_the_close():
    hub = ChangeHub()
    sub = hub.subscribe(A)
    calls: list[int] = []
    sub.on_change(lambda: calls.append(1))
    hub.publish([ch(B, 1)])  # another user's change
    assert calls == []
    hub.publish([ch(A, 1), ch(A, 2)])
    assert calls == [1]  # once, not per change
    sub.on_change(lambda: calls.append(2))  # changes already pending: at once
    assert calls == [1, 2]
    assert sub.get_nowait() == ch(A, 1)
    assert sub.get_nowait() == ch(A, 2)
    sub.on_change(lambda: calls.append(3))
    sub.on_change(None)  # forgotten before it was called
    hub.publish([ch(A, 3)])
    assert calls == [1, 2]
    sub.get_nowait()
    sub.on_change(lambda: calls.append(4))
    sub.close()
    assert calls == [1, 2, 4]


async def test_publish_user_hands_each_subscription_the_changes_at_once():
    """`publish_user` is `publish` of one user's changes in one step per
    subscription (one wake-up, one extend), overflow included: a STORE on 20,000
    messages pushed them one at a time on the loop."""
    hub = ChangeHub(max_pending=3)
    slow, other, b = hub.subscribe(A), hub.subscribe(A), hub.subscribe(B)
    wakes: list[str] = []
    other.on_change(lambda: wakes.append("other"))
    hub.publish_user(A, [ch(A, 1), ch(A, 2)])
    assert wakes == ["other"]
    assert [other.get_nowait(), other.get_nowait(), other.get_nowait()] == [
        ch(A, 1),
        ch(A, 2),
        None,
    ]
    hub.publish_user(A, [ch(A, 3), ch(A, 4)])  # slow would hold 4 > 3
    assert slow.closed and not other.closed
    with pytest.raises(FeedOverflow, match="more than 3 changes"):
        await slow.get()
    assert [other.get_nowait(), other.get_nowait()] == [ch(A, 3), ch(A, 4)]
    assert b.get_nowait() is None
    hub.publish_user(A, [])  # nothing: no wake-up
    assert wakes == ["other"]


def test_publish_hands_each_run_of_one_user_over_at_once(monkeypatch):
    """`publish` gives each run of one user's changes to `publish_user`: a
    PostgreSQL STORE (or another node's NOTIFY) of 50,000 changes pushed them
    one at a time, 340 ms of the loop for two subscriptions."""
    hub = ChangeHub(max_pending=10)
    a, b = hub.subscribe(A), hub.subscribe(B)
    runs: list[tuple[UserId, int]] = []
    real = hub.publish_user

    def spy(user_id, changes):
        runs.append((user_id, len(changes)))
        real(user_id, changes)

    monkeypatch.setattr(hub, "publish_user", spy)
    hub.publish([ch(A, 1), ch(A, 2), ch(A, 3), ch(B, 1), ch(A, 4)])
    assert runs == [(A, 3), (B, 1), (A, 1)]
    assert [a.get_nowait() for _ in range(5)] == [ch(A, 1), ch(A, 2), ch(A, 3), ch(A, 4), None]
    assert [b.get_nowait(), b.get_nowait()] == [ch(B, 1), None]
