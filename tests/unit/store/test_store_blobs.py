"""BlobFiles: durable put (bytes and spool files), safe paths, the sweep."""

from __future__ import annotations

import errno
import os
import time

import pytest

from postier.store import blobs
from postier.store.blobs import BlobFiles, is_blob_id


@pytest.fixture
def files(tmp_path):
    f = BlobFiles(tmp_path / "blobs")
    f.create_dirs()
    return f


def test_put_bytes(files):
    blob_id, size = files.put(b"hello")
    assert is_blob_id(blob_id)
    assert size == 5
    path = files.root / blob_id[:2] / blob_id
    assert path.read_bytes() == b"hello"
    assert files.path(blob_id) == path
    assert files.read(blob_id) == b"hello"
    assert list((files.root / "tmp").iterdir()) == []
    assert files.put(b"hello")[0] != blob_id  # ids are never derived from content


def test_put_spool_file_is_moved(files, tmp_path):
    spool = tmp_path / "spool"
    spool.write_bytes(b"spooled")
    inode = spool.stat().st_ino
    blob_id, size = files.put(spool)
    assert size == 7
    assert not spool.exists()
    assert files.path(blob_id).stat().st_ino == inode  # renamed, not copied


def test_put_spool_file_across_filesystems(files, tmp_path, monkeypatch):
    spool = tmp_path / "spool"
    spool.write_bytes(b"far away")
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append(src)
        if str(src) == str(spool):
            raise OSError(errno.EXDEV, "cross-device link")
        real_rename(src, dst)

    monkeypatch.setattr(blobs.os, "rename", rename)
    blob_id, size = files.put(spool)
    assert (size, files.read(blob_id)) == (8, b"far away")
    assert not spool.exists()
    assert len(calls) == 2  # the failed move, then temp → final


def test_put_failure_leaves_no_temp_file(files, monkeypatch):
    def boom(fd):
        raise OSError(errno.EIO, "disk on fire")

    written = []
    real_write = open

    def spy_open(path, mode="r", *a, **kw):
        written.append(path)
        return real_write(path, mode, *a, **kw)

    monkeypatch.setattr(blobs, "fsync_dir", lambda path: None)
    monkeypatch.setattr(blobs.os, "fsync", boom)
    monkeypatch.setattr(blobs, "open", spy_open, raising=False)
    with pytest.raises(OSError, match="disk on fire"):
        files.put(b"data")
    assert len(written) == 1  # the temp file was created...
    assert list((files.root / "tmp").iterdir()) == []  # ...and removed
    assert list(files.all_ids()) == []


@pytest.mark.parametrize("bad", ["", "../etc/passwd", "A" * 32, "0" * 31, "0" * 33, "g" * 32])
def test_path_refuses_non_ids(files, bad):
    with pytest.raises(ValueError, match="not a blob id"):
        files.path(bad)


def test_sweep(files):
    kept_ref, _ = files.put(b"referenced")
    orphan, _ = files.put(b"orphan")
    young, _ = files.put(b"young orphan")
    tmp_old = files.root / "tmp" / "old.tmp"
    tmp_new = files.root / "tmp" / "new.tmp"
    tmp_old.write_bytes(b"x")
    tmp_new.write_bytes(b"x")
    old = time.time() - 120
    for p in (files.path(kept_ref), files.path(orphan), tmp_old):
        os.utime(p, (old, old))
    removed = files.sweep(lambda b: b == kept_ref, grace=60)
    assert removed == (1, 1)
    assert files.exists(kept_ref)
    assert files.exists(young)
    assert not files.exists(orphan)
    assert not tmp_old.exists()
    assert tmp_new.exists()
    assert sorted(b for b, _ in files.all_ids()) == sorted([kept_ref, young])
