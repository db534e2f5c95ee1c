"""In-process change feed: a hub fanning `Change` events out to per-user subscriptions.

Rules:
- A backend calls `ChangeHub.publish()` on the event loop after the change is
  committed, in commit order; each subscription of the change's user gets it.
- A subscription buffers at most `max_pending` changes. A consumer that falls
  further behind is cut off: the subscription closes and `get()` raises
  `FeedOverflow`, so the session re-reads the mailbox instead of acting on a
  silently incomplete history.
- `close()` is idempotent; a closed subscription ends `async for` and makes
  `get()` raise `SubscriptionClosed`.
- `on_change(callback)` lets a consumer wait on something else (an IMAP session
  idling waits on its socket) with no task for the feed: the callback runs once,
  on the loop, when a change is pending or the subscription closes.
- Backend-agnostic: the SQLite and PostgreSQL backends both feed a hub; how
  changes from other processes arrive (polling, LISTEN/NOTIFY) is theirs.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable

from postier.store.errors import StoreError
from postier.store.models import Change, UserId


class SubscriptionClosed(StoreError):
    """The subscription was closed (by its owner or because the store closed)."""


class FeedOverflow(SubscriptionClosed):
    """The consumer fell more than `max_pending` changes behind and was cut off."""


class ChangeSubscription:
    """One consumer's feed for one user (implements `store.api.Subscription`)."""

    def __init__(self, hub: ChangeHub, user_id: UserId, max_pending: int) -> None:
        self.user_id = user_id
        self._hub = hub
        self._max_pending = max_pending
        # made at the first change: most subscriptions (idle IMAP sessions) never
        # get one, and an empty deque is ~770 bytes, its first block included
        self._pending: deque[Change] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._callback: Callable[[], None] | None = None
        self._closed: SubscriptionClosed | None = None

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def _push_all(self, changes: list[Change]) -> None:
        """The changes in one deque extend and one wake-up; a consumer that
        would hold more than `max_pending` is cut off instead."""
        if self._closed is not None:
            return
        pending = self._pending
        if pending is None:
            pending = self._pending = deque()
        if len(pending) + len(changes) > self._max_pending:
            self._shut(
                FeedOverflow(f"change feed overflow: more than {self._max_pending} changes pending")
            )
            return
        pending.extend(changes)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()

    def on_change(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` once when a change is pending or the subscription is
        closed (at once if that is so already); None forgets a callback not yet
        called. Then `get_nowait` says which."""
        self._callback = callback
        if callback is not None and (self._pending or self._closed is not None):
            self._wake()

    def _shut(self, reason: SubscriptionClosed) -> None:
        if self._closed is None:
            self._closed = reason
            self._pending = None
            self._hub._remove(self)
        self._wake()

    def close(self) -> None:
        self._shut(SubscriptionClosed("subscription closed"))

    def get_nowait(self) -> Change | None:
        if self._closed is not None:
            raise self._closed
        return self._pending.popleft() if self._pending else None

    async def get(self) -> Change:
        while True:
            if self._closed is not None:
                raise self._closed
            if self._pending:
                return self._pending.popleft()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def __aiter__(self) -> ChangeSubscription:
        return self

    async def __anext__(self) -> Change:
        try:
            return await self.get()
        except FeedOverflow:
            raise
        except SubscriptionClosed:
            raise StopAsyncIteration from None


class ChangeHub:
    """Fan-out of committed changes to subscriptions, keyed by user."""

    def __init__(
        self, max_pending: int = 10_000, on_empty: Callable[[], None] | None = None
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.max_pending = max_pending
        self._subs: dict[UserId, set[ChangeSubscription]] = {}
        self._on_empty = on_empty

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subs)

    def subscribe(self, user_id: UserId) -> ChangeSubscription:
        sub = ChangeSubscription(self, user_id, self.max_pending)
        self._subs.setdefault(user_id, set()).add(sub)
        return sub

    def _remove(self, sub: ChangeSubscription) -> None:
        subs = self._subs.get(sub.user_id)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[sub.user_id]
            if not self._subs and self._on_empty is not None:
                self._on_empty()

    def subscribed(self, user_id: UserId) -> bool:
        """Whether anyone subscribes to `user_id`'s changes (else `publish` of
        them does nothing)."""
        return user_id in self._subs

    def publish(self, changes: Iterable[Change]) -> None:
        """Each run of changes of one user goes to its subscriptions in one step
        (`publish_user`): a PostgreSQL STORE on 50,000 messages pushed them one
        by one, 340 ms of the loop for two subscriptions."""
        run: list[Change] = []
        for change in changes:
            if run and change.user_id != run[0].user_id:
                self.publish_user(run[0].user_id, run)
                run = []
            run.append(change)
        if run:
            self.publish_user(run[0].user_id, run)

    def publish_user(self, user_id: UserId, changes: list[Change]) -> None:
        """`publish` of changes all of `user_id`: each subscription takes them in
        one step (a STORE on 20,000 messages pushed its changes one by one on the
        loop, 20,000 wake-ups per subscription)."""
        if changes:
            for sub in list(self._subs.get(user_id, ())):
                sub._push_all(changes)

    def cut_off_all(self, why: str) -> None:
        """Every subscription ends with `FeedOverflow`: changes may have been
        missed (a backend lost its link to other processes), so each session
        re-reads its mailbox instead of trusting an incomplete history."""
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub._shut(FeedOverflow(why))

    def close_all(self) -> None:
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.close()
