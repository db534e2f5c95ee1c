"""Counting the event loop's wake-ups from other threads (`call_soon_threadsafe`):
the tests that results finishing together reach the loop in one batch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest


def count_wakeups(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """From now on, the running loop's wake-ups are counted; returns the count so far."""
    loop = asyncio.get_running_loop()
    real = loop.call_soon_threadsafe
    count = 0

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    return lambda: count
