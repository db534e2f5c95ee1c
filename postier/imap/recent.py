"""\\Recent across the worker processes of one server.

Rules:
- RFC 3501 §2.3.2: a message is \\Recent for exactly one session, the first to
  be told of it. `session.RecentClaims` keeps the highest UID claimed per
  mailbox in memory; with several workers every process must see the others'
  claims, so `SharedRecentClaims` keeps that number in a file every worker
  opens, ``data_dir/run/recent``: slot `mailbox_id` is 8 bytes at offset
  ``8 × mailbox_id`` (a sparse file: only mailboxes ever selected take room).
- A claim reads and writes its slot under a POSIX record lock on those 8 bytes:
  two workers claiming the same new message give it to one of them. The lock is
  held for one read and one write (microseconds) and released by the kernel if
  its holder dies; within a process only the event loop's thread claims.
- The file is a run's state, as the in-memory claims were: the supervisor
  removes it when it starts, so the first session after a restart sees the
  mailbox's messages as \\Recent again.
- Over PostgreSQL every node's sessions claim in the database instead
  (`DatabaseRecentClaims`, a row per mailbox in `store.postgres.shared`): one
  session of the whole site gets a message as \\Recent. The rows outlive a
  restart of the nodes (a message once claimed is not \\Recent again).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from postier.imap.session import RecentClaims, newer
from postier.store.models import MailboxId

if TYPE_CHECKING:
    from postier.store.postgres.shared import SharedState

_SLOT = 8


class SharedRecentClaims(RecentClaims):
    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _read(self, offset: int) -> int:
        return int.from_bytes(os.pread(self._fd, _SLOT, offset).ljust(_SLOT, b"\0"), "little")

    async def claim(self, mailbox_id: MailboxId, uids: Sequence[int]) -> set[int]:
        if not uids:
            return set()
        offset = int(mailbox_id) * _SLOT
        fcntl.lockf(self._fd, fcntl.LOCK_EX, _SLOT, offset)
        try:
            last = self._read(offset)
            mine = newer(uids, last)
            if mine:
                os.pwrite(self._fd, uids[-1].to_bytes(_SLOT, "little"), offset)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, _SLOT, offset)
        return mine

    async def last(self, mailbox_id: MailboxId) -> int:
        return self._read(int(mailbox_id) * _SLOT)

    def close(self) -> None:
        os.close(self._fd)


class DatabaseRecentClaims(RecentClaims):
    def __init__(self, state: SharedState) -> None:
        super().__init__()
        self._state = state

    async def claim(self, mailbox_id: MailboxId, uids: Sequence[int]) -> set[int]:
        if not uids:
            return set()
        before = await self._state.claim_recent(mailbox_id, uids[-1])
        return newer(uids, before)

    async def last(self, mailbox_id: MailboxId) -> int:
        return await self._state.recent_mark(mailbox_id)
