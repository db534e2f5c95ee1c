"""Maildrop locks (RFC 1939 §8: one session per maildrop) that every worker sees.

Rules:
- A lock is an exclusive `flock` on ``data_dir/run/pop3/<user id>.lock``, taken
  without waiting: held by one session of any worker process, refused to every
  other session (of this process or another, since each lock is its own open
  file).
- The kernel releases the lock when its file is closed: when the session ends,
  and when the process holding it dies, even by SIGKILL. A dead worker never
  leaves a maildrop locked.
- The file names are user ids (numbers), never anything a user typed; the files
  stay (empty) for the next login.
- Over PostgreSQL the nodes of a site share the locks in the database instead
  (`DatabaseMaildrops`, rows of `store.postgres.shared`: a lock held by a node
  that died is free again at once); the composition root (`server.root`) picks
  one with the store backend.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from postier.store.models import UserId

if TYPE_CHECKING:
    from postier.store.postgres.shared import SharedState


class MaildropHold(Protocol):
    """One session's hold on a maildrop; `release` is idempotent."""

    async def release(self) -> None: ...


class Maildrops(Protocol):
    async def acquire(self, user_id: UserId) -> MaildropHold | None:
        """The lock, or None when another session (of any worker or node) holds it."""
        ...


class MaildropLock:
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class MaildropLocks:
    """`Maildrops` as lock files: every worker of one machine."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def acquire(self, user_id: UserId) -> MaildropLock | None:
        """The lock, or None when another session holds it."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / f"{int(user_id)}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        return MaildropLock(fd)


class DatabaseMaildrop:
    def __init__(self, state: SharedState, user_id: UserId, token: str) -> None:
        self._state = state
        self._user_id = user_id
        self._token: str | None = token

    async def release(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            await self._state.release_maildrop(self._user_id, token)


class DatabaseMaildrops:
    """`Maildrops` in the PostgreSQL database: every node of a site."""

    def __init__(self, state: SharedState) -> None:
        self._state = state

    async def acquire(self, user_id: UserId) -> DatabaseMaildrop | None:
        token = await self._state.take_maildrop(user_id)
        return None if token is None else DatabaseMaildrop(self._state, user_id, token)
