"""`FakeResolver`: DNS as plain data, for tests of everything that resolves.

The model is mox's dns/mock.go: a dict of names to records, plus markers for
names (or single record types of a name) that fail. The same dict format feeds
the real test DNS server (tests/support/dnsserver.py), so a test can move from
the fake to real packets without rewriting its zone::

    FakeResolver({
        "example.test": {"MX": [(10, "mx1.example.test")], "A": ["127.0.0.2"],
                         "TXT": ["v=spf1 ip4:127.0.0.0/8 -all"]},
        "mx1.example.test": {"A": ["127.0.0.2"], "AAAA": ["::1"]},
        "long.example.test": {"TXT": [("first 255 octets...", "the rest")]},
        "alias.example.test": {"CNAME": "mx1.example.test"},
        "slow.example.test": TIMEOUT,                    # every type times out
        "half.example.test": {"A": ["127.0.0.3"], "*": TIMEOUT},  # others time out
        "broken.example.test": {"TXT": SERVFAIL},        # only TXT fails
        "ttl.example.test": {"A": ["127.0.0.4"], "TTL": 60},
    })

Rules:
- Names are case-insensitive, trailing dot ignored. A name not in the dict is
  `NXDomain`, unless it is a parent of a name in the dict (an empty non-terminal,
  RFC 8020): then every type is `NoAnswer`. A listed name without the asked type
  is `NoAnswer`.
- Record values: MX ``(preference, host)`` ("." or "" is the null MX); A, AAAA,
  PTR, NS as strings; CNAME one string; TXT a list of records, each a string, bytes,
  or a sequence of strings/bytes (the character-strings of one record). A single
  string where a list is expected is one record.
- ``TIMEOUT`` and ``SERVFAIL`` raise `TempFail` (reason "timeout" / "SERVFAIL");
  a name given a marker fails for every type; ``"*"`` inside a name's dict is the
  outcome of every type not listed.
- CNAMEs are followed (at most `max_cname_chain` links; a longer chain or a loop is
  `TempFail`, as a recursive resolver answers SERVFAIL).
- A name that cannot be put on the wire (empty label, label over 63 octets) is
  `NXDomain`, as with `DnsResolver`. Every lookup is appended to `queries`.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT

from postier.dns.resolver import (
    Answer,
    MxRecord,
    NoAnswer,
    NXDomain,
    TempFail,
    TxtRecord,
    reverse_name,
    strip_dot,
)


class Failure(enum.Enum):
    TIMEOUT = "timeout"
    SERVFAIL = "SERVFAIL"


TIMEOUT = Failure.TIMEOUT
SERVFAIL = Failure.SERVFAIL

#: name → {"MX": [...], "A": [...], ..., "*": Failure, "TTL": int} or a Failure
#: (values typed Any so heterogeneous dict literals in tests type-check)
Zones = Mapping[str, Any]


def normalize_zones(zones: Zones) -> dict[str, Mapping[str, Any] | Failure]:
    return {strip_dot(name).lower(): data for name, data in zones.items()}


def is_wire_name(name: str) -> bool:
    """Can `name` be put in a DNS query (RFC 1035 §2.3.4)?"""
    if name in ("", "."):
        return False
    labels = strip_dot(name).split(".")
    return all(0 < len(label.encode()) <= 63 for label in labels) and len(name.encode()) <= 253


def txt_records(value: Any) -> list[tuple[bytes, ...]]:
    """TXT values of the zone format → records as tuples of character-strings."""
    if isinstance(value, str | bytes):
        value = [value]
    records: list[tuple[bytes, ...]] = []
    for record in value:
        if isinstance(record, str | bytes):
            record = [record]
        records.append(tuple(s.encode() if isinstance(s, str) else bytes(s) for s in record))
    return records


def as_list(value: Any) -> list[Any]:
    if isinstance(value, str | bytes | tuple):
        return [value]
    return list(value)


class FakeResolver:
    def __init__(
        self,
        zones: Zones | None = None,
        *,
        ttl: int = 300,
        negative_ttl: int = 60,
        max_cname_chain: int = 8,
    ) -> None:
        self.zones = normalize_zones(zones or {})
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_cname_chain = max_cname_chain
        self.queries: list[tuple[str, str]] = []

    def set(self, name: str, data: Mapping[str, Any] | Failure) -> None:
        """Add or replace one name."""
        self.zones[strip_dot(name).lower()] = data

    def _lookup(self, name: str, rdtype: str) -> tuple[list[Any], int]:
        """The raw record values of `rdtype` at `name` (after CNAMEs), and their TTL."""
        asked = strip_dot(name)
        self.queries.append((asked, rdtype))
        if not is_wire_name(asked):
            raise NXDomain(asked, rdtype, "invalid name", ttl=self.negative_ttl)
        current = asked.lower()
        ttl = self.ttl
        for _ in range(self.max_cname_chain + 1):
            data = self.zones.get(current)
            if data is None:
                suffix = "." + current
                if any(n.endswith(suffix) for n in self.zones):
                    raise NoAnswer(asked, rdtype, ttl=self.negative_ttl)  # RFC 8020
                raise NXDomain(asked, rdtype, ttl=self.negative_ttl)
            if isinstance(data, Failure):
                raise TempFail(asked, rdtype, data.value)
            ttl = min(ttl, int(data.get("TTL", self.ttl)))
            value = data.get(rdtype)
            if value is None and rdtype != "CNAME" and "CNAME" in data:
                current = strip_dot(as_list(data["CNAME"])[0]).lower()
                continue
            if value is None:
                value = data.get("*")
            if isinstance(value, Failure):
                raise TempFail(asked, rdtype, value.value)
            if value is None:
                raise NoAnswer(asked, rdtype, ttl=self.negative_ttl)
            records = txt_records(value) if rdtype in ("TXT", "SPF") else as_list(value)
            if not records:
                raise NoAnswer(asked, rdtype, ttl=self.negative_ttl)
            return records, ttl
        raise TempFail(asked, rdtype, "CNAME chain too long or looping")

    async def query(self, name: str, rdtype: str) -> Answer[str]:
        rdtype = rdtype.upper()
        records, ttl = self._lookup(name, rdtype)
        return Answer(strip_dot(name), tuple(_presentation(rdtype, r) for r in records), ttl)

    async def mx(self, domain: str) -> Answer[MxRecord]:
        records, ttl = self._lookup(domain, "MX")
        mxs = tuple(MxRecord(int(pref), strip_dot(str(host))) for pref, host in records)
        return Answer(strip_dot(domain), mxs, ttl)

    async def a(self, host: str) -> Answer[str]:
        records, ttl = self._lookup(host, "A")
        return Answer(strip_dot(host), tuple(str(ipaddress.IPv4Address(r)) for r in records), ttl)

    async def aaaa(self, host: str) -> Answer[str]:
        records, ttl = self._lookup(host, "AAAA")
        return Answer(strip_dot(host), tuple(str(ipaddress.IPv6Address(r)) for r in records), ttl)

    async def txt(self, name: str) -> Answer[TxtRecord]:
        records, ttl = self._lookup(name, "TXT")
        return Answer(strip_dot(name), tuple(TxtRecord(r) for r in records), ttl)

    async def ptr(self, ip: str) -> Answer[str]:
        rname = reverse_name(ip)
        records, ttl = self._lookup(rname, "PTR")
        return Answer(rname, tuple(strip_dot(str(r)) for r in records), ttl)


def _presentation(rdtype: str, record: Any) -> str:
    """A record of the zone format in presentation format, as dnspython writes it."""
    cls = dns.rdataclass.IN
    if rdtype in ("TXT", "SPF"):
        rd: dns.rdata.Rdata = dns.rdtypes.ANY.TXT.TXT(cls, dns.rdatatype.TXT, record)
        return rd.to_text()
    if rdtype == "MX":
        pref, host = record
        host = strip_dot(str(host))
        return f"{int(pref)} {host}." if host else f"{int(pref)} ."
    if rdtype in ("CNAME", "PTR", "NS"):
        return strip_dot(str(record)) + "."
    if isinstance(record, Sequence) and not isinstance(record, str):
        record = " ".join(str(x) for x in record)
    return dns.rdata.from_text(cls, dns.rdatatype.from_text(rdtype), str(record)).to_text()
