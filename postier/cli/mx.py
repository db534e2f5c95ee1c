"""`postier mx DOMAIN`: where mail for a domain goes, as postier would send it.

Rules:
- The answer is `postier.dns.mx.route` — the very function the queue runner
  uses — so what is shown is what delivery does: MX records by preference with
  each host's A/AAAA addresses and TTLs, the implicit MX (RFC 5321 §5.1), the
  null MX (RFC 7505), NXDOMAIN and temporary failures, and a last line saying
  what postier does with mail for the domain (deliver, bounce, retry).
- Hosts of equal preference are listed by name; delivery tries them in random
  order (RFC 5321 §5.1), which the output says.
- Lookups use the configured resolver (``dns.nameservers``, ``dns.offline``).
- A domain hosted here is said to be local first: postier delivers its mail to
  its own mailboxes, never through DNS. What DNS says follows (other servers use
  it), without a verdict; with ``dns.offline`` nothing is looked up for it.
- Exit status 0 when mail can be delivered now (a local domain always), 1 when
  not (bounce or retry), 2 for a malformed domain. ``--json`` prints one object for scripts.
"""

from __future__ import annotations

import argparse
import json
import random
from typing import Any

from postier.cli.common import (
    EXIT_FAILURE,
    Subparsers,
    load_settings,
    opened_store,
    out,
    parse_domain,
    run,
    warn,
)
from postier.config.schema import Settings
from postier.dns.mx import Route, RouteKind, route
from postier.dns.resolver import make_resolver


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "mx",
        help="show where mail for a domain goes (MX, addresses, TTLs)",
        description="Resolve a domain's MX records and their hosts' addresses and say "
        "what postier does with mail for it: like 'dig MX', answering 'where does "
        "mail for this domain go?'. Exit status 0 when mail can be delivered now.",
        allow_abbrev=False,
    )
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_mx)


def action(r: Route) -> str:
    """ "deliver", "bounce" (permanent) or "retry" (temporary)."""
    if r.ok:
        return "deliver"
    return "retry" if r.temporary else "bounce"


def _hosts_in_preference_order(r: Route) -> list[Any]:
    return sorted(r.hosts, key=lambda h: (h.preference, h.name))


def as_json(r: Route, *, port: int, smarthost: str) -> dict[str, Any]:
    return {
        "domain": r.domain,
        "kind": r.kind.value,
        "ttl": r.ttl,
        "records": [
            {"preference": m.preference, "host": m.host or "."}
            for m in sorted(r.records, key=lambda m: (m.preference, m.host))
        ],
        "hosts": [
            {
                "host": h.name,
                "preference": h.preference,
                "addresses": list(h.addresses),
                "ttl": h.ttl,
                "error": h.error,
                "temporary": h.temporary,
            }
            for h in _hosts_in_preference_order(r)
        ],
        "action": action(r),
        "detail": r.detail,
        "port": port,
        "smarthost": smarthost,
    }


def as_text(r: Route, *, port: int, smarthost: str) -> list[str]:
    lines: list[str] = []
    d = r.domain
    if r.kind is RouteKind.NXDOMAIN:
        lines.append(f"{d}: no such domain (NXDOMAIN)")
    elif r.kind is RouteKind.TEMPFAIL:
        lines.append(f"{d}: the MX lookup failed temporarily ({r.detail})")
    elif r.kind is RouteKind.NULL_MX:
        lines.append(f"{d}: null MX '0 .' (RFC 7505): the domain accepts no mail (TTL {r.ttl})")
    elif r.kind is RouteKind.IMPLICIT:
        lines.append(f"{d}: no MX records; implicit MX (RFC 5321 §5.1): the domain's own address")
    elif r.kind is RouteKind.LITERAL:
        lines.append(f"{d}: an address literal: no DNS")
    else:
        n = len(r.records)
        lines.append(f"{d}: {n} MX record{'s' if n != 1 else ''} (TTL {r.ttl})")
    width = max((len(h.name) for h in r.hosts), default=0)
    for h in _hosts_in_preference_order(r):
        if h.addresses:
            where = f"{' '.join(h.addresses)}  (TTL {h.ttl})"
        else:
            where = f"no address: {h.error}" + (" (temporary)" if h.temporary else "")
        lines.append(f"  {h.preference:>5} {h.name:<{width}}  {where}")
    prefs = [h.preference for h in r.hosts]
    if len(prefs) != len(set(prefs)):
        lines.append("  (hosts of equal preference are tried in random order)")
    act = action(r)
    if act == "deliver":
        order = [h.name for h in _hosts_in_preference_order(r) if h.addresses]
        lines.append(f"postier delivers to {', then '.join(order)} on port {port}")
    elif act == "retry":
        lines.append("postier keeps mail for it queued and retries later (temporary failure)")
    else:
        lines.append("postier bounces mail for it at once (permanent failure)")
    if smarthost:
        lines.append(f"note: smtp.outbound.smarthost is set: all remote mail goes to {smarthost}")
    return lines


def _mx(args: argparse.Namespace) -> int:
    domain = parse_domain(args.domain).ascii
    settings = load_settings(args)
    local = run(_is_local(settings, domain))
    outbound = settings.smtp.outbound
    if local and settings.dns.offline:
        if args.json:
            out(json.dumps({"domain": domain, "local": True, "action": "local"}, indent=2))
        else:
            out(LOCAL_LINE.format(domain=domain))
            out("(dns.offline = true: what other servers find in DNS is not looked up)")
        return 0
    if settings.dns.offline:
        warn("dns.offline = true: every lookup answers 'no such domain', no query is sent")
    resolver = make_resolver(settings.dns)
    # a fixed order for equal preferences: the listing is sorted anyway
    r = run(route(resolver, domain, rng=random.Random(0)))
    if args.json:
        doc = as_json(r, port=outbound.port, smarthost=outbound.smarthost)
        doc["local"] = local
        if local:
            doc["action"] = "local"
        out(json.dumps(doc, indent=2))
    elif local:
        out(LOCAL_LINE.format(domain=domain))
        out("other servers find it in DNS:")
        for line in as_text(r, port=outbound.port, smarthost="")[:-1]:  # not our verdict
            out(f"  {line}")
    else:
        for line in as_text(r, port=outbound.port, smarthost=outbound.smarthost):
            out(line)
    return 0 if r.ok or local else EXIT_FAILURE


LOCAL_LINE = "{domain}: a local domain: postier delivers its mail to its own mailboxes, without DNS"


async def _is_local(settings: Settings, domain: str) -> bool:
    async with opened_store(settings) as store:
        return await store.get_domain(domain) is not None
