"""Decoding of transfer encodings, charsets and RFC 2047 encoded-words.

Owns: Content-Transfer-Encoding decoding (RFC 2045 §6.7 quoted-printable,
§6.8 base64), charset decoding with the aliases mail in the wild needs, and
header encoded-words (RFC 2047, with the RFC 2231 §5 language suffix).

Rules:
- Nothing here raises on bad data: broken base64 or QP decodes as far as it
  can, unknown charsets fall back to UTF-8 with replacement characters. The one
  deliberate exception is `decode_transfer` with an unknown encoding, which
  raises `UnknownEncoding` so IMAP can answer ``[UNKNOWN-CTE]`` (RFC 3516 §4.1).
- Only charsets are used: a label naming a bytes-to-bytes codec
  (``base64_codec``, ``zlib_codec``, ``rot13`` …) or a Python text codec that
  is no charset (``unicode_escape``, ``raw_unicode_escape``, ``idna``,
  ``punycode``, ``undefined`` …) is treated as unknown.
- Text out is always valid Unicode: no surrogate code point survives (UTF-7
  can spell a lone one; SQLite and UTF-8 writers refuse them), it becomes
  U+FFFD. `from_escaped` turns header text decoded with ``surrogateescape``
  back into display text the same way `header_text` reads raw octets.

Why hand-written: `email.header.decode_header` raises on malformed input,
returns mixed bytes/str, and does not join adjacent encoded-words of one
charset before decoding (multi-octet characters split across words break).
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re

_CHARSET_ALIASES = {
    # WHATWG Encoding Standard labels that mail clients rely on
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "tis-620": "cp874",
    "iso-8859-9": "cp1254",
    "x-unknown": "utf-8",
    "unknown-8bit": "utf-8",
    "utf8": "utf-8",
}

_B64_DELETE = bytes(
    c for c in range(256) if not (chr(c).isascii() and (chr(c).isalnum() or chr(c) in "+/="))
)


class UnknownEncoding(ValueError):
    """The Content-Transfer-Encoding is not one we can decode (RFC 3516 UNKNOWN-CTE)."""


#: octets one C call of `decode_base64` works on (a multiple of 4): such a call
#: holds the GIL, and a search or FETCH thread decoding a 40 MB part in one call
#: held it ~90 ms (translate 30 ms, a2b_base64 57 ms), the event loop waiting
SLICE = 1 << 20


def decode_base64(data: bytes) -> bytes:
    """RFC 2045 §6.8, tolerant: characters outside the alphabet are ignored
    ("must be ignored by decoding software"), padding is repaired, and "="
    ends a quantum (so concatenated encodings decode piece by piece). Large
    inputs are worked on `SLICE` octets at a time."""
    if len(data) <= SLICE:
        clean = data.translate(None, _B64_DELETE)
    else:
        clean = b"".join(
            data[i : i + SLICE].translate(None, _B64_DELETE) for i in range(0, len(data), SLICE)
        )
    if b"=" not in clean and len(clean) % 4 == 0:
        return _a2b(clean)
    out = bytearray()
    for chunk in clean.split(b"="):
        rem = len(chunk) % 4
        if rem == 1:
            chunk = chunk[:-1]  # a lone sextet carries no whole octet
        elif rem:
            chunk += b"=" * (4 - rem)
        if chunk:
            out += _a2b(chunk)
    return bytes(out)


def _a2b(clean: bytes) -> bytes:
    """Base64 of whole quanta (padding at the end only), `SLICE` octets a call:
    a slice of whole quanta decodes alone."""
    if len(clean) <= SLICE:
        return binascii.a2b_base64(clean)
    return b"".join(binascii.a2b_base64(clean[i : i + SLICE]) for i in range(0, len(clean), SLICE))


def decode_qp(data: bytes) -> bytes:
    """RFC 2045 §6.7 quoted-printable, tolerant: =XX in either case, a soft line
    break is "=" at the end of a line even with white space after it, trailing
    white space on a line is deleted (rule 3: transport added it), and a "="
    not followed by two hex digits is kept as it is (as Dovecot does). Each line
    keeps its own line end (CRLF or LF). binascii.a2b_qp keeps trailing white
    space and misses "= " soft breaks, so BINARY and BINARY.SIZE were wrong."""
    out: list[bytes] = []
    lines = data.split(b"\n")
    last = len(lines) - 1
    for i, line in enumerate(lines):
        crlf = line.endswith(b"\r")
        line = line.rstrip(b" \t\r")  # RFC 2045 §6.7 (3)
        soft = line.endswith(b"=")
        if soft:
            line = line[:-1]  # RFC 2045 §6.7 (5): soft line break
        if b"=" in line:
            # "=XX" → its octet, any other "=" kept: binascii decodes alike but for
            # an "=" before "=", CR or the end (it reads "==" as "=" and ends at the
            # others), which becomes "=3D" first. All in C: re.sub's Python
            # callback cost ~1 µs an escape (40 MB of them: 10 s)
            line = _unescape(line)
        out.append(line)
        if i < last and not soft:
            out.append(b"\r\n" if crlf else b"\n")
    return b"".join(out)


#: an "=" that starts no escape and that binascii.a2b_qp would not keep
_QP_LONE = re.compile(rb"=(?=[=\r]|\Z)")
#: octets of a line undone in one C call at most (each holds the GIL: other
#: threads, an event loop among them, wait for it to end)
QP_CHUNK = 64 * 1024


def _unescape(line: bytes) -> bytes:
    """The "=XX" escapes of one line (no soft break left) undone, in pieces of
    `QP_CHUNK` octets that never split an escape (nor an "=" from what follows)."""
    if len(line) <= QP_CHUNK:
        return binascii.a2b_qp(_QP_LONE.sub(b"=3D", line))
    out = []
    start = 0
    while start < len(line):
        end = start + QP_CHUNK
        if end < len(line):
            eq = line.rfind(b"=", end - 2, end)
            if eq >= 0:
                end = eq  # the "=" begins the next piece
        out.append(binascii.a2b_qp(_QP_LONE.sub(b"=3D", line[start:end])))
        start = end
    return b"".join(out)


def decode_transfer(data: bytes, encoding: str | None) -> bytes:
    """Undo a Content-Transfer-Encoding; raise `UnknownEncoding` for others."""
    cte = (encoding or "7bit").lower()
    if cte in ("7bit", "8bit", "binary"):
        return data
    if cte == "base64":
        return decode_base64(data)
    if cte == "quoted-printable":
        return decode_qp(data)
    raise UnknownEncoding(cte)


#: Python text codecs that are no MIME charset: escapes that build any code point
#: (``\\ud800``), IDNA and Punycode (quadratic decoders), and oddities
_NOT_CHARSETS = frozenset(
    {"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined", "charmap"}
)
_SURROGATE = re.compile("[\ud800-\udfff]")


@functools.lru_cache(maxsize=256)
def _lookup(charset: str) -> str | None:
    """The codec name of a charset label, or None (cached: a few labels make
    nearly all mail, and each message asks for its own several times)."""
    name = charset.strip().strip('"').lower()
    name = _CHARSET_ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None  # base64_codec, zlib_codec, rot13 ...
    if info.name in _NOT_CHARSETS:
        return None
    return info.name


def valid_text(text: str) -> str:
    """`text` with every surrogate code point (never valid Unicode text) as U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def from_escaped(text: str) -> str:
    """Header text decoded with ``surrogateescape`` (raw 8-bit octets kept as
    lone surrogates) → display text: the octets read as UTF-8 (RFC 6532), else
    Windows-1252, as `header_text` reads them."""
    if text.isascii():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return valid_text(text)
    return decode_charset(raw, "us-ascii")


def decode_charset(data: bytes, charset: str | None) -> str:
    """Bytes in a MIME charset → text; never raises.

    An ASCII label on 8-bit data is read as UTF-8 when that is valid (RFC 6532
    mail is often mislabelled), then as Windows-1252 (WHATWG).
    """
    name = _lookup(charset) if charset else None
    if name is None or name == "cp1252":
        if data.isascii():
            return data.decode("ascii")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode(name or "utf-8", "replace")
    try:
        return valid_text(data.decode(name, "replace"))  # UTF-7 can spell a lone surrogate
    except (LookupError, ValueError, TypeError):  # pragma: no cover - defensive
        return data.decode("utf-8", "replace")


# RFC 2047 §2: encoded-word = "=?" charset "?" encoding "?" encoded-text "?="
_EW = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")


def decode_words(text: str) -> str:
    """Decode RFC 2047 encoded-words in an unfolded header value.

    Whitespace between two encoded-words is dropped (RFC 2047 §6.2); adjacent
    words in one charset are joined as octets before decoding, so characters
    split across words survive.
    """
    if "=?" not in text:
        return text
    out: list[str] = []
    pos = 0
    pending: bytearray | None = None
    pending_cs = ""
    for m in _EW.finditer(text):
        gap = text[pos : m.start()]
        if pending is not None and gap.strip():
            out.append(decode_charset(bytes(pending), pending_cs))
            pending = None
        if pending is None:
            out.append(gap)
        charset = m.group(1).split("*", 1)[0]  # RFC 2231 §5: charset*lang
        payload = m.group(3).encode("ascii", "replace")
        if m.group(2) in "bB":
            octets = decode_base64(payload)
        else:
            octets = binascii.a2b_qp(payload, header=True)  # "_" is SPACE (§4.2)
        if pending is not None and charset.lower() == pending_cs.lower():
            pending += octets
        else:
            if pending is not None:
                out.append(decode_charset(bytes(pending), pending_cs))
            pending = bytearray(octets)
            pending_cs = charset
        pos = m.end()
    if pending is not None:
        out.append(decode_charset(bytes(pending), pending_cs))
    out.append(text[pos:])
    return "".join(out)


def header_text(raw: bytes) -> str:
    """A raw (unfolded) header value as display text: UTF-8 (RFC 6532) or
    Windows-1252 octets, then encoded-words decoded, whitespace collapsed."""
    text = decode_charset(raw, "us-ascii")
    text = decode_words(text)
    return " ".join(text.split())
