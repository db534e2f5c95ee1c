"""`smtp.server.shielded`: the end of data runs to its end whatever happens to the
session that waits for it (as ``asyncio.shield``)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from postier.smtp.server import shielded


async def test_result_and_exception_come_back() -> None:
    async def ok() -> str:
        await asyncio.sleep(0)
        return "250"

    async def fails() -> str:
        await asyncio.sleep(0)
        raise ValueError("store")

    assert await shielded(ok()) == "250"
    with pytest.raises(ValueError, match="store"):
        await shielded(fails())


async def test_a_cancelled_caller_leaves_the_work_running_to_its_end() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    committed: list[str] = []

    async def finish() -> str:
        started.set()
        await release.wait()
        await asyncio.sleep(0)
        committed.append("durable")
        return "250"

    session = asyncio.create_task(shielded(finish()))
    await started.wait()
    session.cancel()
    with pytest.raises(asyncio.CancelledError):
        await session  # at once: the caller does not wait for the work
    assert committed == []
    release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert committed == ["durable"]


async def test_a_cancel_before_the_work_starts_still_runs_it() -> None:
    ran: list[bool] = []

    async def finish() -> None:
        ran.append(True)

    session = asyncio.create_task(shielded(finish()))
    await asyncio.sleep(0)  # the session waits for the work
    session.cancel()
    with pytest.raises(asyncio.CancelledError):
        await session
    await asyncio.sleep(0)
    assert ran == [True]


async def test_an_error_after_the_caller_left_is_not_reported_as_unretrieved() -> None:
    """As with shield: the work's error, when nobody waits any more, is dropped
    quietly (asyncio would log "Task exception was never retrieved" otherwise)."""
    reported: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    release = asyncio.Event()

    async def fails() -> None:
        await release.wait()
        raise ValueError("store")

    session = asyncio.create_task(shielded(fails()))
    await asyncio.sleep(0)
    session.cancel()
    with pytest.raises(asyncio.CancelledError):
        await session
    release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    del session
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert reported == []
