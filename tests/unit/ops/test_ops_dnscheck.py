"""dns-check rules on the fake resolver: every ✓, and every ✗ with its exact fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from postier.dns.fake import SERVFAIL, FakeResolver
from postier.mailauth import dkim
from postier.ops.dnscheck import Check, check_domain

HOST = "mail.example.test"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> list[dkim.DkimKey]:
    data = tmp_path_factory.mktemp("dkim")
    rsa, ed = dkim.generate_keys(data, "example.test", year=2025, rsa_bits=1024)
    return [rsa, ed]


def good_zone(keys: list[dkim.DkimKey]) -> dict[str, Any]:
    zone: dict[str, Any] = {
        "example.test": {"MX": [(10, HOST)], "TXT": ["v=spf1 mx -all", "google-site-verif=x"]},
        HOST: {"A": ["127.0.0.2"]},
        "2.0.0.127.in-addr.arpa": {"PTR": [HOST]},
        "_dmarc.example.test": {"TXT": ["v=DMARC1; p=reject; rua=mailto:d@example.test"]},
    }
    for k in keys:
        zone[f"{k.selector}._domainkey.example.test"] = {"TXT": [k.txt_record()]}
    return zone


async def run(
    zone: dict[str, Any], keys: list[dkim.DkimKey], ips: list[str] | None = None
) -> dict[str, Check]:
    checks = await check_domain(
        FakeResolver(zone), "example.test", hostname=HOST, ips=ips or [], dkim_keys=keys
    )
    return {c.name: c for c in checks}


async def test_everything_in_place(keys: list[dkim.DkimKey]) -> None:
    checks = await run(good_zone(keys), keys)
    assert list(checks) == [
        "MX",
        "A/AAAA",
        "PTR 127.0.0.2",
        "SPF",
        "DKIM postier2025r (rsa)",
        "DKIM postier2025e (ed25519)",
        "DMARC",
        "MTA-STS",
        "TLS-RPT",
    ]
    assert [c.name for c in checks.values() if c.ok is not True] == ["MTA-STS", "TLS-RPT"]
    assert checks["MX"].found == f"10 {HOST}"
    assert checks["PTR 127.0.0.2"].found == f"{HOST} (forward-confirmed)"
    assert checks["SPF"].found == "v=spf1 mx -all"
    assert checks["MTA-STS"] == Check("MTA-STS", None, False, "not published (optional)")
    assert not any(c.failed for c in checks.values())


async def test_missing_mx(keys: list[dkim.DkimKey]) -> None:
    zone = good_zone(keys)
    zone["example.test"] = {"MX": [(10, "other.example.net")], "TXT": ["v=spf1 mx -all"]}
    c = (await run(zone, keys))["MX"]
    assert (c.ok, c.found, c.fix) == (
        False,
        "10 other.example.net",
        f"example.test.\t3600\tIN\tMX\t10 {HOST}.",
    )


async def test_null_mx(keys: list[dkim.DkimKey]) -> None:
    zone = good_zone(keys)
    zone["example.test"] = {"MX": [(0, ".")]}
    c = (await run(zone, keys))["MX"]
    assert c.failed
    assert c.found == "null MX '0 .': the domain refuses all mail"


async def test_host_without_address_and_given_ip(keys: list[dkim.DkimKey]) -> None:
    zone = good_zone(keys)
    del zone[HOST]
    checks = await run(zone, keys, ips=["192.0.2.7"])
    assert checks["A/AAAA"].fix == f"{HOST}.\t3600\tIN\tA\t192.0.2.7"
    assert checks["PTR 192.0.2.7"].failed
    assert checks["PTR 192.0.2.7"].fix == (
        f"7.2.0.192.in-addr.arpa.\t3600\tIN\tPTR\t{HOST}.\n"
        "; set by the owner of 192.0.2.7 (usually the hosting provider)"
    )


async def test_given_ip_not_among_addresses(keys: list[dkim.DkimKey]) -> None:
    checks = await run(good_zone(keys), keys, ips=["2001:db8::25"])
    assert checks["A/AAAA"].fix == f"{HOST}.\t3600\tIN\tAAAA\t2001:db8::25"


async def test_ptr_not_forward_confirmed(keys: list[dkim.DkimKey]) -> None:
    zone = good_zone(keys)
    zone["2.0.0.127.in-addr.arpa"] = {"PTR": ["host-2.isp.example"]}
    c = (await run(zone, keys))["PTR 127.0.0.2"]
    assert (c.ok, c.found) == (False, "host-2.isp.example")


async def test_spf_missing_duplicate_and_not_passing(keys: list[dkim.DkimKey]) -> None:
    zone = good_zone(keys)
    zone["example.test"] = {"MX": [(10, HOST)]}
    c = (await run(zone, keys))["SPF"]
    assert (c.found, c.fix) == ("no record", 'example.test.\t3600\tIN\tTXT\t"v=spf1 mx -all"')
    zone["example.test"] = {"MX": [(10, HOST)], "TXT": ["v=spf1 mx -all", "v=spf1 -all"]}
    c = (await run(zone, keys))["SPF"]
    assert c.found == "2 v=spf1 records (RFC 7208 §4.5: permerror); keep one"
    zone["example.test"] = {"MX": [(10, HOST)], "TXT": ["v=spf1 ip4:192.0.2.1 -all"]}
    c = (await run(zone, keys))["SPF"]
    assert c.found == "v=spf1 ip4:192.0.2.1 -all (127.0.0.2: fail)"
    assert c.fix == 'example.test.\t3600\tIN\tTXT\t"v=spf1 mx ip4:127.0.0.2 ip4:192.0.2.1 -all"'


async def test_dkim_missing_mismatched_revoked_and_no_key(keys: list[dkim.DkimKey]) -> None:
    rsa, ed = keys
    zone = good_zone(keys)
    del zone[f"{rsa.selector}._domainkey.example.test"]
    zone[f"{ed.selector}._domainkey.example.test"] = {"TXT": ["v=DKIM1; k=ed25519; p="]}
    checks = await run(zone, keys)
    c = checks["DKIM postier2025r (rsa)"]
    assert c.failed
    assert c.fix.startswith(
        'postier2025r._domainkey.example.test.\t3600\tIN\tTXT\t"v=DKIM1; k=rsa; h=sha256; p='
    )
    assert checks["DKIM postier2025e (ed25519)"].found == (
        "postier2025e._domainkey.example.test has an empty p= (revoked key)"
    )
    zone[f"{ed.selector}._domainkey.example.test"] = {"TXT": [rsa.txt_record()]}
    checks = await run(zone, keys)
    assert checks["DKIM postier2025e (ed25519)"].found.endswith("a different public key")
    checks = await run(good_zone(keys), [])
    assert checks["DKIM"].failed
    assert checks["DKIM"].fix.startswith("run: postier domain dns example.test")


async def test_dkim_long_rsa_record_split_in_255_octet_strings(tmp_path: Path) -> None:
    rsa, _ = dkim.generate_keys(tmp_path, "example.test", year=2024, rsa_bits=2048)
    checks = await run(good_zone([rsa]), [rsa])
    assert checks["DKIM postier2024r (rsa)"].ok  # found across several character-strings
    del_zone = good_zone([])
    c = (await run(del_zone, [rsa]))["DKIM postier2024r (rsa)"]
    value = c.fix.split("\t")[-1]
    assert value.count('" "') >= 1
    assert all(len(part) <= 255 for part in value.strip('"').split('" "'))


async def test_dmarc(keys: list[dkim.DkimKey]) -> None:
    zone = good_zone(keys)
    del zone["_dmarc.example.test"]
    c = (await run(zone, keys))["DMARC"]
    assert c.fix == (
        '_dmarc.example.test.\t3600\tIN\tTXT\t"v=DMARC1; p=quarantine; '
        'rua=mailto:postmaster@example.test"'
    )
    zone["_dmarc.example.test"] = {"TXT": ["v=DMARC1; p=maybe"]}
    assert (await run(zone, keys))["DMARC"].found == "v=DMARC1; p=maybe (p= missing or invalid)"
    zone["_dmarc.example.test"] = {"TXT": ["v=DMARC1; p=none"]}
    c = (await run(zone, keys))["DMARC"]
    assert (c.ok, c.note) == (True, "p=none only monitors; consider p=quarantine")


async def test_optional_records_checked_when_published(keys: list[dkim.DkimKey]) -> None:
    zone = good_zone(keys)
    zone["_mta-sts.example.test"] = {"TXT": ["v=STSv1; id=20240101"]}
    zone["_smtp._tls.example.test"] = {"TXT": ["v=TLSRPTv1;"]}
    checks = await run(zone, keys)
    assert checks["MTA-STS"].ok is True
    tls = checks["TLS-RPT"]
    assert (tls.ok, tls.failed) == (False, False)  # wrong but optional: not a failure
    assert tls.found == "v=TLSRPTv1; (missing rua=, RFC 8460 §3)"


async def test_servfail_is_never_a_pass(keys: list[dkim.DkimKey]) -> None:
    zone = good_zone(keys)
    zone["_dmarc.example.test"] = SERVFAIL
    c = (await run(zone, keys))["DMARC"]
    assert c.failed
    assert c.found.startswith("lookup failed: ")
