"""A real authoritative DNS server for tests, on loopback, built on dnslib.

Zone data uses the dict format of `postier.dns.fake.FakeResolver` (see its
docstring), so a zone written for unit tests serves real packets unchanged:
MX, A, AAAA, TXT (a string longer than 255 octets is split into 255-octet
character-strings), PTR, CNAME (followed inside the zone, the chain in the answer
section), NS, ``"TTL"``; a synthetic SOA in the authority section of NXDOMAIN and
NODATA answers (its MINIMUM is `negative_ttl`, for negative caching); ``SERVFAIL``
answers RCODE 2; ``TIMEOUT`` sends no reply at all.

The server answers UDP and TCP on the same port of 127.0.0.1 (a free one unless
given), each in a background thread. UDP answers larger than the requester's
size (512 octets, or its EDNS0 payload size) are truncated with TC set, so
resolvers retry over TCP as RFC 7766 §5 says.

Use from any test folder by importing the fixture in its conftest.py::

    from tests.support.dnsserver import dns_server  # noqa: F401  (pytest fixture)

    def test_x(dns_server):
        dns_server.set("example.test", {"MX": [(10, "mx.example.test")]})
        settings = DnsSettings(nameservers=(dns_server.nameserver,), timeout=2)

or as a context manager: ``with DnsTestServer(zones) as srv: ...``.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from dnslib import (
    AAAA,
    CNAME,
    MX,
    NS,
    PTR,
    QTYPE,
    RCODE,
    RR,
    SOA,
    TXT,
    A,
    DNSError,
    DNSRecord,
)
from dnslib.server import DNSHandler, TCPServer, UDPServer

from postier.dns.fake import Failure, Zones, as_list, normalize_zones, txt_records


class _Drop(DNSError):
    """Raised to send no reply (TIMEOUT); DNSHandler catches DNSError quietly."""


class _QuietLogger:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _split_255(s: bytes) -> list[bytes]:
    # RFC 1035 §3.3: a <character-string> is at most 255 octets
    return [s[i : i + 255] for i in range(0, len(s), 255)] or [b""]


def _rdata(rdtype: str, value: Any) -> Any:
    if rdtype == "A":
        return A(value)
    if rdtype == "AAAA":
        return AAAA(value)
    if rdtype == "MX":
        pref, host = value
        return MX(str(host).rstrip(".") + "." if str(host).strip(".") else ".", int(pref))
    if rdtype in ("TXT", "SPF"):
        strings: list[bytes] = []
        for s in value:
            strings.extend(_split_255(s) if len(s) > 255 else [s])
        return TXT(strings)
    if rdtype == "PTR":
        return PTR(str(value).rstrip(".") + ".")
    if rdtype == "CNAME":
        return CNAME(str(value).rstrip(".") + ".")
    if rdtype == "NS":
        return NS(str(value).rstrip(".") + ".")
    raise ValueError(f"test DNS server: unsupported record type {rdtype}")


class DnsTestServer:
    def __init__(
        self,
        zones: Zones | None = None,
        *,
        address: str = "127.0.0.1",
        port: int = 0,
        ttl: int = 300,
        negative_ttl: int = 60,
    ) -> None:
        self.zones = normalize_zones(zones or {})
        self.address = address
        self.requested_port = port
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.queries: list[tuple[str, str, str]] = []  # (name, type, "udp"/"tcp")
        self._lock = threading.Lock()
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self.port = 0

    # -- zone data -------------------------------------------------------------

    def set(self, name: str, data: Mapping[str, Any] | Failure) -> None:
        with self._lock:
            self.zones[name.rstrip(".").lower()] = data

    def _apex(self, name: str) -> str:
        candidates = [z for z in self.zones if name == z or name.endswith("." + z)]
        if candidates:
            return min(candidates, key=len)
        return ".".join(name.split(".")[-2:]) or "."

    def _soa(self, name: str) -> RR:
        apex = self._apex(name)
        soa = SOA(
            f"ns.{apex}.",
            f"hostmaster.{apex}.",
            (1, 3600, 600, 86400, self.negative_ttl),
        )
        return RR(apex + ".", QTYPE.SOA, rdata=soa, ttl=self.negative_ttl)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord | None:
        """The reply to one query, or None to send nothing (TIMEOUT)."""
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE.get(request.q.qtype)
        with self._lock:
            self.queries.append((qname, str(qtype), handler.protocol))
            zones = dict(self.zones)
        reply = request.reply()  # sets QR, AA and RD
        name = qname
        for _ in range(9):
            data = zones.get(name)
            if data is None:
                if not any(z.endswith("." + name) for z in zones):
                    reply.header.rcode = RCODE.NXDOMAIN
                reply.add_auth(self._soa(name))
                return reply
            if data is Failure.TIMEOUT:
                return None
            if data is Failure.SERVFAIL:
                return _servfail(request)
            assert isinstance(data, Mapping)
            ttl = int(data.get("TTL", self.ttl))
            value = data.get(qtype)
            if value is None and qtype != "CNAME" and "CNAME" in data:
                target = str(as_list(data["CNAME"])[0]).rstrip(".").lower()
                reply.add_answer(RR(name + ".", QTYPE.CNAME, rdata=CNAME(target + "."), ttl=ttl))
                name = target
                continue
            if value is None:
                value = data.get("*")
            if value is Failure.TIMEOUT:
                return None
            if value is Failure.SERVFAIL:
                return _servfail(request)
            if value is None:
                reply.add_auth(self._soa(name))  # NODATA (RFC 2308 §2.2)
                return reply
            records = txt_records(value) if qtype in ("TXT", "SPF") else as_list(value)
            for record in records:
                rdata = _rdata(str(qtype), record)
                reply.add_answer(RR(name + ".", getattr(QTYPE, str(qtype)), rdata=rdata, ttl=ttl))
            return reply
        return _servfail(request)  # CNAME chain too long or looping

    # -- lifecycle --------------------------------------------------------------

    @property
    def nameserver(self) -> str:
        """ "127.0.0.1:PORT", for ``dns.nameservers``."""
        return f"{self.address}:{self.port}"

    def start(self) -> DnsTestServer:
        last: OSError | None = None
        for _ in range(20):
            udp = _Udp((self.address, self.requested_port), _Handler)
            port = udp.server_address[1]
            try:
                tcp = _Tcp((self.address, port), _Handler)
            except OSError as e:  # the TCP port is taken: try another pair
                udp.server_close()
                last = e
                if self.requested_port:
                    raise
                continue
            break
        else:
            raise RuntimeError(f"test DNS server: no free UDP+TCP port pair ({last})")
        for srv in (udp, tcp):
            srv.resolver = self
            srv.logger = _QuietLogger()
            t = threading.Thread(
                target=srv.serve_forever, args=(0.05,), name=f"dns-{port}", daemon=True
            )
            t.start()
            self._servers.append(srv)
            self._threads.append(t)
        self.port = port
        return self

    def stop(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> DnsTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _servfail(request: DNSRecord) -> DNSRecord:
    reply = request.reply()
    reply.header.rcode = RCODE.SERVFAIL
    return reply


class _Handler(DNSHandler):
    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply = self.server.resolver.resolve(request, self)
        if reply is None:
            raise _Drop("TIMEOUT: no reply")
        rdata: bytes = reply.pack()
        if self.protocol == "udp":
            limit = 512  # RFC 1035 §4.2.1, or the EDNS0 payload size (RFC 6891 §6.2.3)
            for rr in request.ar:
                if rr.rtype == QTYPE.OPT:
                    limit = max(512, int(rr.rclass))
            if len(rdata) > limit:
                short = request.reply()  # the question, no records, TC set: ask over TCP
                short.header.rcode = reply.header.rcode
                short.header.tc = 1
                rdata = short.pack()
        return rdata


class _Udp(UDPServer):
    pass


class _Tcp(TCPServer):
    pass


@pytest.fixture
def dns_server() -> Iterator[DnsTestServer]:
    """A running test DNS server with an empty zone; fill it with `set()`."""
    server = DnsTestServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


__all__ = ["DnsTestServer", "dns_server"]
