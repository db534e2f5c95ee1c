"""FakeResolver: the zone-dict rules other tests rely on."""

from __future__ import annotations

import pytest

from postier.dns.fake import SERVFAIL, TIMEOUT, FakeResolver
from postier.dns.resolver import MxRecord, NoAnswer, NXDomain, TempFail, TxtRecord

ZONE = {
    "Example.TEST.": {
        "A": "127.0.0.1",
        "MX": [(0, ".")],
        "TXT": ["one", ("t", "wo"), b"\xff"],
        "TTL": 30,
    },
    "deep.sub.example.test": {"A": ["127.0.0.2"]},
    "loop1.test": {"CNAME": "loop2.test"},
    "loop2.test": {"CNAME": "loop1.test"},
    "alias.test": {"CNAME": "example.test."},
    "half.test": {"A": ["127.0.0.3"], "*": SERVFAIL},
    "slow.test": TIMEOUT,
}


async def test_records_and_ttl():
    f = FakeResolver(ZONE)
    a = await f.a("EXAMPLE.test.")
    assert (a.name, a.records, a.ttl) == ("EXAMPLE.test", ("127.0.0.1",), 30)
    assert (await f.mx("example.test")).records == (MxRecord(0, ""),)
    txt = await f.txt("example.test")
    assert txt.records == (TxtRecord((b"one",)), TxtRecord((b"t", b"wo")), TxtRecord((b"\xff",)))
    assert [r.text for r in txt.records] == ["one", "two", "\ufffd"]
    assert (await f.query("example.test", "mx")).records == ("0 .",)
    assert (await f.query("example.test", "TXT")).records == ('"one"', '"t" "wo"', '"\\255"')
    assert (await f.a("alias.test")).records == ("127.0.0.1",)
    assert (await f.query("alias.test", "CNAME")).records == ("example.test.",)
    assert f.queries[:2] == [("EXAMPLE.test", "A"), ("example.test", "MX")]


async def test_negative_answers():
    f = FakeResolver(ZONE, negative_ttl=12)
    with pytest.raises(NXDomain) as e:
        await f.a("nosuch.test")
    assert e.value.ttl == 12
    with pytest.raises(NoAnswer):
        await f.aaaa("example.test")
    with pytest.raises(NoAnswer):  # empty non-terminal (RFC 8020)
        await f.a("sub.example.test")
    for bad in ("a..test", "x" * 64 + ".test", ""):
        with pytest.raises(NXDomain):
            await f.a(bad)


async def test_failures():
    f = FakeResolver(ZONE)
    with pytest.raises(TempFail, match=r"^loop1\.test/A: CNAME chain too long or looping$"):
        await f.a("loop1.test")
    with pytest.raises(TempFail, match=r"^slow\.test/MX: timeout$"):
        await f.mx("slow.test")
    assert (await f.a("half.test")).records == ("127.0.0.3",)
    with pytest.raises(TempFail, match=r"^half\.test/TXT: SERVFAIL$"):
        await f.txt("half.test")
    f.set("slow.test", {"A": ["127.0.0.4"]})
    assert (await f.a("slow.test")).records == ("127.0.0.4",)
