"""postier.store: the storage interface (`api`, `models`, `errors`) and its backends.

This module owns two small things every backend and caller shares:

- `open_store(settings)`: the backend named by ``store.backend``, not yet opened
  (``store = open_store(s); await store.open(); ...; await store.close()``).
- `new_queue_id()`: queue ids (QIDs) that sort by creation time and are unique
  across processes and nodes, in the manner of Postfix long queue ids: 11
  Crockford-base32 digits of microseconds since the epoch, then 5 random digits
  (25 bits). Within one process they strictly increase even when the clock steps
  back or two ids fall in one microsecond.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import TYPE_CHECKING

from postier.store.models import QueueId

if TYPE_CHECKING:
    from postier.config.schema import Settings
    from postier.store.api import Store

_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: ASCII order = numeric order
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
    return QueueId(_b32(now, _TIME_DIGITS) + _b32(secrets.randbits(25), _RANDOM_DIGITS))


def open_store(settings: Settings) -> Store:
    """The configured backend, constructed but not opened."""
    backend = settings.store.backend
    if backend == "sqlite":
        from postier.store.sqlite import SqliteStore

        return SqliteStore(
            settings.server.data_dir,
            default_quota=settings.store.default_quota,
            inline_max=settings.store.inline_max,
        )
    if backend == "postgres":
        raise NotImplementedError("the postgres store backend is not written yet")
    raise ValueError(f"store.backend: unknown backend {backend!r} (sqlite or postgres)")
