"""DNS block and allow lists of the client address (RFC 5782), at connect.

Rules:
- The query name is the client address reversed (IPv4 octets, IPv6 nibbles,
  RFC 5782 §2.1, §2.4) under each zone; an A record in 127.0.0.0/8 means
  "listed" (§2.3). Answers outside 127/8, and 127.255.255.0/24 (the codes big
  lists use for "query refused / over quota"), mean not listed. The TXT record,
  when there is one, is the reason shown.
- A DNSBL listing scores DNSBL_LISTED (`weight`, per zone) or, with `reject`,
  refuses with ``554 5.7.1`` naming the zone; a DNSWL listing scores
  DNSWL_LISTED (`allow_weight`, negative). DNS failures count as not listed.
- Loopback and private clients are looked up too: test zones list them.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

from postier.dns.resolver import DnsError, Resolver
from postier.filters.pipeline import Context, Phase, Verdict
from postier.mail.replies import Reply


def R554_DNSBL(ip: str, zone: str, reason: str) -> Reply:
    text = f"Service unavailable; client [{ip}] blocked using {zone}"
    return Reply(554, "5.7.1", f"{text}: {reason}" if reason else text)


def query_name(ip: str, zone: str) -> str:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.version == 4:
        rev = ".".join(reversed(str(addr).split(".")))  # RFC 5782 §2.1
    else:
        rev = ".".join(reversed(addr.exploded.replace(":", "")))  # RFC 5782 §2.4
    return f"{rev}.{zone.strip('.')}"


_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_ERROR_CODES = ipaddress.ip_network("127.255.255.0/24")


class DnsblStage:
    name = "dnsbl"
    phases = frozenset({Phase.CONNECT})

    def __init__(
        self,
        resolver: Resolver,
        *,
        zones: Sequence[str] = (),
        allow_zones: Sequence[str] = (),
        weight: float = 3.0,
        allow_weight: float = -2.0,
        reject: bool = False,
    ) -> None:
        self.resolver = resolver
        self.zones = list(zones)
        self.allow_zones = list(allow_zones)
        self.weight = weight
        self.allow_weight = allow_weight
        self.reject = reject

    async def listed(self, ip: str, zone: str) -> tuple[bool, str]:
        name = query_name(ip, zone)
        try:
            answer = await self.resolver.a(name)
        except DnsError:
            return False, ""
        codes = [ipaddress.ip_address(a) for a in answer.records]
        hits = [c for c in codes if c in _LOOPBACK and c not in _ERROR_CODES]
        if not hits:
            return False, ""
        reason = ",".join(str(c) for c in hits)
        try:
            txt = await self.resolver.txt(name)
            reason = txt.records[0].text
        except DnsError:
            pass
        return True, reason

    async def check(self, phase: Phase, ctx: Context) -> Sequence[Verdict]:
        if ctx.authenticated:
            return []
        zones = [(z, False) for z in self.zones] + [(z, True) for z in self.allow_zones]
        results = await asyncio.gather(*(self.listed(ctx.peer_ip, z) for z, _ in zones))
        out: list[Verdict] = []
        for (zone, allow), (hit, reason) in zip(zones, results, strict=True):
            if not hit:
                continue
            detail = f"{ctx.peer_ip} listed in {zone}: {reason}"
            if allow:
                out.append(Verdict.scored(self.name, "DNSWL_LISTED", self.allow_weight, detail))
            elif self.reject:
                return [Verdict.reject(self.name, R554_DNSBL(ctx.peer_ip, zone, reason), detail)]
            else:
                out.append(Verdict.scored(self.name, "DNSBL_LISTED", self.weight, detail))
        return out
