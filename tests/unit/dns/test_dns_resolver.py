"""DnsResolver against the test DNS server (real UDP/TCP on loopback); offline mode."""

from __future__ import annotations

import socket

import pytest

from postier.config.schema import DnsSettings
from postier.dns.cache import CachingResolver
from postier.dns.fake import SERVFAIL, TIMEOUT
from postier.dns.mx import Host, RouteKind, route
from postier.dns.resolver import (
    DnsResolver,
    MxRecord,
    NoAnswer,
    NXDomain,
    OfflineResolver,
    TempFail,
    TxtRecord,
    make_resolver,
    parse_nameserver,
)

LONG = "v=spf1 " + " ".join(f"ip4:192.0.2.{i}" for i in range(60)) + " -all"

ZONE = {
    "example.test": {
        "MX": [(10, "mx1.example.test"), (20, "mx2.example.test")],
        "A": ["127.0.0.2"],
        "TXT": ["v=spf1 a -all", ("two ", "strings")],
        "TTL": 120,
    },
    "mx1.example.test": {"A": ["127.0.0.3"], "AAAA": ["::1"]},
    "mx2.example.test": {"CNAME": "mx1.example.test"},
    "long.example.test": {"TXT": [LONG]},
    "2.0.0.127.in-addr.arpa": {"PTR": ["example.test"]},
    "null.test": {"MX": [(0, ".")]},
    "deep.sub.example.test": {"A": ["127.0.0.9"]},
    "broken.test": SERVFAIL,
    "slow.test": TIMEOUT,
    "halfslow.test": {"A": ["127.0.0.7"], "*": TIMEOUT},
}


@pytest.fixture
def resolver(dns_server):
    for name, data in ZONE.items():
        dns_server.set(name, data)
    return DnsResolver(DnsSettings(nameservers=(dns_server.nameserver,), timeout=0.5))


async def test_typed_answers(resolver):
    mx = await resolver.mx("example.test")
    assert mx.name == "example.test"
    assert mx.records == (MxRecord(10, "mx1.example.test"), MxRecord(20, "mx2.example.test"))
    assert mx.ttl == 120
    assert (await resolver.a("Example.Test.")).records == ("127.0.0.2",)
    assert (await resolver.aaaa("mx1.example.test")).records == ("::1",)
    txt = await resolver.txt("example.test")
    assert txt.records == (TxtRecord((b"v=spf1 a -all",)), TxtRecord((b"two ", b"strings")))
    assert txt.records[1].data == b"two strings"
    assert (await resolver.ptr("127.0.0.2")).records == ("example.test",)
    assert (await resolver.mx("null.test")).records == (MxRecord(0, ""),)
    q = await resolver.query("example.test", "MX")
    assert q.records == ("10 mx1.example.test.", "20 mx2.example.test.")


async def test_cname_is_followed(resolver):
    ans = await resolver.a("mx2.example.test")
    assert ans.records == ("127.0.0.3",)
    assert ans.name == "mx2.example.test"


async def test_long_txt_is_split_and_fetched_over_tcp(resolver, dns_server):
    ans = await resolver.txt("long.example.test")
    (record,) = ans.records
    assert record.data.decode() == LONG
    assert [len(s) for s in record.strings] == [255, 255, 255, len(LONG) - 765]
    assert ("long.example.test", "TXT", "udp") in dns_server.queries
    assert ("long.example.test", "TXT", "tcp") in dns_server.queries  # after TC=1


async def test_nxdomain_carries_soa_negative_ttl(resolver):
    with pytest.raises(NXDomain) as e:
        await resolver.a("nosuch.example.test")
    assert e.value.ttl == 60
    assert e.value.is_permanent
    assert str(e.value) == "nosuch.example.test/A: no such domain"


async def test_nodata_and_empty_non_terminal_are_noanswer(resolver):
    with pytest.raises(NoAnswer) as e:
        await resolver.mx("mx1.example.test")
    assert e.value.ttl == 60
    with pytest.raises(NoAnswer):
        await resolver.a("sub.example.test")  # exists only as parent of deep.sub


async def test_servfail_and_timeout_are_tempfail(resolver):
    with pytest.raises(TempFail) as e:
        await resolver.txt("broken.test")
    assert not e.value.is_permanent
    with pytest.raises(TempFail) as e:
        await resolver.txt("slow.test")
    assert e.value.reason == "timeout"
    assert (await resolver.a("halfslow.test")).records == ("127.0.0.7",)
    with pytest.raises(TempFail):
        await resolver.aaaa("halfslow.test")


async def test_unaskable_names_are_nxdomain_without_a_packet(resolver, dns_server):
    for name in ("a..b.test", "x" * 64 + ".test", ("a" * 60 + ".") * 5 + "test"):
        with pytest.raises(NXDomain):
            await resolver.a(name)
    assert dns_server.queries == []


async def test_refused_port_is_tempfail():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    r = DnsResolver(DnsSettings(nameservers=(f"127.0.0.1:{port}",), timeout=0.3))
    with pytest.raises(TempFail):
        await r.a("example.test")


async def test_route_over_real_dns(resolver):
    r = await route(CachingResolver(resolver), "example.test")
    assert r.kind is RouteKind.MX
    assert r.hosts == (
        Host("mx1.example.test", 10, ("127.0.0.3", "::1"), 300),
        Host("mx2.example.test", 20, ("127.0.0.3", "::1"), 300),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5300", ("127.0.0.1", 5300)),
        ("::1", ("::1", 53)),
        ("[::1]", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        (" 10.0.0.1 ", ("10.0.0.1", 53)),
    ],
)
def test_parse_nameserver(text, expected):
    assert parse_nameserver(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ns.example.test", "bad nameserver 'ns.example.test': not an IP address"),
        ("127.0.0.1:x", "bad nameserver '127.0.0.1:x': bad port"),
        ("127.0.0.1:0", "bad nameserver '127.0.0.1:0': port out of range"),
        ("127.0.0.1:65536", "bad nameserver '127.0.0.1:65536': port out of range"),
        ("[::1", "bad nameserver '[::1': missing ]"),
        ("[::1]53", "bad nameserver '[::1]53': bad port"),
    ],
)
def test_parse_nameserver_errors(text, message):
    with pytest.raises(ValueError, match="^" + __import__("re").escape(message) + "$"):
        parse_nameserver(text)


async def test_offline_answers_nxdomain_and_opens_no_socket(monkeypatch):
    def no_socket(*args, **kwargs):
        raise AssertionError("offline resolver opened a socket")

    monkeypatch.setattr(socket, "socket", no_socket)
    monkeypatch.setattr(socket, "getaddrinfo", no_socket)
    r = make_resolver(DnsSettings(offline=True, nameservers=("127.0.0.1:53",)))
    assert isinstance(r, OfflineResolver)
    for call in (
        r.mx("example.test"),
        r.a("example.test"),
        r.aaaa("example.test"),
        r.txt("example.test"),
        r.ptr("127.0.0.1"),
        r.query("example.test", "NS"),
    ):
        with pytest.raises(NXDomain) as e:
            await call
        assert e.value.reason == "DNS is offline (dns.offline = true)"
    rt = await route(r, "example.test")
    assert rt.kind is RouteKind.NXDOMAIN
    assert rt.permanent


def test_make_resolver_network_is_cached(dns_server):
    r = make_resolver(DnsSettings(nameservers=(dns_server.nameserver,)))
    assert isinstance(r, CachingResolver)
    assert isinstance(r.inner, DnsResolver)
    with pytest.raises(ValueError, match="not an IP address"):
        make_resolver(DnsSettings(nameservers=("dns.example",)))
