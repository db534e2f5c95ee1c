"""The DKIM stage: verify every DKIM-Signature at end of data (RFC 6376 §6).

Rules:
- Results are kept in the context for DMARC and Authentication-Results.
- One passing signature scores DKIM_VALID; otherwise a failing or broken one
  (fail, permerror) scores DKIM_INVALID. Unsigned mail and temperror score
  nothing. Skipped when the message is too large to scan.
- A message dkimpy cannot parse is ``permerror`` (DKIM_INVALID), never an
  error; past `filters.scan_timeout` the pipeline records SCAN_TIMEOUT.
"""

from __future__ import annotations

from collections.abc import Sequence

from postier.dns.resolver import Resolver
from postier.filters.pipeline import Context, Phase, Verdict
from postier.filters.spam import Weights
from postier.mailauth import dkimverify
from postier.offload import ScanTimeout


class DkimStage:
    name = "dkim"
    phases = frozenset({Phase.DATA})

    def __init__(
        self,
        resolver: Resolver,
        weights: Weights,
        *,
        max_signatures: int = dkimverify.MAX_SIGNATURES,
        min_key_bits: int = 1024,
    ) -> None:
        self.resolver = resolver
        self.weights = weights
        self.max_signatures = max_signatures
        self.min_key_bits = min_key_bits

    async def check(self, phase: Phase, ctx: Context) -> Sequence[Verdict]:
        if ctx.message is None or ctx.parsed is None or ctx.authenticated:
            return []
        try:
            ctx.dkim = await dkimverify.verify(
                ctx.parsed,
                self.resolver,
                max_signatures=self.max_signatures,
                min_key_bits=self.min_key_bits,
                scan_timeout=ctx.scan_timeout,
            )
        except ScanTimeout:
            ctx.dkim = []  # no result: DMARC must not verify it all over again
            raise
        if not ctx.dkim:
            return []
        summary = ", ".join(f"{r.status} d={r.domain} s={r.selector}" for r in ctx.dkim)
        if any(r.status == "pass" for r in ctx.dkim):
            return [Verdict.scored(self.name, "DKIM_VALID", self.weights["DKIM_VALID"], summary)]
        if any(r.status in ("fail", "permerror") for r in ctx.dkim):
            return [
                Verdict.scored(self.name, "DKIM_INVALID", self.weights["DKIM_INVALID"], summary)
            ]
        return [Verdict.accept(self.name, summary)]
