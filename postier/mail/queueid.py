"""Queue ids (QIDs): the name of one accepted message, as SMTP replies
("queued as ..."), the queue, the store, logs and the CLI spell it.

`new_queue_id()` makes ids that sort by creation time and are unique across
processes and nodes, in the manner of Postfix long queue ids: 11 Crockford-base32
digits of microseconds since the epoch, then 5 random digits (25 bits). Within one
process they strictly increase even when the clock steps back or two ids fall in
one microsecond. Every store backend shares this one generator.
"""

from __future__ import annotations

import threading
import time
from typing import NewType

from postier.mail.randomid import random_bits

QueueId = NewType("QueueId", str)

_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: ASCII order = numeric order
_ALPHABET = frozenset(_B32)
_TIME_DIGITS = 11  # 55 bits of microseconds: good until the year 3111
_RANDOM_DIGITS = 5

_qid_lock = threading.Lock()
_qid_last = 0


def _b32(value: int, digits: int) -> str:
    out = []
    for _ in range(digits):
        out.append(_B32[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_queue_id() -> QueueId:
    global _qid_last
    with _qid_lock:
        now = max(time.time_ns() // 1000, _qid_last + 1)
        _qid_last = now
    return QueueId(_b32(now, _TIME_DIGITS) + _b32(random_bits(25), _RANDOM_DIGITS))


def is_qid(text: str) -> bool:
    return len(text) == 16 and all(c in _ALPHABET for c in text.upper())
