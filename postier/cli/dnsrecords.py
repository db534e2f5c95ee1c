"""`postier domain dns DOMAIN [--json]`: every DNS record a hosted domain should publish.

What it owns: printing the records (`postier.ops.dnsrecords`: MX, SPF, DKIM for
each key, DMARC, and the A/PTR the server's host name and address need) in
zone-file syntax or JSON.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from postier.cli.common import (
    Subparsers,
    load_settings,
    opened_store,
    out,
    parse_domain,
    run,
    unknown_domain,
)
from postier.mailauth import dkim
from postier.ops.dnsrecords import (  # re-exported: the CLI modules use them from here
    TTL,
    Record,
    ensure_dkim,
    public_address,
    records,
)

__all__ = ["TTL", "Record", "ensure_dkim", "public_address", "records", "register_domain_dns"]


def render_zone(domain: str, recs: list[Record]) -> str:
    lines = [f"; DNS records for {domain} (zone-file syntax, TTL {TTL})"]
    for r in recs:
        if r.comment:
            lines.append(f"; {r.comment}")
        lines.append(f"{r.name}\t{TTL}\tIN\t{r.type}\t{r.value}")
    return "\n".join(lines)


def register_domain_dns(cmds: Subparsers) -> None:
    """Adds `dns` to the `domain` command group."""
    p = cmds.add_parser(
        "dns", help="print the DNS records to publish for a domain", allow_abbrev=False
    )
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    name = parse_domain(args.domain).ascii
    settings = load_settings(args)

    async def go() -> list[dkim.DkimKey]:
        async with opened_store(settings) as store:
            d = await store.get_domain(name)
            if d is None:
                raise unknown_domain(name)
            return await ensure_dkim(store, settings, name)

    recs = records(settings, name, run(go()))
    if args.json:
        out(
            json.dumps({"domain": name, "ttl": TTL, "records": [asdict(r) for r in recs]}, indent=2)
        )
    else:
        out(render_zone(name, recs))
    return 0
