"""MX routing: where mail for a domain goes (RFC 5321 §5.1, RFC 7505).

`route(resolver, domain)` returns a `Route`: the hosts to try in order, each with
its addresses, and which case applied (`RouteKind`), so the queue can decide
between delivering, retrying and bouncing, and `postier mx` can show the records
with their TTLs.

Rules:
- MX records are sorted by preference, lowest first; records of equal preference
  are shuffled (RFC 5321 §5.1) with the injected `rng`; a host listed twice keeps
  its first place. At most `max_hosts` hosts are kept after sorting.
- No MX records (NODATA) → the implicit MX: the domain itself, preference 0, with
  its own A/AAAA addresses (RFC 5321 §5.1). No addresses either → permanent.
- The null MX, a single record ``0 .`` (RFC 7505 §3) → permanent: the domain
  accepts no mail. A "." mixed with real hosts (against RFC 7505 §3) is skipped.
- NXDOMAIN → permanent; SERVFAIL/timeout → temporary.
- Each MX host is resolved to A and AAAA (CNAMEs are followed by the resolver, as
  RFC 5321 §5.1 asks senders to cope with). A host that is an IP address written
  as a name (RFC 5321 §5.1: MX targets are domain names) is not used. A host
  without addresses is kept with its `error`; the route is usable while one host
  has an address. When none has one: temporary if any host lookup failed
  temporarily, otherwise permanent.
- An address literal ``[192.0.2.1]`` / ``[IPv6:2001:db8::1]`` (RFC 5321 §4.1.3)
  routes to that address without DNS.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import random
from collections.abc import Awaitable
from dataclasses import dataclass, field
from itertools import groupby

from postier.dns.resolver import Answer, DnsError, MxRecord, NoAnswer, NXDomain, Resolver, TempFail


class RouteKind(enum.Enum):
    MX = "mx"  # MX records found
    IMPLICIT = "implicit"  # no MX: the domain's own addresses (RFC 5321 §5.1)
    NULL_MX = "null"  # "0 ." (RFC 7505): no mail accepted — permanent
    NXDOMAIN = "nxdomain"  # the domain does not exist — permanent
    TEMPFAIL = "servfail"  # SERVFAIL, timeout — temporary
    LITERAL = "literal"  # an address literal: no DNS


@dataclass(frozen=True)
class Host:
    name: str  # host name (the domain itself for implicit MX; the literal for LITERAL)
    preference: int
    addresses: tuple[str, ...] = ()  # A addresses first, then AAAA, as answered
    ttl: int = 0  # the smallest TTL of the address answers
    error: str = ""  # why there are no addresses ("" when there are)
    temporary: bool = False  # the error may go away (SERVFAIL, timeout)


@dataclass(frozen=True)
class Route:
    domain: str
    kind: RouteKind
    hosts: tuple[Host, ...] = ()
    ttl: int = 0  # TTL of the MX answer (0 when there was none)
    records: tuple[MxRecord, ...] = field(default=())  # the MX records as answered
    detail: str = ""  # what went wrong, for logs, DSNs and `postier mx`

    @property
    def addresses(self) -> tuple[tuple[Host, str], ...]:
        """Every (host, address) pair in the order to try."""
        return tuple((h, a) for h in self.hosts for a in h.addresses)

    @property
    def ok(self) -> bool:
        return bool(self.addresses)

    @property
    def temporary(self) -> bool:
        """Not deliverable now, but may be later: retry."""
        if self.ok:
            return False
        return self.kind is RouteKind.TEMPFAIL or any(h.temporary for h in self.hosts)

    @property
    def permanent(self) -> bool:
        """Never deliverable as things stand: bounce."""
        return not self.ok and not self.temporary


def _literal(domain: str) -> str | None:
    """The address in an address literal (RFC 5321 §4.1.3), or None if not one."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    if inner[:5].lower() == "ipv6:":
        return str(ipaddress.IPv6Address(inner[5:]))
    return str(ipaddress.IPv4Address(inner))


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


async def resolve_host(
    resolver: Resolver, name: str, preference: int, *, ipv6: bool = True
) -> Host:
    """A and (with `ipv6`) AAAA of one host, both asked at once."""
    if _is_ip(name):
        return Host(name, preference, error="MX target is an IP address, not a host name")
    lookups: list[asyncio.Task[Answer[str] | DnsError]] = []
    async with asyncio.TaskGroup() as tg:
        lookups.append(tg.create_task(_try(resolver.a(name))))
        if ipv6:
            lookups.append(tg.create_task(_try(resolver.aaaa(name))))
    addresses: list[str] = []
    ttls: list[int] = []
    errors: list[DnsError] = []
    for task in lookups:
        result = task.result()
        if isinstance(result, DnsError):
            errors.append(result)
        else:
            addresses.extend(result.records)
            ttls.append(result.ttl)
    if addresses:
        return Host(name, preference, tuple(addresses), min(ttls))
    temp = [e for e in errors if isinstance(e, TempFail)]
    if temp:
        return Host(name, preference, error=str(temp[0]), temporary=True)
    if any(isinstance(e, NXDomain) for e in errors):
        return Host(name, preference, error=f"{name}: no such host")
    return Host(name, preference, error=f"{name}: no address records")


async def _try(aw: Awaitable[Answer[str]]) -> Answer[str] | DnsError:
    try:
        return await aw
    except DnsError as e:
        return e


async def route(
    resolver: Resolver,
    domain: str,
    *,
    rng: random.Random | None = None,
    max_hosts: int = 10,
    ipv6: bool = True,
) -> Route:
    """Where mail for `domain` goes. Never raises for DNS outcomes; see `Route`."""
    domain = domain.rstrip(".").lower()
    try:
        literal = _literal(domain)
    except ValueError:
        return Route(domain, RouteKind.NXDOMAIN, detail=f"bad address literal {domain}")
    if literal is not None:
        return Route(domain, RouteKind.LITERAL, (Host(domain, 0, (literal,)),))
    try:
        answer = await resolver.mx(domain)
    except NXDomain:
        return Route(domain, RouteKind.NXDOMAIN, detail=f"{domain}: no such domain")
    except TempFail as e:
        return Route(domain, RouteKind.TEMPFAIL, detail=f"MX lookup: {e}")
    except NoAnswer:
        # RFC 5321 §5.1: no MX → the domain itself is the implicit MX, preference 0
        host = await resolve_host(resolver, domain, 0, ipv6=ipv6)
        return Route(domain, RouteKind.IMPLICIT, (host,), detail=host.error)

    records = answer.records
    if len(records) == 1 and records[0].is_null:
        # RFC 7505 §3: "0 ." — the domain accepts no mail (permanent, 556 5.1.10)
        return Route(
            domain,
            RouteKind.NULL_MX,
            ttl=answer.ttl,
            records=records,
            detail=f"{domain} accepts no mail (null MX, RFC 7505)",
        )
    rng = rng or random.Random()
    ordered: list[MxRecord] = []
    for _, group in groupby(sorted(records, key=lambda r: r.preference), lambda r: r.preference):
        same = list(group)
        rng.shuffle(same)  # RFC 5321 §5.1: equal preferences in random order
        ordered.extend(same)
    seen: set[str] = set()
    chosen: list[MxRecord] = []
    for r in ordered:
        name = r.host.lower()
        if r.is_null or name in seen:
            continue
        seen.add(name)
        chosen.append(r)
    chosen = chosen[:max_hosts]
    async with asyncio.TaskGroup() as tg:
        tasks = [
            tg.create_task(resolve_host(resolver, r.host, r.preference, ipv6=ipv6)) for r in chosen
        ]
    hosts = [t.result() for t in tasks]
    detail = ""
    if not any(h.addresses for h in hosts):
        detail = "; ".join(h.error for h in hosts) or f"{domain}: no usable MX host"
    return Route(domain, RouteKind.MX, tuple(hosts), answer.ttl, records, detail)
