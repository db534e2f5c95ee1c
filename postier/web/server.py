"""The web listener: uvicorn serving the Starlette app on its own socket.

Rules:
- The socket is bound synchronously in `make_handler`, so a taken port fails the
  start like every other listener does (ListenError, exit 1); a worker of several
  serves the socket its supervisor bound.
- Shutdown asks uvicorn to exit; open requests get the drain timeout.
- ``web.tls = true`` (production): HTTPS only, with the server's certificate
  (`server.tls`: tls.cert/tls.key, else the self-signed one) in a context of its
  own (ALPN http/1.1; the mail listeners' context is not touched). Plain HTTP on
  that port gets no answer but a failed handshake. The webmail's cookie is
  Secure whenever the request came over TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from typing import TYPE_CHECKING

import uvicorn

from postier.server.listeners import Handler, ListenError
from postier.server.tls import server_context
from postier.web.app import create_app

if TYPE_CHECKING:
    from postier.server.app import App

log = logging.getLogger("postier.web")


def _bind(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as e:
        sock.close()
        why = {
            errno.EADDRINUSE: "address already in use",
            errno.EACCES: "permission denied (ports below 1024 need root)",
        }.get(e.errno or 0, e.strerror or str(e))
        raise ListenError(f"listeners.web: cannot listen on {address} port {port}: {why}") from None
    sock.listen(512)
    sock.setblocking(False)
    return sock


def _tls_context(app: App) -> ssl.SSLContext:
    ctx = server_context(app.settings)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def make_handler(app: App, name: str) -> Handler | None:
    ls = app.settings.listeners[name]
    context = _tls_context(app) if app.settings.web.tls else None
    shared = app.worker.sockets.get(name) if app.worker is not None else None
    sock = shared if shared is not None else _bind(ls.address, ls.port)
    config = uvicorn.Config(
        create_app(app),
        log_config=None,
        access_log=False,
        workers=1,
        http="httptools",
        lifespan="off",
        timeout_graceful_shutdown=int(app.settings.server.drain_timeout) or 1,
        ssl_context_factory=None if context is None else (lambda config, default: context),
    )
    server = uvicorn.Server(config)
    host, port = sock.getsockname()[:2]
    app.web_address = (host if ":" not in host else f"[{host}]", port)
    task = app.spawn(server.serve(sockets=[sock]), name="web")

    async def stop() -> None:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), app.settings.server.drain_timeout + 1)
        sock.close()

    app.on_stop.append(stop)
    return None
