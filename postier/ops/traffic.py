"""Messages of the day, counted from the store's message traces (`postier trace`).

Rules:
- The day is the UTC day (from 00:00 UTC), whatever the server's time zone: the
  trace keeps UTC times and the nodes of a site may sit in different zones.
- The counts come from the trace lines every process and node records in the
  store, so they are the whole server's, whichever worker or node did the work,
  and a restart loses none. They follow the trace's words:
  - received: one "received" line per message accepted for delivery (SMTP,
    submission, the webmail's Send, and the bounce reports the server makes);
  - delivered: one "delivered" line per local copy ("to <user> in MAILBOX");
  - sent: one "delivered" line per recipient a remote server accepted (the queue
    runner's, "<address> reply"); captured mail (the development outbox) is not
    sent;
  - failed: one "failed" line per recipient that bounced.
- The trace's lines after a commit are written after it (`queue.runner`, rule
  6): a crash between the two can lose a line, never add one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from postier.store.api import Store


@dataclass(frozen=True)
class Today:
    since: datetime
    received: int
    delivered: int
    sent: int
    failed: int


def start_of_day(now: datetime) -> datetime:
    """00:00 UTC of `now`'s UTC day."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def today(store: Store, now: datetime | None = None) -> Today:
    since = start_of_day(now or datetime.now(UTC))
    return Today(
        since=since,
        received=await store.trace_count("received", since),
        delivered=await store.trace_count("delivered", since, "to <"),
        sent=await store.trace_count("delivered", since, "<"),
        failed=await store.trace_count("failed", since),
    )
