"""SPF evaluator behaviour beyond the official suite: result object, headers, limits."""

from __future__ import annotations

import asyncio

import pytest

from postier.dns.fake import FakeResolver
from postier.dns.resolver import Answer, TxtRecord
from postier.mailauth.spf import (
    SpfLimits,
    SpfResult,
    Status,
    check_helo,
    check_host,
    check_mailfrom,
)

ZONE = {
    "example.test": {
        "TXT": ["v=spf1 ip4:192.0.2.0/24 mx include:_spf.example.test -all"],
        "MX": [(10, "mx.example.test")],
    },
    "mx.example.test": {"A": ["198.51.100.7"], "TXT": ["v=spf1 a -all"]},
    "_spf.example.test": {"TXT": ["v=spf1 ip6:2001:db8::/32 ~all"]},
    "soft.test": {"TXT": ["v=spf1 ~all"]},
    "neutral.test": {"TXT": ["v=spf1 ?all"]},
    "exp.test": {"TXT": ["v=spf1 -all exp=why.exp.test"]},
    "why.exp.test": {"TXT": ["%{i} may not send for %{d} (seen by %{r} at %{t})"]},
    "chain.test": {"TXT": ["v=spf1 " + " ".join(f"a:h{i}.chain.test" for i in range(5)) + " -all"]},
    **{f"h{i}.chain.test": {"A": ["203.0.113.1"]} for i in range(5)},
}


async def test_pass_result_and_headers():
    r = await check_mailfrom(
        FakeResolver(ZONE),
        "192.0.2.10",
        "alice@example.test",
        "mail.example.test",
        receiver="mx.postier.test",
    )
    assert r.status is Status.PASS
    assert r.result == "pass"
    assert r.mechanism == "ip4:192.0.2.0/24"
    assert r.explanation == ""
    assert r.problem == ""
    assert r.received_spf() == (
        "pass (mx.postier.test: domain of alice@example.test designates 192.0.2.10 as "
        'permitted sender) client-ip=192.0.2.10; envelope-from="alice@example.test"; '
        "helo=mail.example.test; receiver=mx.postier.test; identity=mailfrom; "
        'mechanism="ip4:192.0.2.0/24";'
    )
    assert r.auth_results() == "spf=pass smtp.mailfrom=example.test"


async def test_mx_include_and_softfail_through_include():
    fake = FakeResolver(ZONE)
    r = await check_mailfrom(fake, "198.51.100.7", "a@example.test", "h.test")
    assert (r.status, r.mechanism, r.lookups) == (Status.PASS, "mx", 1)
    r = await check_mailfrom(fake, "2001:db8::5", "a@example.test", "h.test")
    assert (r.status, r.mechanism, r.lookups) == (Status.PASS, "include:_spf.example.test", 2)
    r = await check_mailfrom(fake, "203.0.113.9", "a@example.test", "h.test")
    assert r.status is Status.FAIL
    assert r.mechanism == "-all"
    assert r.explanation == "203.0.113.9 is not allowed to send mail for example.test"


async def test_fail_explanation_macros_with_clock_and_receiver():
    r = await check_mailfrom(
        FakeResolver(ZONE),
        "2001:db8::1",
        "bob@exp.test",
        "h.test",
        receiver="mx.postier.test",
        clock=lambda: 1700000000.9,
    )
    assert r.status is Status.FAIL
    assert r.explanation == (
        "2.0.0.1.0.D.B.8" + ".0" * 23 + ".1 may not send for exp.test"
        " (seen by mx.postier.test at 1700000000)"
    )
    assert r.received_spf() == (
        "fail (mx.postier.test: domain of bob@exp.test does not designate 2001:db8::1 as "
        'permitted sender) client-ip="2001:db8::1"; envelope-from="bob@exp.test"; '
        "helo=h.test; receiver=mx.postier.test; identity=mailfrom; mechanism=-all;"
    )


@pytest.mark.parametrize(
    ("ip", "domain", "status", "comment"),
    [
        (
            "192.0.2.1",
            "soft.test",
            Status.SOFTFAIL,
            "r.test: transitioning domain of s@soft.test does not designate 192.0.2.1 as permitted "
            "sender",
        ),
        (
            "192.0.2.1",
            "neutral.test",
            Status.NEUTRAL,
            "r.test: 192.0.2.1 is neither permitted nor denied by domain of s@neutral.test",
        ),
        (
            "192.0.2.1",
            "nothing.test",
            Status.NONE,
            "r.test: domain of s@nothing.test does not designate permitted sender hosts",
        ),
    ],
)
async def test_comments(ip, domain, status, comment):
    r = await check_host(FakeResolver(ZONE), ip, domain, f"s@{domain}", "h.test", receiver="r.test")
    assert r.status is status
    assert r.comment() == comment


async def test_permerror_problem_is_reported_and_quoted():
    fake = FakeResolver({"bad.test": {"TXT": ["v=spf1 a:(x) -all"]}})
    r = await check_host(fake, "192.0.2.1", "bad.test", "s@bad.test", "h.test", receiver="r")
    assert r.status is Status.PERMERROR
    assert r.problem == "invalid domain-spec '(x)'"
    assert r.comment() == (
        "r: permanent error in processing domain of s@bad.test: invalid domain-spec '\\(x\\)'"
    )
    assert r.received_spf().endswith("""identity=mailfrom; problem="invalid domain-spec '(x)'";""")


async def test_helo_identity():
    fake = FakeResolver(ZONE)
    r = await check_helo(fake, "198.51.100.7", "mx.example.test")
    assert (r.status, r.sender, r.identity) == (Status.PASS, "postmaster@mx.example.test", "helo")
    assert r.auth_results() == "spf=pass smtp.helo=mx.example.test"
    r = await check_mailfrom(fake, "198.51.100.7", "", "mx.example.test")
    assert (r.status, r.sender, r.domain) == (
        Status.PASS,
        "postmaster@mx.example.test",
        "mx.example.test",
    )


async def test_lookup_limit_is_configurable():
    fake = FakeResolver(ZONE)
    r = await check_host(fake, "198.51.100.1", "chain.test", "s@chain.test", "h.test")
    assert r.status is Status.FAIL
    assert r.lookups == 5
    r = await check_host(
        fake, "198.51.100.1", "chain.test", "s@chain.test", "h.test", limits=SpfLimits(lookups=4)
    )
    assert r.status is Status.PERMERROR
    assert r.problem == "more than 4 DNS lookups"


async def test_void_and_mx_limits_are_configurable():
    fake = FakeResolver(
        {
            "v.test": {"TXT": ["v=spf1 a:x1.v.test a:x2.v.test ?all"]},
            "m.test": {"TXT": ["v=spf1 mx ?all"], "MX": [(i, f"m{i}.m.test") for i in range(3)]},
        }
    )
    assert (await check_host(fake, "192.0.2.1", "v.test", "s@v.test", "h")).status is Status.NEUTRAL
    r = await check_host(
        fake, "192.0.2.1", "v.test", "s@v.test", "h", limits=SpfLimits(void_lookups=1)
    )
    assert (r.status, r.problem) == (Status.PERMERROR, "more than 1 void DNS lookups")
    assert (await check_host(fake, "192.0.2.1", "m.test", "s@m.test", "h")).status is Status.NEUTRAL
    r = await check_host(fake, "192.0.2.1", "m.test", "s@m.test", "h", limits=SpfLimits(mx_names=2))
    assert (r.status, r.problem) == (Status.PERMERROR, "m.test has more than 2 MX records")


async def test_ptr_name_limit_is_configurable():
    zone = {
        "p.test": {"TXT": ["v=spf1 ptr -all"]},
        "1.2.0.192.in-addr.arpa": {"PTR": ["a.other.test", "b.other.test", "h.p.test"]},
        "h.p.test": {"A": ["192.0.2.1"]},
    }
    r = await check_host(FakeResolver(zone), "192.0.2.1", "p.test", "s@p.test", "h")
    assert r.status is Status.PASS
    r = await check_host(
        FakeResolver(zone), "192.0.2.1", "p.test", "s@p.test", "h", limits=SpfLimits(ptr_names=2)
    )
    assert r.status is Status.FAIL


class SlowResolver(FakeResolver):
    async def txt(self, name: str) -> Answer[TxtRecord]:
        await asyncio.sleep(10)
        raise AssertionError("not reached")


async def test_evaluation_time_limit_gives_temperror():
    r = await check_host(
        SlowResolver({}),
        "192.0.2.1",
        "slow.test",
        "s@slow.test",
        "h",
        limits=SpfLimits(timeout=0.05),
    )
    assert (r.status, r.problem) == (Status.TEMPERROR, "SPF evaluation took too long")


async def test_non_ip_client_is_a_caller_bug():
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        await check_host(FakeResolver({}), "not-an-ip", "x.test", "s@x.test", "h")


async def test_over_real_dns(dns_server):
    from postier.config.schema import DnsSettings
    from postier.dns.resolver import DnsResolver

    dns_server.set("real.test", {"TXT": [("v=spf1 ip4:127.0.0.0/8 ", "-all")]})
    resolver = DnsResolver(DnsSettings(nameservers=(dns_server.nameserver,), timeout=2))
    r = await check_mailfrom(resolver, "127.0.0.1", "x@real.test", "h.test")
    assert (r.status, r.mechanism) == (Status.PASS, "ip4:127.0.0.0/8")
    r = await check_mailfrom(resolver, "192.0.2.1", "x@real.test", "h.test")
    assert r.status is Status.FAIL


async def test_control_characters_of_a_record_never_reach_the_header_field():
    # found by fuzzing (tests/fuzz/corpus/spf): a TXT record may hold any octet
    fake = FakeResolver({"ctl.test": {"TXT": ["v=spf1 ip4:192.0.2.1/3\x1f2 -all"]}})
    r = await check_host(fake, "192.0.2.1", "ctl.test", "s@ctl.test", "h.test", receiver="r")
    assert r.problem == "invalid CIDR length /3\x1f2"
    assert r.received_spf().endswith('identity=mailfrom; problem="invalid CIDR length /3?2";')
    assert r.comment().endswith("invalid CIDR length /3?2")


def test_a_trailing_newline_is_not_a_dot_atom():
    r = SpfResult(Status.NONE, "d.test\n", "s@d.test", "192.0.2.1", "h.test\n")
    assert 'helo="h.test?"' in r.received_spf()
    assert r.auth_results() == 'spf=none smtp.mailfrom="d.test?"'
