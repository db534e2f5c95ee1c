"""The messages of the day (`ops.traffic`): from the store's traces, so the whole
server's (every worker's) and kept across restarts; the UTC day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from postier.mail.queueid import QueueId
from postier.ops.traffic import start_of_day, today
from postier.store.sqlite import SqliteStore


def test_start_of_day_is_utc_midnight() -> None:
    # 19:30 on the 6th at UTC-5: the UTC day is the 7th
    zone = datetime(2026, 12, 7, 0, 30, tzinfo=UTC).astimezone(timezone(timedelta(hours=-5)))
    assert start_of_day(zone) == datetime(2026, 12, 7, tzinfo=UTC)


async def test_counts_every_process_and_survive_a_restart(tmp_path: Path) -> None:
    one, two = SqliteStore(tmp_path), SqliteStore(tmp_path)  # two workers
    await one.open()
    await two.open()
    # the words intake, the queue runner and the bounce reports write
    await one.trace_add(QueueId("Q1"), "received", "from=<a@x.test> size=10 ...")
    await one.trace_add(QueueId("Q1"), "delivered", "to <b@example.test> in INBOX")
    await one.trace_add(QueueId("Q1"), "delivered", "to <c@example.test> in Junk")
    await two.trace_add(QueueId("Q2"), "received", "from=<b@example.test> size=10 ...")
    await two.trace_add(QueueId("Q2"), "delivered", "<d@remote.test> 250 2.0.0 ok")
    await two.trace_add(QueueId("Q2"), "captured", "<e@remote.test> captured")
    await two.trace_add(QueueId("Q2"), "failed", "<f@remote.test> 550 no such user")
    await two.trace_add(QueueId("Q2"), "deferred", "<g@remote.test> 451 later")
    got = await one.trace_count("received", start_of_day(datetime.now(UTC)))
    assert got == 2
    t = await today(two)
    assert (t.received, t.delivered, t.sent, t.failed) == (2, 2, 1, 1)
    await two.close()
    await one.close()
    again = SqliteStore(tmp_path)  # restarted
    await again.open()
    try:
        t = await today(again)
        assert (t.received, t.delivered, t.sent, t.failed) == (2, 2, 1, 1)
        tomorrow = await today(again, datetime.now(UTC) + timedelta(days=1))
        assert (tomorrow.received, tomorrow.sent) == (0, 0)
    finally:
        await again.close()
