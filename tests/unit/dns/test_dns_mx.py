"""route(): MX ordering, implicit MX, null MX, failures — on FakeResolver."""

from __future__ import annotations

import random
from typing import Any

from postier.dns.fake import SERVFAIL, TIMEOUT, FakeResolver
from postier.dns.mx import Host, RouteKind, route

ZONE = {
    "example.test": {
        "MX": [(20, "mx2.example.test"), (10, "mx1.example.test"), (30, "mx3.example.test")],
        "TTL": 120,
    },
    "mx1.example.test": {"A": ["127.0.0.11"], "AAAA": ["::1"]},
    "mx2.example.test": {"A": ["127.0.0.12"]},
    "mx3.example.test": {"AAAA": ["2001:db8::3"]},
    "implicit.test": {"A": ["127.0.0.20"], "AAAA": ["2001:db8::20"]},
    "noaddr.test": {"TXT": ["hello"]},
    "null.test": {"MX": [(0, ".")]},
    "nullmixed.test": {"MX": [(0, "."), (10, "mx1.example.test")]},
    "broken.test": {"MX": SERVFAIL},
    "slow.test": TIMEOUT,
    "alias.test": {"MX": [(10, "cname.alias.test")]},
    "cname.alias.test": {"CNAME": "mx2.example.test"},
    "ipmx.test": {"MX": [(10, "192.0.2.1")]},
    "dup.test": {"MX": [(10, "mx1.example.test"), (20, "MX1.example.test.")]},
    "tempmx.test": {"MX": [(10, "down.tempmx.test"), (20, "gone.tempmx.test")]},
    "down.tempmx.test": TIMEOUT,
    "halfmx.test": {"MX": [(10, "down.tempmx.test"), (20, "mx2.example.test")]},
    "ghost.test": {"MX": [(10, "nowhere.ghost.test")]},
}


async def test_mx_sorted_by_preference_with_addresses():
    r = await route(FakeResolver(ZONE), "Example.TEST.")
    assert r.kind is RouteKind.MX
    assert r.domain == "example.test"
    assert r.ttl == 120
    assert r.hosts == (
        Host("mx1.example.test", 10, ("127.0.0.11", "::1"), 300),
        Host("mx2.example.test", 20, ("127.0.0.12",), 300),
        Host("mx3.example.test", 30, ("2001:db8::3",), 300),
    )
    assert [a for _, a in r.addresses] == ["127.0.0.11", "::1", "127.0.0.12", "2001:db8::3"]
    assert r.ok
    assert not r.temporary
    assert not r.permanent
    assert [(m.preference, m.host) for m in r.records] == [
        (20, "mx2.example.test"),
        (10, "mx1.example.test"),
        (30, "mx3.example.test"),
    ]


async def test_ipv6_off_asks_no_aaaa():
    fake = FakeResolver(ZONE)
    r = await route(fake, "example.test", ipv6=False)
    assert [h.addresses for h in r.hosts] == [("127.0.0.11",), ("127.0.0.12",), ()]
    assert not any(t == "AAAA" for _, t in fake.queries)


async def test_equal_preferences_are_shuffled_lower_first():
    zone: dict[str, Any] = {
        "eq.test": {
            "MX": [
                (10, "a.eq.test"),
                (10, "b.eq.test"),
                (10, "c.eq.test"),
                (5, "first.eq.test"),
                (20, "last.eq.test"),
            ]
        }
    }
    for n in "abc":
        zone[f"{n}.eq.test"] = {"A": ["127.0.0.1"]}
    zone["first.eq.test"] = zone["last.eq.test"] = {"A": ["127.0.0.1"]}
    seen = set()
    for seed in range(40):
        r = await route(FakeResolver(zone), "eq.test", rng=random.Random(seed))
        names = [h.name for h in r.hosts]
        assert names[0] == "first.eq.test"
        assert names[-1] == "last.eq.test"
        seen.add(tuple(names[1:4]))
    assert len(seen) == 6  # every order of the three equal-preference hosts occurs
    # the same rng seed gives the same order (deterministic tests downstream)
    one = await route(FakeResolver(zone), "eq.test", rng=random.Random(7))
    two = await route(FakeResolver(zone), "eq.test", rng=random.Random(7))
    assert one.hosts == two.hosts


async def test_no_mx_is_implicit_mx():
    r = await route(FakeResolver(ZONE), "implicit.test")
    assert r.kind is RouteKind.IMPLICIT
    assert r.hosts == (Host("implicit.test", 0, ("127.0.0.20", "2001:db8::20"), 300),)
    assert r.ok


async def test_no_mx_no_address_is_permanent():
    r = await route(FakeResolver(ZONE), "noaddr.test")
    assert r.kind is RouteKind.IMPLICIT
    assert r.permanent
    assert not r.temporary
    assert r.detail == "noaddr.test: no address records"


async def test_null_mx_is_permanent():
    fake = FakeResolver(ZONE)
    r = await route(fake, "null.test")
    assert r.kind is RouteKind.NULL_MX
    assert r.hosts == ()
    assert r.permanent
    assert r.detail == "null.test accepts no mail (null MX, RFC 7505)"
    assert fake.queries == [("null.test", "MX")]  # no address lookups


async def test_null_mx_mixed_with_hosts_is_skipped():
    r = await route(FakeResolver(ZONE), "nullmixed.test")
    assert r.kind is RouteKind.MX
    assert [h.name for h in r.hosts] == ["mx1.example.test"]


async def test_nxdomain_is_permanent():
    r = await route(FakeResolver(ZONE), "nosuch.example")
    assert r.kind is RouteKind.NXDOMAIN
    assert r.permanent
    assert r.detail == "nosuch.example: no such domain"


async def test_servfail_and_timeout_are_temporary():
    for domain, reason in (("broken.test", "SERVFAIL"), ("slow.test", "timeout")):
        r = await route(FakeResolver(ZONE), domain)
        assert r.kind is RouteKind.TEMPFAIL
        assert r.temporary
        assert not r.permanent
        assert r.detail == f"MX lookup: {domain}/MX: {reason}"


async def test_mx_host_behind_cname_is_followed():
    r = await route(FakeResolver(ZONE), "alias.test")
    assert r.hosts == (Host("cname.alias.test", 10, ("127.0.0.12",), 300),)


async def test_mx_host_that_is_an_ip_is_not_used():
    fake = FakeResolver(ZONE)
    r = await route(fake, "ipmx.test")
    assert r.hosts == (Host("192.0.2.1", 10, error="MX target is an IP address, not a host name"),)
    assert r.permanent
    assert fake.queries == [("ipmx.test", "MX")]


async def test_duplicate_host_keeps_first():
    r = await route(FakeResolver(ZONE), "dup.test")
    assert [(h.name, h.preference) for h in r.hosts] == [("mx1.example.test", 10)]


async def test_host_failures_temporary_vs_permanent():
    r = await route(FakeResolver(ZONE), "tempmx.test")
    assert r.hosts[0].temporary
    assert r.hosts[0].error == "down.tempmx.test/A: timeout"
    assert r.hosts[1].error == "gone.tempmx.test: no such host"
    assert r.temporary
    assert r.detail == "down.tempmx.test/A: timeout; gone.tempmx.test: no such host"
    r = await route(FakeResolver(ZONE), "ghost.test")
    assert r.permanent
    assert r.detail == "nowhere.ghost.test: no such host"
    r = await route(FakeResolver(ZONE), "halfmx.test")
    assert r.ok
    assert [a for _, a in r.addresses] == ["127.0.0.12"]


async def test_max_hosts_limit():
    zone: dict[str, Any] = {"many.test": {"MX": [(i, f"h{i}.many.test") for i in range(15)]}}
    for i in range(15):
        zone[f"h{i}.many.test"] = {"A": [f"127.0.1.{i}"]}
    fake = FakeResolver(zone)
    r = await route(fake, "many.test", max_hosts=3)
    assert [h.name for h in r.hosts] == ["h0.many.test", "h1.many.test", "h2.many.test"]
    assert sum(1 for _, t in fake.queries if t == "A") == 3
    r = await route(FakeResolver(zone), "many.test")
    assert len(r.hosts) == 10  # the default


async def test_address_literals_need_no_dns():
    fake = FakeResolver({})
    r = await route(fake, "[127.0.0.5]")
    assert r.kind is RouteKind.LITERAL
    assert [a for _, a in r.addresses] == ["127.0.0.5"]
    r = await route(fake, "[IPv6:2001:DB8::1]")
    assert [a for _, a in r.addresses] == ["2001:db8::1"]
    r = await route(fake, "[300.1.1.1]")
    assert r.permanent
    assert r.detail == "bad address literal [300.1.1.1]"
    assert fake.queries == []
