"""Wiring: the queue runner of a server process, built by the composition root
(`build`) and run by the server once every listener is bound (`start`).

Rules:
- Intake is handed the runner's `wake` (called after it queued a message) by
  the composition root; the runner's resolver is the process's one resolver.
- Intake is also handed the enqueue step (`enqueue`: Return-Path size and DKIM
  signature of each new entry, `queue.enqueue`); in a server it shares the
  runner's `DkimSigner` and its key cache.
- The runner stops before the store closes (`on_stop`): no new claims,
  in-flight deliveries get ``server.drain_timeout``, then are cancelled; their
  next try time was committed before they began.
- One runner per server process; the store's claims (`queue_due`) keep two
  runners sharing a store from taking the same entry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from postier.config.schema import Settings
from postier.dns.resolver import Resolver
from postier.queue.capture import Outbox, outbox_dir
from postier.queue.enqueue import Enqueue
from postier.queue.runner import Runner
from postier.queue.schedule import Schedule
from postier.queue.signing import DkimSigner
from postier.store.api import Store

log = logging.getLogger("postier.queue")


def build(settings: Settings, store: Store, resolver: Resolver) -> Runner:
    return Runner(
        store=store,
        resolver=resolver,
        hostname=settings.server.hostname,
        outbound=settings.smtp.outbound,
        schedule=Schedule.of(settings.queue),
        signer=DkimSigner(store),
        outbox=(
            Outbox(outbox_dir(settings.server.data_dir)) if settings.smtp.outbound.capture else None
        ),
    )


def enqueue(settings: Settings, store: Store, runner: Runner | None = None) -> Enqueue:
    """The enqueue step intake runs on each new queue entry: with the runner's
    signer in a server, its own in a process without a runner (`postier send`)."""
    signer = runner.signer if runner is not None else None
    return Enqueue(signer or DkimSigner(store))


def start(
    runner: Runner,
    store: Store,
    *,
    spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]],
    on_stop: Callable[[Callable[[], Awaitable[None]]], None],
    drain_timeout: float,
) -> None:
    async def run() -> None:
        released = await store.queue_release_claims()
        if released:
            log.info("queue: released %d claim(s) left by a runner that died", released)
        await runner.run()

    spawn(run(), "queue-runner")

    async def stop() -> None:
        await runner.stop(drain_timeout)

    on_stop(stop)
