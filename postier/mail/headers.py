"""The header block of a message as raw bytes, with the few look-ups policy needs.

A noun every layer reads (SMTP intake, the filters, the queue, IMAP THREAD), so it
lives here at the bottom and imports no other postier package. Only the header
block is looked at; the body is never parsed or copied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 5322 §3.6.8: field-name = 1*ftext (%d33-57 / %d59-126); §4.5.3: WSP before ":".
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
