"""Settings → the pipeline of each listener, and the end-of-data decision.

Rules:
- `filters.mx` and `filters.submission` list the stages of each role, run in
  the fixed order of `FILTER_STAGES` (a stage's place does not depend on how
  the list is written: DMARC needs SPF and DKIM before it). An unknown name is
  a `ValueError` naming the key. Stages whose own section is disabled
  (``dnsbl.enabled``, ``clamd.enabled``, ...) are left out.
- With ``dns.offline = true`` the DNS-based stages (dnsbl, fcrdns, spf, dkim,
  arc, dmarc) are left out: every answer would be "no such domain", which
  would only add false scores.
- `Filters.end_of_data` runs the DATA stages, then (MX role) writes one
  Authentication-Results field and the X-Spam-* fields and decides Junk or
  reject with `spam.SpamPolicy`. Submission gets no added fields.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from postier import metrics
from postier.config.schema import FILTER_STAGES, Settings
from postier.dns.resolver import OfflineResolver, Resolver
from postier.filters.arc import ArcStage
from postier.filters.bayes import BayesStage
from postier.filters.clamd import ClamdStage
from postier.filters.dkim import DkimStage
from postier.filters.dmarc import DmarcStage
from postier.filters.dnsbl import DnsblStage
from postier.filters.fcrdns import FcrdnsStage
from postier.filters.greylist import GreylistStage
from postier.filters.headers import HeadersStage
from postier.filters.helo import HeloStage
from postier.filters.pipeline import Action, Context, DataOutcome, Phase, Pipeline, Stage
from postier.filters.rspamd import RspamdStage
from postier.filters.spam import SpamPolicy, Weights
from postier.filters.spf import SpfStage
from postier.filters.virus import Scanner, VirusStage
from postier.mail.replies import Reply
from postier.mail.role import IntakeRole
from postier.mailauth import results

if TYPE_CHECKING:
    from postier.store.api import Store

DNS_STAGES = frozenset({"dnsbl", "fcrdns", "spf", "dkim", "arc", "dmarc"})


def _stage(
    name: str,
    s: Settings,
    store: Store,
    resolver: Resolver,
    weights: Weights,
    is_local: Callable[[str], Awaitable[bool]],
    clock: Callable[[], float],
) -> Stage | None:
    if name == "dnsbl":
        d = s.dnsbl
        if not d.enabled or not (d.zones or d.allow_zones):
            return None
        return DnsblStage(
            resolver,
            zones=d.zones,
            allow_zones=d.allow_zones,
            weight=d.weight,
            allow_weight=d.allow_weight,
            reject=d.reject,
        )
    if name == "fcrdns":
        return FcrdnsStage(resolver, weights)
    if name == "helo":
        return HeloStage(weights, is_local_domain=is_local)
    if name == "spf":
        return SpfStage(
            resolver, weights, receiver=s.server.hostname, reject_fail=s.spf.reject_fail
        )
    if name == "greylist":
        g = s.greylist
        if not g.enabled:
            return None
        return GreylistStage(
            store,
            delay=g.delay,
            window=g.window,
            whitelist_period=g.whitelist_period,
            allow=g.allow,
            clock=clock,
        )
    if name == "dkim":
        return DkimStage(resolver, weights)
    if name == "arc":
        return ArcStage(resolver)
    if name == "dmarc":
        if not s.dmarc.enabled:
            return None
        return DmarcStage(
            resolver,
            weights,
            honor_reject=s.dmarc.honor_reject,
            honor_quarantine=s.dmarc.honor_quarantine,
        )
    if name == "headers":
        return HeadersStage(weights, is_local_domain=is_local)
    if name == "virus":
        a = s.antivirus
        if not a.enabled:
            return None
        return VirusStage(
            Scanner(
                block_executables=a.block_executables,
                max_depth=a.max_archive_depth,
                max_members=a.max_members,
                max_unpacked=a.max_unpacked,
                max_ratio=a.max_ratio,
            )
        )
    if name == "clamd":
        c = s.clamd
        if not c.enabled:
            return None
        return ClamdStage(
            c.socket,
            timeout=c.timeout,
            fail_open=c.fail_open,
            chunk_size=c.chunk_size,
            weights=weights,
        )
    if name == "rspamd":
        r = s.rspamd
        if not r.enabled:
            return None
        return RspamdStage(
            r.url,
            hostname=s.server.hostname,
            timeout=r.timeout,
            fail_open=r.fail_open,
            honor_reject=r.honor_reject,
        )
    if name == "bayes":
        return BayesStage(store, weights)
    raise AssertionError(name)  # pragma: no cover - FILTER_STAGES lists every name


class Filters:
    """The pipelines of both roles, and what happens at end of data."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        resolver: Resolver,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.hostname = settings.server.hostname
        self.max_scan_size = settings.filters.max_scan_size
        self.weights = Weights(settings.spam.scores)
        self.spam = SpamPolicy(settings.spam.junk_threshold, settings.spam.reject_threshold)
        self.store = store
        offline = isinstance(resolver, OfflineResolver)

        async def is_local(domain: str) -> bool:
            return await store.get_domain(domain) is not None if domain else False

        self.pipelines: dict[IntakeRole, Pipeline] = {}
        for role, names in (
            (IntakeRole.MX, settings.filters.mx),
            (IntakeRole.SUBMISSION, settings.filters.submission),
        ):
            unknown = [n for n in names if n not in FILTER_STAGES]
            if unknown:
                raise ValueError(
                    f"filters.{role}: unknown stage {unknown[0]!r} "
                    f"(known: {', '.join(FILTER_STAGES)})"
                )
            stages = []
            for name in FILTER_STAGES:
                if name not in names or (offline and name in DNS_STAGES):
                    continue
                stage = _stage(name, settings, store, resolver, self.weights, is_local, clock)
                if stage is not None:
                    stages.append(stage)
            self.pipelines[role] = Pipeline(stages, store=store, weights=self.weights)

    def context(self, sid: str, role: IntakeRole, peer_ip: str) -> Context:
        return Context(
            sid=sid,
            role=role,
            peer_ip=peer_ip,
            hostname=self.hostname,
            scan_timeout=self.settings.filters.scan_timeout,
        )

    async def run(self, phase: Phase, ctx: Context) -> Reply | None:
        return await self.pipelines[ctx.role].run(phase, ctx)

    async def end_of_data(self, ctx: Context) -> DataOutcome:
        pipeline = self.pipelines[ctx.role]
        refusal = await pipeline.run(Phase.DATA, ctx)
        if refusal is not None:
            return DataOutcome(reply=refusal)
        if ctx.role is not IntakeRole.MX:
            return DataOutcome()
        verdicts = ctx.all_verdicts()
        decision = self.spam.decide(verdicts)
        if decision.reply is not None:
            metrics.SPAM_VERDICTS.labels("reject").inc()
            await pipeline.trace(ctx, f"data spam: reject score={decision.score:.1f}")
            return DataOutcome(reply=decision.reply, score=decision.score)
        if decision.junk:
            await pipeline.trace(ctx, f"data spam: junk score={decision.score:.1f}")
        junk_forced = any(v.action is Action.JUNK for v in verdicts)
        verdict = "spam" if decision.junk or junk_forced else "ham"
        metrics.labelled(metrics.SPAM_VERDICTS, verdict).inc()
        return DataOutcome(
            headers=self.auth_results(ctx) + decision.headers,
            junk=decision.junk or junk_forced,
            score=decision.score,
        )

    def auth_results(self, ctx: Context) -> bytes:
        methods = []
        if ctx.iprev:
            methods.append(
                f"iprev={ctx.iprev} policy.iprev={ctx.peer_ip}"
                + (f" {results.comment(ctx.peer_name)}" if ctx.peer_name else "")
            )
        if ctx.spf is not None:
            methods.append(ctx.spf.auth_results())
        for r in ctx.dkim or []:
            methods.append(r.auth_results())
        if ctx.dmarc is not None:
            methods.append(ctx.dmarc.auth_results())
        if ctx.arc is not None:
            methods.append(ctx.arc.auth_results())
        return results.header(self.hostname, methods)
