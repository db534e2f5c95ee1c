"""Fuzz target ``dmarc``: DMARC record parsing, policy discovery and alignment
(postier/mailauth/dmarc.py) against a fake DNS zone.

Input: line 1 is the TXT record of _dmarc.example.test, line 2 the RFC5322.From
domains (comma-separated, as any text), line 3 the SPF-authenticated domain.

Allowed: `parse_record` raises only `DmarcParseError`; `check` never raises.
Checked: the result's status is RFC 7489's, its policy and disposition are
policies, and the Authentication-Results text has no control characters.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

from postier.dns.fake import TIMEOUT, FakeResolver
from postier.mailauth import dmarc
from postier.mailauth.dkimverify import DkimResult

_STATUSES = frozenset({"pass", "fail", "none", "temperror", "permerror"})

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check(data: bytes) -> None:
    lines = data.decode("utf-8", "replace").split("\n")
    record = lines[0]
    from_domains = lines[1].split(",") if len(lines) > 1 else ["example.test"]
    spf_domain = lines[2] if len(lines) > 2 else "example.test"
    with contextlib.suppress(dmarc.DmarcParseError):
        rec = dmarc.parse_record(record)
        assert rec.pct in range(101) and rec.adkim in "rs" and rec.aspf in "rs"
    for d in [*from_domains, spf_domain]:
        dmarc.organizational_domain(d)
        dmarc.aligned(d, spf_domain, "r")
    resolver = FakeResolver(
        {
            "_dmarc.example.test": {"TXT": [record.encode("utf-8", "surrogateescape")]},
            "_dmarc.sub.example.test": {"TXT": [record.encode("utf-8", "surrogateescape")]},
            "_dmarc.slow.test": TIMEOUT,
        }
    )
    dkim = [DkimResult("pass", spf_domain, "sel"), DkimResult("fail", "example.test", "s")]
    for spf_status in ("pass", "fail"):
        result = asyncio.run(
            dmarc.check(
                resolver,
                from_domains,
                spf_status=spf_status,
                spf_domain=spf_domain,
                dkim=dkim if spf_status == "fail" else [],
                rand=lambda: 0.5,
            )
        )
        assert result.status in _STATUSES, result
        assert isinstance(result.policy, dmarc.Policy)
        assert isinstance(result.disposition, dmarc.Policy)
        text = result.auth_results()
        assert not _CONTROL.search(text), text  # results.py: no CR, LF or controls
