"""SASL PLAIN and LOGIN decoding, shared by SMTP AUTH, IMAP AUTHENTICATE and POP3 AUTH.

Rules:
- A client response is one line of base64 (RFC 4954 §4, RFC 3501 §6.2.2, RFC 5034 §4);
  ``*`` alone cancels the exchange (`SaslCancelled`); anything not strict base64 is
  `SaslError`. An initial response of ``=`` is the empty string (RFC 4954 §4).
- PLAIN is ``[authzid] NUL authcid NUL passwd`` in UTF-8 (RFC 4616 §2); authcid and
  passwd must be non-empty; no NUL may appear inside a field.
- LOGIN (draft-murchison-sasl-login) sends the user name, then the password, each
  answering a fixed prompt; an initial response is the user name.
- No secret is logged or put in an exception message.

Hand-written: two tiny mechanisms; SASL libraries (e.g. pure-sasl) are client-side.
"""

from __future__ import annotations

import base64
import binascii

LOGIN_USERNAME_PROMPT = "VXNlcm5hbWU6"  # base64("Username:")
LOGIN_PASSWORD_PROMPT = "UGFzc3dvcmQ6"  # noqa: S105 - base64("Password:"), a prompt


class SaslError(ValueError):
    """The client's response is malformed (bad base64, bad PLAIN message, bad UTF-8)."""


class SaslCancelled(Exception):
    """The client answered ``*``: it abandons the exchange (RFC 4954 §4)."""


def decode_response(line: bytes | str, *, initial: bool = False) -> bytes:
    """Decode one base64 response line; ``initial`` allows ``=`` for "empty"."""
    text = line.strip() if isinstance(line, bytes) else line.strip().encode("ascii", "replace")
    if text == b"*":
        raise SaslCancelled
    if initial and text == b"=":  # RFC 4954 §4: zero-length initial response
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SaslError("response is not base64") from None


def encode_challenge(data: bytes) -> str:
    """A server challenge for a 334 / ``+`` line."""
    return base64.b64encode(data).decode("ascii")


def parse_plain(message: bytes) -> tuple[str, str, str]:
    """RFC 4616 §2: ``message = [authzid] UTF8NUL authcid UTF8NUL passwd`` →
    (authzid, authcid, passwd); authzid is ``""`` when absent."""
    parts = message.split(b"\x00")
    if len(parts) != 3:
        raise SaslError("PLAIN message must have exactly three NUL-separated fields")
    try:
        authzid, authcid, passwd = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        raise SaslError("PLAIN message is not UTF-8") from None
    if not authcid or not passwd:
        raise SaslError("PLAIN user name and password must not be empty")
    return authzid, authcid, passwd


def decode_text(data: bytes) -> str:
    """A LOGIN user name or password: UTF-8 without NUL."""
    if b"\x00" in data:
        raise SaslError("NUL in LOGIN response")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError("LOGIN response is not UTF-8") from None
