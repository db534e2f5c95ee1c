"""CPU-bound work off the event loop, with a time budget.

What it owns: the threads that message analysis runs in (filters, DKIM and
ARC verification, the built-in virus scan), and the budget that bounds it.

Rules:
- The threads are their own, never the default executor that the store and
  the resolver use: a slow scan must not hold up writing other messages. Their
  number (`WORKERS`) bounds the cores message analysis may take at once.
- `offload(work, seconds)` runs ``work(budget)`` there and raises `ScanTimeout`
  once the budget is spent, waiting for a worker included (the budget is the
  time a message may cost its sender). A thread cannot be stopped from outside:
  the work calls `Budget.check` between its steps and stops at the first one
  past the deadline; in between, every step is linear in its input. Work that
  never checks is given up by the waiting side `GRACE` seconds later (the
  margin lets work that checks end by itself and return what it has, e.g. a
  stage's cheap rules done before its expensive ones gave up).
- A long C call holds the GIL (``re`` does): offloading does not make a
  super-linear regex harmless, which is why every pattern on message text is
  linear.
- Small inputs try the loop first (`offload(..., inline=True)`, for inputs of
  at most `INLINE_MAX` octets): the work runs on the loop with a budget of
  `INLINE_SECONDS` (every budget it hands on shares that limit), and work that
  reaches a check past it stops (`InlineSpent`, which no stage catches) and runs
  again from the start in a worker thread with its real budget. So the loop is
  held `INLINE_SECONDS` plus one step at most, a step being linear in an input
  of `INLINE_MAX` octets; a 1 KB message's analysis (tens of microseconds)
  costs no thread hop. Work given `inline` must be safe to run twice (it
  computes a result; nothing it does before the result counts).
- Cheap round trips: a job is a tuple on a `queue.SimpleQueue`; its result is
  set on an asyncio future by the loop itself, and the results that finish
  while the loop is busy go back together, with one wake-up of the loop
  (`call_soon_threadsafe`) rather than one per job. With a 1 KB message the
  hop cost more than the work: ``run_in_executor`` paid a concurrent future,
  its condition variable, `wrap_future`'s chaining and a wake-up each time.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: `filters.scan_timeout` when no setting reaches the caller
DEFAULT_SCAN_TIMEOUT = 20.0

#: threads that run offloaded work (per process)
WORKERS = 4

#: how long after the budget the waiting side gives up on work that does not stop
GRACE = 0.25

#: inputs up to this size may run on the loop first (module rules)
INLINE_MAX = 16 * 1024
#: how long work may run on the loop before it moves to a worker thread
INLINE_SECONDS = 0.002


class ScanTimeout(Exception):
    """CPU-bound work on one message ran past its budget."""


class InlineSpent(BaseException):
    """Work running on the loop reached `INLINE_SECONDS`: it runs again in a
    thread. A BaseException, so that no stage's ``except Exception`` keeps it."""


class Budget:
    """The deadline of one piece of offloaded work, checked between its steps."""

    def __init__(
        self,
        seconds: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        inline_until: float | None = None,
    ) -> None:
        self.seconds = seconds
        self._clock = clock
        self._deadline = clock() + seconds
        #: on the loop: when the work must leave it (`InlineSpent`)
        self._inline_until = inline_until

    def check(self) -> None:
        """Raise `ScanTimeout` once the budget is spent (`InlineSpent` once
        work on the loop has had its time there)."""
        now = self._clock()
        if self._inline_until is not None and now > self._inline_until:
            raise InlineSpent
        if now > self._deadline:
            raise ScanTimeout(f"over {self.seconds:g}s")

    def another(self, seconds: float) -> Budget:
        """A budget of its own for the next piece of the same work (on the loop,
        it ends there when this one does)."""
        return Budget(seconds, self._clock, inline_until=self._inline_until)


class _Results:
    """Finished jobs of one event loop, handed to it in batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._done: list[tuple[asyncio.Future[Any], BaseException | None, Any]] = []
        self._scheduled = False

    def add(self, future: asyncio.Future[Any], error: BaseException | None, value: Any) -> None:
        """From a worker thread: the loop sets the result at its next wake-up."""
        with self._lock:
            self._done.append((future, error, value))
            if self._scheduled:
                return  # a wake-up is on its way and will take this one too
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody waits any more
            with self._lock:
                self._done.clear()
                self._scheduled = False

    def _deliver(self) -> None:
        with self._lock:
            done, self._done = self._done, []
            self._scheduled = False
        for future, error, value in done:
            if future.done():  # given up (timeout) or cancelled meanwhile
                continue
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)


_Job = tuple[_Results, "asyncio.Future[Any]", Callable[[Budget], Any], Budget]


class _Workers:
    def __init__(self, count: int) -> None:
        self._count = count
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = False

    def submit(self, job: _Job) -> None:
        if not self._started:
            self._start()
        self._jobs.put(job)

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            for i in range(self._count):
                threading.Thread(target=self._run, name=f"postier-scan-{i}", daemon=True).start()
            self._started = True

    def _run(self) -> None:
        jobs = self._jobs
        while True:
            results, future, work, budget = jobs.get()
            if future.done():  # given up while it waited: do not start it
                continue
            error: BaseException | None = None
            value: Any = None
            try:
                budget.check()  # the wait for a worker counts
                value = work(budget)
            except BaseException as e:  # handed to the waiting side, like an executor
                error = e
            results.add(future, error, value)
            del results, future, work, budget, value, error


_WORKERS = _Workers(WORKERS)
_RESULTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Results] = (
    weakref.WeakKeyDictionary()
)


def _reset_after_fork() -> None:
    """A forked worker process has none of its parent's threads: start afresh."""
    global _WORKERS, _RESULTS
    _WORKERS = _WORKERS.__class__(WORKERS)
    _RESULTS = weakref.WeakKeyDictionary()


os.register_at_fork(after_in_child=_reset_after_fork)


def _give_up(future: asyncio.Future[Any], seconds: float) -> None:
    if not future.done():
        future.set_exception(ScanTimeout(f"over {seconds:g}s"))


async def offload(
    work: Callable[[Budget], T],
    seconds: float,
    *,
    limit: float | None = None,
    inline: bool = False,
) -> T:
    """``work(budget)`` in a worker thread; `ScanTimeout` past `seconds`. `limit`:
    how long to wait for work that runs several budgets in a row (default
    `seconds` + `GRACE`). `inline`: the input is at most `INLINE_MAX` octets and
    the work may run twice; it tries the loop first (module rules)."""
    if inline:
        start = time.monotonic()
        try:
            return work(Budget(seconds, inline_until=start + INLINE_SECONDS))
        except InlineSpent:
            pass  # too long for the loop: from the start, in a thread
    loop = asyncio.get_running_loop()
    results = _RESULTS.get(loop)
    if results is None:
        results = _RESULTS[loop] = _Results(loop)
    budget = Budget(seconds)
    future: asyncio.Future[T] = loop.create_future()
    _WORKERS.submit((results, future, work, budget))
    wait = seconds + GRACE if limit is None else limit
    timer = loop.call_later(wait, _give_up, future, seconds)
    try:
        return await future
    finally:
        timer.cancel()
