"""The DNS records a hosted domain should publish, and its DKIM keys: what
`postier domain dns`, `domain add`, `init` and the web admin's Domains page share.

Rules:
- Records are derived from the configuration (server.hostname, the MX listener
  address) and the DKIM keys the store keeps; nothing is looked up in DNS.
- SPF (RFC 7208): ``v=spf1 mx -all`` — the domain's MX hosts send its mail.
- DKIM (RFC 6376 §3.6.2.2): one TXT per key at ``<selector>._domainkey.<domain>``;
  values over 255 octets are split into several character-strings of one record.
- DMARC (RFC 7489 §6.3): ``p=quarantine`` with aggregate reports to postmaster.
- PTR (RFC 1912 §2.1): the server's public address must reverse-resolve to
  server.hostname; when the MX listener binds a wildcard or loopback address the
  address is shown as a placeholder to fill in.
- `ensure_dkim` makes a domain's keys once and records the active selector.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from postier.config.schema import Settings
from postier.dns.resolver import reverse_name
from postier.dns.zone import quote_txt
from postier.mailauth import dkim
from postier.store.api import Store

TTL = 3600


@dataclass(frozen=True)
class Record:
    name: str  # fully qualified, trailing dot
    type: str
    value: str  # presentation format (TXT already quoted)
    comment: str = ""


def public_address(settings: Settings) -> str | None:
    mx = settings.listeners.get("mx")
    if mx is None:
        return None
    try:
        ip = ipaddress.ip_address(mx.address)
    except ValueError:
        return None
    if ip.is_unspecified or ip.is_loopback or ip.is_private:
        return None
    return str(ip)


def records(settings: Settings, domain: str, keys: list[dkim.DkimKey]) -> list[Record]:
    host = settings.server.hostname.rstrip(".")
    d = domain.rstrip(".")
    out_: list[Record] = [
        Record(f"{d}.", "MX", f"10 {host}.", "mail for the domain goes to this server"),
        Record(
            f"{d}.",
            "TXT",
            quote_txt("v=spf1 mx -all"),
            "SPF: only the domain's MX hosts send its mail",
        ),
    ]
    for k in keys:
        out_.append(
            Record(
                f"{k.selector}._domainkey.{d}.",
                "TXT",
                quote_txt(k.txt_record()),
                f"DKIM public key ({k.algorithm})",
            )
        )
    out_.append(
        Record(
            f"_dmarc.{d}.",
            "TXT",
            quote_txt(f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{d}"),
            "DMARC policy",
        )
    )
    ip = public_address(settings)
    if ip:
        rtype = "A" if ipaddress.ip_address(ip).version == 4 else "AAAA"
        out_.append(Record(f"{host}.", rtype, ip, "the server's address"))
        out_.append(
            Record(
                f"{reverse_name(ip)}.",
                "PTR",
                f"{host}.",
                "set by the owner of the address (your hosting provider)",
            )
        )
    else:
        out_.append(Record(f"{host}.", "A", "<server IPv4 address>", "the server's address"))
        out_.append(
            Record(
                "<reverse of the server address>.",
                "PTR",
                f"{host}.",
                "set by the owner of the address (your hosting provider)",
            )
        )
    return out_


async def ensure_dkim(store: Store, settings: Settings, domain: str) -> list[dkim.DkimKey]:
    """Make the domain's DKIM keys unless it has them, and record the active
    selector; returns the keys to sign (and publish) with."""
    d = await store.get_domain(domain)
    if d is not None and d.dkim_selector:
        keys = await dkim.stored_keys(store, domain, d.dkim_selector)
        if keys:
            return keys
    rsa_key, ed_key = await dkim.make_keys(store, domain)
    await store.set_dkim_selector(domain, rsa_key.selector)
    return [rsa_key, ed_key]
