"""Wiring: start the queue runner inside a running server (`start(app)`).

Rules:
- Registers ``app.services["queue_wake"]`` (intake calls it after queuing a
  message), ``app.services["queue_runner"]`` and, unless another package did,
  ``app.services["resolver"]`` (the configured DNS resolver).
- The runner stops before the store closes (`app.on_stop`): no new claims,
  in-flight deliveries get ``server.drain_timeout``, then are cancelled; their
  next try time was committed before they began.
- One runner per server process; the store's claims (`queue_due`) keep two
  runners sharing a store from taking the same entry.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from postier.dns.resolver import Resolver, make_resolver
from postier.queue.runner import DkimSigner, Runner
from postier.queue.schedule import Schedule

if TYPE_CHECKING:
    from postier.server.app import App


log = logging.getLogger("postier.queue")


def start(app: App) -> Runner:
    settings = app.settings
    resolver: Resolver = app.services.get("resolver") or make_resolver(settings.dns)
    app.services.setdefault("resolver", resolver)
    runner = Runner(
        store=app.store,
        resolver=resolver,
        hostname=settings.server.hostname,
        outbound=settings.smtp.outbound,
        schedule=Schedule.of(settings.queue),
        signer=DkimSigner(app.store, settings.server.data_dir),
    )
    app.services["queue_wake"] = runner.wake
    app.services["queue_runner"] = runner

    async def run() -> None:
        released = await app.store.queue_release_claims()
        if released:
            log.info("queue: released %d claim(s) left by a runner that died", released)
        await runner.run()

    app.spawn(run(), "queue-runner")

    async def stop() -> None:
        await runner.stop(settings.server.drain_timeout)

    app.on_stop.append(stop)
    return runner
