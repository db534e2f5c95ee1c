"""The Starlette application: health check now; webmail, admin and /metrics later.

Rules:
- Routes read the store through `App`; no state of their own between requests.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from postier.web.metrics import metrics_endpoint

if TYPE_CHECKING:
    from postier.server.app import App


def create_app(app: App) -> Starlette:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "hostname": app.settings.server.hostname})

    async def index(request: Request) -> Response:
        host = html.escape(app.settings.server.hostname)
        return HTMLResponse(
            "<!doctype html><html lang=en><meta charset=utf-8>"
            f"<title>postier — {host}</title>"
            f"<h1>postier on {host}</h1>"
            "<p>Use any mail client: IMAP, POP3 and SMTP submission are served here.</p>"
        )

    return Starlette(
        routes=[
            Route("/", index),
            Route("/healthz", health),
            Route("/metrics", metrics_endpoint(app.store)),
        ]
    )
