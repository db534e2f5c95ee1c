"""Queue ids, as the SMTP layer and the queue name them.

The generator lives with the store (`postier.store.new_queue_id`), which every
backend shares: 16 Crockford-base32 characters, sortable by creation time,
unique across processes and nodes.
"""

from __future__ import annotations

from postier.store import new_queue_id as new_qid

_ALPHABET = frozenset("0123456789ABCDEFGHJKMNPQRSTVWXYZ")

__all__ = ["is_qid", "new_qid"]


def is_qid(text: str) -> bool:
    return len(text) == 16 and all(c in _ALPHABET for c in text.upper())
