"""DMARC (RFC 7489): policy discovery, identifier alignment, the disposition.

Why hand-written: the Python DMARC packages are synchronous with their own DNS
or unmaintained; the evaluation itself is small, and here it runs on
`postier.dns` and on the SPF and DKIM results the pipeline already has.

Rules:
- The organizational domain is the registrable domain by the Public Suffix List
  (``publicsuffixlist``, RFC 7489 §3.2); a name that is itself a public suffix
  is its own organizational domain.
- Policy discovery (§6.6.3): TXT at ``_dmarc.<From domain>``; if none there,
  ``_dmarc.<organizational domain>``. Records not starting with ``v=DMARC1`` are
  ignored; more than one DMARC record at a name counts as none. A DNS
  temporary failure is ``temperror`` (no policy applied: the message is not
  refused for our resolver's trouble).
- A record with a bad or missing ``p=`` is treated as ``p=none`` when it has a
  ``rua=`` and ignored otherwise (§6.6.3 step 6). Unknown tags are ignored (§6.3).
- The policy is ``sp=`` (default ``p=``) when the From domain is not the domain
  the record was found at (§6.3 "sp"). ``pct=`` samples: a message outside the
  sample gets the next weaker policy, reject → quarantine → none (§6.6.4).
- DMARC passes when SPF passed for an aligned MAIL FROM domain or a DKIM
  signature passed for an aligned d= domain (§3.1, §4.2); ``relaxed`` alignment
  compares organizational domains, ``strict`` the exact names (adkim/aspf).
- A From header with no domain, or with more than one distinct domain, cannot
  be evaluated: ``permerror`` (§6.6.1 leaves rejecting it to local policy).
"""

from __future__ import annotations

import enum
import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from publicsuffixlist import PublicSuffixList

from postier.dns.resolver import NoAnswer, NXDomain, Resolver, TempFail
from postier.mailauth.dkimverify import DkimResult
from postier.mailauth.results import comment, value


class Policy(enum.StrEnum):
    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


WEAKER = {
    Policy.REJECT: Policy.QUARANTINE,
    Policy.QUARANTINE: Policy.NONE,
    Policy.NONE: Policy.NONE,
}


class DmarcParseError(ValueError):
    pass


@dataclass(frozen=True)
class DmarcRecord:
    p: Policy | None  # None: invalid/missing p= (treated per §6.6.3)
    sp: Policy | None = None
    pct: int = 100
    adkim: str = "r"  # "r" relaxed, "s" strict
    aspf: str = "r"
    rua: str = ""


def parse_record(text: str) -> DmarcRecord:
    """Parse a DMARC TXT record (RFC 7489 §6.4 ABNF); DmarcParseError if it is none."""
    parts = [p.strip() for p in text.split(";")]
    if not parts or parts[0].replace(" ", "") != "v=DMARC1":  # §6.4: v= first, exact
        raise DmarcParseError("not a DMARC record (v=DMARC1 must come first)")
    tags: dict[str, str] = {}
    for part in parts[1:]:
        if not part:
            continue
        k, eq, v = part.partition("=")
        if not eq:
            raise DmarcParseError(f"bad tag {part!r}")
        tags.setdefault(k.strip().lower(), v.strip())

    def policy(raw: str | None) -> Policy | None:
        if raw is None:
            return None
        try:
            return Policy(raw.lower())
        except ValueError:
            return None

    pct = 100
    if "pct" in tags:
        try:
            pct = max(0, min(100, int(tags["pct"])))
        except ValueError:
            pct = 100  # §6.3: an invalid value is ignored (default applies)
    adkim = tags.get("adkim", "r").lower()
    aspf = tags.get("aspf", "r").lower()
    sp = policy(tags.get("sp"))
    return DmarcRecord(
        p=policy(tags.get("p")),
        sp=sp,
        pct=pct,
        adkim=adkim if adkim in ("r", "s") else "r",
        aspf=aspf if aspf in ("r", "s") else "r",
        rua=tags.get("rua", ""),
    )


@functools.cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2 via the Public Suffix List."""
    domain = domain.lower().rstrip(".")
    org = _psl().privatesuffix(domain)
    return org if org else domain


def aligned(a: str, b: str, mode: str) -> bool:
    """Identifier alignment (RFC 7489 §3.1.1, §3.1.2)."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


@dataclass(frozen=True)
class DmarcResult:
    status: str  # pass, fail, none, temperror, permerror (RFC 8601 §2.7.2 / RFC 7489 §11.2)
    from_domain: str
    policy: Policy = Policy.NONE  # the published policy that applies (p or sp)
    disposition: Policy = Policy.NONE  # what to do, after pct sampling (fail only)
    record_domain: str = ""
    reason: str = ""

    def auth_results(self) -> str:
        out = f"dmarc={self.status}"
        extra = []
        if self.status in ("pass", "fail"):
            extra.append(f"p={self.policy.upper()} dis={self.disposition.upper()}")
        if self.reason:
            extra.append(self.reason)
        if extra:
            out += " " + comment(" ".join(extra))
        if self.from_domain:
            out += f" header.from={value(self.from_domain)}"
        return out


async def discover(resolver: Resolver, from_domain: str) -> tuple[DmarcRecord | None, str]:
    """The policy record and where it was found (§6.6.3); TempFail propagates."""
    org = organizational_domain(from_domain)
    names = [from_domain] if org == from_domain else [from_domain, org]
    for name in names:
        try:
            answer = await resolver.txt(f"_dmarc.{name}")
        except (NXDomain, NoAnswer):
            continue
        records = []
        for r in answer.records:
            try:
                records.append(parse_record(r.data.decode("utf-8", "replace")))
            except DmarcParseError:
                continue
        if len(records) != 1:
            continue  # none, or several: no usable record at this name
        rec = records[0]
        if rec.p is None:
            if not rec.rua:
                return None, name  # §6.6.3 step 6: no DMARC processing
            rec = DmarcRecord(Policy.NONE, rec.sp, rec.pct, rec.adkim, rec.aspf, rec.rua)
        return rec, name
    return None, ""


async def check(
    resolver: Resolver,
    from_domains: Sequence[str],
    *,
    spf_status: str,
    spf_domain: str,
    dkim: Sequence[DkimResult],
    rand: Callable[[], float] = random.random,
) -> DmarcResult:
    """The DMARC result of one message.

    `from_domains`: the domains of the RFC5322.From addresses; `spf_status` and
    `spf_domain`: the SPF result for the MAIL FROM identity; `rand` returns a
    float in [0, 1) for pct sampling (injected for tests)."""
    domains = sorted({d.lower().rstrip(".") for d in from_domains if d})
    if not domains:
        return DmarcResult("none", "", reason="no From domain")
    if len(domains) > 1:
        return DmarcResult("permerror", domains[0], reason="several From domains")
    from_domain = domains[0]
    try:
        record, found_at = await discover(resolver, from_domain)
    except TempFail:
        return DmarcResult("temperror", from_domain, reason="policy lookup failed")
    if record is None:
        return DmarcResult("none", from_domain)
    policy = record.p or Policy.NONE
    if found_at != from_domain and record.sp is not None:
        policy = record.sp  # §6.3 sp: subdomains of the organizational domain
    spf_ok = spf_status == "pass" and aligned(spf_domain, from_domain, record.aspf)
    dkim_ok = any(r.status == "pass" and aligned(r.domain, from_domain, record.adkim) for r in dkim)
    if spf_ok or dkim_ok:
        how = (
            "spf and dkim aligned"
            if spf_ok and dkim_ok
            else ("spf aligned" if spf_ok else "dkim aligned")
        )
        return DmarcResult("pass", from_domain, policy, Policy.NONE, found_at, how)
    disposition = policy
    if record.pct < 100 and rand() * 100 >= record.pct:
        disposition = WEAKER[policy]  # §6.6.4: outside the sample, next weaker policy
    return DmarcResult(
        "fail", from_domain, policy, disposition, found_at, "no aligned spf or dkim pass"
    )
