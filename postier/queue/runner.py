"""The queue runner: takes due queue entries and delivers them to remote hosts.

What it owns: the life of a queued message after intake, as a coordinator of
the parts that each do one job — `schedule` (when: the retry schedule and the
loop that claims due entries), `routing` (where: recipients grouped per
destination, MX or smarthost), `transport` (how: the connection pool and one
SMTP transaction per destination host), `reports` and `dsn` (telling the
sender), `enqueue` and `signing` (what was worked out once, when queued). This
module records each recipient's outcome and decides what the entry owes.

Rules (the order is the durability contract; STYLE.md "Queue"):
1. `Store.queue_due` claims entries (`schedule.Scheduler`); each claimed entry
   gets one delivery round (`process`).
2. Intent before action: before connecting anywhere the attempt count and the
   next try time (now + backoff) are committed with `queue_update`; the claim
   is kept until the round's last update (`keep_claim`), so a round longer than
   the backoff is never started again by another runner or node meanwhile. A
   crash mid-delivery leaves the entry due at that time once the claim is gone
   (released at the runner's restart, or, on PostgreSQL, with the dead node's
   database session), with every recipient not yet recorded still pending;
   nothing is lost.
3. Commit before reuse: what a host said is committed before its connection
   goes back to the pool or carries another message (`transport`). The last
   outcome of an entry settles it there and then (reports, delete or
   reschedule); earlier ones are written with `queue_update`. So a crash sends
   again at most the one transaction in flight per connection. Trace events
   and log lines (rule 6) follow once the round's connections are free.
4. Final outcomes (`outcome`): 2xx → delivered; 5xx, null MX, NXDOMAIN, SIZE
   or SMTPUTF8 refusals → failed at once (that recipient only); 4xx, network
   errors, SERVFAIL → pending, retried until `queue.lifetime`, then failed
   ("expired").
5. A DSN is committed (`reports`) before the states that caused it: an outcome
   that owes a report is never written early by rule 3, only with the round's
   end, after its report; the entry is deleted only when no recipient is
   pending and every DSN it owes is durable. A crash between the two may send
   a DSN twice, never zero times. One report per kind per round.
6. Every outcome is named where it is recorded: one log line (and one trace
   event) per recipient and attempt — ``delivered`` with the host that said
   so, ``deferred`` with the reason and the next try, ``bounced`` with the
   reason — one per DSN sent, and one when the entry leaves the queue, with
   its tally ("1 delivered, 1 bounced"). Each line starts with ``qid=``.
7. What is sent: the blob without intake's Return-Path: (RFC 5321 §4.4) and
   with the DKIM signature stored at enqueue; entries queued without one are
   signed here at each attempt (`enqueue`).
8. Capture (``smtp.outbound.capture``, development): the bytes that would be
   sent go to the outbox (`capture.Outbox`, durable) instead of any host, and
   every pending recipient is then recorded as delivered ("captured"), with a
   ``captured`` trace event and log line; no DSN, nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from postier import metrics
from postier.config.schema import SmtpOutbound
from postier.dns.resolver import Resolver
from postier.queue import dsn, routing
from postier.queue.capture import Outbox
from postier.queue.enqueue import transmitted
from postier.queue.outcome import Outcome, OutcomeKind, apply, expired, last_error, tally
from postier.queue.reports import Reporter, report_of
from postier.queue.routing import Router
from postier.queue.schedule import Schedule, Scheduler
from postier.queue.signing import DkimSigner
from postier.queue.transport import Commit, Transport, client_tls_context
from postier.store.api import Store
from postier.store.errors import NotFound
from postier.store.models import QueueEntry, QueueRecipient, RcptState

log = logging.getLogger("postier.queue")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runner:
    """Construct, then `await run()` in a task; `wake()` from anywhere in the loop."""

    store: Store
    resolver: Resolver
    hostname: str
    outbound: SmtpOutbound = field(default_factory=SmtpOutbound)
    schedule: Schedule = field(default_factory=Schedule)
    #: signs entries queued without a stored signature (see rule 7)
    signer: DkimSigner | None = None
    #: messages in delivery at once (entries claimed by this runner)
    max_messages: int = 100
    #: longest sleep between looks at the queue (other processes' changes)
    max_idle: float = 1.0
    #: idle time a connection is kept for reuse, and transactions per connection
    reuse_idle: float = 5.0
    max_reuse: int = 100
    #: addresses tried per destination before deferring (Postfix: 5 hosts)
    max_addresses: int = 10
    #: DSNs return the full original up to this size, else its header
    max_return_size: int = 10 * 1024 * 1024
    now: Callable[[], datetime] = _utcnow
    tls_context: ssl.SSLContext = field(default_factory=client_tls_context)
    #: the development outbox: set, remote mail is kept there instead of sent (rule 8)
    outbox: Outbox | None = None

    def __post_init__(self) -> None:
        self.scheduler = Scheduler(
            self.store,
            self._process_safely,
            self.now,
            max_messages=self.max_messages,
            max_idle=self.max_idle,
        )
        self.router = Router(self.resolver, self.outbound, self.max_addresses)
        self.transport = Transport(
            self.hostname,
            self.outbound,
            self.tls_context,
            reuse_idle=self.reuse_idle,
            max_reuse=self.max_reuse,
        )
        self.reports = Reporter(
            self.store,
            self.hostname,
            self.schedule,
            max_return_size=self.max_return_size,
            wake=self.wake,
        )

    @property
    def connections_opened(self) -> int:
        """SMTP connections opened so far (the benchmark and tests)."""
        return self.transport.connections_opened

    # --- scheduling -----------------------------------------------------------
    def wake(self) -> None:
        """Look at the queue now (a new entry, a flush, a finished delivery)."""
        self.scheduler.wake()

    async def run(self) -> None:
        await self.scheduler.run()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; give in-flight deliveries `grace` seconds, then cancel
        them (their next try time is already recorded); close idle connections."""
        self.transport.stopping = True
        await self.scheduler.stop(grace)
        await self.transport.close()

    async def drain(self, within: float = 30.0) -> None:
        """Tests and benchmarks: wait (up to `within` seconds) until no delivery
        is in flight."""
        await self.scheduler.drain(within)

    # --- one message ---------------------------------------------------------
    async def _process_safely(self, entry: QueueEntry) -> None:
        try:
            await self.process(entry)
        except asyncio.CancelledError:
            raise
        except NotFound:
            log.info("qid=%s removed while being delivered", entry.id)
        except Exception:
            # our bug: the next try time was recorded before delivery began
            log.exception("qid=%s delivery failed with an internal error", entry.id)

    async def process(self, entry: QueueEntry) -> None:
        """One delivery round of one claimed entry (see the module rules)."""
        now = self.now()
        attempts = entry.attempts + 1
        current = {r.address: r for r in entry.recipients}
        pending = [r for r in entry.recipients if r.state == RcptState.PENDING]
        original = transmitted(await self.store.read_blob(entry.blob_id), entry)
        if pending and self.schedule.is_expired(entry.created, now):
            gone = {r.address: expired(r) for r in pending}
            await self._finish(entry, current, gone, original, attempts, now)
            return
        next_at = self.schedule.next_attempt(entry.created, attempts, now)
        # rule 2: intent before action
        await self.store.queue_update(
            entry.id,
            entry.recipients,
            next_attempt=next_at,
            attempts=attempts,
            last_error=entry.last_error,
            keep_claim=bool(pending),  # the round goes on: nobody else starts it
        )
        if not pending:
            await self._finish(entry, current, {}, original, attempts, now)
            return
        data = await self._signed(entry, original)
        if self.outbox is not None:
            await self._capture(entry, current, pending, data, original, attempts, next_at)
            return
        wanted = {r.address for r in pending}
        outcomes: dict[str, Outcome] = {}
        lock = asyncio.Lock()
        settled: _Settled | None = None

        async def commit(result: dict[str, Outcome]) -> None:
            """Rule 3: what one host (or the routing) said, durable before its
            connection is reused; the entry's last outcome settles it."""
            nonlocal settled
            async with lock:
                outcomes.update(result)
                if len(outcomes) == len(wanted):
                    settled = await self._settle(
                        entry, current, outcomes, original, attempts, self.now(), next_at
                    )
                    return
                early = {
                    a: o for a, o in result.items() if not self._owes_report(entry, current[a], o)
                }
                if not early:
                    return  # rule 5: written after their reports, when the round ends
                for a, o in early.items():
                    current[a] = apply(current[a], o)
                await self.store.queue_update(
                    entry.id,
                    list(current.values()),
                    next_attempt=next_at,
                    attempts=attempts,
                    last_error=last_error(current.values()),
                    keep_claim=True,
                )

        groups = routing.group(pending, smarthost=bool(self.outbound.smarthost))
        async with asyncio.TaskGroup() as tg:
            for domain, rcpts in groups.items():
                tg.create_task(self._deliver_group(entry, data, domain, rcpts, commit))
        if settled is None:  # every recipient gets an outcome: only a bug lands here
            settled = await self._settle(
                entry, current, outcomes, original, attempts, self.now(), next_at
            )
        await self._announce(settled)

    async def _capture(
        self,
        entry: QueueEntry,
        current: dict[str, QueueRecipient],
        pending: list[QueueRecipient],
        data: bytes,
        original: bytes,
        attempts: int,
        next_at: datetime,
    ) -> None:
        """Rule 8: keep `data` in the outbox, then settle its recipients as captured."""
        assert self.outbox is not None
        addresses = [r.address for r in pending]
        item = await asyncio.to_thread(
            self.outbox.add, entry.id, entry.sender, addresses, data, self.now()
        )
        o = Outcome(
            OutcomeKind.DELIVERED,
            f"250 2.0.0 captured in the development outbox as {item.id}, not sent",
            "2.0.0",
            diagnostic_type=dsn.DiagnosticType.OURS,
            captured=True,
        )
        await self._finish(
            entry, current, dict.fromkeys(addresses, o), original, attempts, self.now(), next_at
        )

    async def _signed(self, entry: QueueEntry, original: bytes) -> bytes:
        """The bytes to transmit: the stored signature on top (rule 7)."""
        if entry.dkim_signature is not None:
            return entry.dkim_signature + original
        if self.signer is None or entry.is_bounce:
            return original
        return await self.signer.signature(original, entry.sender) + original

    @staticmethod
    def _owes_report(entry: QueueEntry, r: QueueRecipient, o: Outcome) -> bool:
        """Whether `o` calls for a DSN (the conditions `_settle` sends them on)."""
        if o.kind is OutcomeKind.PERMANENT:
            action = dsn.Action.FAILED
        elif o.kind is OutcomeKind.DELIVERED and o.relayed:
            action = dsn.Action.DELIVERED
        else:
            return False
        return dsn.is_report_wanted(entry.sender, entry.is_bounce, r.notify, action)

    async def _deliver_group(
        self,
        entry: QueueEntry,
        data: bytes,
        domain: str,
        rcpts: list[QueueRecipient],
        commit: Commit,
    ) -> None:
        """Route one group and deliver it; every recipient's outcome reaches
        `commit` exactly once."""
        started = time.monotonic()
        kinds: set[OutcomeKind] = set()

        async def counted(result: dict[str, Outcome]) -> None:
            kinds.update(o.kind for o in result.values())
            await commit(result)

        dest = await self.router.destination(domain)
        if dest.failure is not None:
            await self.store.trace_add(entry.id, "route", f"{dest.name}: {dest.failure.reply}")
            await counted({r.address: dest.failure for r in rcpts})
        else:

            async def trace(line: str) -> None:
                await self.store.trace_add(entry.id, "attempt", line)

            await self.transport.deliver(entry, data, dest, rcpts, commit=counted, trace=trace)
        label = (
            "delivered"
            if kinds == {OutcomeKind.DELIVERED}
            else "failed"
            if kinds == {OutcomeKind.PERMANENT}
            else "deferred"
        )
        metrics.DELIVERY_ATTEMPT_SECONDS.labels(label).observe(time.monotonic() - started)

    async def _finish(
        self,
        entry: QueueEntry,
        current: dict[str, QueueRecipient],
        outcomes: dict[str, Outcome],
        original: bytes,
        attempts: int,
        now: datetime,
        next_at: datetime | None = None,
    ) -> None:
        settled = await self._settle(entry, current, outcomes, original, attempts, now, next_at)
        await self._announce(settled)

    async def _settle(
        self,
        entry: QueueEntry,
        current: dict[str, QueueRecipient],
        outcomes: dict[str, Outcome],
        original: bytes,
        attempts: int,
        now: datetime,
        next_at: datetime | None = None,
    ) -> _Settled:
        """Make the outcomes durable: the DSNs they call for first (rule 5), then
        delete the entry or reschedule it. What it returns is told by `_announce`."""
        for addr, o in outcomes.items():
            current[addr] = apply(current[addr], o)
        recipients = [current[r.address] for r in entry.recipients]
        failed = [(current[a], o) for a, o in outcomes.items() if o.kind is OutcomeKind.PERMANENT]
        succeeded = [
            (current[a], o) for a, o in outcomes.items() if o.kind is OutcomeKind.DELIVERED
        ]
        pending = [r for r in recipients if r.state == RcptState.PENDING]
        reports = [
            report_of(r, o, dsn.Action.FAILED, now)
            for r, o in failed
            if dsn.is_report_wanted(entry.sender, entry.is_bounce, r.notify, dsn.Action.FAILED)
        ]
        if reports:
            await self.reports.send(entry, original, reports, now)
        success = [
            report_of(r, o, dsn.Action.RELAYED if o.relayed else dsn.Action.DELIVERED, now)
            for r, o in succeeded
            if o.relayed
            and dsn.is_report_wanted(entry.sender, entry.is_bounce, r.notify, dsn.Action.DELIVERED)
        ]
        if success:
            await self.reports.send(entry, original, success, now)
        if pending and self.schedule.is_delay_warning_due(entry.created, now):
            await self.reports.delay_warning(entry, original, pending, now)
        settled = _Settled(entry, attempts, recipients, failed, succeeded)
        if not pending:
            await self.store.queue_delete(entry.id)
            return settled
        settled.next_at = next_at or self.schedule.next_attempt(entry.created, attempts, now)
        await self.store.queue_update(
            entry.id,
            recipients,
            next_attempt=settled.next_at,
            attempts=attempts,
            last_error=last_error(recipients),
        )
        settled.deferred = [r for r in pending if r.address in outcomes]
        return settled

    async def _announce(self, s: _Settled) -> None:
        """Rule 6: the trace events and log lines of settled outcomes; nothing
        here is needed for correctness, so it waits until connections are free."""
        qid = s.entry.id
        for r, o in s.failed:
            await self.store.trace_add(qid, "failed", f"<{r.address}> {o.where}{o.reply}")
            log.info("qid=%s to=<%s> bounced: %s%s", qid, r.address, o.where, o.reply)
        for r, o in s.succeeded:
            event = "captured" if o.captured else "delivered"
            await self.store.trace_add(qid, event, f"<{r.address}> {o.where}{o.reply}")
            log.info("qid=%s to=<%s> %s: %s%s", qid, r.address, event, o.where, o.reply)
        sent = [r for r, o in s.succeeded if not o.captured]
        if sent:
            metrics.MESSAGES_DELIVERED.labels("remote").inc(len(sent))
        if s.next_at is None:
            await self.store.trace_add(
                qid, "done", "every recipient delivered or failed; removed from the queue"
            )
            log.info(
                "qid=%s done after %d attempt(s): %s; removed from the queue",
                qid,
                s.attempts,
                tally(s.recipients),
            )
            return
        for r in s.deferred:
            text = f"{r.last_reply}; next try {s.next_at.isoformat(timespec='seconds')}"
            await self.store.trace_add(qid, "deferred", f"<{r.address}> {text}")
            log.info("qid=%s to=<%s> deferred: %s", qid, r.address, text)


@dataclass
class _Settled:
    """Outcomes made durable by `_settle`, for `_announce` to tell."""

    entry: QueueEntry
    attempts: int
    recipients: list[QueueRecipient]
    failed: list[tuple[QueueRecipient, Outcome]]
    succeeded: list[tuple[QueueRecipient, Outcome]]
    next_at: datetime | None = None  # None: the entry left the queue
    deferred: list[QueueRecipient] = field(default_factory=list)
