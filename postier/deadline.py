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
"""

from __future__ import annotations

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
