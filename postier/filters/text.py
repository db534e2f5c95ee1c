"""The readable text of a message, decoded once for every content stage.

Rules:
- Built on `postier.mime` (offsets into the bytes, no copy of the message): the
  stdlib `email` parser costs more than all the checks that read its output.
- Only inline text/plain and text/html parts count; attachments do not.
- Bounded: at most `max_chars` characters in all, because spam signals sit at
  the start and a 50 MB text part must not cost 50 MB of regex work per message.
  CPU-bound: callers run it off the event loop (`pipeline.offload`).
"""

from __future__ import annotations

from collections.abc import Callable

from postier.mime import parse
from postier.mime.encoding import UnknownEncoding, decode_charset, decode_transfer

MAX_CHARS = 64 * 1024


def message_texts(
    data: bytes, *, max_chars: int = MAX_CHARS, check: Callable[[], None] | None = None
) -> list[tuple[str, str]]:
    """(content type, decoded text) of each inline text/plain and text/html part.
    `check` is called between parts (a time budget: it raises to stop)."""
    out: list[tuple[str, str]] = []
    budget = max_chars
    for part in parse(data).walk():
        if check is not None:
            check()
        if part.is_multipart or budget <= 0:
            continue
        ctype = f"{part.maintype}/{part.subtype}".lower()
        if ctype not in ("text/plain", "text/html"):
            continue
        if (part.disposition or "").lower() == "attachment":
            continue
        # a few bytes per character at most: cut the raw body before decoding
        raw = data[part.body_start : min(part.body_end, part.body_start + budget * 4)]
        try:
            payload = decode_transfer(raw, part.cte)
        except UnknownEncoding:
            continue
        text = decode_charset(payload, part.param("charset"))[:budget]
        budget -= len(text)
        out.append((ctype, text))
    return out
