"""The ARC stage: validate the ARC chain of forwarded mail (RFC 8617 §5.2).

The result goes into Authentication-Results (``arc=``) and the trace; it adds
no score: a broken chain only means some forwarder changed the message, and an
intact one is no proof the first hop was honest.
"""

from __future__ import annotations

from collections.abc import Sequence

from postier.dns.resolver import Resolver
from postier.filters.pipeline import Context, Phase, Verdict
from postier.mailauth import arc


class ArcStage:
    name = "arc"
    phases = frozenset({Phase.DATA})

    def __init__(self, resolver: Resolver, *, max_sets: int = arc.MAX_SETS) -> None:
        self.resolver = resolver
        self.max_sets = max_sets

    async def check(self, phase: Phase, ctx: Context) -> Sequence[Verdict]:
        if ctx.message is None or ctx.parsed is None or ctx.authenticated:
            return []
        ctx.arc = await arc.verify(
            ctx.parsed, self.resolver, max_sets=self.max_sets, scan_timeout=ctx.scan_timeout
        )
        if ctx.arc.status == "none":
            return []
        return [
            Verdict.accept(
                self.name, f"arc={ctx.arc.status} sets={ctx.arc.sets} {ctx.arc.reason}".strip()
            )
        ]
