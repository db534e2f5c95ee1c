"""The queue runner: takes due queue entries and delivers them to remote hosts.

What it owns: the life of a queued message after intake — claiming it, routing
each recipient domain (MX, implicit MX, null MX; or the smarthost), one SMTP
transaction per destination host carrying all that host's recipients, recording
each recipient's outcome, retrying on the backoff schedule, and sending the
sender one DSN per batch of final outcomes.

Rules (the order is the durability contract; STYLE.md "Queue"):
1. `Store.queue_due` claims entries; the runner takes only as many as it can
   start at once (`max_messages`), so claims never sit in a local backlog.
2. Intent before action: before connecting anywhere the attempt count and the
   next try time (now + backoff) are committed with `queue_update`, which also
   releases the claim. A crash mid-delivery leaves the entry due at that time,
   with every recipient not yet recorded still pending; nothing is lost and
   only recipients whose remote 250 arrived after the last commit are sent twice.
3. After every destination's transaction the recipients' new states are
   committed (`queue_update`), so that duplicate window is one transaction.
4. Final outcomes: 2xx → delivered; 5xx, null MX, NXDOMAIN, SIZE or SMTPUTF8
   refusals → failed at once (that recipient only); 4xx, network errors,
   SERVFAIL → pending, retried until `queue.lifetime`, then failed ("expired").
5. A DSN is committed (`Store.deliver`, locally or as a queued bounce with the
   null sender) before the failed states that caused it; the entry is deleted
   only when no recipient is pending and every DSN it owes is durable. A crash
   between the two may send a DSN twice, never zero times.
6. Next MX: a connect failure, a non-220 greeting, a failed EHLO, a 421 or a
   required-but-missing TLS moves on to the next address/host (RFC 5321 §5.1);
   when all fail, the recipients are deferred with the last reason.
7. Wake-ups: `wake()` (called by intake after queuing, and when a delivery
   finishes) starts a scan at once; otherwise the runner sleeps until the next
   entry is due, at most `max_idle` seconds, so entries queued or flushed by
   other processes (CLI, worker processes) start within that time.
8. Concurrency: at most `max_concurrency` SMTP sessions in all and
   `max_per_destination` per remote address. Idle connections are kept
   `reuse_idle` seconds (at most `max_reuse` transactions each) and reused for
   the next message to the same address after an RSET (RFC 5321 §4.1.1.5).
9. Every outcome is named where it is recorded: one log line (and one trace
   event) per recipient and attempt — ``delivered`` with the host that said
   so, ``deferred`` with the reason and the next try, ``bounced`` with the
   reason — one per DSN sent, and one when the entry leaves the queue, with
   its tally ("1 delivered, 1 bounced"). Each line starts with ``qid=``.

Choices (as Postfix does):
- TLS is opportunistic (RFC 7435): STARTTLS when offered, certificates not
  verified; a handshake failure is retried once in clear. Domains in
  `require_tls_domains` (and a smarthost with tls "require"/"implicit") defer
  instead (4.7.4) when TLS is not possible.
- 8-bit data to a peer without 8BITMIME is sent as is (Postfix's default when it
  does not convert; nearly every server copes), without BODY=.
- SMTPUTF8 (RFC 6531 §3.5): when the envelope needs it (a non-ASCII address)
  and the peer does not offer it, that recipient fails (5.6.7). When only the
  header is UTF-8, the message is sent without the SMTPUTF8 parameter.
- NOTIFY=SUCCESS: when the peer offers DSN we pass NOTIFY on and it reports; when
  it does not, we send a "relayed" report (RFC 3461 §4.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from postier import metrics
from postier.config.schema import SmtpOutbound
from postier.dns import mx
from postier.dns.resolver import Resolver
from postier.mail.headers import HeaderView
from postier.mail.queueid import QueueId
from postier.mailauth import dkim
from postier.mime.address import addresses
from postier.mime.summary import summarize
from postier.queue import dsn
from postier.queue.schedule import Schedule
from postier.smtp.client import (
    ConnectionLost,
    ProtocolViolation,
    Recipient,
    ServerReply,
    SmtpClient,
    SmtpClientError,
    TlsFailed,
    xtext,
)
from postier.store.api import Store
from postier.store.errors import NotFound
from postier.store.models import (
    DeliveryTarget,
    NewMessage,
    NewQueueEntry,
    QueueEntry,
    QueueRecipient,
    RcptState,
)

log = logging.getLogger("postier.queue")

DELIVERED = "delivered"
TEMPORARY = "temporary"
PERMANENT = "permanent"

#: smarthost_tls values → the mode used here
TLS_MODES = ("starttls", "require", "implicit", "none")


@dataclass(frozen=True)
class Outcome:
    """One recipient's result of one attempt."""

    kind: str  # DELIVERED, TEMPORARY or PERMANENT
    reply: str  # the remote reply as one line ("550 5.1.1 ..."), or our diagnosis
    status: str  # RFC 3463 code
    remote_mta: str = ""  # host name that answered ("" when none did)
    diagnostic_type: str = "smtp"  # "smtp": `reply` is the remote's; else "X-Postier"
    relayed: bool = False  # delivered to a peer without DSN support

    @classmethod
    def of_reply(cls, reply: ServerReply, host: str, *, relayed: bool = False) -> Outcome:
        if reply.is_success:
            return cls(DELIVERED, str(reply), reply.status("2.0.0"), host, relayed=relayed)
        kind = PERMANENT if reply.is_permanent else TEMPORARY
        return cls(kind, str(reply), reply.status("4.0.0" if kind == TEMPORARY else "5.0.0"), host)

    @classmethod
    def ours(cls, kind: str, status: str, text: str, host: str = "") -> Outcome:
        return cls(kind, f"{status} {text}" if status else text, status, host, "X-Postier")


@dataclass(frozen=True)
class Target:
    host: str  # name, for Remote-MTA and TLS SNI
    ip: str
    port: int


@dataclass(frozen=True)
class Destination:
    """Where one group of recipients goes, and how to talk to it."""

    name: str  # the domain, or "smarthost"
    targets: tuple[Target, ...] = ()
    tls: str = "starttls"  # one of TLS_MODES
    auth: tuple[str, str] | None = None
    failure: Outcome | None = None  # routing failed: this applies to every recipient


class HostFailure(Exception):
    """This host cannot take the mail now; try the next one."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reply)
        self.outcome = outcome


def strip_return_path(data: bytes) -> bytes:
    """Drop a leading Return-Path: field (and its folded lines): it is added by
    the final delivery, never transmitted (RFC 5321 §4.4)."""
    if data[:12].lower() != b"return-path:":
        return data
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return b""
        pos = nl + 1
        if data[pos : pos + 1] not in (b" ", b"\t"):
            return data[pos:]


def client_tls_context() -> ssl.SSLContext:
    """Opportunistic TLS (RFC 7435): encrypt, do not authenticate."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _needs_utf8(address: str) -> bool:
    return not address.isascii()


class DkimSigner:
    """Finds the keys of the signing domain (cached `cache_ttl` seconds) and signs."""

    def __init__(self, store: Store, data_dir: Path, *, cache_ttl: float = 60.0) -> None:
        self.store = store
        self.data_dir = data_dir
        self.cache_ttl = cache_ttl
        self._keys: dict[str, tuple[float, list[dkim.DkimKey]]] = {}

    async def keys_for(self, domain: str) -> list[dkim.DkimKey]:
        hit = self._keys.get(domain)
        if hit and time.monotonic() - hit[0] < self.cache_ttl:
            return hit[1]
        keys: list[dkim.DkimKey] = []
        d = await self.store.get_domain(domain)
        if d is not None and d.dkim_selector:
            keys = await asyncio.to_thread(
                dkim.load_domain_keys, self.data_dir, domain, d.dkim_selector
            )
        self._keys[domain] = (time.monotonic(), keys)
        return keys

    async def sign(self, data: bytes, sender: str) -> bytes:
        """`data` with DKIM-Signature fields on top, or unchanged when no local
        domain with keys sent it (or signing fails: logged, mail still goes)."""
        view = HeaderView.of(data)
        candidates = [a.rpartition("@")[2] for a in addresses(view.fields("From"))]
        if sender:
            candidates.append(sender.rpartition("@")[2].lower())
        for domain in candidates:
            keys = await self.keys_for(domain.lower())
            if keys:
                try:
                    fields = await asyncio.to_thread(dkim.sign, data, keys)
                except dkim.DkimError:
                    log.exception("DKIM signing failed for %s", domain)
                    return data
                return fields + data
        return data


@dataclass
class _Idle:
    client: SmtpClient
    handle: asyncio.TimerHandle | None = None


@dataclass
class Runner:
    """Construct, then `await run()` in a task; `wake()` from anywhere in the loop."""

    store: Store
    resolver: Resolver
    hostname: str
    outbound: SmtpOutbound = field(default_factory=SmtpOutbound)
    schedule: Schedule = field(default_factory=Schedule)
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

    def __post_init__(self) -> None:
        self._wake = asyncio.Event()
        self._tasks: dict[QueueId, asyncio.Task[None]] = {}
        self._global = asyncio.Semaphore(self.outbound.max_concurrency)
        self._per_dest: dict[str, asyncio.Semaphore] = {}
        self._idle: dict[tuple[str, int, str, str], list[_Idle]] = {}
        self._stopping = False
        self._closing: set[asyncio.Task[None]] = set()
        self.connections_opened = 0  # for the benchmark and tests
        self._require_tls = {d.lower().rstrip(".") for d in self.outbound.require_tls_domains}

    # --- scheduling -----------------------------------------------------------
    def wake(self) -> None:
        """Look at the queue now (a new entry, a flush, a finished delivery)."""
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            free = self.max_messages - len(self._tasks)
            got = 0
            if free > 0:
                try:
                    due = await self.store.queue_due(self.now(), free)
                except Exception:
                    log.exception("queue scan failed")
                    due = []
                got = len(due)
                for entry in due:
                    if entry.id not in self._tasks:
                        self._start(entry)
                if got == free:
                    continue  # maybe more are due: claim again once slots free up
            delay = self.max_idle
            if free > 0:
                try:
                    nxt = await self.store.queue_next_due()
                except Exception:
                    log.exception("queue scan failed")
                    nxt = None
                if nxt is not None:
                    delay = min(max((nxt - self.now()).total_seconds(), 0.01), self.max_idle)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _start(self, entry: QueueEntry) -> None:
        task = asyncio.create_task(self._process_safely(entry), name=f"deliver-{entry.id}")
        self._tasks[entry.id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._tasks.pop(entry.id, None)
            self._wake.set()

        task.add_done_callback(done)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; give in-flight deliveries `timeout`, then cancel them
        (their next try time is already recorded); close idle connections.
        `grace` is the time given to in-flight deliveries."""
        self._stopping = True
        self._wake.set()
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        for idles in self._idle.values():
            for idle in idles:
                if idle.handle:
                    idle.handle.cancel()
                await idle.client.quit()
        self._idle.clear()

    async def drain(self, within: float = 30.0) -> None:
        """Tests and benchmarks: wait (up to `within` seconds) until no delivery
        is in flight."""
        deadline = time.monotonic() + within
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(list(self._tasks.values()), timeout=deadline - time.monotonic())

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
        raw = await self.store.read_blob(entry.blob_id)
        original = strip_return_path(raw)
        if pending and self.schedule.is_expired(entry.created, now):
            expired = {r.address: _expired(r) for r in pending}
            await self._finish(entry, current, expired, original, attempts, now)
            return
        next_at = self.schedule.next_attempt(entry.created, attempts, now)
        # rule 2: intent before action
        await self.store.queue_update(
            entry.id,
            entry.recipients,
            next_attempt=next_at,
            attempts=attempts,
            last_error=entry.last_error,
        )
        if not pending:
            await self._finish(entry, current, {}, original, attempts, now)
            return
        data = original
        if self.signer is not None and not entry.is_bounce:
            data = await self.signer.sign(original, entry.sender)
        groups: dict[str, list[QueueRecipient]] = {}
        for r in pending:
            key = "" if self.outbound.smarthost else r.address.rpartition("@")[2].lower()
            groups.setdefault(key, []).append(r)
        outcomes: dict[str, Outcome] = {}
        lock = asyncio.Lock()

        async def one(domain: str, rcpts: list[QueueRecipient]) -> None:
            started = time.monotonic()
            result = await self._deliver_group(entry, data, domain, rcpts)
            kinds = {o.kind for o in result.values()}
            label = (
                "delivered"
                if kinds == {DELIVERED}
                else "failed"
                if kinds == {PERMANENT}
                else "deferred"
            )
            metrics.DELIVERY_ATTEMPT_SECONDS.labels(label).observe(time.monotonic() - started)
            async with lock:
                outcomes.update(result)
                if len(groups) > 1:  # rule 3: commit what this host said
                    for addr, o in result.items():
                        current[addr] = _apply(current[addr], o)
                    await self.store.queue_update(
                        entry.id,
                        list(current.values()),
                        next_attempt=next_at,
                        attempts=attempts,
                        last_error=_last_error(current.values()),
                    )

        async with asyncio.TaskGroup() as tg:
            for domain, rcpts in groups.items():
                tg.create_task(one(domain, rcpts))
        await self._finish(entry, current, outcomes, original, attempts, self.now(), next_at)

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
        """Record outcomes; send the DSNs they call for; delete or reschedule."""
        for addr, o in outcomes.items():
            current[addr] = _apply(current[addr], o)
        recipients = [current[r.address] for r in entry.recipients]
        failed = [(current[a], o) for a, o in outcomes.items() if o.kind == PERMANENT]
        succeeded = [(current[a], o) for a, o in outcomes.items() if o.kind == DELIVERED]
        pending = [r for r in recipients if r.state == RcptState.PENDING]
        # rule 5: reports first
        reports = [
            self._report(r, o, dsn.FAILED, now)
            for r, o in failed
            if dsn.is_report_wanted(entry.sender, entry.is_bounce, r.notify, dsn.FAILED)
        ]
        if reports:
            await self._send_report(entry, original, reports, now)
        success = [
            self._report(r, o, dsn.RELAYED if o.relayed else dsn.DELIVERED, now)
            for r, o in succeeded
            if o.relayed
            and dsn.is_report_wanted(entry.sender, entry.is_bounce, r.notify, dsn.DELIVERED)
        ]
        if success:
            await self._send_report(entry, original, success, now)
        if pending and self.schedule.is_delay_warning_due(entry.created, now):
            await self._maybe_delay_warning(entry, original, pending, now)
        for r, o in failed:
            await self.store.trace_add(entry.id, "failed", f"<{r.address}> {_where(o)}{o.reply}")
            log.info("qid=%s to=<%s> bounced: %s%s", entry.id, r.address, _where(o), o.reply)
        for r, o in succeeded:
            await self.store.trace_add(entry.id, "delivered", f"<{r.address}> {_where(o)}{o.reply}")
            log.info("qid=%s to=<%s> delivered: %s%s", entry.id, r.address, _where(o), o.reply)
        if succeeded:
            metrics.MESSAGES_DELIVERED.labels("remote").inc(len(succeeded))
        if not pending:
            await self.store.queue_delete(entry.id)
            await self.store.trace_add(
                entry.id, "done", "every recipient delivered or failed; removed from the queue"
            )
            log.info(
                "qid=%s done after %d attempt(s): %s; removed from the queue",
                entry.id,
                attempts,
                _tally(recipients),
            )
            return
        when = next_at or self.schedule.next_attempt(entry.created, attempts, now)
        await self.store.queue_update(
            entry.id,
            recipients,
            next_attempt=when,
            attempts=attempts,
            last_error=_last_error(recipients),
        )
        deferred = [r for r in pending if r.address in outcomes]
        for r in deferred:
            text = f"{r.last_reply}; next try {when.isoformat(timespec='seconds')}"
            await self.store.trace_add(entry.id, "deferred", f"<{r.address}> {text}")
            log.info("qid=%s to=<%s> deferred: %s", entry.id, r.address, text)

    def _report(
        self, r: QueueRecipient, o: Outcome, action: str, now: datetime
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

    async def _maybe_delay_warning(
        self, entry: QueueEntry, original: bytes, pending: list[QueueRecipient], now: datetime
    ) -> None:
        events = await self.store.trace_get(entry.id)
        if any(e.event == "delay-warning" for e in events):
            return
        until = self.schedule.expires(entry.created)
        reports = [
            dsn.RecipientReport(
                address=r.address,
                action=dsn.DELAYED,
                status=_status_of(r.last_reply, "4.0.0"),
                diagnostic=r.last_reply,
                last_attempt=now,
                orcpt=r.orcpt,
                will_retry_until=until,
            )
            for r in pending
            if dsn.is_report_wanted(entry.sender, entry.is_bounce, r.notify, dsn.DELAYED)
        ]
        if reports:
            await self._send_report(entry, original, reports, now)
            await self.store.trace_add(
                entry.id,
                "delay-warning",
                f"sent to <{entry.sender}> for " + ",".join(f"<{r.address}>" for r in reports),
            )

    async def _send_report(
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

    # --- one destination -----------------------------------------------------
    async def destination(self, domain: str) -> Destination:
        """Where mail for `domain` goes (smarthost, or MX routing)."""
        o = self.outbound
        if o.smarthost:
            host, _, port_text = o.smarthost.rpartition(":")
            if not host:
                host, port_text = port_text, "25"
            host = host.strip("[]")
            auth = (o.smarthost_username, o.smarthost_password) if o.smarthost_username else None
            tls = o.smarthost_tls if o.smarthost_tls in TLS_MODES else "starttls"
            targets: tuple[Target, ...]
            if _is_ip(host):
                targets = (Target(host, host, int(port_text)),)
            else:
                h = await mx.resolve_host(self.resolver, host, 0)
                if not h.addresses:
                    return Destination(
                        "smarthost",
                        failure=Outcome.ours(TEMPORARY, "4.4.3", f"smarthost {host}: {h.error}"),
                    )
                targets = tuple(Target(host, a, int(port_text)) for a in h.addresses)
            return Destination("smarthost", targets, tls, auth)
        route = await mx.route(self.resolver, domain)
        if route.kind is mx.RouteKind.NULL_MX:
            # RFC 7505 §4.3: 556 5.1.10 for a domain that accepts no mail
            return Destination(
                domain,
                failure=Outcome.ours(
                    PERMANENT, "5.1.10", f"Recipient address has null MX: {route.detail}"
                ),
            )
        if route.kind is mx.RouteKind.NXDOMAIN:
            return Destination(
                domain,
                failure=Outcome.ours(
                    PERMANENT, "5.1.2", f"Host or domain name not found: {route.detail}"
                ),
            )
        if not route.ok:
            if route.temporary:
                return Destination(
                    domain,
                    failure=Outcome.ours(
                        TEMPORARY, "4.4.3", f"Host or domain name lookup failed: {route.detail}"
                    ),
                )
            return Destination(
                domain, failure=Outcome.ours(PERMANENT, "5.4.4", f"Unable to route: {route.detail}")
            )
        found = tuple(Target(h.name, ip, o.port) for h, ip in route.addresses)
        tls = "require" if domain in self._require_tls else "starttls"
        return Destination(domain, found[: self.max_addresses], tls)

    async def _deliver_group(
        self, entry: QueueEntry, data: bytes, domain: str, rcpts: list[QueueRecipient]
    ) -> dict[str, Outcome]:
        dest = await self.destination(domain)
        if dest.failure is not None:
            await self.store.trace_add(entry.id, "route", f"{dest.name}: {dest.failure.reply}")
            return {r.address: dest.failure for r in rcpts}
        last = Outcome.ours(TEMPORARY, "4.4.1", f"{dest.name}: no host could be reached")
        remaining = list(rcpts)
        results: dict[str, Outcome] = {}
        for target in dest.targets:
            sem = self._per_dest.setdefault(
                target.ip, asyncio.Semaphore(self.outbound.max_per_destination)
            )
            async with sem, self._global:
                try:
                    client = await self._session(target, dest)
                except HostFailure as e:
                    last = e.outcome
                    await self.store.trace_add(
                        entry.id, "attempt", f"{_host(target)}: {e.outcome.reply}"
                    )
                    continue
                try:
                    got = await self._transaction(client, entry, data, remaining, target)
                except (ConnectionLost, ProtocolViolation) as e:
                    client.close()
                    last = Outcome.ours(
                        TEMPORARY,
                        "4.4.2",
                        f"lost connection with {target.host}[{target.ip}]: {e}",
                        target.host,
                    )
                    await self.store.trace_add(
                        entry.id, "attempt", f"{_host(target)}: {last.reply}"
                    )
                    continue
                tls = "TLS" if client.tls else "no TLS"
                await self.store.trace_add(
                    entry.id,
                    "attempt",
                    f"{_host(target)} ({tls}): "
                    + "; ".join(f"<{a}> {o.reply}" for a, o in got.items()),
                )
                self._release(target, dest, client)
            # RFC 5321 §3.8 / rule 6: recipients refused with 421 go to the next host
            retry = [r for r in remaining if got[r.address].reply.startswith("421")]
            for r in remaining:
                if r not in retry:
                    results[r.address] = got[r.address]
            if not retry:
                return results
            last = got[retry[0].address]
            remaining = retry
        for r in remaining:
            results[r.address] = last
        return results

    async def _session(self, target: Target, dest: Destination) -> SmtpClient:
        """A ready connection (greeted, EHLO done, TLS and AUTH as asked): reused
        from the idle pool after a successful RSET, or new."""
        key = (target.ip, target.port, dest.tls, dest.auth[0] if dest.auth else "")
        while self._idle.get(key):
            idle = self._idle[key].pop()
            if idle.handle:
                idle.handle.cancel()
            try:
                reply = await idle.client.rset()  # RFC 5321 §4.1.1.5
            except SmtpClientError:
                idle.client.close()
                continue
            if reply.is_success:
                return idle.client
            await idle.client.quit()
        return await self._open(target, dest, dest.tls)

    async def _open(self, target: Target, dest: Destination, tls: str) -> SmtpClient:
        o = self.outbound
        where = _host(target)
        try:
            client = await SmtpClient.connect(
                target.ip,
                target.port,
                connect_timeout=o.connect_timeout,
                command_timeout=o.command_timeout,
                implicit_tls=self.tls_context if tls == "implicit" else None,
                server_hostname=target.host,
            )
        except TlsFailed as e:
            raise HostFailure(Outcome.ours(TEMPORARY, "4.7.5", str(e), target.host)) from None
        except SmtpClientError as e:
            raise HostFailure(Outcome.ours(TEMPORARY, "4.4.1", str(e), target.host)) from None
        self.connections_opened += 1
        try:
            assert client.greeting is not None
            if client.greeting.code != 220:  # RFC 5321 §3.1: 554 = no service here
                raise HostFailure(_refused(client.greeting, target, "greeting"))
            reply = await client.ehlo(self.hostname)
            if not reply.is_success:
                raise HostFailure(_refused(reply, target, "EHLO"))
            if tls in ("starttls", "require") and not client.tls:
                if client.has("STARTTLS"):
                    try:
                        reply = await client.starttls(self.tls_context, target.host)
                    except TlsFailed as e:
                        if tls == "require":
                            raise HostFailure(
                                Outcome.ours(TEMPORARY, "4.7.5", f"{where}: {e}", target.host)
                            ) from None
                        log.info("%s: TLS failed (%s); trying again in clear", where, e)
                        return await self._open(target, dest, "none")
                    if reply.code != 220:
                        if tls == "require":
                            raise HostFailure(_refused(reply, target, "STARTTLS"))
                    else:
                        reply = await client.ehlo(self.hostname)  # RFC 3207 §4.2
                        if not reply.is_success:
                            raise HostFailure(_refused(reply, target, "EHLO"))
                elif tls == "require":
                    raise HostFailure(
                        Outcome.ours(
                            TEMPORARY,
                            "4.7.4",
                            f"TLS is required, but was not offered by host {where}",
                            target.host,
                        )
                    )
            if dest.auth is not None:
                if not client.auth_mechanisms:
                    raise HostFailure(
                        Outcome.ours(
                            TEMPORARY,
                            "4.7.0",
                            f"{where} offers no AUTH, but a login is "
                            "configured (smtp.outbound.smarthost_username)",
                            target.host,
                        )
                    )
                reply = await client.auth(*dest.auth)
                if not reply.is_success:  # a wrong password is the admin's to fix: defer
                    raise HostFailure(
                        Outcome.ours(
                            TEMPORARY, "4.7.0", f"{where} refused AUTH: {reply}", target.host
                        )
                    )
        except HostFailure:
            await client.quit()
            raise
        except SmtpClientError as e:
            client.close()
            raise HostFailure(Outcome.ours(TEMPORARY, "4.4.2", str(e), target.host)) from None
        return client

    def _release(self, target: Target, dest: Destination, client: SmtpClient) -> None:
        """Keep a healthy connection for the next message to the same address."""
        if client.closed or client.transactions >= self.max_reuse or self._stopping:
            self._quit_later(client)
            return
        key = (target.ip, target.port, dest.tls, dest.auth[0] if dest.auth else "")
        idle = _Idle(client)
        pool = self._idle.setdefault(key, [])
        pool.append(idle)

        def expire() -> None:
            if idle in pool:
                pool.remove(idle)
                self._quit_later(client)

        idle.handle = asyncio.get_running_loop().call_later(self.reuse_idle, expire)

    def _quit_later(self, client: SmtpClient) -> None:
        task = asyncio.create_task(client.quit())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _transaction(
        self,
        client: SmtpClient,
        entry: QueueEntry,
        data: bytes,
        rcpts: list[QueueRecipient],
        target: Target,
    ) -> dict[str, Outcome]:
        """One MAIL/RCPT/DATA on `client` for `rcpts`; outcome per recipient."""
        host = target.host
        out: dict[str, Outcome] = {}
        utf8_sender = _needs_utf8(entry.sender)
        has_utf8 = client.has("SMTPUTF8")
        send: list[QueueRecipient] = []
        for r in rcpts:
            if (utf8_sender or _needs_utf8(r.address)) and not has_utf8:
                # RFC 6531 §3.2: no SMTPUTF8 at the peer → cannot deliver this address
                out[r.address] = Outcome.ours(
                    PERMANENT,
                    "5.6.7",
                    f"{host} does not support SMTPUTF8, which the address needs",
                    host,
                )
            else:
                send.append(r)
        size = len(data)
        limit = client.max_size
        if limit and size > limit:  # RFC 1870 §6.1: do not send what will be refused
            for r in send:
                out[r.address] = Outcome.ours(
                    PERMANENT,
                    "5.3.4",
                    f"message size {size} exceeds size limit {limit} of server {host}[{target.ip}]",
                    host,
                )
            return out
        if not send:
            return out
        params = []
        if client.has("SIZE"):
            params.append(f"SIZE={size}")  # RFC 1870 §6
        if entry.body_8bit and client.has("8BITMIME"):
            params.append("BODY=8BITMIME")  # RFC 6152 §2
        if has_utf8 and (
            entry.smtputf8 or utf8_sender or any(_needs_utf8(r.address) for r in send)
        ):
            params.append("SMTPUTF8")  # RFC 6531 §3.4
        has_dsn = client.has("DSN")
        if has_dsn:  # RFC 3461 §4.3, §4.4
            if entry.ret:
                params.append(f"RET={entry.ret}")
            if entry.envid:
                params.append(f"ENVID={xtext(entry.envid)}")
        recipients = []
        for r in send:
            rp = []
            if has_dsn and r.notify:
                rp.append(f"NOTIFY={r.notify}")  # RFC 3461 §4.1
            if has_dsn and r.orcpt:
                addr_type, _, original = r.orcpt.partition(";")
                rp.append(f"ORCPT={addr_type};{xtext(original)}")  # RFC 3461 §4.2
            recipients.append(Recipient(r.address, " ".join(rp)))
        tx = await client.send_transaction(
            entry.sender, recipients, data, mail_params=" ".join(params)
        )
        for i, r in enumerate(send):
            rreply = tx.rcpts[i]
            if not tx.mail.is_success:
                out[r.address] = Outcome.of_reply(tx.mail, host)
            elif rreply is None or not rreply.is_success:
                out[r.address] = Outcome.of_reply(rreply or tx.mail, host)
            elif tx.data is not None:
                out[r.address] = Outcome.of_reply(tx.data, host, relayed=not has_dsn)
            elif tx.data_command is not None:
                out[r.address] = Outcome.of_reply(tx.data_command, host)
            else:
                out[r.address] = Outcome.ours(TEMPORARY, "4.4.2", "transaction incomplete", host)
        return out


def _host(t: Target) -> str:
    return f"{t.host}[{t.ip}]:{t.port}"


def _where(o: Outcome) -> str:
    return f"host {o.remote_mta} said: " if o.remote_mta and o.diagnostic_type == "smtp" else ""


def _refused(reply: ServerReply, target: Target, stage: str) -> Outcome:
    kind = TEMPORARY  # a host refusing the session: try the next, then defer
    return Outcome(kind, str(reply), reply.status("4.0.0"), target.host)


def _status_of(reply: str, default: str) -> str:
    parts = reply.split(" ")
    if len(parts) > 1 and parts[1].count(".") == 2 and parts[1][0] in "245":
        return parts[1]
    return default


def _expired(r: QueueRecipient) -> Outcome:
    why = r.last_reply or "no reply"
    # RFC 3463: X.4.7 delivery time expired; class 5 since we give up
    return Outcome(
        PERMANENT, f"delivery time expired; last error: {why}", "5.4.7", diagnostic_type="X-Postier"
    )


def _apply(r: QueueRecipient, o: Outcome) -> QueueRecipient:
    state = {
        DELIVERED: RcptState.DELIVERED,
        PERMANENT: RcptState.FAILED,
        TEMPORARY: RcptState.PENDING,
    }[o.kind]
    text = f"{o.reply} (host {o.remote_mta})" if o.remote_mta else o.reply
    return replace(r, state=state, last_reply=text)


def _tally(recipients: Iterable[QueueRecipient]) -> str:
    """ "2 delivered, 1 bounced": the final states of an entry's recipients."""
    delivered = sum(1 for r in recipients if r.state == RcptState.DELIVERED)
    bounced = sum(1 for r in recipients if r.state == RcptState.FAILED)
    return f"{delivered} delivered, {bounced} bounced"


def _last_error(recipients: Iterable[QueueRecipient]) -> str:
    for r in recipients:
        if r.state == RcptState.PENDING and r.last_reply:
            return r.last_reply
    return ""
