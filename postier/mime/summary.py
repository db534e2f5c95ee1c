"""`summarize(data)`: everything intake caches about a message, parsed once.

Placeholder contract (the mime package fills it in): never raises on any bytes;
malformed MIME yields a best-effort summary.
"""

from __future__ import annotations

from postier.store.models import MessageSummary


def summarize(data: bytes) -> MessageSummary:
    end = data.find(b"\r\n\r\n")
    header_size = end + 4 if end >= 0 else len(data)
    return MessageSummary(header_size=header_size)
