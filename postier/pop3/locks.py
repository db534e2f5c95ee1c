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
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from postier.store.models import UserId


class MaildropLock:
    """One session's hold on a maildrop; `release` is idempotent."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class MaildropLocks:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def acquire(self, user_id: UserId) -> MaildropLock | None:
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
