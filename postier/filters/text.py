"""The readable text of a message, decoded once for every content stage.

At intake the stages read `Context.texts`, the texts of the message's one
parse (`postier.mime.message.ParsedMessage.texts`); `message_texts` is for
bytes read back later (Bayes learning from a Junk move).

Rules:
- Built on `postier.mime` (offsets into the bytes, no copy of the message): the
  stdlib `email` parser costs more than all the checks that read its output.
- Only inline text/plain and text/html parts count; attachments do not.
- Bounded: at most `MAX_CHARS` characters in all, because spam signals sit at
  the start and a 50 MB text part must not cost 50 MB of regex work per message.
  CPU-bound: callers run it off the event loop (`pipeline.offload`).
"""

from __future__ import annotations

from collections.abc import Callable

from postier.mime.message import MAX_CHARS, ParsedMessage

__all__ = ["MAX_CHARS", "message_texts"]


def message_texts(data: bytes, *, check: Callable[[], None] | None = None) -> list[tuple[str, str]]:
    """(content type, decoded text) of each inline text/plain and text/html part.
    `check` is called between parts (a time budget: it raises to stop)."""
    return ParsedMessage.of(data).texts(check)
