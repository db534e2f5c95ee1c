"""Header work done at intake: reading the few fields policy needs, and the
trace and completion fields the server adds.

Rules:
- Only the header block is looked at (bytes up to the first empty line); the
  body is never parsed or copied here.
- Added fields are prepended (Received:, Return-Path:) or appended at the end
  of the header block (Date:, Message-ID:), never rewritten in place: the
  bytes the client sent stay byte-identical below what we add.
- Field lines we write are folded to stay under 998 octets (RFC 5322 §2.1.1).
"""

from __future__ import annotations

import email.utils
import re
import secrets
import time
from dataclasses import dataclass

_FIELD_START = re.compile(rb"(?m)^([!-9;-~]+)[ \t]*:")


@dataclass(frozen=True)
class HeaderView:
    """The header block of a message, as raw bytes, with a few look-ups."""

    raw: bytes  # header lines including the final CRLF of the last field
    body_offset: int  # offset of the body in the message (after the empty line)

    @classmethod
    def of(cls, data: bytes) -> HeaderView:
        if data.startswith(b"\r\n"):
            return cls(b"", 2)
        end = data.find(b"\r\n\r\n")
        if end < 0:
            # no body: the whole message is header
            return cls(data if data.endswith(b"\r\n") or not data else data + b"\r\n", len(data))
        return cls(data[: end + 2], end + 4)

    def fields(self, name: str) -> list[str]:
        """Unfolded values of every field named `name` (case-insensitive)."""
        out = []
        want = name.lower().encode()
        for m in _FIELD_START.finditer(self.raw):
            if m.group(1).lower() != want:
                continue
            start = m.end()
            # the value runs until a line that does not start with WSP
            pos = start
            while True:
                nl = self.raw.find(b"\r\n", pos)
                if nl < 0:
                    nl = len(self.raw)
                    break
                if nl + 2 < len(self.raw) and self.raw[nl + 2 : nl + 3] in (b" ", b"\t"):
                    pos = nl + 2
                    continue
                break
            value = self.raw[start:nl].replace(b"\r\n", b"")
            out.append(value.decode("utf-8", "replace").strip())
        return out

    def has(self, name: str) -> bool:
        want = name.lower().encode()
        return any(m.group(1).lower() == want for m in _FIELD_START.finditer(self.raw))


def addresses(values: list[str]) -> list[str]:
    """The addr-specs of address-list field values, lower-cased domain."""
    out = []
    for _, addr in email.utils.getaddresses(values):
        if addr and "@" in addr:
            local, _, domain = addr.rpartition("@")
            out.append(f"{local}@{domain.lower().rstrip('.')}")
    return out


def received(
    *,
    helo: str,
    client_ip: str,
    client_name: str | None,
    hostname: str,
    protocol: str,
    qid: str,
    tls: tuple[str, str] | None,
    auth_user: str | None,
    recipient: str | None,
    when: float | None = None,
) -> bytes:
    """A Received: field in the style of RFC 5321 §4.4 / RFC 3848 (``with``)."""
    ip = f"IPv6:{client_ip}" if ":" in client_ip else client_ip
    from_part = f"from {_clean(helo) or 'unknown'} ({_clean(client_name) or 'unknown'} [{ip}])"
    lines = [f"Received: {from_part}"]
    if tls is not None:
        lines.append(f"\t(using {tls[0]} with cipher {tls[1]})")
    if auth_user:
        lines.append(f"\t(Authenticated sender: {_clean(auth_user)})")
    by = f"\tby {hostname} (postier) with {protocol} id {qid}"
    if recipient:
        lines.append(by)
        lines.append(f"\tfor <{_clean(recipient)}>; {email.utils.formatdate(when, localtime=True)}")
    else:
        lines.append(f"{by}; {email.utils.formatdate(when, localtime=True)}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def protocol_name(*, esmtp: bool, tls: bool, auth: bool, smtputf8: bool) -> str:
    """RFC 3848 / RFC 6531 §3.7.3 `with` keywords."""
    if not esmtp:
        return "SMTP"
    base = "UTF8SMTP" if smtputf8 else "ESMTP"
    return base + ("S" if tls else "") + ("A" if auth else "")


def return_path(sender: str) -> bytes:
    return f"Return-Path: <{_clean(sender)}>\r\n".encode()


def completion(view: HeaderView, hostname: str) -> bytes:
    """Date: and Message-ID: fields a submitted message lacks (RFC 6409 §8.2-8.3)."""
    out = b""
    if not view.has("Date"):
        out += f"Date: {email.utils.formatdate(localtime=True)}\r\n".encode()
    if not view.has("Message-ID"):
        out += f"Message-ID: <{int(time.time())}.{secrets.token_hex(8)}@{hostname}>\r\n".encode()
    return out


def _clean(text: str | None) -> str:
    """Text from a peer made safe inside a header: no CR/LF, no control bytes."""
    if not text:
        return ""
    return re.sub(r"[\x00-\x1f\x7f]", "?", text)[:255]
