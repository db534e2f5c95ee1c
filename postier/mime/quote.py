"""IMAP string syntax for the pre-serialised ENVELOPE and BODYSTRUCTURE.

Rules (RFC 9051 §4.3, RFC 3501 §4.3):
- A string is sent quoted when every octet is a 7-bit TEXT-CHAR (no CR, LF,
  NUL) and it is at most `literal_over` octets; ``"`` and ``\\`` are escaped.
- Anything else (8-bit octets, CR, LF, or long) is a synchronising literal
  ``{n}\\r\\n<octets>``, which a server may always send.
- NUL is never allowed in a non-binary string or literal (RFC 9051 §4.3), so
  NUL octets are dropped.
- ``None`` is ``NIL``.
"""

from __future__ import annotations

import re

DEFAULT_LITERAL_OVER = 1024
"""Strings longer than this many octets are sent as literals."""

_NEEDS_LITERAL = re.compile(rb"[\x80-\xff\r\n]")
# TEXT-CHAR minus quoted-specials: safe inside "..." as is (RFC 9051 §9)
_PLAIN = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x21\x23-\x5b\x5d-\x7f]*")
#: the same class for text: a string matches exactly when its octets
#: (`astring_bytes`) do, as any character past U+007F (a surrogate-escaped octet
#: included) fails it
PLAIN_TEXT = re.compile(_PLAIN.pattern.decode("ascii"))


def astring_bytes(value: str) -> bytes:
    """Header-derived text back to its original octets."""
    return value.encode("utf-8", "surrogateescape")


def quote(value: bytes | str, literal_over: int = DEFAULT_LITERAL_OVER) -> bytes:
    # `astring_bytes`, inlined: quote and nstring run for every string of every
    # ENVELOPE and BODYSTRUCTURE
    b = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if len(b) <= literal_over and _PLAIN.fullmatch(b):
        return b'"' + b + b'"'  # the common case: nothing to escape
    if b"\x00" in b:
        b = b.replace(b"\x00", b"")
    if len(b) > literal_over or _NEEDS_LITERAL.search(b):
        return b"{%d}\r\n%s" % (len(b), b)
    return b'"' + b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def nstring(value: bytes | str | None, literal_over: int = DEFAULT_LITERAL_OVER) -> bytes:
    if value is None:
        return b"NIL"
    b = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if len(b) <= literal_over and _PLAIN.fullmatch(b):
        return b'"' + b + b'"'  # `quote`'s common case, without a second call
    return quote(b, literal_over)
