"""Transport: SMTP sessions to remote hosts, the pool that reuses them, and the
transaction that carries one message to one host.

Rules:
- Concurrency: at most `max_concurrency` SMTP sessions in all and
  `max_per_destination` per remote address; a slot is held from connect (or
  reuse) until the connection is back in the pool or closed.
- Next host (RFC 5321 §5.1): a connect failure, a non-220 greeting, a failed
  EHLO, a 421 or a required-but-missing TLS moves on to the next address; when
  all fail, the remaining recipients get the last reason (deferred).
- Commit before reuse: the outcomes a host gave are handed to `commit` (which
  makes them durable) before its connection goes back to the pool or carries
  anything else, so a crash can leave at most the one transaction in flight per
  connection unrecorded (sent again after a restart), never a finished one.
- Reuse: an idle connection is kept `reuse_idle` seconds and at most
  `max_reuse` transactions, and reused for the next message to the same
  address, TLS mode and login after an RSET (RFC 5321 §4.1.1.5).

Choices (as Postfix does):
- TLS is opportunistic (RFC 7435): STARTTLS when offered, certificates not
  verified; a handshake failure is retried once in clear. TLS "require" (a
  `require_tls_domains` domain, or a smarthost with tls "require"/"implicit")
  defers instead (4.7.4) when TLS is not possible.
- 8-bit data to a peer without 8BITMIME is sent as is (Postfix's default when it
  does not convert; nearly every server copes), without BODY=.
- SMTPUTF8 (RFC 6531 §3.5): when the envelope needs it (a non-ASCII address)
  and the peer does not offer it, that recipient fails (5.6.7). When only the
  header is UTF-8, the message is sent without the SMTPUTF8 parameter.
- DSN parameters (RFC 3461) are passed on when the peer offers DSN; a delivery
  to a peer without it is marked `relayed` (the runner may owe a report).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from postier.config.schema import SmtpOutbound
from postier.queue.outcome import Outcome, OutcomeKind, refused
from postier.queue.routing import Destination, Target, TlsMode
from postier.smtp.client import (
    ConnectionLost,
    ProtocolViolation,
    Recipient,
    SmtpClient,
    SmtpClientError,
    TlsFailed,
    xtext,
)
from postier.store.models import QueueEntry, QueueRecipient

log = logging.getLogger("postier.queue")

#: makes one host's outcomes durable (see "Commit before reuse")
Commit = Callable[[dict[str, Outcome]], Awaitable[None]]
#: records one line of the entry's trace ("attempt" events)
Trace = Callable[[str], Awaitable[None]]

_PoolKey = tuple[str, int, str, str]


def client_tls_context() -> ssl.SSLContext:
    """Opportunistic TLS (RFC 7435): encrypt, do not authenticate."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class HostFailure(Exception):
    """This host cannot take the mail now; try the next one."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reply)
        self.outcome = outcome


def _needs_utf8(address: str) -> bool:
    return not address.isascii()


def _pool_key(target: Target, dest: Destination) -> _PoolKey:
    return (target.ip, target.port, dest.tls, dest.auth[0] if dest.auth else "")


@dataclass
class _Idle:
    client: SmtpClient
    handle: asyncio.TimerHandle | None = None


class Transport:
    """Construct inside the running loop; `close()` when done."""

    def __init__(
        self,
        hostname: str,
        outbound: SmtpOutbound,
        tls_context: ssl.SSLContext,
        *,
        reuse_idle: float = 5.0,
        max_reuse: int = 100,
    ) -> None:
        self.hostname = hostname
        self.outbound = outbound
        self.tls_context = tls_context
        self.reuse_idle = reuse_idle
        self.max_reuse = max_reuse
        self.connections_opened = 0  # for the benchmark and tests
        #: set when the server stops: connections are closed, not pooled
        self.stopping = False
        self._global = asyncio.Semaphore(outbound.max_concurrency)
        self._per_dest: dict[str, asyncio.Semaphore] = {}
        self._idle: dict[_PoolKey, list[_Idle]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    async def deliver(
        self,
        entry: QueueEntry,
        data: bytes,
        dest: Destination,
        rcpts: Sequence[QueueRecipient],
        *,
        commit: Commit,
        trace: Trace,
    ) -> None:
        """Carry `data` to `dest` for `rcpts`, host after host, until every
        recipient has an outcome; each recipient's outcome goes to `commit` once."""
        last = Outcome.ours(
            OutcomeKind.TEMPORARY, "4.4.1", f"{dest.name}: no host could be reached"
        )
        remaining = list(rcpts)
        for target in dest.targets:
            sem = self._per_dest.setdefault(
                target.ip, asyncio.Semaphore(self.outbound.max_per_destination)
            )
            got: dict[str, Outcome] | None = None
            async with sem, self._global:
                try:
                    client = await self._session(target, dest)
                except HostFailure as e:
                    last = e.outcome
                else:
                    try:
                        got = await self._transaction(client, entry, data, remaining, target)
                    except (ConnectionLost, ProtocolViolation) as e:
                        client.close()
                        last = Outcome.ours(
                            OutcomeKind.TEMPORARY,
                            "4.4.2",
                            f"lost connection with {target.host}[{target.ip}]: {e}",
                            target.host,
                        )
                    else:
                        # RFC 5321 §3.8: recipients refused with 421 go to the next host
                        done = {a: o for a, o in got.items() if not o.reply.startswith("421")}
                        if done:
                            try:
                                await commit(done)  # before the connection carries more
                            except BaseException:
                                client.close()
                                raise
                        self._release(target, dest, client)
            # the trace line waits until the slot is free: correctness does not need it
            if got is None:
                await trace(f"{target}: {last.reply}")
                continue
            tls = "TLS" if client.tls else "no TLS"
            await trace(
                f"{target} ({tls}): " + "; ".join(f"<{a}> {o.reply}" for a, o in got.items())
            )
            retry = [r for r in remaining if got[r.address].reply.startswith("421")]
            if not retry:
                return
            last = got[retry[0].address]
            remaining = retry
        await commit({r.address: last for r in remaining})

    async def close(self) -> None:
        """Say QUIT on every idle connection."""
        self.stopping = True
        for idles in self._idle.values():
            for idle in idles:
                if idle.handle:
                    idle.handle.cancel()
                await idle.client.quit()
        self._idle.clear()

    async def _session(self, target: Target, dest: Destination) -> SmtpClient:
        """A ready connection (greeted, EHLO done, TLS and AUTH as asked): reused
        from the idle pool after a successful RSET, or new."""
        key = _pool_key(target, dest)
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

    async def _open(self, target: Target, dest: Destination, tls: TlsMode) -> SmtpClient:
        o = self.outbound
        where = str(target)
        try:
            client = await SmtpClient.connect(
                target.ip,
                target.port,
                connect_timeout=o.connect_timeout,
                command_timeout=o.command_timeout,
                implicit_tls=self.tls_context if tls is TlsMode.IMPLICIT else None,
                server_hostname=target.host,
            )
        except TlsFailed as e:
            raise HostFailure(
                Outcome.ours(OutcomeKind.TEMPORARY, "4.7.5", str(e), target.host)
            ) from None
        except SmtpClientError as e:
            raise HostFailure(
                Outcome.ours(OutcomeKind.TEMPORARY, "4.4.1", str(e), target.host)
            ) from None
        self.connections_opened += 1
        try:
            assert client.greeting is not None
            if client.greeting.code != 220:  # RFC 5321 §3.1: 554 = no service here
                raise HostFailure(refused(client.greeting, target.host))
            reply = await client.ehlo(self.hostname)
            if not reply.is_success:
                raise HostFailure(refused(reply, target.host))
            if tls in (TlsMode.STARTTLS, TlsMode.REQUIRE) and not client.tls:
                if client.has("STARTTLS"):
                    try:
                        reply = await client.starttls(self.tls_context, target.host)
                    except TlsFailed as e:
                        if tls is TlsMode.REQUIRE:
                            raise HostFailure(
                                Outcome.ours(
                                    OutcomeKind.TEMPORARY, "4.7.5", f"{where}: {e}", target.host
                                )
                            ) from None
                        log.info("%s: TLS failed (%s); trying again in clear", where, e)
                        return await self._open(target, dest, TlsMode.NONE)
                    if reply.code != 220:
                        if tls is TlsMode.REQUIRE:
                            raise HostFailure(refused(reply, target.host))
                    else:
                        reply = await client.ehlo(self.hostname)  # RFC 3207 §4.2
                        if not reply.is_success:
                            raise HostFailure(refused(reply, target.host))
                elif tls is TlsMode.REQUIRE:
                    raise HostFailure(
                        Outcome.ours(
                            OutcomeKind.TEMPORARY,
                            "4.7.4",
                            f"TLS is required, but was not offered by host {where}",
                            target.host,
                        )
                    )
            if dest.auth is not None:
                if not client.auth_mechanisms:
                    raise HostFailure(
                        Outcome.ours(
                            OutcomeKind.TEMPORARY,
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
                            OutcomeKind.TEMPORARY,
                            "4.7.0",
                            f"{where} refused AUTH: {reply}",
                            target.host,
                        )
                    )
        except HostFailure:
            await client.quit()
            raise
        except SmtpClientError as e:
            client.close()
            raise HostFailure(
                Outcome.ours(OutcomeKind.TEMPORARY, "4.4.2", str(e), target.host)
            ) from None
        return client

    def _release(self, target: Target, dest: Destination, client: SmtpClient) -> None:
        """Keep a healthy connection for the next message to the same address."""
        if client.closed or client.transactions >= self.max_reuse or self.stopping:
            self._quit_later(client)
            return
        idle = _Idle(client)
        pool = self._idle.setdefault(_pool_key(target, dest), [])
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
                    OutcomeKind.PERMANENT,
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
                    OutcomeKind.PERMANENT,
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
                out[r.address] = Outcome.ours(
                    OutcomeKind.TEMPORARY, "4.4.2", "transaction incomplete", host
                )
        return out
