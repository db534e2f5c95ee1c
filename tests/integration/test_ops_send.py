"""`postier send` and `postier-sendmail`: injection through the submission path,
with and without a running server; outgoing mail leaves DKIM-signed."""

from __future__ import annotations

import asyncio
import email
import email.policy
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dkim as dkimpy
import pytest
from aiosmtpd.controller import Controller

from postier.auth.passwords import hash_password
from postier.cli.dnsrecords import ensure_dkim
from postier.config.load import load
from postier.store import open_store
from tests.integration.ops_peers import free_port
from tests.integration.smtp_helpers import inbox
from tests.support.server import ServerThread, thread_server, write_config

MESSAGE = b"From: Alice <alice@example.test>\nTo: bob@example.test\nSubject: cron\n\nall good\n"
SENDMAIL = [
    sys.executable,
    "-c",
    "import sys; from postier.cli.send import sendmail_main; sys.exit(sendmail_main())",
]


def run(
    args: list[str], data: bytes, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, input=data, capture_output=True, timeout=60, check=False, env=env)


def postier(config: Path, *args: str, data: bytes = MESSAGE) -> subprocess.CompletedProcess[bytes]:
    return run([sys.executable, "-m", "postier", "-c", str(config), "send", *args], data)


def sendmail(config: Path, *args: str, data: bytes = MESSAGE) -> subprocess.CompletedProcess[bytes]:
    return run([*SENDMAIL, "-C", str(config), *args], data)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config and a store with example.test: alice, bob; no server running."""
    path = write_config(tmp_path)

    async def setup() -> None:
        store = open_store(load(path))
        await store.open()
        try:
            await store.add_domain("example.test")
            for user in ("alice", "bob", "carol"):
                await store.add_user(f"{user}@example.test", hash_password("x"))
            await store.add_alias("info@example.test", ["alice@example.test"])
        finally:
            await store.close()

    asyncio.run(setup())
    return path


def stored(config: Path, address: str, mailbox: str = "INBOX") -> list[bytes]:
    async def go() -> list[bytes]:
        store = open_store(load(config))
        await store.open()
        try:
            user = await store.get_user(address)
            mb = await store.get_mailbox(user.id, mailbox)
            return [await store.read_blob(m.blob_id) for m in await store.list_messages(mb.id)]
        finally:
            await store.close()

    return asyncio.run(go())


def queued(config: Path) -> list[Any]:
    async def go() -> list[Any]:
        store = open_store(load(config))
        await store.open()
        try:
            return await store.queue_list()
        finally:
            await store.close()

    return asyncio.run(go())


def header(message: bytes) -> bytes:
    return message.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def test_send_local_without_server(config: Path) -> None:
    r = postier(config, "-f", "alice@example.test", "bob@example.test")
    assert r.returncode == 0, r.stderr
    qid = r.stdout.decode().removeprefix("queued as ").strip()
    (msg,) = stored(config, "bob@example.test")
    head = header(msg)
    assert head.startswith(
        b"Return-Path: <alice@example.test>\r\nReceived: from localhost "
        b"(localhost [127.0.0.1])\r\n\t(Authenticated sender: "
        b"alice@example.test)\r\n\tby mail.example.test (postier) with "
        b"ESMTPA id " + qid.encode() + b"\r\n\tfor <bob@example.test>; "
    )
    assert (
        b"\r\nFrom: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: cron\r\n" in head
    )
    assert b"\r\nDate: " in head  # completed (RFC 6409 §8)
    assert b"\r\nMessage-ID: <" in head
    assert msg.endswith(b"\r\n\r\nall good\r\n")


def test_send_remote_is_queued(config: Path) -> None:
    r = postier(config, "-f", "info@example.test", "dave@remote.test", "bob@example.test")
    assert r.returncode == 0, r.stderr
    (entry,) = queued(config)
    assert entry.sender == "info@example.test"
    assert [x.address for x in entry.recipients] == ["dave@remote.test"]
    assert entry.auth_user == "alice@example.test"
    assert len(stored(config, "bob@example.test")) == 1


def test_send_refusals_store_nothing(config: Path) -> None:
    r = postier(config, "-f", "alice@example.test", "bob@example.test", "nobody@example.test")
    assert r.returncode == 2
    assert r.stderr.decode() == (
        "postier: recipient refused: <nobody@example.test>: 550 5.1.1 <nobody@example.test>: "
        "Recipient address rejected: User unknown\n"
    )
    assert stored(config, "bob@example.test") == []
    r = postier(config, "-f", "mallory@elsewhere.test", "bob@example.test")
    assert (r.returncode, r.stderr.decode()) == (
        2,
        "postier: sender mallory@elsewhere.test is not a local account or an alias of "
        "exactly one\n",
    )
    r = postier(
        config,
        "bob@example.test",
        data=b"From: Bob <bob@example.test>\nFrom: x@example.test\n\nx\n",
    )
    assert r.returncode == 2  # From: not all owned by bob (553 5.7.1)
    assert r.stderr.decode() == (
        "postier: not accepted: 553 5.7.1 From: header address not owned by user\n"
    )
    r = postier(config, "-f", "alice@example.test")
    assert r.stderr.decode() == "postier: no recipients (give them as arguments, or use -t)\n"


def test_send_size_limit(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[smtp.limits]\nmax_message_size = 100\n")
    r = postier(path, "-f", "alice@example.test", "bob@example.test", data=MESSAGE + b"x" * 100)
    assert r.returncode == 2
    assert r.stderr.decode() == ("postier: message of 185 bytes exceeds the limit of 100 bytes\n")


def test_sendmail_t_bcc_and_sender_from_header(config: Path) -> None:
    data = (
        b"From: alice@example.test\nTo: bob@example.test\nBcc: carol@example.test\n"
        b"Subject: t\n\n.\nstill body\n"
    )
    r = sendmail(config, "-t", "-oi", data=data)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    (bob,) = stored(config, "bob@example.test")
    (carol,) = stored(config, "carol@example.test")
    assert bob == carol
    assert b"Bcc:" not in bob
    assert bob.endswith(b"\r\n\r\n.\r\nstill body\r\n")  # -oi: the dot line is data


def test_sendmail_t_unknown_bcc_bounces_that_recipient_only(config: Path) -> None:
    """sendmail's convention (Postfix, exim): the valid recipients get the message and
    the sender gets a bounce for the unknown one, instead of nobody getting it."""
    data = (
        b"From: alice@example.test\nTo: bob@example.test\n"
        b"Bcc: nobody@example.test, carol@example.test\nSubject: t\n\nhi\n"
    )
    r = sendmail(config, "-t", "-oi", data=data)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    (bob,) = stored(config, "bob@example.test")
    (carol,) = stored(config, "carol@example.test")
    assert bob == carol
    assert b"Bcc:" not in bob
    (report,) = stored(config, "alice@example.test")
    msg = email.message_from_bytes(report, policy=email.policy.default)
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mail.example.test>"
    assert msg.get_content_type() == "multipart/report"
    text, status, returned = msg.iter_parts()
    assert [dict(part.items()) for part in status.get_payload()][1] == {
        "Final-Recipient": "rfc822;nobody@example.test",
        "Action": "failed",
        "Status": "5.1.1",
        "Diagnostic-Code": "smtp; 550 5.1.1 <nobody@example.test>: Recipient address "
        "rejected: User unknown",
        "Last-Attempt-Date": status.get_payload()[1]["Last-Attempt-Date"],
    }
    assert "carol" not in text.get_content()  # the report names the refused only
    assert b"Bcc:" not in returned.as_bytes()  # the returned message is what was sent


def test_sendmail_temporary_refusal_keeps_all_or_nothing(config: Path) -> None:
    """A 4xx for one recipient: nothing stored, exit 75, the caller retries it all."""
    assert sendmail(config, "-f", "alice@example.test", "carol@example.test").returncode == 0
    quota = subprocess.run(
        [
            sys.executable,
            "-m",
            "postier",
            "-c",
            str(config),
            "user",
            "quota",
            "carol@example.test",
            "1",
        ],
        capture_output=True,
        check=False,
    )
    assert quota.returncode == 0, quota.stderr
    r = sendmail(config, "-f", "alice@example.test", "bob@example.test", "carol@example.test")
    assert r.returncode == 75
    assert b"452 4.2.2" in r.stderr
    assert stored(config, "bob@example.test") == []
    assert stored(config, "alice@example.test") == []


def test_sendmail_dot_ends_input_without_i(config: Path) -> None:
    r = sendmail(
        config,
        "-f",
        "alice@example.test",
        "bob@example.test",
        data=MESSAGE + b".\nnot part of it\n",
    )
    assert r.returncode == 0, r.stderr
    (msg,) = stored(config, "bob@example.test")
    assert msg.endswith(b"\r\n\r\nall good\r\n")


def test_sendmail_adds_missing_from_with_full_name(config: Path) -> None:
    r = sendmail(
        config,
        "-f",
        "alice@example.test",
        "-F",
        "Alice Cron",
        "bob@example.test",
        data=b"Subject: no from\n\nx\n",
    )
    assert r.returncode == 0, r.stderr
    (msg,) = stored(config, "bob@example.test")
    assert b"\r\nFrom: Alice Cron <alice@example.test>\r\nSubject: no from\r\n" in msg


@pytest.mark.parametrize(
    ("args", "code", "err"),
    [
        (
            ["-f", "mallory@elsewhere.test", "bob@example.test"],
            67,
            "sender mallory@elsewhere.test is not a local account or an alias of exactly one",
        ),
        (["-f", "alice@example.test", "nobody@example.test"], 69, "recipient refused: "),
        (["-bp"], 64, "mode -bp is not supported (only -bm, deliver mail)"),
        (["-f", "alice@example.test"], 65, "no recipients (give them as arguments, or use -t)"),
    ],
)
def test_sendmail_exit_codes(config: Path, args: list[str], code: int, err: str) -> None:
    r = sendmail(config, *args)
    assert r.returncode == code
    assert r.stderr.decode().split(": ", 1)[1].startswith(err)


def test_sendmail_bad_config(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[server\n")
    r = sendmail(tmp_path / "bad.toml", "bob@example.test")
    assert r.returncode == 78


class Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 Ok: sunk"


def test_sendmail_while_server_runs_goes_out_dkim_signed(tmp_path: Path) -> None:
    sink = Sink()
    port = free_port(["127.0.0.1"])
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    srv: ServerThread | None = None
    try:
        srv = thread_server(
            tmp_path, f'[smtp.outbound]\nsmarthost = "127.0.0.1:{port}"\nsmarthost_tls = "none"\n'
        )
        srv.add_user("alice@example.test")
        keys = srv.call(ensure_dkim(srv.store, srv.settings, "example.test"))
        data = b"From: alice@example.test\nTo: dave@remote.test\nSubject: out\n\nhello\n"
        r = sendmail(tmp_path / "postier.toml", "-t", data=data)
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 20
        while not sink.messages and time.monotonic() < deadline:
            time.sleep(0.1)
        (mail_from, rcpts, content) = sink.messages[0]
        assert (mail_from, rcpts) == ("alice@example.test", ["dave@remote.test"])
        assert content.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
        assert b"Return-Path:" not in content  # RFC 5321 §4.4: not transmitted
        records = {
            f"{k.selector}._domainkey.example.test.".encode(): k.txt_record().encode() for k in keys
        }
        assert dkimpy.verify(content, dnsfunc=lambda name, timeout=5: records.get(name))
    finally:
        if srv is not None:
            srv.stop()
        controller.stop()


def test_sendmail_message_reaches_local_inbox_of_running_server(tmp_path: Path) -> None:
    srv = thread_server(tmp_path)
    try:
        srv.add_user("alice@example.test")
        srv.add_user("bob@example.test")
        r = sendmail(tmp_path / "postier.toml", "-f", "alice@example.test", "bob@example.test")
        assert r.returncode == 0, r.stderr
        (msg,) = inbox(srv, "bob@example.test")
        assert msg.endswith(b"\r\n\r\nall good\r\n")
    finally:
        srv.stop()


def test_console_script(config: Path) -> None:
    """The `postier-sendmail` entry point of pyproject.toml, as cron calls it."""
    script = Path(sys.executable).parent / "postier-sendmail"
    if not script.exists():
        pytest.fail("postier-sendmail is not installed: pip install -e . (see pyproject.toml)")
    r = run(
        [str(script), "-C", str(config), "-oi", "-f", "alice@example.test", "bob@example.test"],
        MESSAGE,
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert len(stored(config, "bob@example.test")) == 1
    usage = run([str(script), "-bs"], b"")
    assert usage.returncode == 64
    assert usage.stderr == b"postier-sendmail: mode -bs is not supported (only -bm, deliver mail)\n"
