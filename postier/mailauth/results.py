"""Authentication-Results (RFC 8601): writing ours, removing forged ones.

Rules:
- One ``Authentication-Results:`` field per message, authserv-id = the server's
  host name (RFC 8601 §2.5); each method result is ``method=result`` followed by
  its properties (``ptype.property=value``), separated by ``;``. With no method
  evaluated the field says ``none`` (RFC 8601 §2.2).
- Before ours is added, every incoming Authentication-Results field whose
  authserv-id equals ours (case-insensitive) is removed (RFC 8601 §5: "MUST
  remove or rename"), so no sender can forge our verdicts. Fields of other
  authserv-ids are kept. The same applies to the X-Spam-* fields we write.
- Values we did not produce (domains, addresses from the message) are written as
  quoted strings when they are not RFC 2045 tokens, and stripped of CR, LF and
  control characters, so they cannot break or inject a header line.
- Lines are folded before each method, and within a method between its
  properties, so no line exceeds 998 octets (RFC 5322 §2.1.1). Values and
  comments taken from the message are cut to 255 octets (no domain, address or
  reason we report is longer when it is valid), so a property always fits a line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

_FIELD_START = re.compile(rb"^([!-9;-~]+)[ \t]*:")
# RFC 2045 §5.1: token := 1*<any (US-ASCII) CHAR except SPACE, CTLs, or tspecials>
_TOKEN = re.compile(r"^[!#$%&\'*+\-.0-9A-Z^_`a-z{|}~]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# Longest foreign text kept in a value or comment; longer text is cut and marked "...".
_MAX_FOREIGN = 255
# RFC 5322 §2.1.1: at most 998 octets per line, CRLF excluded.
_MAX_LINE = 998


def _cut(text: str) -> str:
    """`text` cut to _MAX_FOREIGN octets of UTF-8, on a character boundary.

    Lone surrogates (undecodable bytes kept by a caller) become "?", so the
    field always encodes as UTF-8.
    """
    raw = text.encode("utf-8", "replace")
    if len(raw) <= _MAX_FOREIGN:
        return raw.decode()
    return raw[: _MAX_FOREIGN - 3].decode("utf-8", "ignore") + "..."


def value(text: str) -> str:
    """A property value: a token as is, anything else as a quoted-string (RFC 8601 §2.2)."""
    text = _cut(_CONTROL.sub("", text))
    if text and _TOKEN.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def comment(text: str) -> str:
    """A comment (RFC 5322 §3.2.2): parentheses and backslashes escaped, no controls."""
    text = _cut(_CONTROL.sub("", text))
    return "(" + re.sub(r"([()\\])", r"\\\1", text) + ")"


def header(authserv_id: str, methods: Iterable[str]) -> bytes:
    """The whole field, CRLF-terminated; `methods` are "method=result props" strings."""
    parts = [m for m in methods if m]
    if not parts:
        return f"Authentication-Results: {authserv_id}; none\r\n".encode()
    body = ";\r\n\t".join(_fold(part) for part in parts)
    return f"Authentication-Results: {authserv_id};\r\n\t{body}\r\n".encode()


def _units(method: str) -> list[str]:
    """`method` split at the spaces outside quoted strings and comments (one linear pass)."""
    units: list[str] = []
    start = 0
    depth = 0  # comment nesting
    quoted = escaped = False
    for i, ch in enumerate(method):
        if escaped:
            escaped = False
        elif ch == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif ch == '"' and not depth:
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif ch == " " and not depth:
            units.append(method[start:i])
            start = i + 1
    units.append(method[start:])
    return [u for u in units if u]


def _fold(method: str) -> str:
    """One method on as few lines as fit in 998 octets, folded between its units."""
    if len(method.encode()) + 1 <= _MAX_LINE - 1:
        return method
    lines: list[str] = []
    line = ""
    for unit in _units(method):
        if line and len((line + " " + unit).encode()) + 2 > _MAX_LINE:
            lines.append(line)
            line = unit
        else:
            line = f"{line} {unit}" if line else unit
    lines.append(line)
    return "\r\n\t".join(lines)


def authserv_id_of(field_value: str) -> str:
    """The authserv-id of an Authentication-Results value (RFC 8601 §2.2):
    the first token, after any leading CFWS."""
    text = field_value.strip()
    while text.startswith("("):  # skip leading comments (no nesting needed for ids)
        end = text.find(")")
        if end < 0:
            return ""
        text = text[end + 1 :].strip()
    m = re.match(r'^("(?:[^"\\]|\\.)*"|[^\s;()]+)', text)
    if not m:
        return ""
    token = m.group(1)
    if token.startswith('"'):
        token = re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


def _fields(header_block: bytes) -> list[tuple[bytes, bytes]]:
    """The header block split into (name, whole field bytes incl. folded lines)."""
    out: list[tuple[bytes, bytes]] = []
    for line in header_block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and out:
            name, raw = out[-1]
            out[-1] = (name, raw + line)
            continue
        m = _FIELD_START.match(line)
        out.append((m.group(1).lower() if m else b"", line))
    return out


def drop_fields(header_block: bytes, unwanted: Callable[[str, str], bool]) -> bytes:
    """The header block without the fields for which ``unwanted(name, value)`` is
    true (name lower-case, value unfolded and decoded); all else byte-identical."""
    kept = []
    for name, raw in _fields(header_block):
        if name:
            field_value = raw.split(b":", 1)[1].replace(b"\r\n", b"").replace(b"\n", b"")
            if unwanted(
                name.decode("ascii", "replace"), field_value.decode("utf-8", "replace").strip()
            ):
                continue
        kept.append(raw)
    return b"".join(kept)


def forged_fields(authserv_id: str) -> Callable[[str, str], bool]:
    """The predicate for `drop_fields`: our Authentication-Results (RFC 8601 §5) and
    any X-Spam-Status/X-Spam-Report/X-Spam-Score (only we write those)."""
    ours = authserv_id.lower()

    def unwanted(name: str, field_value: str) -> bool:
        if name == "authentication-results":
            return authserv_id_of(field_value).lower() == ours
        return name in ("x-spam-status", "x-spam-report", "x-spam-score")

    return unwanted
