"""A real clamd (Debian clamav-daemon) with a locally written signature database."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postier.filters.clamd import ClamdError, instream
from tests.conftest import need_tool
from tests.integration.test_filters import send, start

MARKER = b"POSTIER-TEST-VIRUS-SIGNATURE"


@pytest.fixture
def clamd(tmp_path: Path) -> Iterator[Path]:
    exe = "/usr/sbin/clamd" if Path("/usr/sbin/clamd").exists() else need_tool("clamd")
    base = tmp_path / "clamd"
    (base / "db").mkdir(parents=True)
    # an .ndb body signature: Name:TargetType(0 = any):Offset(* = anywhere):HexSignature
    (base / "db" / "postier.ndb").write_text(f"Postier.Test.Signature:0:*:{MARKER.hex()}\n")
    sock = base / "clamd.sock"
    (base / "clamd.conf").write_text(
        f"LocalSocket {sock}\nDatabaseDirectory {base / 'db'}\nForeground yes\n"
        f"LogFile {base / 'clamd.log'}\nTemporaryDirectory {base}\n"
    )
    proc = subprocess.Popen(
        [exe, "-c", str(base / "clamd.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert proc.poll() is None, (base / "clamd.log").read_text()
            assert time.monotonic() < deadline, "clamd did not start"
            time.sleep(0.1)
        yield sock
    finally:
        proc.terminate()
        proc.wait(30)


async def test_instream_found_and_ok(clamd):
    assert (
        await instream(str(clamd), b"x " + MARKER + b" y")
        == "Postier.Test.Signature.UNOFFICIAL FOUND"
    )
    assert await instream(str(clamd), b"clean", chunk_size=2) == "OK"


async def test_instream_unreachable(tmp_path):
    with pytest.raises(ClamdError, match="cannot talk to clamd"):
        await instream(str(tmp_path / "nothing.sock"), b"x", timeout=2)


def test_clamd_stage_refuses_over_smtp(clamd, tmp_path):
    srv = start(tmp_path, f'[clamd]\nenabled = true\nsocket = "{clamd}"\n')
    try:
        data = b"Subject: t\r\nFrom: a@remote.test\r\n\r\n" + MARKER + b"\r\n"
        replies = send(srv.port("mx"), "a@remote.test", "bob@example.test", data)
        assert replies[4] == (
            b"554 5.7.1 Message rejected: infected with Postier.Test.Signature.UNOFFICIAL\r\n"
        )
    finally:
        srv.stop()


def test_clamd_down_fail_closed_tempfails(tmp_path):
    srv = start(
        tmp_path, f'[clamd]\nenabled = true\nsocket = "{tmp_path}/none.sock"\nfail_open = false\n'
    )
    try:
        replies = send(
            srv.port("mx"), "a@remote.test", "bob@example.test", b"Subject: t\r\n\r\nx\r\n"
        )
        assert replies[4] == b"451 4.7.0 Virus scanner unavailable, try again later\r\n"
    finally:
        srv.stop()
