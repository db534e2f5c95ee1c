"""The async DNS resolver seam: the `Resolver` protocol, typed answers, errors.

Rules:
- Every lookup returns an `Answer` (records plus the TTL they may be cached for) or
  raises one of three errors, and only these: `NXDomain` (the name does not exist:
  permanent), `NoAnswer` (the name exists but has no records of that type: NODATA)
  and `TempFail` (SERVFAIL, REFUSED, timeout, network trouble: try again later).
  Negative errors carry the negative-caching TTL from the SOA (RFC 2308 §5).
- Names are given and returned without the trailing dot; lookups never use a
  search list (RFC 5321 §5.1: mail names are fully qualified). A name that cannot
  be put on the wire (empty label, label over 63 octets, name over 255 octets)
  cannot exist, so it is `NXDomain`, never an exception of another kind.
- CNAMEs are followed by the resolver; answers carry the records of the target.
- `DnsResolver` asks the configured nameservers ("ip" or "ip:port", IPv6 as
  "[ip]:port") with dnspython; with no nameservers configured it uses the system
  configuration (/etc/resolv.conf). `OfflineResolver` answers `NXDomain` to
  everything at once and never opens a socket (``dns.offline = true``).
- `make_resolver` is the one place that turns `DnsSettings` into a resolver; it
  wraps the network resolver in the TTL cache of `postier.dns.cache`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename

from postier.config.schema import DnsSettings

T = TypeVar("T")

#: negative TTL used when an answer carries no SOA to take it from
DEFAULT_NEGATIVE_TTL = 300


class DnsError(Exception):
    """Base of the three lookup outcomes that are not an answer."""

    def __init__(self, name: str, rdtype: str, reason: str = "", *, ttl: int = 0) -> None:
        self.name = name
        self.rdtype = rdtype
        self.reason = reason
        self.ttl = ttl  # how long this negative outcome may be cached (0: do not)
        super().__init__(f"{name}/{rdtype}: {reason or self.default_reason}")

    default_reason = "DNS error"

    @property
    def is_permanent(self) -> bool:
        return not isinstance(self, TempFail)


class NXDomain(DnsError):
    """RCODE 3 (Name Error): the name does not exist. Permanent."""

    default_reason = "no such domain"


class NoAnswer(DnsError):
    """RCODE 0 with no records of the asked type (NODATA). Permanent for this type."""

    default_reason = "no records of this type"


class TempFail(DnsError):
    """SERVFAIL, REFUSED, timeout or network error: the answer is unknown for now."""

    default_reason = "temporary DNS failure"


@dataclass(frozen=True)
class MxRecord:
    preference: int
    host: str  # no trailing dot; "" for the null MX target "." (RFC 7505)

    @property
    def is_null(self) -> bool:
        return self.host == ""


@dataclass(frozen=True)
class TxtRecord:
    """One TXT record: its character-strings, as sent (RFC 1035 §3.3.14)."""

    strings: tuple[bytes, ...]

    @property
    def data(self) -> bytes:
        """The strings concatenated without separator (RFC 7208 §3.3, RFC 6376 §3.6.2.2)."""
        return b"".join(self.strings)

    @property
    def text(self) -> str:
        """`data` decoded as UTF-8, undecodable bytes replaced (for display)."""
        return self.data.decode("utf-8", "replace")


@dataclass(frozen=True)
class Answer(Generic[T]):
    name: str  # the name asked, without trailing dot
    records: tuple[T, ...]  # never empty: no records is `NoAnswer`
    ttl: int  # seconds these records may be cached (minimum over any CNAME chain)


class Resolver(Protocol):
    """What everything that resolves depends on (DnsResolver, FakeResolver, caches)."""

    async def query(self, name: str, rdtype: str) -> Answer[str]:
        """Any type; records in presentation format (``dns.rdata.Rdata.to_text``)."""
        ...

    async def mx(self, domain: str) -> Answer[MxRecord]: ...

    async def a(self, host: str) -> Answer[str]: ...

    async def aaaa(self, host: str) -> Answer[str]: ...

    async def txt(self, name: str) -> Answer[TxtRecord]: ...

    async def ptr(self, ip: str) -> Answer[str]:
        """Host names of the reverse name of `ip`; ValueError if `ip` is no address."""
        ...


def strip_dot(name: str) -> str:
    return name[:-1] if name.endswith(".") else name


def reverse_name(ip: str) -> str:
    """The in-addr.arpa / ip6.arpa name of an address (RFC 1035 §3.5, RFC 3596 §2.5)."""
    return dns.reversename.from_address(str(ipaddress.ip_address(ip))).to_text(omit_final_dot=True)


def parse_nameserver(text: str) -> tuple[str, int]:
    """ "ip", "ip:port", "[ipv6]" or "[ipv6]:port" → (ip, port); ValueError if not."""
    host, port = text.strip(), 53
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise ValueError(f"bad nameserver {text!r}: missing ]")
        rest = host[end + 1 :]
        host = host[1:end]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"bad nameserver {text!r}: bad port")
            port = int(rest[1:])
    elif host.count(":") == 1:
        host, _, port_text = host.partition(":")
        if not port_text.isdigit():
            raise ValueError(f"bad nameserver {text!r}: bad port")
        port = int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"bad nameserver {text!r}: not an IP address") from None
    if not 0 < port < 65536:
        raise ValueError(f"bad nameserver {text!r}: port out of range")
    return host, port


def _negative_ttl(response: dns.message.Message | None) -> int:
    """RFC 2308 §5: the negative TTL is the smaller of the SOA's TTL and MINIMUM."""
    if response is not None:
        for rrset in response.authority:
            if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
                return int(min(rrset.ttl, rrset[0].minimum))
    return DEFAULT_NEGATIVE_TTL


class DnsResolver:
    """The network resolver (dnspython). No caching here: see `CachingResolver`."""

    def __init__(self, settings: DnsSettings) -> None:
        self.settings = settings
        if settings.nameservers:
            r = dns.asyncresolver.Resolver(configure=False)
            r.nameservers = [
                dns.nameserver.Do53Nameserver(*parse_nameserver(ns)) for ns in settings.nameservers
            ]
        else:
            try:
                r = dns.asyncresolver.Resolver(configure=True)
            except dns.resolver.NoResolverConfiguration:
                r = dns.asyncresolver.Resolver(configure=False)
                r.nameservers = []
        r.cache = None
        r.timeout = settings.timeout
        r.lifetime = settings.timeout
        self._resolver = r

    async def _resolve(self, name: str, rdtype: str) -> dns.resolver.Answer:
        name = strip_dot(name)
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, UnicodeError, ValueError) as e:
            # A name that cannot be asked cannot exist (RFC 1035 §2.3.4 limits).
            raise NXDomain(name, rdtype, f"invalid name: {e}") from None
        if not self._resolver.nameservers:
            raise TempFail(name, rdtype, "no nameservers configured")
        try:
            return await self._resolver.resolve(qname, rdtype, search=False)
        except dns.resolver.NXDOMAIN as e:
            responses = e.kwargs.get("responses") or {}
            resp = next(iter(responses.values()), None)
            raise NXDomain(name, rdtype, ttl=_negative_ttl(resp)) from None
        except dns.resolver.NoAnswer as e:
            resp = e.kwargs.get("response")
            raise NoAnswer(name, rdtype, ttl=_negative_ttl(resp)) from None
        except dns.resolver.LifetimeTimeout:
            raise TempFail(name, rdtype, "timeout") from None
        except dns.resolver.NoNameservers as e:
            raise TempFail(name, rdtype, f"no usable answer ({e})") from None
        except dns.exception.DNSException as e:
            raise TempFail(name, rdtype, str(e) or type(e).__name__) from None
        except OSError as e:
            raise TempFail(name, rdtype, f"network error: {e}") from None

    async def _answer(
        self, name: str, rdtype: str, convert: Callable[[dns.rdata.Rdata], T]
    ) -> Answer[T]:
        ans = await self._resolve(name, rdtype)
        records = tuple(convert(rd) for rd in ans)
        if not records:
            raise NoAnswer(strip_dot(name), rdtype, ttl=DEFAULT_NEGATIVE_TTL)
        ttl = int(ans.chaining_result.minimum_ttl)
        return Answer(strip_dot(name), records, ttl)

    async def query(self, name: str, rdtype: str) -> Answer[str]:
        return await self._answer(name, rdtype, lambda rd: rd.to_text())

    async def mx(self, domain: str) -> Answer[MxRecord]:
        return await self._answer(
            domain,
            "MX",
            lambda rd: MxRecord(
                int(rd.preference),  # type: ignore[attr-defined]
                strip_dot(rd.exchange.to_text()),  # type: ignore[attr-defined]
            ),
        )

    async def a(self, host: str) -> Answer[str]:
        return await self._answer(host, "A", lambda rd: str(rd.address))  # type: ignore[attr-defined]

    async def aaaa(self, host: str) -> Answer[str]:
        return await self._answer(
            host,
            "AAAA",
            lambda rd: str(ipaddress.IPv6Address(rd.address)),  # type: ignore[attr-defined]
        )

    async def txt(self, name: str) -> Answer[TxtRecord]:
        return await self._answer(
            name,
            "TXT",
            lambda rd: TxtRecord(tuple(rd.strings)),  # type: ignore[attr-defined]
        )

    async def ptr(self, ip: str) -> Answer[str]:
        return await self._answer(
            reverse_name(ip),
            "PTR",
            lambda rd: strip_dot(rd.target.to_text()),  # type: ignore[attr-defined]
        )


class OfflineResolver:
    """``dns.offline = true``: every name does not exist, answered at once, no packet."""

    def _fail(self, name: str, rdtype: str) -> NXDomain:
        return NXDomain(strip_dot(name), rdtype, "DNS is offline (dns.offline = true)")

    async def query(self, name: str, rdtype: str) -> Answer[str]:
        raise self._fail(name, rdtype)

    async def mx(self, domain: str) -> Answer[MxRecord]:
        raise self._fail(domain, "MX")

    async def a(self, host: str) -> Answer[str]:
        raise self._fail(host, "A")

    async def aaaa(self, host: str) -> Answer[str]:
        raise self._fail(host, "AAAA")

    async def txt(self, name: str) -> Answer[TxtRecord]:
        raise self._fail(name, "TXT")

    async def ptr(self, ip: str) -> Answer[str]:
        raise self._fail(reverse_name(ip), "PTR")


def make_resolver(settings: DnsSettings) -> Resolver:
    """The resolver the server uses: offline, or the network resolver behind a cache."""
    from postier.dns.cache import CachingResolver

    if settings.offline:
        return OfflineResolver()
    return CachingResolver(DnsResolver(settings))
