"""The operator's actions on the outbound queue, shared by `postier queue` and the
web admin's Queue page, so both record the same trace lines and refuse the same
things.

Rules:
- Every action goes through the store, so it is safe while the server runs: an
  entry deleted or held here is simply not claimed again (a delivery in flight
  finishes its attempt; its result for a deleted entry is dropped).
- Retry now makes an entry due at once; a held entry is never made due
  (`QueueActionError`): saying "due now" would be a lie.
- Delete drops the message without a bounce; hold/release stop and resume
  attempts. Each leaves a trace event naming the administrator as the cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from postier.mail.queueid import QueueId
from postier.store.api import Store
from postier.store.models import QueueEntry, TraceEvent


class QueueActionError(Exception):
    """An action that cannot be done; the message says why, for the operator."""


@dataclass(frozen=True)
class Flushed:
    due: int  # entries made due now
    held: int  # held entries left alone


async def entry_or_error(store: Store, qid: QueueId) -> QueueEntry:
    entry = await store.queue_get(qid)
    if entry is None:
        raise QueueActionError(f"no queued message {qid}")
    return entry


async def retry_now(store: Store, qid: QueueId | None = None) -> Flushed:
    """Make `qid` (or every entry not held) due now."""
    now = datetime.now(UTC)
    if qid is not None:
        entry = await entry_or_error(store, qid)
        if entry.held:
            raise QueueActionError(
                f"{qid} is held: nothing sent (release it first: postier queue release {qid})"
            )
        await store.queue_set_next_attempt(qid, now)
        return Flushed(1, 0)
    due = held = 0
    for e in await store.queue_list():
        if e.held:
            held += 1
        else:
            await store.queue_set_next_attempt(e.id, now)
            due += 1
    return Flushed(due, held)


async def hold(store: Store, qid: QueueId, held: bool) -> None:
    """Stop (`held`) or resume delivery attempts of `qid`."""
    await entry_or_error(store, qid)
    action = "hold" if held else "release"
    await store.queue_hold(qid, held)
    await store.trace_add(qid, action, f"{action} by the administrator")


async def delete(store: Store, qid: QueueId) -> None:
    """Drop `qid` without a bounce."""
    await entry_or_error(store, qid)
    await store.queue_delete(qid)
    await store.trace_add(qid, "deleted", "removed by the administrator")


def gone_state(events: list[TraceEvent]) -> str:
    """What became of a message that is not in the queue, from its events."""
    seen = {e.event for e in events}
    if seen & {"done", "deleted"}:
        return "no longer queued"
    if "received" in seen:
        return "delivered locally; nothing was queued"
    return "not accepted"  # refused at intake: only filter events were recorded
