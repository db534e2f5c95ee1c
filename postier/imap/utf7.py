"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3, kept by RFC 9051 Appendix A for
IMAP4rev1 clients that have not enabled UTF8=ACCEPT or IMAP4rev2).

Rules:
- Printable US-ASCII (0x20-0x7e) represents itself, except "&" which is "&-".
- Everything else is UTF-16BE in modified BASE64 ("," for "/", no "=" padding)
  between "&" and "-".
- `encode` is canonical: each run of non-ASCII characters becomes one segment.
- `decode` is strict and raises `ValueError` for names a conforming client cannot
  send: raw 8-bit or control characters, an unterminated "&", characters outside the
  modified BASE64 alphabet, non-zero padding bits, an odd number of UTF-16 octets,
  unpaired surrogates, printable ASCII hidden in BASE64 (RFC 3501 §5.1.3: "MUST
  NOT be used to represent any printing US-ASCII character"), and two segments in a
  row (one run of non-ASCII characters is one segment). So two distinct
  accepted names never decode to the same Unicode name through a trick encoding.

No library: Python's "utf-7" codec is RFC 2152 (different shift character, "+",
and "/" in BASE64); imapclient's helper is client-side and lenient.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

_B64_ALPHABET: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


def _is_printable(ch: str) -> bool:
    return 0x20 <= ord(ch) <= 0x7E


def encode(name: str) -> str:
    """Unicode mailbox name → modified UTF-7 (pure ASCII). ValueError for a lone
    surrogate, which no UTF-16 can carry."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            try:
                utf16 = "".join(pending).encode("utf-16-be")
            except UnicodeEncodeError as exc:
                raise ValueError("mailbox name contains an unpaired surrogate") from exc
            b64 = base64.b64encode(utf16).rstrip(b"=").replace(b"/", b",")
            out.append("&" + b64.decode("ascii") + "-")
            pending.clear()

    for ch in name:
        if _is_printable(ch):
            flush()
            out.append("&-" if ch == "&" else ch)  # RFC 3501 §5.1.3: "&" is "&-"
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode(name: str) -> str:
    """Modified UTF-7 → Unicode; strict (see the module rules)."""
    out: list[str] = []
    i = 0
    n = len(name)
    after_segment = False  # the last thing read was a non-empty BASE64 segment
    while i < n:
        ch = name[i]
        if ch == "&":
            end = name.find("-", i + 1)
            if end < 0:
                raise ValueError("unterminated modified BASE64 in mailbox name")
            segment = name[i + 1 : end]
            if segment and after_segment:
                # "&AOk-&AOk-" is "&AOkA6Q-" cut in two: one run is one segment
                raise ValueError("adjacent modified BASE64 segments in mailbox name")
            out.append(_decode_segment(segment) if segment else "&")
            after_segment = bool(segment)
            i = end + 1
        elif _is_printable(ch):
            out.append(ch)
            after_segment = False
            i += 1
        else:
            # RFC 3501 §5.1.3: other characters are represented in modified BASE64
            raise ValueError("mailbox name contains a character that must be encoded")
    return "".join(out)


def _decode_segment(segment: str) -> str:
    if any(c not in _B64_ALPHABET for c in segment):
        raise ValueError("invalid character in modified BASE64")
    rest = len(segment) % 4
    if rest == 1:
        raise ValueError("truncated modified BASE64")
    # the unused low bits of the last character must be zero (canonical encoding)
    last = segment[-1]
    value = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,".index(last)
    if (rest == 2 and value & 0x0F) or (rest == 3 and value & 0x03):
        raise ValueError("non-zero padding bits in modified BASE64")
    padded = segment.replace(",", "/") + "=" * ((4 - rest) % 4)
    try:
        utf16 = base64.b64decode(padded, validate=True)
    except binascii.Error as exc:  # pragma: no cover - the checks above catch it
        raise ValueError("invalid modified BASE64") from exc
    if len(utf16) % 2:
        raise ValueError("modified BASE64 holds an odd number of UTF-16 octets")
    try:
        text = utf16.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise ValueError("modified BASE64 holds an unpaired surrogate") from exc
    if any(_is_printable(c) for c in text):
        raise ValueError("modified BASE64 encodes a printable US-ASCII character")
    return text
