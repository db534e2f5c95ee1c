"""The Starlette application: the webmail at `/`, the admin at `/admin`, `/healthz`
and `/metrics`.

Rules:
- Routes read the store through `App`; sessions are rows of the store
  (`webmail.sessions`), which the admin pages share (one login for both), so any
  worker process serves any request. What a process keeps between requests is
  caches only (list orders and rows, the server secret).
- Every response carries `nosniff`, `Referrer-Policy: same-origin` (no referrer
  leaves for another site; "no-referrer" would make the browser send `Origin: null`
  on our own forms, which the CSRF check refuses) and a CSP; a route that serves
  other content (the message frame, downloads) sets its own stricter one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postier.web.admin.routes import Admin
from postier.web.metrics import metrics_endpoint
from postier.web.webmail.routes import PAGE_CSP, Webmail

if TYPE_CHECKING:
    from postier.server.app import App

SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy", PAGE_CSP.encode()),
)


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` a response does not already set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(app: App) -> ASGIApp:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "hostname": app.settings.server.hostname})

    webmail = Webmail(app)
    admin = Admin(app, webmail.sessions, webmail.env)
    starlette = Starlette(
        routes=[
            Route("/healthz", health),
            Route("/metrics", metrics_endpoint(app.store, allow=app.settings.web.metrics_allow)),
            # the webmail's pages first: Starlette tries the routes in order, and
            # they are most of the requests
            *webmail.routes(),
            *admin.routes(),
        ]
    )
    return SecurityHeaders(starlette)
