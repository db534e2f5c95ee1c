"""Immutable message blobs as files: ``<root>/<xx>/<blob id>``.

Rules:
- A blob id is 32 lower-case hex digits from `randomid` (never derived from anything
  a user typed); ``xx`` is its first two digits. `path()` refuses anything else, so
  no caller can turn input into a path.
- Small messages are not files at all: the index keeps their bytes in its own
  transaction (see `sqlite/store.py`), so they are durable with the commit's one
  WAL fsync instead of two fsyncs each. Their ids are ``i`` + 31 hex digits,
  time-ordered (`new_inline_id`, `is_inline`); `path()` refuses them too.
- Writing is: temp file in ``<root>/tmp`` → write → fsync → rename to the final
  name → fsync the directory (and the fan-out directory's parent when it was just
  created). When `put()` returns, the blob survives a crash.
- A spool file given as a `Path` is fsynced and renamed into place when it lives on
  the same filesystem (no copy), else copied the same way as bytes; the source is
  consumed either way.
- Files are 0600 and directories 0700 whatever the umask: they are people's mail.
- Blobs are never modified. Who may delete one is the index's business (the
  reference count lives there); `sweep()` only removes files that the caller says
  are unreferenced and that are older than a grace period, so a blob another process
  has just written but not yet committed is left alone.

Why hand-written: a few `os` calls; no library adds anything but dependencies.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from postier.durable import fsync_dir
from postier.mail.randomid import random_hex
from postier.store.models import BlobId

_BLOB_ID = re.compile(r"^[0-9a-f]{32}$")
_INLINE_ID = re.compile(r"^i[0-9a-f]{31}$")
_TMP = "tmp"
_COPY_CHUNK = 1024 * 1024


def _private(path: str, flags: int) -> int:
    """`open()`'s opener for files only the owner may read."""
    return os.open(path, flags, 0o600)


def new_blob_id() -> BlobId:
    return BlobId(random_hex(16))


def new_inline_id() -> BlobId:
    """``i``, 14 hex digits of microseconds since the epoch, 17 random hex digits
    (68 bits): an id made later sorts later, so the index's b-trees keyed by it
    (blobs, blob_data, messages.blob_id) grow at their right edge, and a group
    commit dirties a few pages instead of about three per message (store
    micro-benchmark, 1 KB deliveries 11 per commit: 28.4 -> 17.8 KB written per
    delivery). Inline ids never name a file or leave the server."""
    return BlobId(f"i{time.time_ns() // 1000:014x}{random_hex(9)[:17]}")


def is_blob_id(text: str) -> bool:
    """A file blob id or an inline one: the only ids the store accepts."""
    return bool(_BLOB_ID.match(text) or _INLINE_ID.match(text))


def is_inline(text: str) -> bool:
    return bool(_INLINE_ID.match(text))


class BlobFiles:
    """The blob directory. All methods block: call them from a worker thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / _TMP

    def create_dirs(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._tmp.mkdir(mode=0o700, exist_ok=True)

    def path(self, blob_id: str) -> Path:
        if not _BLOB_ID.match(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return self.root / blob_id[:2] / blob_id

    def _final_dir(self, blob_id: BlobId) -> Path:
        d = self.root / blob_id[:2]
        if not d.is_dir():
            d.mkdir(mode=0o700, exist_ok=True)
            fsync_dir(self.root)  # the new fan-out directory's entry must be durable too
        return d

    def put(self, source: bytes | Path) -> tuple[BlobId, int]:
        """Store `source` durably under a new id; returns (id, size in octets)."""
        blob_id = new_blob_id()
        final = self.path(blob_id)
        final_dir = self._final_dir(blob_id)
        if isinstance(source, Path):
            fd = os.open(source, os.O_RDONLY)
            try:
                os.fsync(fd)  # the spool writer may not have synced it
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            try:
                # a fresh mtime keeps a concurrent sweep (grace period) away from it
                os.utime(source)
                os.rename(source, final)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                self._write_copy(final, source)
                source.unlink()
            fsync_dir(final_dir)
            return blob_id, size
        self._write_copy(final, source)
        fsync_dir(final_dir)
        return blob_id, len(source)

    def put_as(self, blob_id: str, data: bytes, *, sync_dir: bool = True) -> None:
        """Store `data` durably under the given id (`store copy`: the blob of another
        store keeps its id); a file an interrupted copy left there is replaced.
        Without `sync_dir` the caller fsyncs the fan-out directory itself (once for
        many files)."""
        final = self.path(blob_id)
        final_dir = self._final_dir(BlobId(blob_id))
        self._write_copy(final, data)
        if sync_dir:
            fsync_dir(final_dir)

    def _write_copy(self, final: Path, source: bytes | Path) -> None:
        tmp = self._tmp / f"{secrets.token_hex(8)}.tmp"
        try:
            with open(tmp, "xb", opener=_private) as out:
                if isinstance(source, Path):
                    with open(source, "rb") as src:
                        shutil.copyfileobj(src, out, _COPY_CHUNK)
                else:
                    out.write(source)
                out.flush()
                os.fsync(out.fileno())
            os.rename(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def read(self, blob_id: str, skip: int = 0) -> bytes:
        """The blob's bytes from offset `skip`; `FileNotFoundError` when it does
        not exist."""
        if not skip:
            return self.path(blob_id).read_bytes()
        with open(self.path(blob_id), "rb") as f:
            f.seek(skip)
            return f.read()

    def exists(self, blob_id: str) -> bool:
        return self.path(blob_id).is_file()

    def delete(self, blob_id: str) -> None:
        self.path(blob_id).unlink(missing_ok=True)

    def all_ids(self) -> Iterable[tuple[BlobId, float]]:
        """Every stored blob with its mtime (for the sweep and for checks)."""
        for sub in self.root.iterdir():
            if sub.name == _TMP or not sub.is_dir():
                continue
            for f in sub.iterdir():
                if is_blob_id(f.name) and f.name[:2] == sub.name:
                    try:
                        yield BlobId(f.name), f.stat().st_mtime
                    except FileNotFoundError:
                        continue

    def sweep(
        self, is_referenced: Callable[[BlobId], bool], grace: float, now: float | None = None
    ) -> tuple[int, int]:
        """Delete temp files and unreferenced blobs older than `grace` seconds.

        Returns (temp files removed, orphan blobs removed). `is_referenced` must
        answer from a view of the index taken *before* this call started, so a
        blob committed meanwhile is either young (kept) or referenced.
        """
        now = time.time() if now is None else now
        temps = 0
        for f in self._tmp.iterdir():
            try:
                if now - f.stat().st_mtime > grace:
                    f.unlink()
                    temps += 1
            except FileNotFoundError:
                continue
        orphans = 0
        for blob_id, mtime in list(self.all_ids()):
            if now - mtime > grace and not is_referenced(blob_id):
                self.delete(blob_id)
                orphans += 1
        return temps, orphans
