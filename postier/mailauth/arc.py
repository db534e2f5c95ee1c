"""ARC chain verification (RFC 8617), with dkimpy and our async resolver.

As in `dkimverify`, the keys of every ARC-Seal and ARC-Message-Signature are
fetched first through `postier.dns`, then dkimpy validates the chain in a
thread. Sealing (adding our own ARC set when forwarding) is not done here.

Rules:
- The chain validation status (RFC 8617 §4.4) is ``none`` (no ARC sets),
  ``pass`` or ``fail``; a chain a previous hop already marked failed is
  ``fail`` too (§5.1.2: "cv=fail" ends the chain).
- More than `max_sets` sets (RFC 8617 §4.2.1 caps instances at 50) is ``fail``.
- A key lookup that fails temporarily gives ``temperror`` (not ``fail``), so a
  DNS hiccup never counts against the sender.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import dkim

from postier.dns.resolver import Resolver, TempFail
from postier.mailauth.dkimverify import dnsfunc_of, fetch_keys, key_name, signature_tags
from postier.mailauth.results import comment

MAX_SETS = 50


@dataclass(frozen=True)
class ArcResult:
    status: str  # none, pass, fail, temperror
    sets: int = 0
    reason: str = ""

    def auth_results(self) -> str:
        out = f"arc={self.status}"
        if self.reason and self.status != "none":
            out += " " + comment(self.reason)
        return out


async def verify(
    message: bytes, resolver: Resolver, *, max_sets: int = MAX_SETS, min_key_bits: int = 1024
) -> ArcResult:
    seals = signature_tags(message, b"arc-seal")
    if not seals:
        return ArcResult("none")
    if len(seals) > max_sets:
        return ArcResult("fail", len(seals), "too many ARC sets")
    names = set()
    for field_name in (b"arc-seal", b"arc-message-signature"):
        for tags in signature_tags(message, field_name):
            if tags is not None:
                name = key_name(tags)
                if name is not None:
                    names.add(name)
    keys = await fetch_keys(resolver, names)
    if any(isinstance(k, TempFail) for k in keys.values()):
        return ArcResult("temperror", len(seals), "key lookup failed")

    def run() -> ArcResult:
        try:
            cv, _, reason = dkim.arc_verify(message, dnsfunc=dnsfunc_of(keys), minkey=min_key_bits)
        except dkim.DKIMException as e:  # arc_verify catches most; belt and braces
            return ArcResult("fail", len(seals), str(e)[:80])
        status = cv.decode("ascii").lower() if isinstance(cv, bytes) else "fail"
        if status not in ("pass", "fail", "none"):
            status = "fail"
        return ArcResult(status, len(seals), str(reason)[:80])

    return await asyncio.to_thread(run)
