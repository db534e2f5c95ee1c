"""Deadlines for slow clients: the protocol adapters' guard against trickling.

A timeout per read alone lets a client that sends one byte a second keep its
connection, and its place in the per-address connection limit, forever.
`Deadline` bounds the *total* time one unit of input may take to arrive: a
command line, an IMAP command with its literals, a message's data (the idea of
Postfix's ``smtpd_per_record_deadline`` with ``smtpd_min_data_rate``).

Rules:
- The clock starts at the unit's first byte (`start`) and stops when the unit is
  complete (`stop`). The adapter passes the time in, so tests need no sleeping.
- Time allowed = `timeout` + octets received / `min_rate`: a transfer averaging at
  least `min_rate` octets per second never expires however large it is (no 4xx
  for a message that could never get through), while a trickle expires after
  about `timeout`. ``min_rate = 0`` gives no credit: a plain total deadline.

`ReadTimer`: a connection's read timeout without a timer per read.

`async with asyncio.timeout(t): await reader.read(n)` builds a timeout object and
schedules (then cancels) a loop timer on every read: for a client that sends one
short command after another (POP3 RETR, one per message) that is a measurable part
of the work per command. A `ReadTimer` keeps one loop timer per connection and
re-arms it only when it fires.

Rules:
- `read(reader, n, limit)` returns what `reader.read(n)` returns, or raises
  `TimeoutError` when nothing came for `limit` seconds. Each read only notes its
  deadline; the single timer, when it fires, ends a read that is past its
  deadline (by cancelling the task that reads, as `asyncio.timeout` does) or
  re-arms itself for the deadline of the read now waiting. A read whose deadline
  is earlier than the armed timer re-arms it at once.
- Bytes that arrive in the same loop iteration as the timeout stay in the
  reader's buffer, as with `asyncio.timeout`.
- A cancellation that does not come from the timer (server shutdown, the
  listener) is never swallowed.
- One task reads at a time (the session's); `close` cancels the timer.
"""

from __future__ import annotations

import asyncio
import math


class Deadline:
    def __init__(self, timeout: float, min_rate: float = 0.0) -> None:
        self.timeout = timeout
        self.min_rate = min_rate
        self._started: float | None = None
        self._octets = 0

    @property
    def running(self) -> bool:
        return self._started is not None

    def start(self, now: float) -> None:
        self._started = now
        self._octets = 0

    def stop(self) -> None:
        self._started = None

    def received(self, octets: int) -> None:
        """Octets of the unit arrived (ignored while stopped)."""
        if self._started is not None:
            self._octets += octets

    def left(self, now: float) -> float:
        """Seconds before it expires (negative: expired; inf: not running)."""
        if self._started is None:
            return math.inf
        credit = self._octets / self.min_rate if self.min_rate > 0 else 0.0
        return self._started + self.timeout + credit - now


class ReadTimer:
    """See the module rules (`ReadTimer`)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._due = math.inf  # deadline of the read waiting now (inf: none waits)
        self._task: asyncio.Task[object] | None = None
        self._fired = False

    async def read(self, reader: asyncio.StreamReader, n: int, limit: float) -> bytes:
        if limit <= 0:
            raise TimeoutError
        task = self._task
        if task is None:
            task = self._task = asyncio.current_task()
            assert task is not None
        due = self._loop.time() + limit
        handle = self._handle
        if handle is None or handle.when() > due:
            if handle is not None:
                handle.cancel()
            self._handle = self._loop.call_at(due, self._check)
        self._due = due
        cancelling = task.cancelling()
        try:
            return await reader.read(n)
        except asyncio.CancelledError:
            if self._fired:
                self._fired = False
                if task.uncancel() <= cancelling:
                    raise TimeoutError from None
            raise
        finally:
            self._due = math.inf

    def _check(self) -> None:
        self._handle = None
        due = self._due
        if due == math.inf or self._task is None:
            return  # no read waits: the next one arms the timer again
        if self._loop.time() >= due:
            self._fired = True
            self._task.cancel()
        else:
            self._handle = self._loop.call_at(due, self._check)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
