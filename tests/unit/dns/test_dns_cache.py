"""CachingResolver: TTLs, negative caching, no caching of failures, bound — injected clock."""

from __future__ import annotations

import pytest

from postier.config.schema import DnsSettings
from postier.dns.cache import CachingResolver
from postier.dns.fake import SERVFAIL, FakeResolver
from postier.dns.resolver import DnsResolver, NoAnswer, NXDomain, TempFail


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


ZONE = {
    "a.test": {"A": ["127.0.0.1"], "TTL": 60},
    "b.test": {"A": ["127.0.0.2"], "TTL": 0},
    "c.test": {"A": ["127.0.0.3"], "TTL": 999_999},
    "broken.test": SERVFAIL,
}


def make(**kw):
    fake = FakeResolver(ZONE, negative_ttl=30)
    clock = Clock()
    return fake, clock, CachingResolver(fake, clock=clock, **kw)


async def test_answer_cached_for_its_ttl():
    fake, clock, cache = make()
    assert (await cache.a("a.test")).records == ("127.0.0.1",)
    clock.now += 59.9
    assert (await cache.a("A.TEST.")).records == ("127.0.0.1",)
    assert fake.queries == [("a.test", "A")]
    clock.now += 0.1
    await cache.a("a.test")
    assert fake.queries == [("a.test", "A")] * 2


async def test_types_are_cached_apart():
    fake, _, cache = make()
    await cache.a("a.test")
    await cache.query("a.test", "A")
    with pytest.raises(NoAnswer):
        await cache.aaaa("a.test")
    assert fake.queries == [("a.test", "A"), ("a.test", "A"), ("a.test", "AAAA")]


async def test_zero_ttl_not_cached_and_max_ttl_caps():
    fake, clock, cache = make(max_ttl=100)
    await cache.a("b.test")
    await cache.a("b.test")
    assert fake.queries.count(("b.test", "A")) == 2
    await cache.a("c.test")
    clock.now += 99
    await cache.a("c.test")
    assert fake.queries.count(("c.test", "A")) == 1
    clock.now += 1
    await cache.a("c.test")
    assert fake.queries.count(("c.test", "A")) == 2


async def test_negative_answers_cached_for_negative_ttl_with_cap():
    fake, clock, cache = make()
    for _ in range(2):
        with pytest.raises(NXDomain) as e:
            await cache.mx("nosuch.test")
        assert e.value.ttl == 30
    assert fake.queries == [("nosuch.test", "MX")]
    clock.now += 30
    with pytest.raises(NXDomain):
        await cache.mx("nosuch.test")
    assert len(fake.queries) == 2
    fake2, clock2, capped = make(max_negative_ttl=10)
    with pytest.raises(NoAnswer):
        await capped.mx("a.test")
    clock2.now += 10
    with pytest.raises(NoAnswer):
        await capped.mx("a.test")
    assert fake2.queries == [("a.test", "MX")] * 2


async def test_tempfail_is_not_cached():
    fake, _, cache = make()
    for _ in range(3):
        with pytest.raises(TempFail):
            await cache.txt("broken.test")
    assert len(fake.queries) == 3


async def test_bounded_lru():
    fake, _, cache = make(max_entries=2)
    await cache.a("a.test")
    await cache.a("c.test")
    await cache.a("a.test")  # a is now the most recently used
    with pytest.raises(NoAnswer):
        await cache.txt("a.test")  # evicts c
    assert len(cache) == 2
    await cache.a("a.test")
    await cache.a("c.test")
    assert fake.queries == [("a.test", "A"), ("c.test", "A"), ("a.test", "TXT"), ("c.test", "A")]
    with pytest.raises(ValueError, match="max_entries must be at least 1"):
        CachingResolver(fake, max_entries=0)


async def test_ptr_key_is_the_normalized_address():
    fake = FakeResolver({"1." + "0." * 31 + "ip6.arpa": {"PTR": ["localhost.test"]}})
    cache = CachingResolver(fake, clock=Clock())
    assert (await cache.ptr("::1")).records == ("localhost.test",)
    assert (await cache.ptr("0:0:0::0:1")).records == ("localhost.test",)
    assert len(fake.queries) == 1
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        await cache.ptr("not-an-ip")


async def test_real_negative_ttl_from_soa(dns_server):
    dns_server.negative_ttl = 42
    dns_server.set("x.test", {"A": ["127.0.0.9"], "TTL": 7})
    clock = Clock()
    cache = CachingResolver(
        DnsResolver(DnsSettings(nameservers=(dns_server.nameserver,))), clock=clock
    )
    with pytest.raises(NXDomain) as e:
        await cache.a("y.test")
    assert e.value.ttl == 42
    assert (await cache.a("x.test")).ttl == 7
    await cache.a("x.test")
    with pytest.raises(NXDomain):
        await cache.a("y.test")
    assert [q[:2] for q in dns_server.queries] == [("y.test", "A"), ("x.test", "A")]
    clock.now += 42
    with pytest.raises(NXDomain):
        await cache.a("y.test")
    assert len(dns_server.queries) == 3
