"""A real clamd (Debian clamav-daemon) with a locally written signature database."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postier.filters.clamd import ClamdError, instream
from tests.conftest import need_tool
from tests.integration.smtp_helpers import inbox
from tests.integration.test_filters import qid_of, send, start

MARKER = b"POSTIER-TEST-VIRUS-SIGNATURE"


@contextlib.contextmanager
def running_clamd(tmp_path: Path, extra: str = "") -> Iterator[Path]:
    """clamd with the test signature database; `extra`: more clamd.conf lines."""
    exe = "/usr/sbin/clamd" if Path("/usr/sbin/clamd").exists() else need_tool("clamd")
    base = tmp_path / "clamd"
    (base / "db").mkdir(parents=True)
    # an .ndb body signature: Name:TargetType(0 = any):Offset(* = anywhere):HexSignature
    (base / "db" / "postier.ndb").write_text(f"Postier.Test.Signature:0:*:{MARKER.hex()}\n")
    sock = base / "clamd.sock"
    (base / "clamd.conf").write_text(
        f"LocalSocket {sock}\nDatabaseDirectory {base / 'db'}\nForeground yes\n"
        f"LogFile {base / 'clamd.log'}\nTemporaryDirectory {base}\n{extra}"
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


@pytest.fixture
def clamd(tmp_path: Path) -> Iterator[Path]:
    with running_clamd(tmp_path) as sock:
        yield sock


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


# --- every message is scanned, streamed from the spool (issue 11) --------------------

ELEVEN_MB = 11 * 1024 * 1024


def _big(tail: bytes, size: int = ELEVEN_MB) -> bytes:
    """A message over filters.max_scan_size (10 MB) with `tail` at its very end."""
    line = b"x" * 998 + b"\r\n"
    body = line * (size // len(line))
    return b"Subject: big\r\nFrom: a@remote.test\r\n\r\n" + body + tail + b"\r\n"


class Source:
    """A MessageSource that records what is asked of it."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.asked: list[int] = []

    @property
    def size(self) -> int:
        return len(self.data)

    def chunks(self, chunk_size: int) -> Iterator[bytes]:
        self.asked.append(chunk_size)
        for i in range(0, len(self.data), chunk_size):
            yield self.data[i : i + chunk_size]


async def test_instream_streams_a_message_source(clamd):
    source = Source(_big(MARKER))
    assert await instream(str(clamd), source) == "Postier.Test.Signature.UNOFFICIAL FOUND"
    assert source.asked == [1024 * 1024]  # read a block at a time, never whole


def test_clamd_scans_messages_over_max_scan_size(clamd, tmp_path):
    """Before: above filters.max_scan_size the content was not given to clamd."""
    srv = start(tmp_path, f'[clamd]\nenabled = true\nsocket = "{clamd}"\n')
    try:
        replies = send(srv.port("mx"), "a@remote.test", "bob@example.test", _big(MARKER))
        assert replies[4] == (
            b"554 5.7.1 Message rejected: infected with Postier.Test.Signature.UNOFFICIAL\r\n"
        )
    finally:
        srv.stop()


def test_clamd_size_limit_is_recorded_and_accepted(tmp_path):
    """clamd refuses streams over its StreamMaxLength: that can never change, so the
    message is accepted (even with fail_open = false) and the fact recorded."""
    with running_clamd(tmp_path, "StreamMaxLength 1M\n") as sock:
        srv = start(tmp_path, f'[clamd]\nenabled = true\nsocket = "{sock}"\nfail_open = false\n')
        try:
            message = _big(b"clean", 2 * 1024 * 1024)
            replies = send(srv.port("mx"), "a@remote.test", "bob@example.test", message)
            qid = qid_of(replies[4])
            [stored] = inbox(srv, "bob@example.test")
            assert (
                b"\t* +0.0 CLAMD_SIZE_LIMIT not scanned: %d octets are over clamd's "
                b"StreamMaxLength\r\n" % len(message)
            ) in stored
            trace = [e.detail for e in srv.call(srv.store.trace_get(qid))]
            assert any(
                t.startswith("data clamd: score CLAMD_SIZE_LIMIT=+0.0 (not scanned: ")
                for t in trace
            ), trace
        finally:
            srv.stop()
