"""`make test` on a fresh machine: a Debian tool that is not installed skips the
tests that drive it, with the reason in the summary; under CI it fails them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_TOOLS, need_tool

REPO = Path(__file__).resolve().parents[3]


def test_missing_tool_skips_with_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_TOOLS, raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.skip.Exception) as info:
        need_tool("getmail")
    assert str(info.value) == (
        "getmail is not installed (Debian package getmail6) (as root: scripts/install-deps)"
    )


@pytest.mark.parametrize("var", [REQUIRE_TOOLS, "CI"])
def test_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.delenv(REQUIRE_TOOLS, raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv(var, "1")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception) as info:
        need_tool("swaks")
    assert str(info.value) == "swaks is not installed (Debian package swaks)"


@pytest.mark.parametrize(("required", "code"), [("", 0), ("1", 1)])
def test_install_deps_without_apt(required: str, code: int) -> None:
    """Where nothing can be installed, `make test` goes on (the tests skip) unless
    CI asked for every tool."""
    proc = subprocess.run(
        ["/bin/bash", str(REPO / "scripts" / "install-deps")],
        env={"PATH": "/nonexistent", "POSTIER_REQUIRE_TOOLS": required},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == code
    assert proc.stderr.startswith("install-deps: not a Debian system: cannot install make swaks")


def test_make_test_and_ci_share_the_install_script() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "test: $(STAMP)\n\t@scripts/install-deps\n" in makefile
    ci = (REPO / ".ci" / "run").read_text()
    assert "export POSTIER_REQUIRE_TOOLS=1\nscripts/install-deps" in ci
