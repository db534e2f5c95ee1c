"""Backup and restore of the SQLite store: a consistent online snapshot, verified.

What it owns: `backup(data_dir, target)` (safe while a server writes), `verify(dir)`
and `restore(dir, data_dir)`, with the manifest that proves a backup whole.

Rules:
- The index is copied with SQLite's online backup API in one step (one read
  transaction): the copy is the database as of one commit, whatever the server
  does meanwhile (WAL lets it go on writing).
- Message files are immutable, so every file the snapshot names is copied after
  it. A file can vanish in between (its message was expunged and the file
  unlinked after that commit): then a new snapshot is taken and what it names is
  copied, until one snapshot's files are all there (`attempts` times at most).
  Files copied for an earlier snapshot that the last one does not name are
  removed again: the backup is exactly the last snapshot.
- Also copied: ``dkim/`` (the keys DNS publishes), ``tls/`` (the self-signed
  certificate) and the demo password of a development setup. Nothing else
  (spool, status, rate-limit history) is state.
- The manifest (``postier-backup.json``) lists every file with its SHA-256 and
  the row counts of the main tables. `verify` recomputes each hash, runs SQLite's
  integrity check and compares the counts; `backup` ends with it, and `restore`
  starts with it, so a damaged backup is never restored.
- Every file is fsynced and written owner-only (0600, folders 0700); the
  manifest is written last, so a backup without one is an unfinished backup.
- `restore` builds the new data dir next to the old one, then swaps them with two
  renames: the old data stays, renamed ``<data_dir>.before-restore-<time>``.
  The caller makes sure no server runs on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from postier.durable import fsync_dir
from postier.store.blobs import is_blob_id, is_inline

DB_NAME = "postier.db"
BLOB_DIR = "blobs"
MANIFEST = "postier-backup.json"
#: folders and files of the data dir copied as they are
COPIED_DIRS = ("dkim", "tls")
COPIED_FILES = ("demo-password",)
#: tables whose row counts the manifest records and `verify` checks
COUNTED = ("domains", "users", "aliases", "mailboxes", "messages", "blobs", "queue")
_CHUNK = 1024 * 1024


class BackupError(Exception):
    """The backup cannot be made, verified or restored; the message says why."""


@dataclass
class Manifest:
    created: str
    source: str
    counts: dict[str, int]
    files: dict[str, str] = field(default_factory=dict)  # relative path → sha256
    size: int = 0  # bytes of all files

    def as_dict(self) -> dict[str, object]:
        return {
            "format": 1,
            "created": self.created,
            "source": self.source,
            "counts": self.counts,
            "size": self.size,
            "files": self.files,
        }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def _copy(src: Path, dst: Path) -> str:
    """Copy durably, owner-only; the SHA-256 of what was read."""
    h = hashlib.sha256()
    dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dst, "wb", opener=_private) as fout:
        while chunk := fin.read(_CHUNK):
            h.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest()


def _snapshot(db: Path, target: Path) -> None:
    """The database as of one commit (online backup API, all pages in one step)."""
    target.unlink(missing_ok=True)
    # not mode=ro: a read-only connection cannot open a WAL database whose -shm
    # file is missing (no server running); query_only keeps this one from writing
    src = sqlite3.connect(db, timeout=30)
    try:
        src.execute("PRAGMA query_only = ON")
        os.close(os.open(target, os.O_RDWR | os.O_CREAT, 0o600))
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # pages=-1: one step, one read transaction
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            dst.close()
    finally:
        src.close()
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_blobs(db: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        ids = {row[0] for row in conn.execute("SELECT id FROM blobs")}
    finally:
        conn.close()
    return {b for b in ids if is_blob_id(b) and not is_inline(b)}


def _counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COUNTED}  # noqa: S608 - table names are constants
    finally:
        conn.close()


def store_counts(data_dir: Path) -> dict[str, int] | None:
    """The row counts of the live store in `data_dir` (None: there is none)."""
    db = data_dir / DB_NAME
    if not db.is_file():
        return None
    conn = sqlite3.connect(db, timeout=30)  # not mode=ro: see _snapshot
    try:
        conn.execute("PRAGMA query_only = ON")
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COUNTED}  # noqa: S608 - table names are constants
    finally:
        conn.close()


def _blob_path(blob_id: str) -> str:
    return f"{BLOB_DIR}/{blob_id[:2]}/{blob_id}"


def backup(data_dir: Path, target: Path, *, attempts: int = 5) -> Manifest:
    """Copy the store in `data_dir` to the empty or missing folder `target`."""
    db = data_dir / DB_NAME
    if not db.is_file():
        raise BackupError(f"no store in {data_dir} ({DB_NAME} not found)")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} is not an empty folder")
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    snap = target / f".{DB_NAME}.snapshot"
    files: dict[str, str] = {}
    for _ in range(attempts):
        _snapshot(db, snap)
        wanted = _file_blobs(snap)
        vanished = []
        for blob_id in sorted(wanted):
            rel = _blob_path(blob_id)
            if rel in files:
                continue
            try:
                files[rel] = _copy(data_dir / rel, target / rel)
            except FileNotFoundError:
                vanished.append(blob_id)  # expunged after the snapshot: take another
        if not vanished:
            break
    else:
        raise BackupError(
            f"the store changed too fast: {len(vanished)} message file(s) vanished after "
            f"each of {attempts} snapshots; try again"
        )
    for rel in [r for r in files if r.rsplit("/", 1)[1] not in wanted]:
        (target / rel).unlink()  # named by an earlier snapshot only
        del files[rel]
    os.replace(snap, target / DB_NAME)
    files[DB_NAME] = _sha256(target / DB_NAME)
    extra = [data_dir / name for name in COPIED_FILES]
    for name in COPIED_DIRS:
        root = data_dir / name
        extra.extend(sorted(root.rglob("*")) if root.is_dir() else [])
    for path in extra:
        if path.is_file() and not path.is_symlink():
            rel = str(path.relative_to(data_dir))
            files[rel] = _copy(path, target / rel)
    for folder in sorted({(target / rel).parent for rel in files}, reverse=True):
        fsync_dir(folder)
    manifest = Manifest(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        source=str(data_dir),
        counts=_counts(target / DB_NAME),
        files=dict(sorted(files.items())),
        size=sum((target / rel).stat().st_size for rel in files),
    )
    with open(target / MANIFEST, "w", opener=_private) as f:
        f.write(json.dumps(manifest.as_dict(), indent=1))
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(target)
    return verify(target)


def verify(folder: Path) -> Manifest:
    """Check a backup: every file's SHA-256, SQLite's integrity check, the row
    counts, and that every message file the database names is there."""
    try:
        doc = json.loads((folder / MANIFEST).read_text())
        manifest = Manifest(
            created=str(doc["created"]),
            source=str(doc["source"]),
            counts={str(k): int(v) for k, v in doc["counts"].items()},
            files={str(k): str(v) for k, v in doc["files"].items()},
            size=int(doc.get("size", 0)),
        )
    except FileNotFoundError:
        raise BackupError(f"{folder}: no {MANIFEST}: not a postier backup, or unfinished") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise BackupError(f"{folder / MANIFEST}: unreadable: {e}") from None
    for rel, digest in manifest.files.items():
        path = folder / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise BackupError(f"{MANIFEST}: {rel!r} is not a path inside the backup")
        if not path.is_file():
            raise BackupError(f"{folder}: {rel} is missing")
        if _sha256(path) != digest:
            raise BackupError(f"{folder}: {rel} does not match its checksum")
    db = folder / DB_NAME
    if DB_NAME not in manifest.files:
        raise BackupError(f"{folder}: the manifest names no {DB_NAME}")
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
        counts = _counts(db)
        named = _file_blobs(db)
    except sqlite3.Error as e:
        raise BackupError(f"{db}: {e}") from None
    if result != "ok":
        raise BackupError(f"{db}: integrity check failed: {result}")
    if counts != manifest.counts:
        raise BackupError(f"{db}: row counts {counts} differ from the manifest's")
    missing = [b for b in named if _blob_path(b) not in manifest.files]
    if missing:
        raise BackupError(
            f"{folder}: {len(missing)} message file(s) named by the index are missing"
        )
    return manifest


def restore(folder: Path, data_dir: Path) -> tuple[Manifest, Path | None]:
    """Replace `data_dir` by the verified backup in `folder`; returns the manifest
    and where the old data dir went (None when there was none)."""
    manifest = verify(folder)
    parent = data_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    new = parent / f".{data_dir.name}.restoring-{os.getpid()}"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(mode=0o700)
    try:
        for rel, digest in manifest.files.items():
            if _copy(folder / rel, new / rel) != digest:
                raise BackupError(f"{folder}: {rel} changed while it was restored")
        for d in sorted({(new / rel).parent for rel in manifest.files}, reverse=True):
            fsync_dir(d)
        old: Path | None = None
        if data_dir.exists():
            stamp = time.strftime("%Y%m%d-%H%M%S")
            old = parent / f"{data_dir.name}.before-restore-{stamp}"
            os.rename(data_dir, old)
        try:
            os.rename(new, data_dir)
        except OSError:
            if old is not None:
                os.rename(old, data_dir)  # put the old data back where it was
            raise
        fsync_dir(parent)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(new)
        raise
    return manifest, old
