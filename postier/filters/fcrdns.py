"""Forward-confirmed reverse DNS of the client (RFC 8601 §3 "iprev"), at connect.

Rules:
- The client's PTR names (at most `max_names`) are looked up forward (A or
  AAAA); the first name whose addresses include the client's is its confirmed
  name: it goes into Received: and ``iprev=pass`` into Authentication-Results.
- No PTR → RDNS_NONE (iprev=permerror); PTR names that do not lead back →
  RDNS_MISMATCH (iprev=fail); a temporary DNS failure scores nothing
  (iprev=temperror).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from postier.dns.resolver import DnsError, NoAnswer, NXDomain, Resolver, TempFail
from postier.filters.pipeline import Context, Phase, Verdict
from postier.filters.spam import Weights


class FcrdnsStage:
    name = "fcrdns"
    phases = frozenset({Phase.CONNECT})

    def __init__(self, resolver: Resolver, weights: Weights, *, max_names: int = 10) -> None:
        self.resolver = resolver
        self.weights = weights
        self.max_names = max_names

    async def check(self, phase: Phase, ctx: Context) -> Sequence[Verdict]:
        addr = ipaddress.ip_address(ctx.peer_ip)
        try:
            names = (await self.resolver.ptr(ctx.peer_ip)).records[: self.max_names]
        except (NXDomain, NoAnswer):
            ctx.iprev = "permerror"
            return [
                Verdict.scored(
                    self.name, "RDNS_NONE", self.weights["RDNS_NONE"], f"no PTR for {ctx.peer_ip}"
                )
            ]
        except TempFail:
            ctx.iprev = "temperror"
            return [Verdict.accept(self.name, "PTR lookup failed temporarily")]
        for name in names:
            try:
                answer = await (
                    self.resolver.a(name) if addr.version == 4 else self.resolver.aaaa(name)
                )
            except DnsError:
                continue
            if any(ipaddress.ip_address(a) == addr for a in answer.records):
                ctx.peer_name = name
                ctx.iprev = "pass"
                return [Verdict.accept(self.name, f"{ctx.peer_ip} is {name}")]
        ctx.iprev = "fail"
        return [
            Verdict.scored(
                self.name,
                "RDNS_MISMATCH",
                self.weights["RDNS_MISMATCH"],
                f"PTR {','.join(names)} does not resolve to {ctx.peer_ip}",
            )
        ]
