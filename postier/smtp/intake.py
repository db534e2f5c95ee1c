"""Intake policy: who may send what to whom, and making an accepted message durable.

The SMTP core decides what the RFC decides; this module decides the rest, for
the two roles a listener has:

- ``mx`` (port 25): recipients must be in a local domain and exist (user, alias,
  catch-all) — otherwise ``550 5.1.1``; a foreign domain is ``554 5.7.1 Relay
  access denied``, whoever the client is (loopback included). No AUTH here.
- ``submission`` (587, 465): AUTH first; MAIL FROM and every From: address must
  be the user's own or an alias of theirs (``553 5.7.1``); remote recipients are
  queued; Date: and Message-ID: are added when missing (RFC 6409 §8).

Rules:
- ``postmaster@D`` and ``abuse@D`` are accepted for every local domain D even
  when no user or alias has the name (RFC 5321 §4.5.1, RFC 2142 §4): an alias
  or user of that name wins, else the domain's first account (`_role_fallback`);
  ``<Postmaster>`` without a domain (which the core names postmaster@hostname)
  is postmaster of the primary domain. They are never greylisted.
- Local parts are never interpreted: ``%``, ``!``, quoted ``@`` and source routes
  (stripped by the core) cannot route mail elsewhere. A domain matches ours
  case-insensitively and with or without a trailing dot, nothing looser.
- `Spool` receives the message while it arrives: in memory up to
  `spool_threshold`, then in a file under data_dir/spool holding the client's
  bytes only. The trace fields (Return-Path:, Received:) and the fields the
  filters add are kept apart and put on top at the end: joined with the bytes
  in memory, or, for a spooled message, stored as the blob's head while the
  spool file itself becomes the blob (no copy, no rewrite). Remote copies keep
  that Return-Path:; the outbound client drops a leading Return-Path: when it
  transmits (RFC 5321 §4.4).
- One parse per message (`mime.message.ParsedMessage`): the header block is
  split once when the scanner finds its end; at end of data the message is
  read once (from memory, or its spool file) and every filter, the header
  edits and the stored summary use that parse. The store never parses.
- The header's end is found while it streams in (`headers.HeaderScanner`): a
  header without the empty line before the body gets one, and more than
  `smtp.limits.max_hops` Received:/Delivered-To: fields is a mail loop,
  refused at end of data with ``554 5.4.6`` on every listener (RFC 5321 §6.3).
- `finish()` answers 250 only after `Store.deliver` returned: the blob and every
  mailbox row and queue entry are durable (rule zero: a 250 means on disk).
- Filters (`postier.filters`) vote at connect, HELO, MAIL, RCPT (only for a
  recipient that exists: nobody is greylisted for an unknown user) and end of
  data. At end of data the MX role adds Authentication-Results and X-Spam-*
  fields right below our Received: and a Junk decision delivers to each user's
  Junk. On every role, incoming Authentication-Results fields claiming our
  authserv-id and X-Spam-* fields are removed first: a local sender cannot
  forge our verdicts for a local recipient either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from postier import metrics
from postier.config.schema import Settings
from postier.filters.build import Filters
from postier.filters.pipeline import Context, DataOutcome, Phase
from postier.mail.address import Address, AddressError
from postier.mail.headers import HeaderView
from postier.mail.queueid import QueueId, new_queue_id
from postier.mail.replies import (
    R250_QUEUED,
    R250_RECIPIENT_OK,
    R250_SENDER_OK,
    R451_LOCAL_ERROR,
    R452_MAILBOX_FULL,
    R530_AUTH_REQUIRED,
    R550_NO_FROM,
    R550_NO_SUCH_USER,
    R553_FROM_NOT_OWNER,
    R553_NOT_OWNER,
    R553_NULL_SENDER,
    R554_RELAY_DENIED,
    R554_TOO_MANY_HOPS,
    Reply,
)
from postier.mail.role import IntakeRole
from postier.mailauth.results import forged_fields
from postier.mime.address import addresses
from postier.mime.message import Header, ParsedMessage
from postier.offload import INLINE_MAX
from postier.smtp import headers as hdr
from postier.smtp.events import MailParams, RcptParams
from postier.store.api import Store
from postier.store.models import (
    DeliveryTarget,
    Domain,
    NewMessage,
    NewQueueEntry,
    QueueRecipient,
    Resolution,
    User,
)

log = logging.getLogger("postier.smtp")

#: the queue's enqueue step (`postier.queue.enqueue.Enqueue.prepare`), injected
QueuePrepare = Callable[[NewMessage, NewQueueEntry, bytes], Awaitable[NewQueueEntry]]


#: RFC 5321 §4.5.1 (postmaster) and RFC 2142 §4 (abuse): accepted for every local domain
ROLE_LOCALPARTS = frozenset({"postmaster", "abuse"})


@dataclass
class SessionInfo:
    """What intake knows of one connection."""

    sid: str
    role: IntakeRole
    peer_ip: str
    peer_name: str | None = None  # forward-confirmed reverse DNS, when known
    helo: str = ""
    esmtp: bool = False
    tls: tuple[str, str] | None = None
    user: User | None = None
    filters: Context | None = None  # the filter pipeline's view of this session


@dataclass
class Recipient:
    address: Address
    params: RcptParams
    users: tuple[User, ...] = ()
    remote: tuple[str, ...] = ()  # queued destinations (itself, or alias forwards)


@dataclass
class Envelope:
    sender: Address | None
    params: MailParams
    recipients: list[Recipient] = field(default_factory=list)
    qid: QueueId = field(default_factory=new_queue_id)
    started: float = field(default_factory=time.time)


class Spool:
    """The message being received: the client's bytes, the trace fields apart.

    The client's bytes go through a `headers.HeaderScanner` (the empty line a
    header lacks is added, hops are counted), then are held in memory up to
    `threshold` bytes and moved to a file in `directory` beyond; the file holds
    the client's bytes only, so it can become the message's blob as it is.
    The header block is split once, when the scanner finds its end
    (`mime.message.Header`); `on_header` is called then with it (or with as
    much of it as fits the threshold) and returns more fields to put on top,
    or raises `Refused`.
    """

    def __init__(
        self,
        prefix: bytes,
        threshold: int,
        directory: Path,
        on_header: Callable[[HeaderView], bytes] | None = None,
        *,
        crlf_only: bool = False,
    ) -> None:
        self._on_header = on_header
        self._crlf_only = crlf_only  # no bare CR or LF will come (see ParsedMessage)
        self._parts: list[bytes] = []
        self._prefix = prefix
        self._size = 0
        self._threshold = threshold
        self._dir = directory
        self._file: int | None = None
        self._scanner = hdr.HeaderScanner()
        self.path: Path | None = None
        self.header_seen = False
        self.header: Header | None = None

    def write(self, data: bytes) -> None:
        scanner = self._scanner
        if not scanner.done:
            data = scanner.feed(data)
        if data:
            self._size += len(data)
            if self._file is not None:
                os.write(self._file, data)
                return
            self._parts.append(data)
        if scanner.done and not self.header_seen:
            self._saw_header(b"".join(self._parts))
        if self._file is None and self._size > self._threshold:
            self._spill()

    def _spill(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        self.path = self._dir / f"{secrets.token_hex(12)}.tmp"
        self._file = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        if not self.header_seen:
            self._saw_header(b"".join(self._parts))
        for part in self._parts:
            os.write(self._file, part)
        self._parts = []

    @property
    def spilled(self) -> bool:
        return self.path is not None

    @property
    def size(self) -> int:
        """Octets of the message as stored, without the trace fields."""
        return self._size

    @property
    def hops(self) -> int:
        """Received: and Delivered-To: fields in the client's header."""
        return self._scanner.hops

    @property
    def inserted_blank_line(self) -> bool:
        """The client's header had no empty line before the body; we added it."""
        return self._scanner.inserted

    @property
    def header_is_large(self) -> bool:
        """The header is not split yet, or is more than `INLINE_MAX` octets: its
        work (`ensure_header`, reading its fields) belongs off the event loop."""
        return self.header is None or self._scanner.body_offset > INLINE_MAX

    def ensure_header(self) -> Header:
        """The end of the data: flush what the header scanner held back; the
        header view, also for a message whose data ended before its header did.
        Blocking when `header_is_large` (a large header is split here, read
        back from the spool file if it was spilled)."""
        scanner = self._scanner
        if not scanner.done:
            self.write(scanner.close())
        if not self.header_seen:
            self._saw_header(b"".join(self._parts))
        if self.header is None:  # a large header, left for now (`_saw_header`)
            if self.path is None:
                data = b"".join(self._parts)
                self._parts = [data]
            else:
                with open(self.path, "rb") as f:
                    data = f.read(scanner.body_offset)
            self._split_header(data)
        assert self.header is not None
        return self.header

    def parse(self) -> ParsedMessage:
        """The end of the data: the client's message and its one parse. Blocking
        for a spooled message: its file is read once, here."""
        header = self.ensure_header()
        if self.path is None:
            data = b"".join(self._parts)
            self._parts = [data]
        else:
            with open(self.path, "rb") as f:
                data = f.read()
        return ParsedMessage(data, header, crlf_only=self._crlf_only)

    def finish(
        self,
        message: ParsedMessage,
        insert: bytes = b"",
        drop: Callable[[str, str], bool] | None = None,
    ) -> NewMessage:
        """The message to store, with its summary: the trace fields, then
        `insert`, then the client's bytes without the header fields for which
        `drop(name, value)` is true.

        In memory, the bytes are joined. A spooled message's file becomes the
        blob as it is: what goes above its content (and the client's header,
        when fields of it are dropped) is the `NewMessage.head`. Blocking for a
        spooled message (the summary counts its lines)."""
        if self._file is not None:
            os.close(self._file)
            self._file = None
        above = self._prefix + insert
        data, header = message.data, message.header
        kept = header.without(drop) if drop is not None else None
        edited = None if kept is None else kept + data[len(header.raw) : header.body_offset]
        summary = message.summary(above, edited)
        if self.path is None:
            self._parts = []  # the bytes go on in the NewMessage, not held twice
            if edited is None:
                return NewMessage(above + data, summary)
            return NewMessage(b"".join((above, edited, data[header.body_offset :])), summary)
        if edited is None:
            return NewMessage(self.path, summary, head=above)
        return NewMessage(self.path, summary, head=above + edited, skip=header.body_offset)

    def _saw_header(self, data: bytes) -> None:
        """`data`: the stored bytes so far, from the start of the client's header.
        A header of at most `INLINE_MAX` octets is split now, on the loop; a
        larger one (or one still incomplete when the message spills) waits for
        `ensure_header`, which runs in a thread: splitting is linear, but
        20,000 fields cost 30 ms and the spill came at up to 512 KB."""
        self.header_seen = True
        scanner = self._scanner
        if scanner.done and scanner.body_offset <= INLINE_MAX:
            self._split_header(data)

    def _split_header(self, data: bytes) -> None:
        scanner = self._scanner
        self.header = Header.parse(data, scanner.header_length, scanner.body_offset)
        if self._on_header is not None:
            self._prefix += self._on_header(self.header)

    def discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                os.close(self._file)
            self._file = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
        self._parts = []


class Intake:
    """One per process (the composition root builds it), shared by every listener.
    `queue_wake`, when given, is called after a message was queued;
    `queue_prepare` completes each new queue entry before it is stored (the
    queue's enqueue step: its DKIM signature, `postier.queue.enqueue`)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        filters: Filters,
        *,
        queue_wake: Callable[[], None] | None = None,
        queue_prepare: QueuePrepare | None = None,
    ) -> None:
        self.store = store
        self.hostname = settings.server.hostname
        self.hostname_key = self.hostname.lower().rstrip(".")
        self.spool_dir = settings.server.data_dir / "spool"
        self.threshold = settings.smtp.limits.spool_threshold
        self.max_hops = settings.smtp.limits.max_hops
        self.filters = filters
        self.queue_wake = queue_wake
        self.queue_prepare = queue_prepare

    # --- filters -------------------------------------------------------------
    def _ctx(self, s: SessionInfo) -> Context:
        if s.filters is None:
            s.filters = self.filters.context(s.sid, s.role, s.peer_ip)
            s.filters.helo = s.helo
        s.filters.authenticated = s.user is not None
        return s.filters

    async def on_connect(self, s: SessionInfo) -> None:
        """Connect-time stages (DNSBL, FCrDNS); a refusal is answered at MAIL."""
        ctx = self._ctx(s)
        await self.filters.run(Phase.CONNECT, ctx)
        if ctx.peer_name:
            s.peer_name = ctx.peer_name

    async def on_helo(self, s: SessionInfo) -> None:
        ctx = self._ctx(s)
        ctx.helo = s.helo
        await self.filters.run(Phase.HELO, ctx)

    # --- MAIL ----------------------------------------------------------------
    async def check_sender(self, s: SessionInfo, sender: Address | None) -> Reply:
        if s.role is IntakeRole.SUBMISSION:
            if s.user is None:
                return R530_AUTH_REQUIRED
            if sender is None:
                return R553_NULL_SENDER
            if not await self._owns(s.user, sender.key):
                return R553_NOT_OWNER(str(sender))
        ctx = self._ctx(s)
        ctx.begin(new_queue_id(), str(sender) if sender else "")
        refusal = await self.filters.run(Phase.MAIL, ctx)
        return refusal or R250_SENDER_OK

    async def _owns(self, user: User, key: str) -> bool:
        owned = await self.store.addresses_of(user.id)
        return key in {a.lower() for a in owned}

    # --- RCPT ----------------------------------------------------------------
    async def check_recipient(
        self, s: SessionInfo, env: Envelope, rcpt: Address, params: RcptParams
    ) -> Reply:
        ctx = self._ctx(s)
        if ctx.qid:
            env.qid = QueueId(ctx.qid)  # the QID the MAIL verdicts were traced under
        role = rcpt.localpart.lower() in ROLE_LOCALPARTS
        domain = await self.store.get_domain(rcpt.domain.ascii)
        key = rcpt.key
        if domain is None and rcpt.key == f"postmaster@{self.hostname_key}":
            # RFC 5321 §4.5.1: <Postmaster> (the core names it postmaster@hostname)
            primary = await self._primary_domain()
            if primary is not None:
                domain, key = primary, f"postmaster@{primary.name}"
        if domain is None:
            if s.role is IntakeRole.SUBMISSION and s.user is not None:
                refusal = await self._filter_rcpt(ctx, rcpt)
                if refusal is not None:
                    return refusal
                env.recipients.append(Recipient(rcpt, params, remote=(str(rcpt),)))
                return R250_RECIPIENT_OK
            return R554_RELAY_DENIED(str(rcpt))
        res = await self.store.resolve(key)
        if not res.found and role:
            res = await self._role_fallback(domain.name)
        if not res.found:
            return R550_NO_SUCH_USER(str(rcpt))
        for user in res.users:
            if user.quota_bytes:
                used, limit = await self.store.quota_usage(user.id)
                if limit and used >= limit:
                    return R452_MAILBOX_FULL(str(rcpt))
        if role:  # never greylisted: reports about abuse and bounces must get through
            ctx.recipient = str(rcpt)
            ctx.recipients.append(str(rcpt))
        else:
            refusal = await self._filter_rcpt(ctx, rcpt)
            if refusal is not None:
                return refusal
        ctx.local_users.extend(u.id for u in res.users)
        env.recipients.append(Recipient(rcpt, params, users=res.users, remote=res.remote))
        return R250_RECIPIENT_OK

    async def _primary_domain(self) -> Domain | None:
        """The server's own domain: the local domain that is the host name or its
        closest parent (mail.example.com → example.com), else the oldest one."""
        domains = await self.store.list_domains()
        by_name = {d.name: d for d in domains}
        name = self.hostname_key
        while name:
            if name in by_name:
                return by_name[name]
            name = name.partition(".")[2]
        return min(domains, key=lambda d: d.created) if domains else None

    async def _role_fallback(self, domain: str) -> Resolution:
        """Where postmaster@/abuse@ `domain` goes when no user or alias has the name
        (RFC 5321 §4.5.1, RFC 2142 §4): the domain's first account; for a domain
        without accounts, the primary domain's first, else the server's first."""
        candidates = [u for u in await self.store.list_users(domain) if not u.disabled]
        if not candidates:
            primary = await self._primary_domain()
            if primary is not None and primary.name != domain:
                candidates = [
                    u for u in await self.store.list_users(primary.name) if not u.disabled
                ]
        if not candidates:
            candidates = [u for u in await self.store.list_users() if not u.disabled]
        if not candidates:
            return Resolution()
        return Resolution(users=(min(candidates, key=lambda u: u.id),))

    async def _filter_rcpt(self, ctx: Context, rcpt: Address) -> Reply | None:
        ctx.recipient = str(rcpt)
        refusal = await self.filters.run(Phase.RCPT, ctx)
        if refusal is None:
            ctx.recipients.append(str(rcpt))
        return refusal

    # --- DATA ----------------------------------------------------------------
    def open_spool(self, s: SessionInfo, env: Envelope, *, crlf_only: bool = False) -> Spool:
        """`crlf_only`: the data comes by DATA, whose bare CR and LF the core
        refuses or rewrites (not BDAT, whose chunks are raw)."""
        single = str(env.recipients[0].address) if len(env.recipients) == 1 else None
        received = hdr.received(
            helo=s.helo,
            client_ip=s.peer_ip,
            client_name=s.peer_name,
            hostname=self.hostname,
            protocol=hdr.protocol_name(
                esmtp=s.esmtp,
                tls=s.tls is not None,
                auth=s.user is not None,
                smtputf8=env.params.smtputf8,
            ),
            qid=env.qid,
            tls=s.tls,
            auth_user=s.user.address if s.user else None,
            recipient=single,
        )
        sender = str(env.sender) if env.sender else ""

        def complete(view: HeaderView) -> bytes:
            # RFC 6409 §8: the submission server may add Date: and Message-ID:
            return hdr.completion(view, self.hostname) if s.role is IntakeRole.SUBMISSION else b""

        return Spool(
            hdr.return_path(sender) + received,
            self.threshold,
            self.spool_dir,
            on_header=complete,
            crlf_only=crlf_only,
        )

    async def check_from_owner(self, s: SessionInfo, spool: Spool) -> Reply | None:
        if s.role is not IntakeRole.SUBMISSION or s.user is None:
            return None
        view = spool.header or HeaderView(b"", 0)
        if spool.header_is_large:  # 20,000 addresses in a From: field took 230 ms
            addrs = await asyncio.to_thread(_from_addresses, view)
        else:
            addrs = _from_addresses(view)
        if not addrs:
            return R550_NO_FROM
        owned = {a.lower() for a in await self.store.addresses_of(s.user.id)}
        for a in addrs:
            try:
                key = Address.parse(a).key
            except AddressError:
                return R553_FROM_NOT_OWNER
            if key not in owned:
                return R553_FROM_NOT_OWNER
        return None

    async def finish(self, s: SessionInfo, env: Envelope, spool: Spool) -> Reply:
        """Make the message durable for every recipient, then (only then) 250."""
        if spool.header_is_large:
            await asyncio.to_thread(spool.ensure_header)
        else:
            spool.ensure_header()
        refusal = None
        if spool.hops > self.max_hops:  # RFC 5321 §6.3: a loop, not a message to keep
            refusal = R554_TOO_MANY_HOPS
        refusal = refusal or await self.check_from_owner(s, spool)
        if refusal is not None:
            spool.discard()
            self._log(s, env, spool.size, str(refusal))
            return refusal
        ctx = self._ctx(s)
        ctx.qid = env.qid
        in_thread = spool.spilled or (spool.size > INLINE_MAX and _may_have_parts(spool))
        parsed = await asyncio.to_thread(spool.parse) if in_thread else spool.parse()
        ctx.load(parsed, self.filters.max_scan_size)
        ctx.pending_trace = []
        if ctx.message is None:
            await self.filters.pipelines[s.role].trace(
                ctx,
                f"data: {spool.size} bytes > filters.max_scan_size, "
                "content analysis skipped (virus scans still run)",
            )
        try:
            outcome = await self.filters.end_of_data(ctx)
        finally:
            pending, ctx.pending_trace = ctx.pending_trace, None
        ctx.message = ctx.parsed = None
        if outcome.reply is not None:
            spool.discard()
            self._log(s, env, spool.size, str(outcome.reply))
            for line in pending:
                await self.filters.pipelines[s.role].trace(ctx, line)
            return outcome.reply
        # every role: a submitted message must not carry our verdicts either (the
        # webmail believes an Authentication-Results field with our authserv-id)
        drop = forged_fields(self.hostname)
        if in_thread:
            message = await asyncio.to_thread(spool.finish, parsed, outcome.headers, drop)
        else:
            message = spool.finish(parsed, outcome.headers, drop)
        mailbox = "Junk" if outcome.junk else "INBOX"
        targets: list[DeliveryTarget] = []
        seen_users: set[int] = set()
        delivered: list[tuple[str, str]] = []  # trace: where each local copy goes
        remote: list[QueueRecipient] = []
        seen_remote: set[str] = set()
        for r in env.recipients:
            for u in r.users:
                if u.id not in seen_users:
                    seen_users.add(u.id)
                    targets.append(DeliveryTarget(u.id, mailbox))
                    delivered.append(
                        ("delivered", delivered_line(u.address, str(r.address), mailbox, outcome))
                    )
            for addr in r.remote:
                if addr.lower() not in seen_remote:
                    seen_remote.add(addr.lower())
                    notify = ",".join(r.params.notify) if r.params.notify else ""
                    orcpt = f"{r.params.orcpt[0]};{r.params.orcpt[1]}" if r.params.orcpt else ""
                    remote.append(QueueRecipient(addr, notify=notify, orcpt=orcpt))
        queue = None
        if remote:
            queue = NewQueueEntry(
                sender=str(env.sender) if env.sender else "",
                recipients=tuple(remote),
                envid=env.params.envid or "",
                ret=env.params.ret or "",
                smtputf8=env.params.smtputf8,
                body_8bit=env.params.body in ("8BITMIME", "BINARYMIME"),
                auth_user=s.user.address if s.user else "",
            )
        # while the store commits, the client's bytes are held once (in `message`),
        # not also in their parse and its decoded text
        signing_data = parsed.data if queue is not None else b""
        del parsed
        try:
            if queue is not None and self.queue_prepare is not None:
                queue = await self.queue_prepare(message, queue, signing_data)  # signed once
            described = self._describe(s, env, spool.size)
            await self.store.deliver(
                message,
                targets,
                queue=queue,
                qid=env.qid,
                trace=[
                    *(("filter", line) for line in pending),
                    ("received", described),
                    *delivered,
                ],
            )
        except Exception:
            log.exception("delivery failed sid=%s qid=%s", s.sid, env.qid)
            if isinstance(message.data, Path):
                with contextlib.suppress(OSError):
                    message.data.unlink()
            self._log(s, env, spool.size, "451 local error")
            return R451_LOCAL_ERROR
        self._log(s, env, spool.size, "queued" if queue else "delivered", described)
        metrics.labelled(metrics.MESSAGES_DELIVERED, "local").inc(len(targets))
        if queue is not None and self.queue_wake is not None:
            self.queue_wake()
        return R250_QUEUED(env.qid)

    def _describe(self, s: SessionInfo, env: Envelope, size: int) -> str:
        tls = f"{s.tls[0]} {s.tls[1]}" if s.tls else "none"
        auth = s.user.address if s.user else "-"
        rcpts = ",".join(str(r.address) for r in env.recipients)
        sender = str(env.sender) if env.sender else ""
        return (
            f"from=<{sender}> to={rcpts} size={size} client={s.peer_ip} "
            f"helo={s.helo!r} listener={s.role} tls={tls} auth={auth}"
        )

    def _log(
        self, s: SessionInfo, env: Envelope, size: int, result: str, described: str | None = None
    ) -> None:
        if not log.isEnabledFor(logging.INFO):
            return  # the description is not worked out for nothing
        described = described or self._describe(s, env, size)
        log.info("sid=%s qid=%s %s result=%s", s.sid, env.qid, described, result)


def delivered_line(user: str, rcpt: str, mailbox: str, outcome: DataOutcome) -> str:
    """The trace of one local copy: "to <alice@x> in INBOX", naming the alias the
    copy came through and, for Junk, the spam score that sent it there."""
    via = "" if rcpt.lower() == user.lower() else f" (for <{rcpt}>)"
    why = f", spam score {outcome.score:.1f}" if outcome.junk else ""
    return f"to <{user}> in {mailbox}{via}{why}"


def _may_have_parts(spool: Spool) -> bool:
    """Whether parsing the message and making its summary may take long enough to
    belong in a thread (as reading a spilled one's file does). That work grows
    with its parts: 512 KB of small parts took 39 ms, 50 KB 3 ms, while one text
    or base64 part of 512 KB takes 0.2 ms, less than handing it to a thread and
    back (a 50 KB message's intake cost 12% more CPU that way). A header over
    INLINE_MAX is a thread's work anyway."""
    header = spool.header
    if spool.header_is_large or header is None:
        return True
    types = header.fields("Content-Type")
    kind = types[0].lstrip().lower() if types else ""
    return kind.startswith(("multipart/", "message/"))


def _from_addresses(view: HeaderView) -> list[str]:
    """The addresses of the From: fields (RFC 6409 §8.1: the sender's own)."""
    return addresses(view.fields("From"))
