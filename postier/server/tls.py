"""TLS contexts for every listener, and the self-signed certificate of a new server.

Rules:
- With `tls.cert`/`tls.key` configured, those files are used as they are.
- Otherwise `data_dir/tls/cert.pem` and `key.pem` are used, generated on first start
  (ECDSA P-256, 10 years, SAN = hostname, localhost, 127.0.0.1, ::1); the key is
  written 0600 through a temp file and rename, so a crash never leaves half a key.
  Checking and generating happen under `tls/.lock` (`durable.file_lock`), and the
  key is renamed into place before the certificate: several processes starting at
  once on one data dir make one pair, and a process that finds the certificate
  finds its key (never one process's key with another's certificate).
- Server contexts accept TLS 1.2+ only (RFC 8996 retires 1.0/1.1).
- cryptography is imported only to make a certificate: it carries its own
  OpenSSL (about 18 MB resident), and the workers, which only load the files
  with the standard `ssl` module, never need it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from postier.config.schema import Settings
from postier.durable import file_lock, write_atomically


def ensure_self_signed(directory: Path, hostname: str) -> tuple[Path, Path]:
    """Return (cert, key) paths in `directory`, generating them when missing."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    with file_lock(directory / ".lock"):
        if not (cert_path.exists() and key_path.exists()):  # another process made them
            _make_self_signed(cert_path, key_path, hostname)
    return cert_path, key_path


def _make_self_signed(cert_path: Path, key_path: Path, hostname: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    san: list[x509.GeneralName] = [
        x509.DNSName(hostname),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_atomically(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def cert_paths(settings: Settings) -> tuple[Path, Path]:
    if settings.tls.cert is not None and settings.tls.key is not None:
        return settings.tls.cert, settings.tls.key
    return ensure_self_signed(settings.server.data_dir / "tls", settings.server.hostname)


def server_context(settings: Settings) -> ssl.SSLContext:
    cert, key = cert_paths(settings)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.options |= ssl.OP_NO_COMPRESSION
    return ctx
