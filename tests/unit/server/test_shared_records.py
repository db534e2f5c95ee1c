"""Recent refusals and errors of every worker (`metrics.SlotLog`): what the Status
page and the status file show with several workers."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from postier import metrics
from postier.metrics import RecentRefusals, Refusal, SlotLog, read_slot_logs
from postier.server.status import MAX_ERRORS, RecentErrors

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def refusal(n: int, listener: str = "mx") -> Refusal:
    return Refusal(T0 + timedelta(seconds=n), listener, "rcpt", "192.0.2.1", f"550 5.1.1 no {n}")


def test_refusals_of_every_worker_newest_first_and_a_restart_keeps_them(tmp_path: Path) -> None:
    w0, w1 = RecentRefusals(), RecentRefusals()
    w0.share(SlotLog(tmp_path, "refusals", 0, metrics.MAX_REFUSALS))
    w1.share(SlotLog(tmp_path, "refusals", 1, metrics.MAX_REFUSALS))
    w0.add(refusal(1))
    w1.add(refusal(2, "submission"))
    w0.add(refusal(3))
    assert [r.reply for r in w0.newest_first()] == [
        "550 5.1.1 no 3",
        "550 5.1.1 no 2",
        "550 5.1.1 no 1",
    ]
    assert w1.newest_first() == w0.newest_first()
    assert w0.newest_first()[1] == refusal(2, "submission")
    # worker 1 dies; the one started in its slot goes on after its records
    again = RecentRefusals()
    again.share(SlotLog(tmp_path, "refusals", 1, metrics.MAX_REFUSALS))
    again.add(refusal(4))
    assert [r.reply[-4:] for r in w0.newest_first()] == ["no 4", "no 3", "no 2", "no 1"]


def test_a_slot_log_stays_bounded_and_skips_a_torn_line(tmp_path: Path) -> None:
    log = SlotLog(tmp_path, "x", 0, keep=5)
    for i in range(3000):  # ~60 KB a thousand: rewritten a few times
        log.append({"n": i, "pad": "p" * 40})
    assert log.path.stat().st_size <= metrics.SLOT_LOG_BYTES
    got = [r["n"] for r in read_slot_logs(tmp_path, "x")]
    assert got[-5:] == [2995, 2996, 2997, 2998, 2999] and got == sorted(got)
    with log.path.open("ab") as f:
        f.write(b'{"n": 30')  # a write another process has not finished
    assert [r["n"] for r in read_slot_logs(tmp_path, "x")][-1] == 2999


def test_errors_of_every_worker_oldest_first(tmp_path: Path) -> None:
    handlers = []
    for slot in (0, 1):
        h = RecentErrors()
        h.share(SlotLog(tmp_path, "errors", slot, MAX_ERRORS))
        handlers.append(h)
    log = logging.getLogger("test.shared")
    for n, h in enumerate([handlers[0], handlers[1], handlers[0]]):
        log.addHandler(h)
        try:
            log.warning("problem %d", n)
        finally:
            log.removeHandler(h)
    snap = handlers[0].snapshot()
    assert sorted(e["message"] for e in snap) == ["problem 0", "problem 1", "problem 2"]
    assert handlers[1].snapshot() == snap
    assert [e["at"] for e in snap] == sorted(e["at"] for e in snap)


def test_one_process_keeps_them_in_memory() -> None:
    r = RecentRefusals()
    r.add(refusal(1))
    r.add(refusal(2))
    assert r.newest_first() == [refusal(2), refusal(1)]
