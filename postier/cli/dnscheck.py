"""`postier dns-check DOMAIN`: is the DNS of a hosted domain right for this server?

Rules:
- The checks are `postier.ops.dnscheck` (MX, A/AAAA, PTR, SPF, DKIM, DMARC, and
  MTA-STS/TLS-RPT when published); this module loads the domain's DKIM keys
  from disk (never creating any: a check changes nothing), prints ✓/✗ per record
  with the exact record to publish under each ✗, or ``--json``.
- Server addresses: ``--ip`` (repeatable), else the MX listener's public address,
  else the A/AAAA of server.hostname.
- With ``dns.offline`` nothing is looked up: the command says the records were
  not checked (exit 1) and where to find them, rather than a ✗ for each.
- Exit status: 0 when every required record is right, 1 when one is missing or
  wrong, 2 for an unknown or malformed domain.
"""

from __future__ import annotations

import argparse
import ipaddress
import json

from postier.cli.common import (
    EXIT_FAILURE,
    CliError,
    Subparsers,
    load_settings,
    opened_store,
    out,
    parse_domain,
    run,
    unknown_domain,
)
from postier.cli.dnsrecords import public_address
from postier.config.schema import Settings
from postier.dns.resolver import make_resolver
from postier.mailauth import dkim
from postier.ops.dnscheck import Check, check_domain


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "dns-check",
        help="check a hosted domain's DNS records (MX, PTR, SPF, DKIM, DMARC...)",
        description="Look up every record the server needs for DOMAIN and print ✓ or ✗ "
        "for each, with the exact record to publish for each ✗. Exit status 1 when a "
        "required record is missing or wrong.",
        allow_abbrev=False,
    )
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument(
        "--ip",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="the server's public address (repeatable; default: the MX "
        "listener's address, else the A/AAAA of server.hostname)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_check)


def render(c: Check) -> list[str]:
    mark = {True: "✓", False: "✗", None: "-"}[c.ok]
    tail = "" if c.required else " (optional)"
    lines = [f"{mark} {c.name}{tail}: {c.found}"]
    if c.note:
        lines.append(f"    note: {c.note}")
    if c.ok is False and c.fix:
        lines.append("    publish:" if not c.fix.startswith(("run:", ";")) else "    fix:")
        lines.extend(f"      {line}" for line in c.fix.splitlines())
    return lines


def _check(args: argparse.Namespace) -> int:
    domain = parse_domain(args.domain).ascii
    ips: list[str] = []
    for text in args.ip:
        try:
            ips.append(str(ipaddress.ip_address(text)))
        except ValueError:
            raise CliError(f"--ip {text!r} is not an IP address") from None
    settings = load_settings(args)
    if settings.dns.offline:
        return _offline(args, settings, domain)
    if not ips and (ip := public_address(settings)):
        ips.append(ip)

    async def go() -> list[Check]:
        async with opened_store(settings) as store:
            d = await store.get_domain(domain)
            if d is None:
                raise unknown_domain(domain)
            keys = await dkim.stored_keys(store, domain, d.dkim_selector)
        return await check_domain(
            make_resolver(settings.dns),
            domain,
            hostname=settings.server.hostname,
            ips=ips,
            dkim_keys=keys,
        )

    checks = run(go())
    failed = [c for c in checks if c.failed]
    if args.json:
        out(
            json.dumps(
                {"domain": domain, "ok": not failed, "checks": [c.as_dict() for c in checks]},
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for c in checks:
            for line in render(c):
                out(line)
        if failed:
            out(f"{len(failed)} required record{'s' if len(failed) != 1 else ''} missing or wrong")
        else:
            out("all required records are in place")
    return EXIT_FAILURE if failed else 0


def _offline(args: argparse.Namespace, settings: Settings, domain: str) -> int:
    """With dns.offline nothing can be checked: say so, instead of a ✗ per record
    for answers that were never asked for."""

    async def known() -> bool:
        async with opened_store(settings) as store:
            return await store.get_domain(domain) is not None

    if not run(known()):
        raise unknown_domain(domain)
    why = f"dns.offline = true in {settings.source}: no DNS query is sent"
    if args.json:
        doc = {"domain": domain, "ok": False, "checked": False, "reason": why, "checks": []}
        out(json.dumps(doc, indent=2))
    else:
        out(f"{domain}: hosted here; mail to it on this server is delivered without DNS")
        out(f"not checked: {why}")
        out(f"the records other servers need: postier domain dns {domain}")
    return EXIT_FAILURE
