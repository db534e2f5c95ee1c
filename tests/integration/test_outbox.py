"""The development outbox (smtp.outbound.capture): mail submitted over SMTP to a
remote domain is kept in data_dir/outbox, signed, never sent; the queue entry
completes as captured; `postier queue captured` lists it."""

from __future__ import annotations

import json
import smtplib
import time
from pathlib import Path

import pytest

from postier.cli.main import main
from postier.mailauth import dkim
from postier.queue.capture import Outbox, dkim_verdict, outbox_dir
from tests.support.server import PASSWORD, ServerThread, thread_server

MSG = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Zed <zed@remote.test>\r\n"
    b"Subject: =?utf-8?q?Caf=C3=A9?= plans\r\n"
    b"\r\n"
    b"See you there.\r\n"
)


@pytest.fixture
def capturing(tmp_path: Path):
    srv = thread_server(tmp_path, "[smtp.outbound]\ncapture = true\n")
    try:
        srv.add_user("alice@example.test")

        async def keys() -> None:
            rsa, _ = dkim.generate_keys(srv.settings.server.data_dir, "example.test", rsa_bits=1024)
            await srv.store.set_dkim_selector("example.test", rsa.selector)

        srv.call(keys())
        yield srv
    finally:
        srv.stop()


def wait_for(outbox: Outbox, n: int, within: float = 10.0) -> list:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        items = outbox.list()
        if len(items) >= n:
            return items
        time.sleep(0.05)
    raise AssertionError(f"{n} captured message(s) expected, found {len(outbox.list())}")


def test_remote_mail_is_captured_signed_and_listed(
    capturing: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = capturing
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as c:
        c.login("alice@example.test", PASSWORD)
        c.sendmail("alice@example.test", ["zed@remote.test", "yan@other.test"], MSG)
    outbox = Outbox(outbox_dir(srv.settings.server.data_dir))
    [item] = wait_for(outbox, 1)
    assert item.sender == "alice@example.test"
    assert sorted(item.recipients) == ["yan@other.test", "zed@remote.test"]
    assert item.subject == "Café plans"
    data = outbox.read(item.id)
    assert data is not None
    assert data.startswith(b"DKIM-Signature:")
    assert b"Return-Path:" not in data  # as transmitted: intake's Return-Path: removed
    assert data.endswith(b"See you there.\r\n")
    verdicts = srv.call(dkim_verdict(data, srv.store))
    assert [v.status for v in verdicts] == ["pass", "pass"]  # RSA and Ed25519
    tampered = data.replace(b"See you there.", b"See you later.")
    verdicts = srv.call(dkim_verdict(tampered, srv.store))
    assert {v.status for v in verdicts} == {"fail"}

    # the entry left the queue as captured, with trace events naming it
    async def trace():
        return await srv.store.queue_get(item.qid), await srv.store.trace_get(item.qid)

    deadline = time.monotonic() + 5
    while True:
        entry, events = srv.call(trace())
        if entry is None and any(e.event == "done" for e in events):
            break
        assert time.monotonic() < deadline, events
        time.sleep(0.05)
    captured = [e for e in events if e.event == "captured"]
    assert len(captured) == 2
    assert all(
        f"captured in the development outbox as {item.id}, not sent" in e.detail for e in captured
    )
    assert not any(e.event in ("attempt", "route", "failed") for e in events)

    config = str(tmp_path / "postier.toml")
    assert main(["-c", config, "queue", "captured"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{item.id}  ")
    assert lines[0].endswith("from <alice@example.test>  Café plans")
    assert sorted(lines[1:3]) == ["    <yan@other.test>", "    <zed@remote.test>"]
    assert lines[3] == "-- 1 captured message(s)"
    assert main(["-c", config, "queue", "captured", "--json"]) == 0
    [doc] = json.loads(capsys.readouterr().out)
    assert doc["id"] == item.id
    assert doc["qid"] == item.qid
    assert main(["-c", config, "queue", "captured", item.id]) == 0
    assert capsys.readouterr().out.encode() == data
    assert main(["-c", config, "queue", "captured", "../postier"]) == 2
    assert "no captured message ../postier" in capsys.readouterr().err


def test_capture_is_off_unless_set(server: ServerThread) -> None:
    """Without the key, remote mail is routed as always (offline DNS: it bounces)."""
    assert server.settings.smtp.outbound.capture is False
    assert server.app is not None
    assert server.app.queue.outbox is None
