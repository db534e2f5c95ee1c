"""`postier mx` against the test DNS server: every route kind, text and --json."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postier.dns.fake import SERVFAIL
from tests.support.dnsserver import DnsTestServer
from tests.support.server import write_config

ZONES: dict[str, Any] = {
    "multi.test": {
        "MX": [(20, "mx2.multi.test"), (10, "mx1.multi.test"), (20, "mx3.multi.test")],
        "TTL": 600,
    },
    "mx1.multi.test": {"A": ["127.0.0.2"], "AAAA": ["::1"], "TTL": 120},
    "mx2.multi.test": {"A": ["127.0.0.3"]},
    "implicit.test": {"A": ["127.0.0.4"], "TTL": 60},
    "nullmx.test": {"MX": [(0, ".")], "TTL": 900},
    "broken.test": SERVFAIL,
}


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    with DnsTestServer(ZONES) as dns:
        yield write_config(
            tmp_path,
            f'[dns]\noffline = false\nnameservers = ["{dns.nameserver}"]\ntimeout = "2s"\n',
        )


def mx(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postier", "-c", str(config), "mx", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_mx_records_in_preference_order(config: Path) -> None:
    r = mx(config, "multi.test")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "multi.test: 3 MX records (TTL 600)",
        "     10 mx1.multi.test  127.0.0.2 ::1  (TTL 120)",
        "     20 mx2.multi.test  127.0.0.3  (TTL 300)",
        "     20 mx3.multi.test  no address: mx3.multi.test: no such host",
        "  (hosts of equal preference are tried in random order)",
        "postier delivers to mx1.multi.test, then mx2.multi.test on port 25",
    ]


def test_mx_json(config: Path) -> None:
    r = mx(config, "--json", "MULTI.test.")
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert doc["domain"] == "multi.test"
    assert doc["kind"] == "mx"
    assert doc["action"] == "deliver"
    assert doc["ttl"] == 600
    assert doc["records"] == [
        {"preference": 10, "host": "mx1.multi.test"},
        {"preference": 20, "host": "mx2.multi.test"},
        {"preference": 20, "host": "mx3.multi.test"},
    ]
    assert doc["hosts"][0] == {
        "host": "mx1.multi.test",
        "preference": 10,
        "addresses": ["127.0.0.2", "::1"],
        "ttl": 120,
        "error": "",
        "temporary": False,
    }
    assert doc["hosts"][2]["error"] == "mx3.multi.test: no such host"
    assert doc["port"] == 25


@pytest.mark.parametrize(
    ("domain", "code", "kind", "action", "first_line"),
    [
        (
            "implicit.test",
            0,
            "implicit",
            "deliver",
            "implicit.test: no MX records; implicit MX (RFC 5321 §5.1): the domain's own address",
        ),
        (
            "nullmx.test",
            1,
            "null",
            "bounce",
            "nullmx.test: null MX '0 .' (RFC 7505): the domain accepts no mail (TTL 900)",
        ),
        ("nowhere.test", 1, "nxdomain", "bounce", "nowhere.test: no such domain (NXDOMAIN)"),
        ("broken.test", 1, "servfail", "retry", "broken.test: the MX lookup failed temporarily"),
    ],
)
def test_mx_cases(
    config: Path, domain: str, code: int, kind: str, action: str, first_line: str
) -> None:
    r = mx(config, domain)
    assert r.returncode == code
    assert r.stdout.startswith(first_line)
    last = r.stdout.splitlines()[-1]
    assert (
        last
        == {
            "deliver": f"postier delivers to {domain} on port 25",
            "bounce": "postier bounces mail for it at once (permanent failure)",
            "retry": "postier keeps mail for it queued and retries later (temporary failure)",
        }[action]
    )
    doc = json.loads(mx(config, "--json", domain).stdout)
    assert (doc["kind"], doc["action"]) == (kind, action)


def test_mx_implicit_shows_address(config: Path) -> None:
    assert mx(config, "implicit.test").stdout.splitlines()[1] == (
        "      0 implicit.test  127.0.0.4  (TTL 60)"
    )


def test_mx_bad_domain(config: Path) -> None:
    r = mx(config, "exa mple")
    assert r.returncode == 2
    assert r.stderr.startswith("postier: malformed domain 'exa mple'")


def test_mx_offline_says_so(tmp_path: Path) -> None:
    r = mx(write_config(tmp_path), "example.com")
    assert r.returncode == 1
    assert r.stderr == (
        "postier: warning: dns.offline = true: every lookup answers 'no such "
        "domain', no query is sent\n"
    )


def add_domain(config: Path, domain: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "postier", "-c", str(config), "domain", "add", domain],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.stdout == f"added domain {domain}\n", r.stderr


def test_mx_of_a_local_domain_offline(tmp_path: Path) -> None:
    """`make run`'s own domain, DNS offline: local delivery, not 'does not exist'."""
    config = write_config(tmp_path)
    add_domain(config, "example.test")
    r = mx(config, "example.test")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == (
        "example.test: a local domain: postier delivers its mail to its own mailboxes, "
        "without DNS\n"
        "(dns.offline = true: what other servers find in DNS is not looked up)\n"
    )
    r = mx(config, "example.test", "--json")
    assert json.loads(r.stdout) == {"domain": "example.test", "local": True, "action": "local"}


def test_mx_of_a_local_domain_shows_what_others_see(config: Path) -> None:
    add_domain(config, "multi.test")
    r = mx(config, "multi.test")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == [
        "multi.test: a local domain: postier delivers its mail to its own mailboxes, without DNS",
        "other servers find it in DNS:",
        "  multi.test: 3 MX records (TTL 600)",
        "       10 mx1.multi.test  127.0.0.2 ::1  (TTL 120)",
        "       20 mx2.multi.test  127.0.0.3  (TTL 300)",
        "       20 mx3.multi.test  no address: mx3.multi.test: no such host",
        "    (hosts of equal preference are tried in random order)",
    ]
    doc = json.loads(mx(config, "multi.test", "--json").stdout)
    assert (doc["local"], doc["action"], doc["kind"]) == (True, "local", "mx")
