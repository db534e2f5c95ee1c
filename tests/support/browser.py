"""Playwright driving Debian's Chromium for the web tests: one browser per module,
a context per test with a guard that aborts (and records) any request for a
host other than loopback, and screenshots into $POSTIER_SCREENSHOTS."""

from __future__ import annotations

import os
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from tests.conftest import need_tool
from tests.support.server import PASSWORD, ServerThread

LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
SCREENSHOTS = Path(
    os.environ.get("POSTIER_SCREENSHOTS") or Path(tempfile.gettempdir()) / "postier-screenshots"
)


class Browser:
    """One headless Chromium (Debian's, never a download)."""

    def __init__(self) -> None:
        from playwright import sync_api

        path = need_tool("chromium")
        self._pw = sync_api.sync_playwright().start()
        self.browser = self._pw.chromium.launch(
            executable_path=path,
            headless=True,
            args=["--dns-prefetch-disable", "--no-pings"],
        )

    def close(self) -> None:
        self.browser.close()
        self._pw.stop()


class Web:
    """A browser context on the server's web port, with the off-loopback guard."""

    def __init__(self, chromium: Browser, srv: ServerThread, *, https: bool = False) -> None:
        assert srv.app is not None
        assert srv.app.web_address is not None
        host, port = srv.app.web_address
        self.base = f"{'https' if https else 'http'}://{host}:{port}"
        self.srv = srv
        self.offsite: list[str] = []
        self.context = chromium.browser.new_context(
            viewport={"width": 1100, "height": 720}, ignore_https_errors=https
        )
        self.context.route("**/*", self._guard)
        self.page = self.context.new_page()

    def _guard(self, route: Any) -> None:
        host = urllib.parse.urlsplit(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:", "about:")) or host in LOOPBACK:
            route.continue_()
        else:
            self.offsite.append(route.request.url)
            route.abort()

    def login(self, address: str, password: str = PASSWORD) -> None:
        page = self.page
        page.goto(self.base + "/")
        page.get_by_label("Email").fill(address)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(self.base + "/folder/**")

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()
