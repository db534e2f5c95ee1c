"""ReadTimer: one loop timer per connection, a read timeout like asyncio.timeout."""

from __future__ import annotations

import asyncio
import time

import pytest

from postier.deadline import ReadTimer


def reader() -> asyncio.StreamReader:
    return asyncio.StreamReader()


async def test_read_returns_bytes_and_eof() -> None:
    r, t = reader(), ReadTimer()
    asyncio.get_running_loop().call_later(0.01, r.feed_data, b"abc")
    assert await t.read(r, 10, 5) == b"abc"
    r.feed_eof()
    assert await t.read(r, 10, 5) == b""
    t.close()


async def test_silence_times_out_and_buffered_bytes_stay() -> None:
    r, t = reader(), ReadTimer()
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        await t.read(r, 10, 0.05)
    assert 0.04 <= time.monotonic() - start < 1
    r.feed_data(b"later")
    assert await t.read(r, 10, 5) == b"later"
    with pytest.raises(TimeoutError):
        await t.read(r, 10, 0)
    t.close()


async def test_one_timer_for_many_reads_and_a_shorter_limit_rearms_it() -> None:
    r, t = reader(), ReadTimer()
    loop = asyncio.get_running_loop()
    for i in range(50):
        loop.call_soon(r.feed_data, b"x%d" % i)
        await t.read(r, 10, 30)
    first = t._handle
    assert first is not None and not first.cancelled()  # the same timer throughout
    loop.call_soon(r.feed_data, b"y")
    await t.read(r, 10, 30)
    assert t._handle is first
    with pytest.raises(TimeoutError):  # an earlier deadline than the armed timer
        await t.read(r, 10, 0.05)
    # the long timer fired since, found no read waiting, and stays unarmed
    t.close()


async def test_a_timer_armed_for_an_old_read_rearms_for_the_waiting_one() -> None:
    r, t = reader(), ReadTimer()
    loop = asyncio.get_running_loop()
    loop.call_soon(r.feed_data, b"a")
    await t.read(r, 10, 0.05)  # arms the timer at +0.05 s
    await asyncio.sleep(0.03)
    start = time.monotonic()
    with pytest.raises(TimeoutError):  # due at +0.03+0.1: the early timer re-arms
        await t.read(r, 10, 0.1)
    assert time.monotonic() - start >= 0.09
    t.close()


async def test_a_cancel_from_elsewhere_is_not_swallowed() -> None:
    r, t = reader(), ReadTimer()
    task = asyncio.create_task(t.read(r, 10, 5))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    t.close()
