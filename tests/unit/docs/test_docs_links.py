"""The README and docs/ point only at files that are in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
_MD_PATH = re.compile(r"`([\w./-]+\.md)`")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_and_named_page_exists(page: Path) -> None:
    text = page.read_text()
    missing = []
    for target in _LINK.findall(text):
        if not re.match(r"^[a-z]+:", target) and not (page.parent / target).exists():
            missing.append(target)
    for named in _MD_PATH.findall(text):
        if not any((base / named).exists() for base in (page.parent, REPO)):
            missing.append(named)
    assert missing == []
