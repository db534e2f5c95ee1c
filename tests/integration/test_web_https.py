"""`web.tls`: the web listener speaks HTTPS with the server's certificate, the
session cookie is Secure; `web.metrics_allow` decides who reads /metrics."""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerThread, thread_server


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[ServerThread]:
    srv = thread_server(tmp_path, "[web]\ntls = true\n")
    try:
        yield srv
    finally:
        srv.stop()


def _web(srv: ServerThread) -> tuple[str, int]:
    assert srv.app is not None
    assert srv.app.web_address is not None
    return srv.app.web_address


def test_https_with_the_server_certificate_and_a_secure_cookie(
    https_server: ServerThread,
) -> None:
    host, port = _web(https_server)
    cert = https_server.settings.server.data_dir / "tls" / "cert.pem"
    ctx = ssl.create_default_context(cafile=str(cert))  # verified: the server's own cert
    ctx.check_hostname = False  # it names server.hostname; we dial 127.0.0.1
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
    conn.request("GET", "/")
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 200
    assert b"Log in" in body
    cookie = resp.getheader("set-cookie") or ""
    assert "postier_session=" in cookie
    assert "; secure" in cookie.lower()
    assert "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    sock = conn.sock
    assert isinstance(sock, ssl.SSLSocket)
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    assert der == ssl.PEM_cert_to_DER_cert(cert.read_text())
    conn.close()

    # plain HTTP on the HTTPS port gets no page
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        _plain_get(host, port, "/healthz")


def _plain_get(host: str, port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


def test_http_in_development_cookie_not_secure(server: ServerThread) -> None:
    host, port = _web(server)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200
    assert "secure" not in (resp.getheader("set-cookie") or "").lower()
    conn.close()


def _metrics_status(srv: ServerThread) -> int:
    host, port = _web(srv)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status


def test_metrics_allow(tmp_path: Path) -> None:
    """Loopback may scrape by default; a list without it refuses loopback."""
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    srv = thread_server(tmp_path / "a", '[web]\nmetrics_allow = ["192.0.2.7", "10.1.0.0/16"]\n')
    try:
        assert _metrics_status(srv) == 403
    finally:
        srv.stop()
    srv = thread_server(tmp_path / "b", '[web]\nmetrics_allow = ["127.0.0.1/32"]\n')
    try:
        assert _metrics_status(srv) == 200
    finally:
        srv.stop()
