"""Routing: which recipients travel together, and where each group goes.

Rules:
- Recipients are grouped by domain (lowercased); with a smarthost every
  recipient is in one group, since one host takes all of them.
- A domain's hosts come from MX (sorted by preference, equal preferences
  shuffled by `dns.mx`), else its own A/AAAA (implicit MX, RFC 5321 §5.1); at
  most `max_addresses` addresses are tried (Postfix tries 5 hosts).
- Routing failures apply to every recipient of the group: null MX (RFC 7505)
  and NXDOMAIN fail at once, a failed lookup (SERVFAIL, timeout) defers.
- Smarthost ("host:port", "[ip]:port", or "host" for port 25): its TLS mode is
  `smtp.outbound.smarthost_tls`, its login `smarthost_username`; a name that
  does not resolve defers. Domains in `require_tls_domains` get TLS "require".
- Pure of IO but for DNS lookups through the given resolver.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from postier.config.schema import SmtpOutbound
from postier.dns import mx
from postier.dns.resolver import Resolver
from postier.queue.outcome import Outcome, OutcomeKind
from postier.store.models import QueueRecipient


class TlsMode(enum.StrEnum):
    """How a session to a destination gets TLS (`smtp.outbound.smarthost_tls`)."""

    STARTTLS = "starttls"  # opportunistic (RFC 7435): when offered, else in clear
    REQUIRE = "require"  # STARTTLS or defer (4.7.4)
    IMPLICIT = "implicit"  # TLS from the first byte (RFC 8314)
    NONE = "none"  # never


@dataclass(frozen=True)
class Target:
    host: str  # name, for Remote-MTA and TLS SNI
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}[{self.ip}]:{self.port}"


@dataclass(frozen=True)
class Destination:
    """Where one group of recipients goes, and how to talk to it."""

    name: str  # the domain, or "smarthost"
    targets: tuple[Target, ...] = ()
    tls: TlsMode = TlsMode.STARTTLS
    auth: tuple[str, str] | None = None
    failure: Outcome | None = None  # routing failed: this applies to every recipient


def group(
    recipients: Iterable[QueueRecipient], *, smarthost: bool
) -> dict[str, list[QueueRecipient]]:
    """Recipients by destination key: the lowercased domain, or "" for the smarthost."""
    groups: dict[str, list[QueueRecipient]] = {}
    for r in recipients:
        key = "" if smarthost else r.address.rpartition("@")[2].lower()
        groups.setdefault(key, []).append(r)
    return groups


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass
class Router:
    resolver: Resolver
    outbound: SmtpOutbound = field(default_factory=SmtpOutbound)
    #: addresses tried per destination before deferring (Postfix: 5 hosts)
    max_addresses: int = 10

    def __post_init__(self) -> None:
        self._require_tls = {d.lower().rstrip(".") for d in self.outbound.require_tls_domains}

    async def destination(self, domain: str) -> Destination:
        """Where mail for `domain` goes (smarthost, or MX routing)."""
        if self.outbound.smarthost:
            return await self._smarthost()
        route = await mx.route(self.resolver, domain)
        if route.kind is mx.RouteKind.NULL_MX:
            # RFC 7505 §4.3: 556 5.1.10 for a domain that accepts no mail
            return _failed(
                domain,
                OutcomeKind.PERMANENT,
                "5.1.10",
                f"Recipient address has null MX: {route.detail}",
            )
        if route.kind is mx.RouteKind.NXDOMAIN:
            return _failed(
                domain,
                OutcomeKind.PERMANENT,
                "5.1.2",
                f"Host or domain name not found: {route.detail}",
            )
        if not route.ok:
            if route.temporary:
                return _failed(
                    domain,
                    OutcomeKind.TEMPORARY,
                    "4.4.3",
                    f"Host or domain name lookup failed: {route.detail}",
                )
            return _failed(
                domain, OutcomeKind.PERMANENT, "5.4.4", f"Unable to route: {route.detail}"
            )
        found = tuple(Target(h.name, ip, self.outbound.port) for h, ip in route.addresses)
        tls = TlsMode.REQUIRE if domain in self._require_tls else TlsMode.STARTTLS
        return Destination(domain, found[: self.max_addresses], tls)

    async def _smarthost(self) -> Destination:
        o = self.outbound
        host, _, port_text = o.smarthost.rpartition(":")
        if not host:
            host, port_text = port_text, "25"
        host = host.strip("[]")
        auth = (o.smarthost_username, o.smarthost_password) if o.smarthost_username else None
        values = {m.value for m in TlsMode}
        tls = TlsMode(o.smarthost_tls) if o.smarthost_tls in values else TlsMode.STARTTLS
        targets: tuple[Target, ...]
        if _is_ip(host):
            targets = (Target(host, host, int(port_text)),)
        else:
            h = await mx.resolve_host(self.resolver, host, 0)
            if not h.addresses:
                return _failed(
                    "smarthost", OutcomeKind.TEMPORARY, "4.4.3", f"smarthost {host}: {h.error}"
                )
            targets = tuple(Target(host, a, int(port_text)) for a in h.addresses)
        return Destination("smarthost", targets, tls, auth)


def _failed(name: str, kind: OutcomeKind, status: str, text: str) -> Destination:
    return Destination(name, failure=Outcome.ours(kind, status, text))
