"""Timing: when a queued message is tried (the retry schedule), and the loop
that starts each delivery when it is due.

Rules of the schedule (`Schedule`):
- The delay before try n+1 after n failed tries is ``first_retry * 2**(n-1)``,
  capped at ``max_backoff`` (Postfix's default: 5 min, doubling, at most 1 h
  between tries; "queue.first_retry" and "queue.max_backoff").
- A message older than ``lifetime`` is not tried again: its pending recipients
  fail ("expired") and the sender gets a DSN (RFC 5321 §4.5.4.1 asks senders to
  retry for at least 4-5 days; the default lifetime is 5 days).
- The next try is never scheduled past the expiry moment: the last try happens
  at expiry, so the bounce goes out on time and not up to one backoff late.
- Pure functions of their arguments: the clock is always passed in.

Rules of the loop (`Scheduler`):
- `Store.queue_due` claims entries; the loop takes only as many as it can
  start at once (`max_messages`), so claims never sit in a local backlog.
- Wake-ups: `wake()` (called by intake after queuing, and when a delivery
  finishes) starts a scan at once; otherwise the loop sleeps until the next
  entry is due, at most `max_idle` seconds, so entries queued or flushed by
  other processes (CLI, worker processes) start within that time.
- One task per claimed entry; `stop` stops claiming, gives the tasks `grace`
  seconds, then cancels them (their next try time was committed before they
  began: see `runner`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from postier.config.schema import QueueSettings
from postier.mail.queueid import QueueId
from postier.store.api import Store
from postier.store.models import QueueEntry

log = logging.getLogger("postier.queue")


@dataclass(frozen=True)
class Schedule:
    first_retry: float = 300.0
    max_backoff: float = 3600.0
    lifetime: float = 5 * 86400.0
    delay_warning: float = 0.0  # 0 = no delay DSN

    @classmethod
    def of(cls, settings: QueueSettings) -> Schedule:
        return cls(
            settings.first_retry, settings.max_backoff, settings.lifetime, settings.delay_warning
        )

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed try (attempts >= 1)."""
        n = max(attempts, 1) - 1
        if n >= 64:  # 2**64 seconds is past any cap: avoid a huge float
            return self.max_backoff
        return float(min(self.first_retry * (2**n), self.max_backoff))

    def expires(self, created: datetime) -> datetime:
        return created + timedelta(seconds=self.lifetime)

    def is_expired(self, created: datetime, now: datetime) -> bool:
        return now >= self.expires(created)

    def next_attempt(self, created: datetime, attempts: int, now: datetime) -> datetime:
        """When to try again after `attempts` tries, the last one at `now`."""
        return min(now + timedelta(seconds=self.backoff(attempts)), self.expires(created))

    def is_delay_warning_due(self, created: datetime, now: datetime) -> bool:
        return self.delay_warning > 0 and now >= created + timedelta(seconds=self.delay_warning)


class Scheduler:
    """Claims due entries and runs `process` on each in its own task; `run()` in a
    task, `wake()` from anywhere in the loop."""

    def __init__(
        self,
        store: Store,
        process: Callable[[QueueEntry], Coroutine[Any, Any, None]],
        now: Callable[[], datetime],
        *,
        max_messages: int = 100,
        max_idle: float = 1.0,
    ) -> None:
        self.store = store
        self.process = process
        self.now = now
        self.max_messages = max_messages
        self.max_idle = max_idle
        self.stopping = False
        self._wake = asyncio.Event()
        self._tasks: dict[QueueId, asyncio.Task[None]] = {}

    def wake(self) -> None:
        """Look at the queue now (a new entry, a flush, a finished delivery)."""
        self._wake.set()

    async def run(self) -> None:
        while not self.stopping:
            self._wake.clear()
            free = self.max_messages - len(self._tasks)
            got = 0
            if free > 0:
                try:
                    due = await self.store.queue_due(self.now(), free)
                except Exception:
                    log.exception("queue scan failed")
                    due = []
                got = len(due)
                for entry in due:
                    if entry.id not in self._tasks:
                        self._start(entry)
                if got == free:
                    continue  # maybe more are due: claim again once slots free up
            delay = self.max_idle
            if free > 0:
                try:
                    nxt = await self.store.queue_next_due()
                except Exception:
                    log.exception("queue scan failed")
                    nxt = None
                if nxt is not None:
                    delay = min(max((nxt - self.now()).total_seconds(), 0.01), self.max_idle)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _start(self, entry: QueueEntry) -> None:
        task = asyncio.create_task(self.process(entry), name=f"deliver-{entry.id}")
        self._tasks[entry.id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._tasks.pop(entry.id, None)
            self._wake.set()

        task.add_done_callback(done)

    async def stop(self, grace: float) -> None:
        """Stop claiming; give in-flight deliveries `grace` seconds, then cancel them."""
        self.stopping = True
        self._wake.set()
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)

    async def drain(self, within: float) -> None:
        """Wait (up to `within` seconds) until no delivery is in flight."""
        deadline = time.monotonic() + within
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(list(self._tasks.values()), timeout=deadline - time.monotonic())
