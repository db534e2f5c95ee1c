"""DMARC (RFC 7489) and DKIM verification on the fake resolver."""

from __future__ import annotations

import pytest

from postier.dns.fake import SERVFAIL, FakeResolver
from postier.mailauth import dkimverify, dmarc
from postier.mailauth.dkimverify import DkimResult
from postier.mailauth.dmarc import DmarcParseError, Policy, parse_record
from tests.unit.mailauth.dkim_keys import rsa_key, sign

MSG = (
    b"From: Alice <alice@bank.test>\r\nTo: bob@example.test\r\nSubject: statement\r\n"
    b"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@bank.test>\r\n\r\n"
    b"Your statement is ready.\r\n"
)


def zones(policy: str = "v=DMARC1; p=reject") -> dict:
    return {
        "_dmarc.bank.test": {"TXT": [policy]},
        "sel._domainkey.bank.test": {"TXT": [rsa_key()[1]]},
        "sel._domainkey.other.test": {"TXT": [rsa_key()[1]]},
    }


@pytest.mark.parametrize(
    ("text", "rec"),
    [
        ("v=DMARC1; p=reject", dmarc.DmarcRecord(Policy.REJECT)),
        (
            "v=DMARC1;p=quarantine;sp=none;pct=20;adkim=s;aspf=s",
            dmarc.DmarcRecord(Policy.QUARANTINE, Policy.NONE, 20, "s", "s"),
        ),
        ("v=DMARC1; p=bogus; rua=mailto:d@x.test", dmarc.DmarcRecord(None, rua="mailto:d@x.test")),
        ("v=DMARC1; p=none; pct=300; adkim=x", dmarc.DmarcRecord(Policy.NONE, pct=100)),
    ],
)
def test_parse_record(text, rec):
    assert parse_record(text) == rec


@pytest.mark.parametrize("text", ["p=reject; v=DMARC1", "v=spf1 -all", "v=DMARC1; p"])
def test_parse_record_refuses(text):
    with pytest.raises(DmarcParseError):
        parse_record(text)


@pytest.mark.parametrize(
    ("a", "b", "mode", "ok"),
    [
        ("mail.bank.test", "bank.test", "r", True),
        ("mail.bank.test", "bank.test", "s", False),
        ("BANK.test.", "bank.test", "s", True),
        ("a.co.uk", "b.co.uk", "r", False),  # public suffix: different organisations
        ("x.a.co.uk", "a.co.uk", "r", True),
    ],
)
def test_alignment(a, b, mode, ok):
    assert dmarc.aligned(a, b, mode) is ok


async def test_dkim_verify_pass_fail_and_errors():
    r = FakeResolver(zones())
    assert await dkimverify.verify(MSG, r) == []
    signed = sign(MSG, "bank.test")
    [res] = await dkimverify.verify(signed, r)
    assert (res.status, res.domain, res.selector) == ("pass", "bank.test", "sel")
    assert res.auth_results().startswith("dkim=pass header.d=bank.test header.s=sel header.b=")
    [res] = await dkimverify.verify(signed.replace(b"is ready", b"is READY"), r)
    assert (res.status, res.reason) == ("fail", "body hash did not verify")
    [res] = await dkimverify.verify(sign(MSG, "nokey.test"), r)
    assert (res.status, res.reason) == ("permerror", "no key record")
    r.set("sel._domainkey.bank.test", SERVFAIL)
    [res] = await dkimverify.verify(signed, r)
    assert res.status == "temperror"


async def check(
    policy: str, *, spf=("none", ""), dkim_results=(), rand=lambda: 0.0, from_domains=("bank.test",)
):
    return await dmarc.check(
        FakeResolver(zones(policy)),
        list(from_domains),
        spf_status=spf[0],
        spf_domain=spf[1],
        dkim=list(dkim_results),
        rand=rand,
    )


async def test_dmarc_fail_reject_and_pass_by_dkim_or_spf():
    res = await check("v=DMARC1; p=reject")
    assert (res.status, res.policy, res.disposition) == ("fail", Policy.REJECT, Policy.REJECT)
    assert res.auth_results() == (
        "dmarc=fail (p=REJECT dis=REJECT no aligned spf or dkim pass) header.from=bank.test"
    )
    ok = DkimResult("pass", "mail.bank.test", "sel")
    res = await check("v=DMARC1; p=reject", dkim_results=[ok])
    assert (res.status, res.disposition) == ("pass", Policy.NONE)
    res = await check("v=DMARC1; p=reject; adkim=s", dkim_results=[ok])
    assert res.status == "fail"  # strict: mail.bank.test is not bank.test
    res = await check("v=DMARC1; p=reject", spf=("pass", "bounces.bank.test"))
    assert (res.status, res.reason) == ("pass", "spf aligned")
    res = await check(
        "v=DMARC1; p=reject",
        spf=("pass", "other.test"),
        dkim_results=[DkimResult("pass", "other.test", "sel")],
    )
    assert res.status == "fail"  # both passed, neither aligned


async def test_dmarc_pct_sampling_and_subdomain_policy():
    res = await check("v=DMARC1; p=reject; pct=50", rand=lambda: 0.6)
    assert res.disposition is Policy.QUARANTINE  # outside the sample: next weaker
    res = await check("v=DMARC1; p=reject; pct=50", rand=lambda: 0.4)
    assert res.disposition is Policy.REJECT
    res = await check("v=DMARC1; p=reject; sp=quarantine", from_domains=["news.bank.test"])
    assert (res.policy, res.record_domain) == (Policy.QUARANTINE, "bank.test")


async def test_dmarc_none_and_errors():
    res = await check("v=DMARC1; p=reject", from_domains=["nodmarc.test"])
    assert res.status == "none"
    res = await check("v=DMARC1; p=reject", from_domains=["bank.test", "other.test"])
    assert res.status == "permerror"
    res = await check("v=DMARC1; p=reject", from_domains=[])
    assert res.status == "none"
    r = FakeResolver({"_dmarc.bank.test": SERVFAIL})
    res = await dmarc.check(r, ["bank.test"], spf_status="none", spf_domain="", dkim=[])
    assert res.status == "temperror"
    # two DMARC records at one name: none applies (RFC 7489 §6.6.3)
    r = FakeResolver({"_dmarc.bank.test": {"TXT": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]}})
    res = await dmarc.check(r, ["bank.test"], spf_status="none", spf_domain="", dkim=[])
    assert res.status == "none"
