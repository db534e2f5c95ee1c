"""Address verification without sending mail: the logic of `postier verify`.

What it owns: the probe conversation and the verdict. The address's domain is
routed with `postier.dns.mx.route` (as the queue would), the first host that
answers on `port` gets EHLO → (STARTTLS when offered, then EHLO again) →
``MAIL FROM:<sender>`` (``<>`` by default) → ``RCPT TO:<address>`` → when
accepted, ``RCPT TO:<random>@domain`` (the catch-all probe) → RSET → QUIT. No
DATA is ever sent.

Verdicts, and what they honestly mean:
- ``exists``: RCPT got 2xx (250/251) and a random address at the domain was
  refused. The mailbox very likely exists; a server may still bounce later.
- ``catch-all``: the random address was accepted too: the server takes any
  address, so nothing can be told about this one from outside.
- ``unknown``: RCPT refused as an unknown mailbox (RFC 3463 5.1.x: 550 5.1.1 and
  friends, 551, or a 5xx without enhanced code whose text says so).
- ``greylisted``: a 4xx that says greylisting; ``retry_after`` holds the delay
  in seconds when the reply names one ("try again in 5 minutes").
- ``tempfail``: any other 4xx, or a temporary DNS failure: try again later.
- ``blocked``: any other 5xx (policy: 5.7.1, a blocklisted client, ...), a
  refused greeting, or no host accepting a connection: this says nothing about
  the mailbox, only that this server would not tell us.
- ``no-mail``: the domain accepts no mail at all (NXDOMAIN, null MX, no address).

A domain hosted here is answered from the store, without DNS or a probe
(`verify_local`): an account or an alias exists, a catch-all takes any address,
postmaster@ and abuse@ exist for every hosted domain (intake accepts them), and
anything else is unknown (intake refuses it with 550 5.1.1).

Rules:
- The next MX address is tried on a connection failure, a non-220 greeting or a
  421, as a delivering client does (RFC 5321 §5.1); at most `max_addresses`.
- Rate limit (`RateLimiter`): at most `max_per_domain` probes of one domain and
  `max_total` in all within `window` seconds, counted in a small file under the
  data directory, shared by every `postier verify` process (flock). Probing is
  how spammers clean lists; servers remember who does it.
- Every reply is recorded in `transcript` for ``-v``; peer text is only shown,
  never interpreted beyond the code, the RFC 3463 status and a few words.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from postier.dns.mx import RouteKind, route
from postier.dns.resolver import Resolver
from postier.mail.address import Address
from postier.ops.accounts import ROLE_LOCALPARTS
from postier.queue.transport import client_tls_context
from postier.smtp.client import ServerReply, SmtpClient, SmtpClientError
from postier.store.api import Store


class Verdict(enum.StrEnum):
    EXISTS = "exists"
    CATCH_ALL = "catch-all"
    UNKNOWN = "unknown"
    GREYLISTED = "greylisted"
    TEMPFAIL = "tempfail"
    BLOCKED = "blocked"
    NO_MAIL = "no-mail"


@dataclass
class VerifyResult:
    address: str
    verdict: Verdict
    reason: str  # one honest sentence for the operator
    host: str = ""  # the MX host that answered
    ip: str = ""
    reply: str = ""  # the deciding reply, as one line
    retry_after: int | None = None  # greylisting: seconds, when the reply says
    transcript: list[tuple[str, str]] = field(default_factory=list)  # ("C"|"S"|"*", text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "verdict": str(self.verdict),
            "reason": self.reason,
            "host": self.host,
            "ip": self.ip,
            "reply": self.reply,
            "retry_after": self.retry_after,
            "transcript": [{"from": d, "text": t} for d, t in self.transcript],
        }


class RateLimited(Exception):
    def __init__(self, message: str, wait: float) -> None:
        super().__init__(message)
        self.wait = wait


class RateLimiter:
    """Probe times per domain in a JSON file, locked while read and written."""

    def __init__(
        self,
        path: Path,
        *,
        max_per_domain: int = 3,
        max_total: int = 20,
        window: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.max_per_domain = max_per_domain
        self.max_total = max_total
        self.window = window
        self.clock = clock

    def take(self, domain: str) -> None:
        """Count one probe of `domain`, or raise `RateLimited` (nothing counted)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+", encoding="utf-8") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            now = self.clock()
            try:
                data = json.loads(f.read() or "{}")
            except ValueError:
                data = {}
            history: dict[str, list[float]] = {
                d: [t for t in ts if isinstance(t, int | float) and now - t < self.window]
                for d, ts in (data.items() if isinstance(data, dict) else [])
                if isinstance(ts, list)
            }
            history = {d: ts for d, ts in history.items() if ts}
            mine = history.get(domain, [])
            every = sorted(t for ts in history.values() for t in ts)
            if len(mine) >= self.max_per_domain:
                wait = self.window - (now - min(mine))
                raise RateLimited(
                    f"rate limit: {len(mine)} checks of {domain} in the last "
                    f"{self.window:g}s; try again in {wait:.0f}s",
                    wait,
                )
            if len(every) >= self.max_total:
                wait = self.window - (now - every[0])
                raise RateLimited(
                    f"rate limit: {len(every)} checks in the last {self.window:g}s; "
                    f"try again in {wait:.0f}s",
                    wait,
                )
            history[domain] = [*mine, now]
            f.seek(0)
            f.truncate()
            f.write(json.dumps(history))
            f.flush()


# --- reading replies -----------------------------------------------------------------

_GREY = re.compile(r"gr[ae]y", re.IGNORECASE)
_LATER = re.compile(r"\blater\b", re.IGNORECASE)
_DELAY = re.compile(
    r"\b(?:in|after|for|wait)\s+(\d{1,6})\s*"
    r"(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)\b",
    re.IGNORECASE,
)
_UNKNOWN_TEXT = re.compile(
    r"unknown|no such|not exist|n't exist|not found|invalid (?:recipient|mailbox|address)"
    r"|no mailbox|mailbox unavailable",
    re.IGNORECASE,
)
_UNITS = {"s": 1, "m": 60, "h": 3600}


def retry_delay(text: str) -> int | None:
    """Seconds named in a greylisting reply ("try again in 5 minutes"), if any."""
    m = _DELAY.search(text)
    if not m:
        return None
    return int(m.group(1)) * _UNITS[m.group(2)[0].lower()]


def is_greylisting(reply: ServerReply) -> bool:
    if not reply.is_temporary:
        return False
    if _GREY.search(reply.text):
        return True
    # postgrey, mox and others: 450/451 4.7.1 or 4.2.0 "... try again later"
    return reply.enhanced in ("4.7.1", "4.2.0", "4.7.0") and bool(_LATER.search(reply.text))


def is_unknown_user(reply: ServerReply) -> bool:
    """RFC 3463 §3.2: X.1.x are addressing status codes (5.1.1 bad mailbox)."""
    if not reply.is_permanent:
        return False
    if reply.enhanced is not None:
        return reply.enhanced.startswith("5.1.")
    return reply.code == 551 or (reply.code == 550 and bool(_UNKNOWN_TEXT.search(reply.text)))


def reply_lines(reply: ServerReply) -> list[str]:
    """The reply as the server sent it, one string per line (RFC 5321 §4.2.1)."""
    lines = list(reply.lines) or [""]
    return [
        f"{reply.code}{'-' if i < len(lines) - 1 else ' '}{line}" for i, line in enumerate(lines)
    ]


# --- a local address --------------------------------------------------------------


async def verify_local(store: Store, address: Address) -> VerifyResult | None:
    """The verdict on an address of a domain hosted here, from the store; None
    when the domain is not ours (then the address is probed)."""
    domain = address.domain.ascii
    if await store.get_domain(domain) is None:
        return None
    key = address.key
    result = VerifyResult(str(address), Verdict.UNKNOWN, "", host="(local)")
    if await store.get_user(key) is not None:
        result.verdict = Verdict.EXISTS
        result.reason = f"{key} is an account on this server (no probe sent)"
        return result
    aliases = {a.source: a.targets for a in await store.list_aliases(domain)}
    if key in aliases:
        result.verdict = Verdict.EXISTS
        targets = ", ".join(aliases[key])
        result.reason = f"{key} is an alias on this server, for {targets} (no probe sent)"
        return result
    if f"@{domain}" in aliases:
        result.verdict = Verdict.CATCH_ALL
        targets = ", ".join(aliases[f"@{domain}"])
        result.reason = (
            f"{domain} is hosted here with a catch-all alias (for {targets}): "
            "every address is accepted (no probe sent)"
        )
        return result
    if address.localpart.lower() in ROLE_LOCALPARTS and await store.list_users():
        # what intake does for a role address nobody has (RFC 5321 §4.5.1, RFC 2142)
        result.verdict = Verdict.EXISTS
        result.reason = (
            f"{key} is a role address, accepted for every domain hosted here and "
            "delivered to the domain's first account (no probe sent)"
        )
        return result
    result.reason = (
        f"{domain} is hosted here and has no account or alias {key}: mail to it is "
        "refused with 550 5.1.1 (no probe sent)"
    )
    return result


# --- the probe -----------------------------------------------------------------------


class _Probe:
    def __init__(self, client: SmtpClient, transcript: list[tuple[str, str]]) -> None:
        self.client = client
        self.transcript = transcript
        self.started = False  # MAIL was sent: RSET before QUIT (RFC 5321 §4.1.1.5)

    def _got(self, reply: ServerReply) -> ServerReply:
        self.transcript.extend(("S", line) for line in reply_lines(reply))
        return reply

    async def command(self, line: str) -> ServerReply:
        self.started = self.started or line.startswith("MAIL ")
        self.transcript.append(("C", line))
        return self._got(await self.client.command(line))

    async def ehlo(self, name: str) -> ServerReply:
        self.transcript.append(("C", f"EHLO {name}"))
        return self._got(await self.client.ehlo(name))

    async def starttls(self, host: str) -> ServerReply:
        self.transcript.append(("C", "STARTTLS"))
        return self._got(await self.client.starttls(client_tls_context(), host))

    async def close(self) -> None:
        if not self.client.closed:
            if self.started:
                with contextlib.suppress(SmtpClientError):
                    await self.command("RSET")
            self.transcript.append(("C", "QUIT"))
        await self.client.quit()


def _temporary(result: VerifyResult, reply: ServerReply, stage: str) -> VerifyResult:
    result.reply = str(reply)
    if is_greylisting(reply):
        result.verdict = Verdict.GREYLISTED
        result.retry_after = retry_delay(reply.text)
        when = f"in {result.retry_after}s" if result.retry_after else "later"
        result.reason = f"the server greylisted the check at {stage} ({reply}); try again {when}"
    else:
        result.verdict = Verdict.TEMPFAIL
        result.reason = f"temporary failure at {stage} ({reply}); try again later"
    return result


async def verify(
    address: Address,
    *,
    resolver: Resolver,
    helo: str,
    port: int = 25,
    sender: str = "",
    connect_timeout: float = 30.0,
    command_timeout: float = 60.0,
    max_addresses: int = 5,
    probe_localpart: Callable[[], str] = lambda: f"postier-verify-{secrets.token_hex(6)}",
) -> VerifyResult:
    """Probe `address`; never raises for anything the network or the peer does."""
    domain = address.domain.ascii
    result = VerifyResult(str(address), Verdict.BLOCKED, "")
    t = result.transcript
    r = await route(resolver, domain)
    if not r.ok:
        if r.temporary:
            result.verdict = Verdict.TEMPFAIL
            result.reason = f"DNS lookup failed temporarily: {r.detail}; try again later"
        else:
            result.verdict = Verdict.NO_MAIL
            what = {
                RouteKind.NULL_MX: "it publishes a null MX (RFC 7505)",
                RouteKind.NXDOMAIN: "the domain does not exist",
            }.get(r.kind, f"no host to deliver to: {r.detail}")
            result.reason = f"{domain} accepts no mail: {what}"
        return result
    failures: list[str] = []
    for host, ip in r.addresses[:max_addresses]:
        t.append(("*", f"connecting to {host.name} [{ip}]:{port}"))
        try:
            client = await SmtpClient.connect(
                ip, port, connect_timeout=connect_timeout, command_timeout=command_timeout
            )
        except SmtpClientError as e:
            t.append(("*", str(e)))
            failures.append(str(e))
            continue
        probe = _Probe(client, t)
        assert client.greeting is not None
        probe._got(client.greeting)
        result.host, result.ip = host.name, ip
        try:
            if client.greeting.code != 220:
                failures.append(f"{host.name} [{ip}] greeted with {client.greeting}")
                await probe.close()
                continue  # RFC 5321 §3.1: 554 greeting, try the next MX
            decided = await _converse(
                probe, result, address, host.name, helo, sender, probe_localpart
            )
            await probe.close()
            if decided:
                return result
            failures.append(result.reply)
        except SmtpClientError as e:
            t.append(("*", str(e)))
            failures.append(f"{host.name} [{ip}]: {e}")
            client.close()
    result.verdict = Verdict.BLOCKED
    result.reason = (
        f"no MX host of {domain} completed the check on port {port} "
        f"({'; '.join(failures) or 'no address'}); this says nothing about "
        "the mailbox"
    )
    return result


async def _converse(
    probe: _Probe,
    result: VerifyResult,
    address: Address,
    host: str,
    helo: str,
    sender: str,
    probe_localpart: Callable[[], str],
) -> bool:
    """The conversation on one connection; False to try the next host (421)."""
    reply = await probe.ehlo(helo)
    if reply.code == 421:
        result.reply = str(reply)
        return False
    if not reply.is_success:
        result.reply = str(reply)
        result.verdict = Verdict.BLOCKED
        result.reason = f"the server refused our greeting ({reply}); nothing learnt"
        return True
    if probe.client.has("STARTTLS"):
        tls = await probe.starttls(host)
        if tls.is_success:
            reply = await probe.ehlo(helo)  # RFC 3207 §4.2: start over after TLS
            if not reply.is_success:
                result.reply = str(reply)
                result.verdict = Verdict.BLOCKED
                result.reason = f"the server refused EHLO after STARTTLS ({reply})"
                return True
    reply = await probe.command(f"MAIL FROM:<{sender}>")
    if reply.code == 421:
        result.reply = str(reply)
        return False
    if reply.is_temporary:
        _temporary(result, reply, "MAIL FROM")
        return True
    if not reply.is_success:
        result.reply = str(reply)
        result.verdict = Verdict.BLOCKED
        result.reason = (
            f"the server refused the sender <{sender}> ({reply}); this says "
            "nothing about the mailbox"
        )
        return True
    reply = await probe.command(f"RCPT TO:<{address}>")
    result.reply = str(reply)
    if reply.code == 421:
        return False
    if reply.is_temporary:
        _temporary(result, reply, "RCPT TO")
        return True
    if reply.is_permanent:
        if is_unknown_user(reply):
            result.verdict = Verdict.UNKNOWN
            result.reason = f"the server refused the mailbox as unknown ({reply})"
        else:
            result.verdict = Verdict.BLOCKED
            result.reason = (
                f"the server refused the recipient for another reason ({reply});"
                " this says nothing certain about the mailbox"
            )
        return True
    if not reply.is_success:
        result.verdict = Verdict.BLOCKED
        result.reason = f"unexpected reply to RCPT TO ({reply})"
        return True
    random_rcpt = f"{probe_localpart()}@{address.domain.ascii}"
    probe_reply = await probe.command(f"RCPT TO:<{random_rcpt}>")
    if probe_reply.is_success:
        result.verdict = Verdict.CATCH_ALL
        result.reason = (
            f"the server accepts any address at {address.domain.ascii} "
            f"(<{random_rcpt}> was accepted too): whether this mailbox exists "
            "cannot be told from outside"
        )
    else:
        result.verdict = Verdict.EXISTS
        result.reason = (
            f"the server accepted the mailbox ({reply}) and refused a random "
            "address at the same domain: it very likely exists (the server may "
            "still bounce a message later)"
        )
    return True
