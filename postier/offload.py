"""CPU-bound work off the event loop, with a time budget.

What it owns: the thread pool that message analysis runs in (filters, DKIM and
ARC verification, the built-in virus scan), and the budget that bounds it.

Rules:
- The pool is its own, never the default executor that the store and the
  resolver use: a slow scan must not hold up writing other messages. Its size
  bounds the cores message analysis may take at once.
- `offload(work, seconds)` runs ``work(budget)`` there and raises `ScanTimeout`
  once `seconds` have passed, waiting for a worker included (the budget is the
  time a message may cost its sender). A thread cannot be stopped from outside:
  the work calls `Budget.check` between its steps and stops at the first one
  past the deadline; in between, every step is linear in its input.
- A long C call holds the GIL (``re`` does): offloading does not make a
  super-linear regex harmless, which is why every pattern on message text is
  linear.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

#: `filters.scan_timeout` when no setting reaches the caller
DEFAULT_SCAN_TIMEOUT = 20.0

_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="postier-scan")


class ScanTimeout(Exception):
    """CPU-bound work on one message ran past its budget."""


class Budget:
    """The deadline of one piece of offloaded work, checked between its steps."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._deadline = clock() + seconds

    def check(self) -> None:
        """Raise `ScanTimeout` once the budget is spent."""
        if self._clock() > self._deadline:
            raise ScanTimeout(f"over {self.seconds:g}s")


async def offload(work: Callable[[Budget], T], seconds: float) -> T:
    """``work(budget)`` in the scan pool; `ScanTimeout` after `seconds`."""
    budget = Budget(seconds)
    future = asyncio.get_running_loop().run_in_executor(_POOL, work, budget)
    try:
        async with asyncio.timeout(seconds):
            return await future
    except TimeoutError:
        raise ScanTimeout(f"over {seconds:g}s") from None
