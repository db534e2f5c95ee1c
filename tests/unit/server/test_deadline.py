"""`postier.deadline`: a total time per unit of input, with credit for data."""

from __future__ import annotations

import math

from postier.deadline import Deadline


def test_a_stopped_deadline_never_expires() -> None:
    d = Deadline(5.0)
    assert not d.running
    assert d.left(1e9) == math.inf
    d.received(100)  # ignored while stopped
    d.start(10.0)
    assert d.left(10.0) == 5.0


def test_total_time_without_rate_credit() -> None:
    d = Deadline(5.0)
    d.start(100.0)
    d.received(10_000)
    assert d.left(104.0) == 1.0
    assert d.left(106.0) == -1.0
    d.stop()
    assert d.left(106.0) == math.inf


def test_octets_earn_time_at_the_minimum_rate() -> None:
    d = Deadline(10.0, min_rate=1000)
    d.start(0.0)
    d.received(50_000)  # 50 s earned
    assert d.left(59.0) == 1.0
    d.start(100.0)  # a new unit starts without credit
    assert d.left(100.0) == 10.0
