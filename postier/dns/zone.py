"""Zone-file presentation format for the records postier tells an operator to
publish (`postier domain dns`, `postier dns-check`): both print the same text,
so it is written once here."""

from __future__ import annotations


def quote_txt(text: str) -> str:
    """A TXT value as one or more 255-octet character-strings (RFC 1035 §3.3.14)."""
    data = text.encode()
    chunks = [data[i : i + 255].decode() for i in range(0, len(data), 255)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)
