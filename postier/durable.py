"""Writing a small file so that a crash leaves the old content or the new, never half;
and creating files once when several processes start together.

Rules: temp name in the same folder → write → fsync → rename over the target →
fsync the folder (so the rename itself survives a power cut). The temp file is
removed when anything fails. Used for configs, keys and certificates; message
blobs have their own, batched variant in `store/blobs.py`.

`file_lock` serialises "create it unless it exists" between processes (the
workers of one server, or two servers started at once on one data dir): the
check and the creation both happen under an exclusive `flock` on a lock file
beside the target, which the kernel releases when its holder dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created 0600 if missing) for the block.
    Blocking: call it off the event loop."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Replace `path` with `data` (permissions `mode`), durably."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # exactly `mode`, whatever the umask took away
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
