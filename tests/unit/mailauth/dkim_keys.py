"""A DKIM key pair for tests: PKCS#1 private PEM and the DNS TXT record of its public key."""

from __future__ import annotations

import base64
import functools

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@functools.cache
def rsa_key() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def sign(message: bytes, domain: str, selector: str = "sel") -> bytes:
    pem, _ = rsa_key()
    sig = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        pem,
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    return sig + message
