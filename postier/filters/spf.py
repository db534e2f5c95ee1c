"""The SPF stage: RFC 7208 check of the MAIL FROM identity, kept for DMARC.

Rules:
- Evaluated at MAIL with `postier.mailauth.spf.check_mailfrom` (the null
  reverse-path uses the HELO name, RFC 7208 §2.4). The result is kept in the
  context: the greylist stage trusts SPF-pass domains that passed before, DMARC
  aligns on it, and it is written in Authentication-Results.
- ``fail`` refuses MAIL with ``550 5.7.23`` (RFC 7372 §3.2) and the record's
  explanation (RFC 7208 §6.2) when `reject_fail`; otherwise it scores SPF_FAIL.
  ``softfail`` and ``permerror`` score; ``temperror`` neither refuses nor scores
  (our resolver's trouble is not the sender's fault); ``pass`` scores SPF_PASS.
- Skipped for authenticated clients (their mail is ours to send).
"""

from __future__ import annotations

from collections.abc import Sequence

from postier.dns.resolver import Resolver
from postier.filters.pipeline import Context, Phase, Verdict
from postier.filters.spam import Weights
from postier.mail.replies import Reply
from postier.mailauth.spf import SpfLimits, Status, check_mailfrom

_LIMITS = SpfLimits()


def R550_SPF_FAIL(explanation: str) -> Reply:
    return Reply(550, "5.7.23", f"SPF fail: {explanation}")


class SpfStage:
    name = "spf"
    phases = frozenset({Phase.MAIL})

    def __init__(
        self,
        resolver: Resolver,
        weights: Weights,
        *,
        receiver: str,
        reject_fail: bool = False,
        limits: SpfLimits = _LIMITS,
    ) -> None:
        self.resolver = resolver
        self.weights = weights
        self.receiver = receiver
        self.reject_fail = reject_fail
        self.limits = limits

    async def check(self, phase: Phase, ctx: Context) -> Sequence[Verdict]:
        if ctx.authenticated:
            return []
        res = await check_mailfrom(
            self.resolver,
            ctx.peer_ip,
            ctx.sender or "",
            ctx.helo,
            receiver=self.receiver,
            limits=self.limits,
        )
        ctx.spf = res
        detail = f"{res.status} for {res.domain} from {res.ip}"
        if res.status is Status.FAIL:
            if self.reject_fail:
                return [Verdict.reject(self.name, R550_SPF_FAIL(res.explanation), detail)]
            return [Verdict.scored(self.name, "SPF_FAIL", self.weights["SPF_FAIL"], detail)]
        rule = {
            Status.SOFTFAIL: "SPF_SOFTFAIL",
            Status.PERMERROR: "SPF_PERMERROR",
            Status.PASS: "SPF_PASS",
        }.get(res.status)
        if rule is None:
            return [Verdict.accept(self.name, detail)]
        return [Verdict.scored(self.name, rule, self.weights[rule], detail)]
