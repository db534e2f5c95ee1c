"""IMAP BODY[section], BINARY[section] and BINARY.SIZE[section] from raw bytes.

Owns: the section-spec grammar (RFC 9051 §6.4.5 / RFC 3501 §6.4.5) and the
octets each section names, taken from the original message bytes via the
`Part` tree offsets.

Rules (RFC 9051 §6.4.5):
- ``""`` is the whole message; HEADER the header including the blank line;
  TEXT the body; HEADER.FIELDS (list) / HEADER.FIELDS.NOT (list) the matching
  (non-matching) header fields, names compared case-insensitively, in message
  order and with their folding, followed by a blank line (CRLF).
- Part numbers walk the tree: the children of a multipart; part 1 of a
  non-multipart message is its body; after a message/rfc822 (or message/global)
  part, the numbers continue inside the encapsulated message.
- N alone is the body of part N (for message/rfc822 parts, the whole
  encapsulated message); N.MIME the MIME header of part N; N.HEADER, N.TEXT,
  N.HEADER.FIELDS[.NOT] require part N to be message/rfc822 or message/global.
- A section that names nothing (no such part, HEADER of a non-message part)
  gives None; IMAP servers commonly answer such fetches with an empty string.
- BINARY (RFC 3516 §4.2) decodes the transfer encoding of a leaf part; an
  unknown encoding raises `UnknownEncoding` (→ ``[UNKNOWN-CTE]``). Only part
  numbers are allowed in a BINARY section; ``BINARY[]`` is the whole message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from postier.mime.encoding import UnknownEncoding, decode_transfer
from postier.mime.parse import Part

__all__ = [
    "Section",
    "SectionError",
    "SectionText",
    "UnknownEncoding",
    "binary",
    "binary_size",
    "extract",
    "header_fields",
    "partial",
    "resolve",
]


class SectionText(enum.Enum):
    HEADER = "HEADER"
    HEADER_FIELDS = "HEADER.FIELDS"
    HEADER_FIELDS_NOT = "HEADER.FIELDS.NOT"
    TEXT = "TEXT"
    MIME = "MIME"


class SectionError(ValueError):
    """A section-spec that does not follow the RFC 9051 §9 grammar."""


@dataclass(frozen=True)
class Section:
    """A parsed section-spec: part path, optional text specifier, field names."""

    path: tuple[int, ...] = ()
    text: SectionText | None = None
    fields: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> Section:
        """Parse what is between the brackets of ``BODY[...]``.

        section-spec = section-msgtext / (section-part ["." section-text])
        section-part = nz-number *("." nz-number)
        section-text = section-msgtext / "MIME"
        section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT"
        header-list = "(" header-fld-name *(SP header-fld-name) ")"

        Header names may be atoms or quoted strings (literals must be resolved
        by the IMAP reader and passed to the constructor instead).
        """
        s = spec.strip()
        if not s:
            return cls()
        head, sp, rest = s.partition(" ")
        parts = head.split(".")
        path: list[int] = []
        while parts and parts[0].isascii() and parts[0].isdigit():
            n = parts.pop(0)
            if n.startswith("0"):
                raise SectionError(f"bad part number {n!r}")  # nz-number
            path.append(int(n))
        word = ".".join(parts).upper()
        if not word:
            if sp:
                raise SectionError("unexpected text after the part number")
            return cls(tuple(path))
        try:
            text = SectionText(word)
        except ValueError:
            raise SectionError(f"unknown section text {word!r}") from None
        if text is SectionText.MIME and not path:
            raise SectionError("MIME needs a part number")  # RFC 9051 §6.4.5
        fields: tuple[str, ...] = ()
        if text in (SectionText.HEADER_FIELDS, SectionText.HEADER_FIELDS_NOT):
            fields = _header_list(rest)
        elif sp:
            raise SectionError(f"unexpected text after {word}")
        return cls(tuple(path), text, fields)


def _header_list(s: str) -> tuple[str, ...]:
    s = s.strip()
    if len(s) < 2 or s[0] != "(" or s[-1] != ")":
        raise SectionError("header-list must be parenthesised")
    inner = s[1:-1]
    names: list[str] = []
    i, n = 0, len(inner)
    while i < n:
        if inner[i] == " ":
            i += 1
            continue
        if inner[i] == '"':
            buf: list[str] = []
            i += 1
            while i < n and inner[i] != '"':
                if inner[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(inner[i])
                i += 1
            if i >= n:
                raise SectionError("unterminated quoted header name")
            i += 1
            names.append("".join(buf))
        else:
            j = inner.find(" ", i)
            j = n if j < 0 else j
            names.append(inner[i:j])
            i = j
    if not names:
        raise SectionError("empty header-list")  # 1*header-fld-name
    return tuple(names)


def resolve(root: Part, path: tuple[int, ...]) -> Part | None:
    """The part a numeric section path names, or None. An empty path is `root`."""
    cur = root
    is_message = True  # cur holds a message header (root or encapsulated)
    for k, n in enumerate(path):
        if cur.is_multipart:
            if not 1 <= n <= len(cur.children):
                return None
            cur = cur.children[n - 1]
        elif n == 1 and is_message:
            pass  # part 1 of a non-multipart message is its body
        else:
            return None
        is_message = False
        if k + 1 < len(path) and cur.message is not None:
            cur = cur.message
            is_message = True
    return cur


def header_fields(data: bytes, start: int, end: int) -> list[tuple[str, int, int]]:
    """(lower name, start, end) of each field line (with continuations and line
    end) in data[start:end]; lines without a field name are skipped."""
    out: list[tuple[str, int, int]] = []
    pos = start
    cur_name: str | None = None
    cur_start = 0
    while pos < end:
        nl = data.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        c = data[pos]
        if c in (0x20, 0x09) and cur_name is not None:
            pos = line_end
            continue  # continuation of the current field
        if cur_name is not None:
            out.append((cur_name, cur_start, pos))
            cur_name = None
        colon = data.find(b":", pos, line_end)
        if colon > pos:
            name = data[pos:colon].rstrip(b" \t")
            if name and b" " not in name and b"\t" not in name:
                cur_name = name.decode("latin-1").lower()
                cur_start = pos
        pos = line_end
    if cur_name is not None:
        out.append((cur_name, cur_start, end))
    return out


def _fields(data: bytes, msg: Part, names: tuple[str, ...], negate: bool) -> bytes:
    wanted = {n.lower() for n in names}
    chunks = [
        data[s:e]
        for name, s, e in header_fields(data, msg.header_start, msg.header_end)
        if (name in wanted) != negate
    ]
    # RFC 9051 §6.4.5: the subset "followed by" the blank line; a field that
    # lacked a line end (header without body) gets one so the blank line counts.
    if chunks and not chunks[-1].endswith(b"\n"):
        chunks[-1] += b"\r\n"
    chunks.append(b"\r\n")
    return b"".join(chunks)


def extract(data: bytes, root: Part, section: Section) -> bytes | None:
    """The octets of BODY[section] (before any <partial>), or None."""
    target = resolve(root, section.path)
    if target is None:
        return None
    text = section.text
    if text is None:
        if not section.path:
            return data[root.header_start : root.body_end]
        return data[target.body_start : target.body_end]
    if text is SectionText.MIME:
        return data[target.header_start : target.body_start]
    msg = target
    if section.path:
        if target.message is None:
            return None  # HEADER/TEXT need a message/rfc822 part (RFC 9051 §6.4.5)
        msg = target.message
    if text is SectionText.HEADER:
        return data[msg.header_start : msg.body_start]
    if text is SectionText.TEXT:
        return data[msg.body_start : msg.body_end]
    return _fields(data, msg, section.fields, text is SectionText.HEADER_FIELDS_NOT)


def partial(octets: bytes, start: int, length: int | None = None) -> bytes:
    """RFC 9051 §6.4.5 ``<start.length>``: a start past the end gives empty."""
    if start >= len(octets):
        return b""
    return octets[start:] if length is None else octets[start : start + length]


def binary(data: bytes, root: Part, path: tuple[int, ...]) -> bytes | None:
    """BINARY[path] (RFC 3516 §4.2): the part's body with its transfer encoding
    undone. None if no such part; `UnknownEncoding` for an unknown encoding."""
    if not path:
        return data
    target = resolve(root, path)
    if target is None:
        return None
    body = data[target.body_start : target.body_end]
    if target.is_multipart or target.message is not None:
        return body
    return decode_transfer(body, target.encoding)


def binary_size(data: bytes, root: Part, path: tuple[int, ...]) -> int | None:
    """BINARY.SIZE[path] (RFC 3516 §4.2): octets of the decoded part."""
    if path:
        target = resolve(root, path)
        if target is None:
            return None
        if target.cte in ("7bit", "8bit", "binary"):
            return target.size  # identity encodings need no decoding
    decoded = binary(data, root, path)
    return None if decoded is None else len(decoded)
