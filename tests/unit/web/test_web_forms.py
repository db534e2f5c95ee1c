"""Where login sends the browser next: a path on this site, never another site."""

from __future__ import annotations

import pytest

from postier.web.forms import local_path


@pytest.mark.parametrize(
    "path", ["/", "/admin", "/admin/queue?state=held&q=a%2Fb", "/folder/3/5", "/.//x"]
)
def test_paths_on_this_site_are_kept(path: str) -> None:
    assert local_path(path) == path


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "//evil.example",
        "//evil.example/admin",
        "///evil.example",
        "https://evil.example/",
        "http:evil.example",
        "javascript:alert(1)",
        "evil.example",
        "admin",
        "/\\evil.example",
        "\\/evil.example",
        "/\\/evil.example",
        "/admin\\..\\\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        " //evil.example",
        "/ /evil.example",
        "/\x00/evil.example",
        "/" + "a" * 2001,
    ],
)
def test_anything_else_is_refused(url: str | None) -> None:
    assert local_path(url) == ""
