"""The DMARC stage: apply the From: domain's policy (RFC 7489 §6.6).

Rules:
- Needs the SPF result (spf stage, at MAIL) and the DKIM results (dkim stage;
  verified here when that stage is not configured).
- fail + disposition reject → ``550 5.7.1`` at end of data when `honor_reject`
  (else Junk); fail + quarantine → Junk (DMARC_QUARANTINE) when
  `honor_quarantine`; fail + none → DMARC_FAIL score. pass/none/errors: nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from postier.dns.resolver import Resolver
from postier.filters.pipeline import Context, Phase, Verdict
from postier.filters.spam import Weights
from postier.mail.replies import Reply
from postier.mailauth import dkimverify, dmarc
from postier.mailauth.dmarc import Policy
from postier.mime.address import addresses
from postier.offload import offload


def R550_DMARC_REJECT(domain: str) -> Reply:
    return Reply(550, "5.7.1", f"Message rejected: DMARC policy of {domain} is reject")


class DmarcStage:
    name = "dmarc"
    phases = frozenset({Phase.DATA})

    def __init__(
        self,
        resolver: Resolver,
        weights: Weights,
        *,
        honor_reject: bool = True,
        honor_quarantine: bool = True,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.resolver = resolver
        self.weights = weights
        self.honor_reject = honor_reject
        self.honor_quarantine = honor_quarantine
        self.rand = rand

    async def check(self, phase: Phase, ctx: Context) -> Sequence[Verdict]:
        if ctx.message is None or ctx.parsed is None or ctx.header is None or ctx.authenticated:
            return []
        if ctx.dkim is None:
            ctx.dkim = await dkimverify.verify(
                ctx.parsed, self.resolver, scan_timeout=ctx.scan_timeout
            )
        view = ctx.header
        domains = await offload(  # a From: of 100 000 words is a second of parsing
            lambda budget: [a.rpartition("@")[2] for a in addresses(view.fields("From"))],
            ctx.scan_timeout,
        )
        spf_status = str(ctx.spf.status) if ctx.spf is not None else "none"
        spf_domain = ctx.spf.domain if ctx.spf is not None else ""
        res = await dmarc.check(
            self.resolver,
            domains,
            spf_status=spf_status,
            spf_domain=spf_domain,
            dkim=ctx.dkim,
            rand=self.rand,
        )
        ctx.dmarc = res
        detail = (
            f"{res.status} header.from={res.from_domain} p={res.policy} "
            f"dis={res.disposition} {res.reason}"
        ).strip()
        if res.status != "fail":
            return [Verdict.accept(self.name, detail)] if res.status != "none" else []
        if res.disposition is Policy.REJECT:
            if self.honor_reject:
                return [Verdict.reject(self.name, R550_DMARC_REJECT(res.from_domain), detail)]
            return [Verdict.junk(self.name, "DMARC_REJECT", self.weights["DMARC_REJECT"], detail)]
        if res.disposition is Policy.QUARANTINE and self.honor_quarantine:
            return [
                Verdict.junk(
                    self.name, "DMARC_QUARANTINE", self.weights["DMARC_QUARANTINE"], detail
                )
            ]
        return [Verdict.scored(self.name, "DMARC_FAIL", self.weights["DMARC_FAIL"], detail)]
