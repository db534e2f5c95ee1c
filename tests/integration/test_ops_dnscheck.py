"""`postier dns-check` end to end: records printed by `postier domain dns` are
published on the test DNS server, then checked; a missing one fails the exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.dnsserver import DnsTestServer
from tests.support.server import write_config

HOST = "mail.example.test"


def postier(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postier", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def unquote(value: str) -> str:
    return "".join(part for part in value.strip('"').split('" "'))


def test_dns_check(tmp_path: Path) -> None:
    with DnsTestServer() as dns:
        config = write_config(
            tmp_path,
            f'[dns]\noffline = false\nnameservers = ["{dns.nameserver}"]\ntimeout = "2s"\n',
        )
        assert postier(config, "domain", "add", "example.test").returncode == 0
        records = json.loads(postier(config, "domain", "dns", "example.test", "--json").stdout)
        zone: dict[str, dict[str, Any]] = {
            HOST: {"A": ["127.0.0.2"]},
            "2.0.0.127.in-addr.arpa": {"PTR": [HOST]},
        }
        for r in records["records"]:
            name = r["name"].rstrip(".")
            if r["type"] == "MX":
                zone.setdefault(name, {})["MX"] = [(10, HOST)]
            elif r["type"] == "TXT":
                zone.setdefault(name, {}).setdefault("TXT", []).append(unquote(r["value"]))
        for name, data in zone.items():
            dns.set(name, data)

        ok = postier(config, "dns-check", "example.test", "--ip", "127.0.0.2")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        lines = ok.stdout.splitlines()
        assert lines[0] == f"✓ MX: 10 {HOST}"
        assert lines[1] == f"✓ A/AAAA: {HOST}: 127.0.0.2"
        assert lines[2] == f"✓ PTR 127.0.0.2: {HOST} (forward-confirmed)"
        assert lines[3] == "✓ SPF: v=spf1 mx -all"
        assert lines[4].startswith("✓ DKIM postier")
        assert lines[-1] == "all required records are in place"

        dns.set("_dmarc.example.test", {"A": ["127.0.0.9"]})  # the name exists, no TXT
        bad = postier(config, "dns-check", "example.test", "--ip", "127.0.0.2")
        assert bad.returncode == 1
        text = bad.stdout
        assert (
            "✗ DMARC: no record\n    publish:\n      _dmarc.example.test.\t3600\tIN\tTXT\t"
            '"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"\n' in text
        )
        assert text.endswith("1 required record missing or wrong\n")
        doc = json.loads(
            postier(config, "dns-check", "example.test", "--ip", "127.0.0.2", "--json").stdout
        )
        assert doc["ok"] is False
        assert [c["check"] for c in doc["checks"] if c["ok"] is False] == ["DMARC"]

        unknown = postier(config, "dns-check", "other.test")
        assert unknown.returncode == 2
        assert unknown.stderr == (
            "postier: unknown domain other.test (add it with: postier domain add other.test)\n"
        )
        badip = postier(config, "dns-check", "example.test", "--ip", "nope")
        assert (badip.returncode, badip.stderr) == (
            2,
            "postier: --ip 'nope' is not an IP address\n",
        )


def test_dns_check_offline_says_nothing_was_checked(tmp_path: Path) -> None:
    """`make run`'s setup: no ✗ per record for lookups that were never made."""
    config = write_config(tmp_path)  # dns.offline = true
    assert postier(config, "domain", "add", "example.test").returncode == 0
    r = postier(config, "dns-check", "example.test")
    assert (r.returncode, r.stderr) == (1, "")
    assert r.stdout == (
        "example.test: hosted here; mail to it on this server is delivered without DNS\n"
        f"not checked: dns.offline = true in {config.resolve()}: no DNS query is sent\n"
        "the records other servers need: postier domain dns example.test\n"
    )
    r = postier(config, "dns-check", "other.test")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == (
        "postier: unknown domain other.test (add it with: postier domain add other.test)\n"
    )
