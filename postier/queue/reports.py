"""Sending delivery reports: making a DSN durable and naming it in the trace.

`dsn` builds the bytes; this module decides where they go and commits them.

Rules:
- A report to a sender of a local domain is delivered to that account's INBOX
  (every account an alias names); to anyone else it is queued as a bounce: the
  null sender (RFC 5321 §4.5.5), `is_bounce`, never DKIM-signed, never bounced.
- A report is durable (`Store.deliver` returned) when `send` returns; the
  caller commits the failed states that caused it only afterwards (runner
  rule 5), so a crash may send a report twice, never zero times.
- A local sender that no longer exists gets nothing: the report is dropped
  with a warning and a trace line.
- A delay warning is sent at most once per entry (the trace remembers it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from postier import metrics
from postier.mime.summary import summarize
from postier.queue import dsn
from postier.queue.enqueue import return_path_size
from postier.queue.outcome import Outcome, status_of
from postier.queue.schedule import Schedule
from postier.store.api import Store
from postier.store.models import (
    DeliveryTarget,
    NewMessage,
    NewQueueEntry,
    QueueEntry,
    QueueRecipient,
)

log = logging.getLogger("postier.queue")


def _needs_utf8(address: str) -> bool:
    return not address.isascii()


def report_of(
    r: QueueRecipient, o: Outcome, action: dsn.Action, now: datetime
) -> dsn.RecipientReport:
    return dsn.RecipientReport(
        address=r.address,
        action=action,
        status=o.status,
        diagnostic=o.reply,
        diagnostic_type=o.diagnostic_type,
        remote_mta=o.remote_mta,
        orcpt=r.orcpt,
        last_attempt=now,
    )


class Reporter:
    def __init__(
        self,
        store: Store,
        hostname: str,
        schedule: Schedule,
        *,
        max_return_size: int,
        wake: Callable[[], None],
    ) -> None:
        self.store = store
        self.hostname = hostname
        self.schedule = schedule
        self.max_return_size = max_return_size
        self.wake = wake

    async def delay_warning(
        self, entry: QueueEntry, original: bytes, pending: list[QueueRecipient], now: datetime
    ) -> None:
        """The one "still trying" report of an entry, if its sender wants it."""
        events = await self.store.trace_get(entry.id)
        if any(e.event == "delay-warning" for e in events):
            return
        until = self.schedule.expires(entry.created)
        reports = [
            dsn.RecipientReport(
                address=r.address,
                action=dsn.Action.DELAYED,
                status=status_of(r.last_reply, "4.0.0"),
                diagnostic=r.last_reply,
                last_attempt=now,
                orcpt=r.orcpt,
                will_retry_until=until,
            )
            for r in pending
            if dsn.is_report_wanted(entry.sender, entry.is_bounce, r.notify, dsn.Action.DELAYED)
        ]
        if reports:
            await self.send(entry, original, reports, now)
            await self.store.trace_add(
                entry.id,
                "delay-warning",
                f"sent to <{entry.sender}> for " + ",".join(f"<{r.address}>" for r in reports),
            )

    async def send(
        self,
        entry: QueueEntry,
        original: bytes,
        reports: Sequence[dsn.RecipientReport],
        now: datetime,
    ) -> None:
        """Build the DSN and make it durable: local delivery when the sender is
        ours, else a queued bounce (null sender) to their server."""
        message = dsn.build_report(
            hostname=self.hostname,
            sender=entry.sender,
            original=original,
            reports=reports,
            arrival=entry.created,
            now=now,
            qid=entry.id,
            envid=entry.envid,
            ret=entry.ret,
            smtputf8=entry.smtputf8,
            max_return_size=self.max_return_size,
            lifetime_days=self.schedule.lifetime / 86400,
        )
        sender = entry.sender
        domain = sender.rpartition("@")[2].lower()
        targets: list[DeliveryTarget] = []
        local: list[str] = []
        remote: list[str] = []
        if await self.store.get_domain(domain) is not None:
            res = await self.store.resolve(sender)
            targets = [DeliveryTarget(u.id) for u in res.users]
            local = [u.address for u in res.users]
            remote = list(res.remote)
            if not res.found:
                log.warning(
                    "qid=%s: DSN dropped: local sender <%s> does not exist", entry.id, sender
                )
                await self.store.trace_add(
                    entry.id, "dsn-dropped", f"sender <{sender}> does not exist here"
                )
                return
        else:
            remote = [sender]
        queue = None
        if remote:
            queue = NewQueueEntry(
                sender="",
                recipients=tuple(QueueRecipient(a) for a in remote),
                smtputf8=any(_needs_utf8(a) for a in remote),
                body_8bit=not message.isascii(),
                is_bounce=True,
                return_path_size=return_path_size(message),
                dkim_signature=b"",  # bounces are not signed
            )
        summary = await asyncio.to_thread(summarize, message)
        result = await self.store.deliver(NewMessage(message, summary), targets, queue=queue)
        kind = reports[0].action
        metrics.BOUNCES.labels(str(kind)).inc()
        names = ",".join(f"<{r.address}>" for r in reports)
        await self.store.trace_add(
            entry.id, "dsn", f"{kind} report {result.qid} for {names} to <{sender}>"
        )
        log.info(
            "qid=%s dsn=%s %s report for %s to <%s>", entry.id, result.qid, kind, names, sender
        )
        await self.store.trace_add(
            result.qid, "received", f"from=<> DSN ({kind}) for {entry.id} to <{sender}>"
        )
        for address in local:
            await self.store.trace_add(result.qid, "delivered", f"to <{address}> in INBOX")
        if queue is not None:
            self.wake()
