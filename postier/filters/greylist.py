"""Greylisting at RCPT: a stranger's first attempt is deferred, a real MTA retries.

Rules:
- The triplet is (client network, envelope sender, recipient): the network is
  the client's /24 for IPv4 and /64 for IPv6 (an IPv4-mapped IPv6 address is
  IPv4), so a sender's pool of outbound hosts retrying from neighbouring
  addresses is one client. Sender and recipient compare case-insensitively;
  the null sender is ``<>``.
- First attempt → ``451 4.7.1 Greylisting in action, please come back later``.
  A retry at least `delay` and at most `window` after the first attempt passes
  and whitelists the network (and the sender's domain when SPF passed for it)
  for `whitelist_period`, refreshed on every use (`Store.greylist_check`,
  shared by every process and node).
- Never greylisted: authenticated clients, the `allow` networks (loopback by
  default; an empty list greylists loopback too), and senders with SPF pass
  from a domain that already passed once.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from postier import metrics
from postier.filters.pipeline import Context, Phase, Verdict
from postier.mail.replies import Reply
from postier.store.api import Store

R451_GREYLISTED = Reply(451, "4.7.1", "Greylisting in action, please come back later")


def client_network(ip: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) network of `ip`, as text."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    bits = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


class GreylistStage:
    name = "greylist"
    phases = frozenset({Phase.RCPT})

    def __init__(
        self,
        store: Store,
        *,
        delay: float = 300.0,
        window: float = 86400.0,
        whitelist_period: float = 36 * 86400.0,
        allow: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window <= delay:
            raise ValueError("greylist.window must be longer than greylist.delay")
        self.store = store
        self.delay = delay
        self.window = window
        self.whitelist_period = whitelist_period
        self.allow = [ipaddress.ip_network(n, strict=False) for n in allow]
        self._allowed_ips: dict[str, bool] = {}
        self.clock = clock
        self._accept = (Verdict.accept(self.name),)  # frozen: one for every allowed RCPT

    def _allowed(self, ip: str) -> bool:
        """Whether `ip` is in an `allow` network; the last answers are remembered
        (every RCPT asks, mostly for the same few clients)."""
        hit = self._allowed_ips.get(ip)
        if hit is None:
            if len(self._allowed_ips) >= 4096:
                self._allowed_ips.clear()
            hit = self._allowed_ips[ip] = self._in_allow(ip)
        return hit

    def _in_allow(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr.version == n.version and addr in n for n in self.allow)

    async def check(self, phase: Phase, ctx: Context) -> Sequence[Verdict]:
        if ctx.authenticated or self._allowed(ctx.peer_ip):
            metrics.labelled(metrics.GREYLIST_DECISIONS, "allow").inc()
            return self._accept
        spf_domain = ""
        if ctx.spf is not None and ctx.spf.status == "pass":
            spf_domain = ctx.spf.domain.lower()
        network = client_network(ctx.peer_ip)
        sender = (ctx.sender or "").lower() or "<>"
        decision = await self.store.greylist_check(
            network,
            sender,
            ctx.recipient.lower(),
            now=datetime.fromtimestamp(self.clock(), UTC),
            delay=self.delay,
            window=self.window,
            whitelist_period=self.whitelist_period,
            spf_domain=spf_domain,
        )
        detail = f"{decision.outcome} {network} <{sender}> <{ctx.recipient.lower()}>"
        metrics.labelled(metrics.GREYLIST_DECISIONS, "pass" if decision.passed else "defer").inc()
        if decision.passed:
            return [Verdict.accept(self.name, detail)]
        if decision.retry_after:
            detail += f" retry in {decision.retry_after:.0f}s"
        return [Verdict.tempfail(self.name, R451_GREYLISTED, detail)]
