"""The DNS a hosted domain needs, checked against what DNS answers: `postier dns-check`.

What it owns: one `Check` per record the server depends on, each with what was
found and, when it fails, the exact record to publish (zone-file syntax, the
same records `postier domain dns` prints).

Checks (required unless marked):
- MX: the domain's MX records name ``server.hostname`` (RFC 5321 §5.1); a null
  MX or NXDOMAIN fails.
- A/AAAA: ``server.hostname`` has addresses, including each server address.
- PTR: each server address reverse-resolves to ``server.hostname`` and that name
  resolves back to the address (forward-confirmed reverse DNS, RFC 8601 §3 "iprev";
  big receivers refuse mail without it).
- SPF: exactly one ``v=spf1`` TXT record (RFC 7208 §4.5), whose evaluation
  (`postier.mailauth.spf.check_host`) passes for every server address.
- DKIM: for each key on disk (the domain's active selector and its twin), the TXT
  at ``<selector>._domainkey.<domain>`` carries the same public key (RFC 6376
  §3.6.1); a missing key on disk is a failure too.
- DMARC: exactly one ``v=DMARC1`` TXT at ``_dmarc.<domain>`` (RFC 7489 §6.6.3)
  whose ``p=`` is none, quarantine or reject (§6.3); ``p=none`` passes with a note.
- MTA-STS (RFC 8461 §3.1) and TLS-RPT (RFC 8460 §3), optional: checked for
  syntax when published, skipped otherwise.

Server addresses: those given, else the MX listener's address when it is a public
one, else the A/AAAA of ``server.hostname`` (then the A/AAAA check can only say
that addresses exist).

Rules: lookups go through the `Resolver` given; every DNS outcome is a check
result, never an exception; a temporary DNS failure fails the check with the
reason, so an operator never reads ✓ for something that was not seen.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from postier.dns.mx import RouteKind, resolve_host, route
from postier.dns.resolver import DnsError, NoAnswer, NXDomain, Resolver, reverse_name
from postier.dns.zone import quote_txt
from postier.mailauth import dkim, spf

TTL = 3600


@dataclass(frozen=True)
class Check:
    name: str  # "MX", "A/AAAA", "PTR 192.0.2.1", "SPF", "DKIM postier2025r", "DMARC", ...
    ok: bool | None  # None: optional and not published (nothing to check)
    required: bool
    found: str  # what DNS answered, in a few words
    fix: str = ""  # the record to publish (zone-file line), or what to do
    note: str = ""  # a remark on a passing check

    @property
    def failed(self) -> bool:
        return self.ok is False and self.required

    def as_dict(self) -> dict[str, object]:
        return {
            "check": self.name,
            "ok": self.ok,
            "required": self.required,
            "found": self.found,
            "fix": self.fix,
            "note": self.note,
        }


def _zone(name: str, rtype: str, value: str) -> str:
    return f"{name.rstrip('.')}.\t{TTL}\tIN\t{rtype}\t{value}"


def _why(e: DnsError) -> str:
    if isinstance(e, NXDomain):
        return "no such name (NXDOMAIN)"
    if isinstance(e, NoAnswer):
        return "no record"
    return f"lookup failed: {e.reason or e}"


async def _txt(resolver: Resolver, name: str, prefix: str) -> tuple[list[str], str]:
    """TXT records of `name` starting with `prefix` (case-insensitive), or an error."""
    try:
        answer = await resolver.txt(name)
    except DnsError as e:
        return [], _why(e)
    found = [r.text for r in answer.records if r.text.lower().startswith(prefix.lower())]
    return found, "" if found else "no record"


def _tags(record: str) -> dict[str, str]:
    """tag=value; pairs (RFC 6376 §3.2, RFC 7489 §6.4), white space removed."""
    out: dict[str, str] = {}
    for part in record.split(";"):
        k, sep, v = part.partition("=")
        if sep:
            out[k.strip().lower()] = re.sub(r"\s+", "", v)
    return out


async def check_mx(resolver: Resolver, domain: str, hostname: str) -> Check:
    fix = _zone(domain, "MX", f"10 {hostname}.")
    r = await route(resolver, domain)
    if r.kind in (RouteKind.NXDOMAIN, RouteKind.TEMPFAIL, RouteKind.IMPLICIT):
        found = {
            RouteKind.NXDOMAIN: "the domain does not exist (NXDOMAIN)",
            RouteKind.IMPLICIT: "no MX record",
        }.get(r.kind, r.detail)
        return Check("MX", False, True, found, fix)
    if r.kind is RouteKind.NULL_MX:
        return Check("MX", False, True, "null MX '0 .': the domain refuses all mail", fix)
    names = [f"{m.preference} {m.host}" for m in sorted(r.records, key=lambda m: m.preference)]
    ok = any(m.host.lower() == hostname.lower() for m in r.records)
    return Check("MX", ok, True, ", ".join(names), "" if ok else fix)


async def server_addresses(resolver: Resolver, hostname: str, given: list[str]) -> list[str]:
    if given:
        return given
    host = await resolve_host(resolver, hostname, 0)
    return list(host.addresses)


async def check_address(
    resolver: Resolver, hostname: str, ips: list[str], *, ips_known: bool
) -> Check:
    host = await resolve_host(resolver, hostname, 0)
    if not host.addresses:
        if ips:
            fixes = [
                _zone(hostname, "A" if ipaddress.ip_address(ip).version == 4 else "AAAA", ip)
                for ip in ips
            ]
        else:
            fixes = [_zone(hostname, "A", "<this server's public IPv4 address>")]
        return Check("A/AAAA", False, True, host.error or "no address", "\n".join(fixes))
    missing = [ip for ip in ips if ip not in host.addresses] if ips_known else []
    found = f"{hostname}: {' '.join(host.addresses)}"
    if missing:
        fixes = [
            _zone(hostname, "A" if ipaddress.ip_address(ip).version == 4 else "AAAA", ip)
            for ip in missing
        ]
        return Check("A/AAAA", False, True, found, "\n".join(fixes))
    return Check("A/AAAA", True, True, found)


async def check_ptr(resolver: Resolver, hostname: str, ip: str) -> Check:
    name = f"PTR {ip}"
    fix = (
        _zone(reverse_name(ip), "PTR", f"{hostname}.")
        + f"\n; set by the owner of {ip} (usually the hosting provider)"
    )
    try:
        names = list((await resolver.ptr(ip)).records)
    except DnsError as e:
        return Check(name, False, True, _why(e), fix)
    if not any(n.lower() == hostname.lower() for n in names):
        return Check(name, False, True, ", ".join(names), fix)
    host = await resolve_host(resolver, hostname, 0)  # RFC 8601 §3: forward-confirmed
    if ip not in host.addresses:
        return Check(
            name,
            False,
            True,
            f"{hostname}, which does not resolve back to {ip}",
            _zone(hostname, "A" if ":" not in ip else "AAAA", ip),
        )
    return Check(name, True, True, f"{hostname} (forward-confirmed)")


async def check_spf(resolver: Resolver, domain: str, hostname: str, ips: list[str]) -> Check:
    fix = _zone(domain, "TXT", quote_txt("v=spf1 mx -all"))
    records, why = await _txt(resolver, domain, "v=spf1")
    records = [r for r in records if r.lower() == "v=spf1" or r[6:7] == " "]  # RFC 7208 §4.5
    if not records:
        return Check("SPF", False, True, why or "no v=spf1 record", fix)
    if len(records) > 1:
        return Check(
            "SPF",
            False,
            True,
            f"{len(records)} v=spf1 records (RFC 7208 §4.5: permerror); keep one",
            fix,
        )
    record = records[0]
    failing: list[str] = []
    for ip in ips:
        result = await spf.check_host(resolver, ip, domain, f"postmaster@{domain}", hostname)
        if result.status is not spf.Status.PASS:
            failing.append(f"{ip}: {result.status}")
    if failing:
        additions = " ".join(f"ip{ipaddress.ip_address(ip).version}:{ip}" for ip in ips)
        fixed = re.sub(r"(?i)^v=spf1", f"v=spf1 mx {additions}", record, count=1)
        return Check(
            "SPF",
            False,
            True,
            f"{record} ({'; '.join(failing)})",
            _zone(domain, "TXT", quote_txt(fixed)),
        )
    return Check("SPF", True, True, record)


async def check_dkim(resolver: Resolver, domain: str, keys: list[dkim.DkimKey]) -> list[Check]:
    if not keys:
        return [
            Check(
                "DKIM",
                False,
                True,
                "no DKIM key on disk for the domain",
                f"run: postier domain dns {domain}   (creates the keys and prints the records)",
            )
        ]
    out: list[Check] = []
    for key in keys:
        name = f"{key.selector}._domainkey.{domain}"
        fix = _zone(name, "TXT", quote_txt(key.txt_record()))
        records, why = await _txt(resolver, name, "v=DKIM1")
        if not records:
            # RFC 6376 §3.6.1: v= is optional; a record with p= is a key record too
            try:
                answer = await resolver.txt(name)
                records = [r.text for r in answer.records if "p=" in r.text]
            except DnsError:
                records = []
        label = f"DKIM {key.selector} ({key.algorithm})"
        if not records:
            out.append(Check(label, False, True, why or "no key record", fix))
            continue
        published = _tags(records[0]).get("p", "")
        if published != key.public_b64():
            what = "an empty p= (revoked key)" if not published else "a different public key"
            out.append(Check(label, False, True, f"{name} has {what}", fix))
        else:
            out.append(Check(label, True, True, f"{name} matches the key on disk"))
    return out


async def check_dmarc(resolver: Resolver, domain: str) -> Check:
    name = f"_dmarc.{domain}"
    fix = _zone(name, "TXT", quote_txt(f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"))
    records, why = await _txt(resolver, name, "v=DMARC1")
    if not records:
        return Check("DMARC", False, True, why or "no v=DMARC1 record", fix)
    if len(records) > 1:
        return Check(
            "DMARC",
            False,
            True,
            f"{len(records)} DMARC records (RFC 7489 §6.6.3: none is used)",
            fix,
        )
    policy = _tags(records[0]).get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        return Check("DMARC", False, True, f"{records[0]} (p= missing or invalid)", fix)
    note = "p=none only monitors; consider p=quarantine" if policy == "none" else ""
    return Check("DMARC", True, True, records[0], note=note)


async def check_optional(resolver: Resolver, domain: str) -> list[Check]:
    out: list[Check] = []
    for label, name, prefix, required_tags, rfc in (
        ("MTA-STS", f"_mta-sts.{domain}", "v=STSv1", ("id",), "RFC 8461 §3.1"),
        ("TLS-RPT", f"_smtp._tls.{domain}", "v=TLSRPTv1", ("rua",), "RFC 8460 §3"),
    ):
        records, why = await _txt(resolver, name, prefix)
        if not records:
            failed = why.startswith("lookup failed")
            out.append(
                Check(
                    label,
                    False if failed else None,
                    False,
                    why if failed else "not published (optional)",
                )
            )
            continue
        tags = _tags(records[0])
        missing = [t for t in required_tags if not tags.get(t)]
        if len(records) > 1 or missing:
            problem = f"missing {', '.join(missing)}=" if missing else "more than one record"
            out.append(Check(label, False, False, f"{records[0]} ({problem}, {rfc})"))
        else:
            out.append(Check(label, True, False, records[0]))
    return out


async def check_domain(
    resolver: Resolver, domain: str, *, hostname: str, ips: list[str], dkim_keys: list[dkim.DkimKey]
) -> list[Check]:
    """Every check, in the order an operator fixes them."""
    hostname = hostname.rstrip(".").lower()
    domain = domain.rstrip(".").lower()
    known = bool(ips)
    addresses = await server_addresses(resolver, hostname, ips)
    checks = [
        await check_mx(resolver, domain, hostname),
        await check_address(resolver, hostname, addresses, ips_known=known),
    ]
    if addresses:
        for ip in addresses:
            checks.append(await check_ptr(resolver, hostname, ip))
    else:
        checks.append(
            Check(
                "PTR",
                False,
                True,
                "no server address known",
                "; give the address with --ip, or publish the A record first",
            )
        )
    checks.append(await check_spf(resolver, domain, hostname, addresses))
    checks.extend(await check_dkim(resolver, domain, dkim_keys))
    checks.append(await check_dmarc(resolver, domain))
    checks.extend(await check_optional(resolver, domain))
    return checks
