"""`postier trace QID` of local deliveries: which mailbox each copy went to, and why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from postier.cli.main import main
from tests.integration.test_filters import qid_of, send
from tests.support.server import ServerThread, alice_and_bob

HAM = (
    b"From: Alice <a@remote.test>\r\nTo: alice@example.test\r\nSubject: hello\r\n"
    b"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@remote.test>\r\n\r\nHi.\r\n"
)
SPAM = (
    b"Subject: cheap\r\nContent-Type: text/html\r\n\r\n"
    b'<html><a href="http://198.51.100.7/x">http://bank.test/login</a></html>\r\n'
)


@pytest.fixture
def mx(tmp_path: Path) -> Iterator[ServerThread]:
    with alice_and_bob(tmp_path, "[spam]\njunk_threshold = 3.0\n") as srv:
        srv.call(srv.store.add_alias("team@example.test", ["bob@example.test"]))
        yield srv


def test_trace_names_the_mailbox_of_each_local_copy(
    mx: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(tmp_path / "postier.toml")
    ham = qid_of(send(mx.port("mx"), "a@remote.test", "alice@example.test", HAM)[4])
    assert main(["-c", config, "trace", ham]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"message {ham}"
    events = [line.split("  ", 1)[1] for line in lines[1:-1]]
    assert events[-1] == "delivered     to <alice@example.test> in INBOX"
    assert lines[-1] == "state: delivered locally; nothing was queued"

    spam = send(mx.port("mx"), "a@remote.test", "team@example.test", SPAM, helo=b"localhost")
    qid = qid_of(spam[4])
    assert main(["-c", config, "trace", qid]) == 0
    lines = capsys.readouterr().out.splitlines()
    events = [line.split("  ", 1)[1] for line in lines[1:-1]]
    assert events[-1] == (
        "delivered     to <bob@example.test> in Junk (for <team@example.test>), spam score 9.1"
    )
    assert lines[-1] == "state: delivered locally; nothing was queued"
