"""Fetch the official RFC 7208 SPF test suite (not committed: see tests/data/spf/README.md).

The suite is `test/rfc7208-tests.yml` inside the pyspf 2.0.14 source distribution.
It is downloaded once with pip into the git-ignored /.cache/spf/ and extracted
there. If it cannot be fetched (no network), the suite test FAILS; it never skips.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from postier.dns.fake import TIMEOUT

ROOT = Path(__file__).resolve().parents[3]
CACHE = ROOT / ".cache" / "spf"
SUITE = CACHE / "rfc7208-tests.yml"
PYSPF = "pyspf==2.0.14"
MEMBER = "pyspf-2.0.14/test/rfc7208-tests.yml"


def fetch_suite() -> Path:
    """The path of rfc7208-tests.yml, downloading it if needed; RuntimeError if not."""
    if SUITE.exists():
        return SUITE
    CACHE.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            PYSPF,
            "-d",
            str(CACHE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    sdists = sorted(CACHE.glob("pyspf-2.0.14.tar.gz"))
    if proc.returncode != 0 or not sdists:
        raise RuntimeError(f"pip download {PYSPF} failed:\n{proc.stdout}\n{proc.stderr}")
    with tarfile.open(sdists[0]) as tar:
        member = tar.extractfile(MEMBER)
        if member is None:
            raise RuntimeError(f"{MEMBER} not found in {sdists[0]}")
        tmp = SUITE.with_suffix(".tmp")
        tmp.write_bytes(member.read())
        tmp.rename(SUITE)
    return SUITE


_outcomes: dict[str, int] = {"passed": 0, "failed": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and "test_rfc7208_suite[" in report.nodeid:
        _outcomes["passed" if report.passed else "failed"] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    total = _outcomes["passed"] + _outcomes["failed"]
    if total:
        terminalreporter.write_line(
            f"RFC 7208 test suite (rfc7208-tests.yml): {_outcomes['passed']}/{total} cases pass"
        )


def zone_of(zonedata: dict[str, list[Any]]) -> dict[str, Any]:
    """A scenario's zonedata as FakeResolver zones (rules in test_spf_suite.py)."""
    zones: dict[str, Any] = {}
    for name, entries in zonedata.items():
        records: dict[str, list[Any]] = {}
        spf: list[Any] = []
        has_txt = False
        timed_out = False
        for entry in entries:
            if entry == "TIMEOUT":
                timed_out = True
                break
            ((rtype, value),) = entry.items()
            if rtype == "TXT":
                has_txt = True
            if rtype == "SPF":
                spf.append(value)
            if value == "NONE":
                records.setdefault(rtype, [])
                continue
            if rtype == "MX":
                value = tuple(value)
            records.setdefault(rtype, []).append(value)
        if spf and not has_txt and not timed_out:
            records["TXT"] = spf
        data: dict[str, Any] = {t: v for t, v in records.items() if v}
        if timed_out:
            data["*"] = TIMEOUT
        zones[name] = data
    return zones


def load_cases() -> list[Any]:
    """One pytest.param per suite case (zones, case, error); a failing one if unfetchable."""
    try:
        path = fetch_suite()
    except Exception as e:
        return [pytest.param(None, None, str(e), id="suite-unavailable")]
    cases = []
    for scenario in yaml.safe_load_all(path.read_bytes()):
        zones = zone_of(scenario["zonedata"])
        for name, case in scenario["tests"].items():
            cases.append(pytest.param(zones, case, "", id=name))
    return cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "spf_case" in metafunc.fixturenames:
        metafunc.parametrize(("zones", "spf_case", "error"), load_cases())


from tests.support.dnsserver import dns_server  # noqa: E402, F401  (pytest fixture)
