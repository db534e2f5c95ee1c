"""The store's files are its owner's alone, whatever the process umask: they hold
password hashes and people's mail."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from postier.auth.passwords import hash_password
from postier.server.app import check_data_dir
from postier.store.models import DeliveryTarget
from postier.store.sqlite import SqliteStore
from tests.support.messages import new_message


async def test_files_are_private_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = SqliteStore(tmp_path / "data", inline_max=0)  # every message a file
        await store.open()
        try:
            await store.add_domain("example.test")
            user = await store.add_user("a@example.test", hash_password("password"))
            res = await store.deliver(
                new_message(b"Subject: x\r\n\r\nhi\r\n"), [DeliveryTarget(user.id)]
            )
            assert res.blob_id is not None
            blob = await store.blob_path(res.blob_id)
        finally:
            await store.close()
    finally:
        os.umask(old)
    assert blob is not None
    data = tmp_path / "data"
    modes = {
        str(p.relative_to(tmp_path)): p.stat().st_mode & 0o777
        for p in (data, data / "postier.db", data / "blobs", blob.parent, blob)
    }
    assert modes == {
        "data": 0o700,
        "data/postier.db": 0o600,
        "data/blobs": 0o700,
        str(blob.parent.relative_to(tmp_path)): 0o700,
        str(blob.relative_to(tmp_path)): 0o600,
    }


def test_server_warns_about_a_data_dir_others_can_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="postier.server"):
        check_data_dir(data)
    assert [r.getMessage() for r in caplog.records] == [
        f"server.data_dir {data} has mode 0755: other users may read its mail and "
        f"password hashes (chmod 700 {data})"
    ]
    caplog.clear()
    fresh = tmp_path / "fresh"
    check_data_dir(fresh)
    assert fresh.stat().st_mode & 0o777 == 0o700
    assert caplog.records == []
