"""Writing a small file so that a crash leaves the old content or the new, never half.

Rules: temp name in the same folder → write → fsync → rename over the target →
fsync the folder (so the rename itself survives a power cut). The temp file is
removed when anything fails. Used for configs, keys and certificates; message
blobs have their own, batched variant in `store/blobs.py`.
"""

from __future__ import annotations

import os
from pathlib import Path


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
