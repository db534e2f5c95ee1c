"""HELO/EHLO sanity (RFC 5321 §4.1.1.1, §4.1.3), scored at HELO.

Rules:
- An address literal must be bracketed (RFC 5321 §4.1.3); a bare address
  scores HELO_BARE_IP; a literal naming another address than the client's
  scores HELO_IP_MISMATCH.
- A domain must be fully qualified: no dot scores HELO_NOT_FQDN.
- A client claiming to be us (our host name or one of our domains) while not
  authenticated scores HELO_FORGED_LOCAL.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence

from postier.filters.pipeline import Context, Phase, Verdict
from postier.filters.spam import Weights


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class HeloStage:
    name = "helo"
    phases = frozenset({Phase.HELO})

    def __init__(
        self, weights: Weights, *, is_local_domain: Callable[[str], Awaitable[bool]]
    ) -> None:
        self.weights = weights
        self.is_local_domain = is_local_domain

    def _v(self, rule: str, detail: str) -> Verdict:
        return Verdict.scored(self.name, rule, self.weights[rule], detail)

    async def check(self, phase: Phase, ctx: Context) -> Sequence[Verdict]:
        helo = ctx.helo.strip()
        client = _ip(ctx.peer_ip)
        if helo.startswith("[") and helo.endswith("]"):
            inner = helo[1:-1]
            literal = _ip(inner[5:] if inner.lower().startswith("ipv6:") else inner)
            if literal is not None and client is not None and literal != client:
                return [self._v("HELO_IP_MISMATCH", f"HELO {helo} from {ctx.peer_ip}")]
            return []
        if _ip(helo) is not None:
            return [self._v("HELO_BARE_IP", f"HELO {helo} is not an address literal")]
        name = helo.lower().rstrip(".")
        if not ctx.authenticated and (
            name == ctx.hostname.lower() or await self.is_local_domain(name)
        ):
            return [self._v("HELO_FORGED_LOCAL", f"HELO {helo} claims to be us")]
        if "." not in name:
            return [self._v("HELO_NOT_FQDN", f"HELO {helo} is not fully qualified")]
        return []
