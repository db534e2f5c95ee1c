"""The retry schedule: when a message that could not be delivered is tried again.

Rules:
- The delay before try n+1 after n failed tries is ``first_retry * 2**(n-1)``,
  capped at ``max_backoff`` (Postfix's default: 5 min, doubling, at most 1 h
  between tries; "queue.first_retry" and "queue.max_backoff").
- A message older than ``lifetime`` is not tried again: its pending recipients
  fail ("expired") and the sender gets a DSN (RFC 5321 §4.5.4.1 asks senders to
  retry for at least 4-5 days; the default lifetime is 5 days).
- The next try is never scheduled past the expiry moment: the last try happens
  at expiry, so the bounce goes out on time and not up to one backoff late.
- Pure functions of their arguments: the clock is always passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from postier.config.schema import QueueSettings


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
