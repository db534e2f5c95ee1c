"""POP3 against real clients: poplib (plain, STLS, POP3S), fetchmail, getmail6."""

from __future__ import annotations

import email
import poplib
import re
import smtplib
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need_tool
from tests.integration.smtp_helpers import inbox
from tests.support.server import PASSWORD, ServerThread


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _deliver(srv: ServerThread, n: int, to: str = "alice@example.test") -> list[bytes]:
    with smtplib.SMTP("127.0.0.1", srv.port("mx")) as c:
        for i in range(n):
            c.sendmail(
                "s@remote.test",
                [to],
                f"Subject: message {i}\r\n\r\nbody {i}\r\n.dotted line\r\n".encode(),
            )
    return inbox(srv, to)


def _login(srv: ServerThread, user: str = "alice@example.test") -> poplib.POP3:
    p = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=10)
    p.user(user)
    p.pass_(PASSWORD)
    return p


def test_stat_list_uidl_retr_bytes_identical(server: ServerThread) -> None:
    stored = _deliver(server, 3)
    p = _login(server)
    count, total = p.stat()
    assert count == 3 and total == sum(len(m) for m in stored)
    _, listing, _ = p.list()
    assert [int(x.split()[1]) for x in listing] == [len(m) for m in stored]
    for i, m in enumerate(stored, 1):
        _, lines, octets = p.retr(i)
        assert octets == len(m)
        assert b"\r\n".join(lines) + b"\r\n" == m  # poplib undoes the dot-stuffing
    _, uidls, _ = p.uidl()
    assert len({x.split()[1] for x in uidls}) == 3
    assert p.top(1, 0)[1][-1] == b""  # header + blank line, no body
    p.quit()


def test_retr_reads_the_next_messages_in_the_same_round_trip(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postier.pop3 import server as pop3_server

    stored = _deliver(server, 7)
    monkeypatch.setattr(pop3_server, "READ_AHEAD", 3)
    # the octet bound stops a batch before its count does: 2 messages of these
    monkeypatch.setattr(pop3_server, "READ_AHEAD_OCTETS", len(stored[0]) * 2 + 1)
    store = server.app.store  # type: ignore[union-attr]
    batches: list[int] = []
    singles: list[str] = []
    read_blobs, read_blob = store.read_blobs, store.read_blob

    async def many(ids: list[str]) -> dict[str, bytes]:
        batches.append(len(ids))
        return await read_blobs(ids)

    async def one(blob_id: str) -> bytes:
        singles.append(blob_id)
        return await read_blob(blob_id)

    monkeypatch.setattr(store, "read_blobs", many)
    monkeypatch.setattr(store, "read_blob", one)
    p = _login(server)
    for n in (1, 2, 3, 4, 2, 7, 6, 5):  # in order, then back, then from the end
        _, lines, _ = p.retr(n)
        assert b"\r\n".join(lines) + b"\r\n" == stored[n - 1]
    assert batches == [2, 2, 2, 2, 2] and len(singles) == 1  # 1-2 3-4 2-3 7 6-7 5-6
    p.quit()


def test_dele_quit_removes_rset_keeps_drop_keeps(server: ServerThread) -> None:
    _deliver(server, 3)
    p = _login(server)
    uidls_before = p.uidl()[1]
    p.dele(2)
    p.quit()
    assert len(inbox(server, "alice@example.test")) == 2
    # UIDL unchanged for the others after a deletion
    p = _login(server)
    uidls_after = p.uidl()[1]
    assert [x.split()[1] for x in uidls_after] == [
        uidls_before[0].split()[1],
        uidls_before[2].split()[1],
    ]
    p.dele(1)
    p.rset()
    p.quit()
    assert len(inbox(server, "alice@example.test")) == 2
    # DELE then the connection drops: nothing deleted
    s = socket.create_connection(("127.0.0.1", server.port("pop3")))
    f = s.makefile("rwb")
    f.readline()
    for line in (b"USER alice@example.test", b"PASS " + PASSWORD.encode(), b"DELE 1"):
        f.write(line + b"\r\n")
        f.flush()
        assert f.readline().startswith(b"+OK")
    f.close()
    s.close()
    # the lock is released when the connection ends
    p = _login(server)
    assert p.stat()[0] == 2
    p.quit()
    assert len(inbox(server, "alice@example.test")) == 2


def test_second_session_in_use(server: ServerThread) -> None:
    p = _login(server)
    q = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    q.user("alice@example.test")
    with pytest.raises(poplib.error_proto) as e:
        q.pass_(PASSWORD)
    assert e.value.args[0].startswith(b"-ERR [IN-USE]")
    q.close()
    p.quit()


def test_retr_sets_seen(server: ServerThread) -> None:
    _deliver(server, 1)
    p = _login(server)
    p.retr(1)
    p.quit()

    async def flags() -> frozenset[str]:
        u = await server.store.get_user("alice@example.test")
        mb = await server.store.get_mailbox(u.id, "INBOX")
        [m] = await server.store.list_messages(mb.id)
        return m.flags

    assert "\\Seen" in server.call(flags())


def test_bad_password(server: ServerThread) -> None:
    p = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    p.user("alice@example.test")
    with pytest.raises(poplib.error_proto) as e:
        p.pass_("wrong")
    assert e.value.args[0].startswith(b"-ERR [AUTH]")
    p.close()


def test_stls_and_pop3s(server: ServerThread) -> None:
    _deliver(server, 1)
    p = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    caps = p.capa()
    assert "STLS" in caps and "UIDL" in caps and "TOP" in caps
    p.stls(context=_tls())
    p.user("alice@example.test")
    p.pass_(PASSWORD)
    assert p.stat()[0] == 1
    p.quit()
    s = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), context=_tls(), timeout=10)
    assert "STLS" not in s.capa()
    s.user("alice@example.test")
    s.pass_(PASSWORD)
    assert s.stat()[0] == 1
    s.quit()


@pytest.mark.tools
@pytest.mark.parametrize("keep", [True, False])
def test_fetchmail_to_mda(server: ServerThread, tmp_path: Path, keep: bool) -> None:
    fetchmail = need_tool("fetchmail")
    stored = _deliver(server, 3)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    mda = tmp_path / "mda.sh"
    mda.write_text(f'#!/bin/sh\ncat > "{out_dir}/$(date +%s%N).eml"\n')
    mda.chmod(0o755)
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"set no syslog\npoll 127.0.0.1 with proto POP3 port {server.port('pop3')}"
        f" and options no dns\n  user 'alice@example.test' there with password '{PASSWORD}'"
        f" is 'tester' here options {'keep' if keep else 'nokeep'} sslproto ''"
        f" mda '{mda}'\n"
    )
    rc.chmod(0o600)
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "FETCHMAILHOME": str(tmp_path)}
    res = subprocess.run(
        [fetchmail, "-f", str(rc), "--nodetach", "-v"], capture_output=True, env=env, timeout=60
    )
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    got = sorted(out_dir.iterdir())
    assert len(got) == 3
    for path in got:
        body = path.read_bytes().replace(b"\r\n", b"\n")
        # fetchmail adds its own Received: field below Return-Path:; without it,
        # the message is byte for byte what was delivered
        body = re.sub(
            rb"Received: from 127\.0\.0\.1\n\tby \S+ with POP3 \(fetchmail[^\n]*\n"
            rb"\tfor [^\n]*\n",
            b"",
            body,
        )
        assert body in {m.replace(b"\r\n", b"\n") for m in stored}
    assert len(inbox(server, "alice@example.test")) == (3 if keep else 0)


@pytest.mark.tools
def test_getmail_to_mda(server: ServerThread, tmp_path: Path) -> None:
    getmail = need_tool("getmail")
    stored = _deliver(server, 2)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rcdir = tmp_path / "getmail"
    rcdir.mkdir()
    # getmail refuses Maildir delivery as root (CI runs as root): an external MDA
    # with allow_root_commands delivers the same bytes
    (rcdir / "getmailrc").write_text(
        "[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\n"
        f"port = {server.port('pop3')}\nusername = alice@example.test\n"
        f"password = {PASSWORD}\n[destination]\ntype = MDA_external\npath = /bin/sh\n"
        f'arguments = ("-c", "cat > {out_dir}/$$.eml")\nallow_root_commands = true\n'
        "[options]\ndelete = true\nread_all = true\nreceived = false\n"
        "delivered_to = false\nmessage_log_syslog = false\n"
    )
    res = subprocess.run(
        [getmail, "--getmaildir", str(rcdir), "--rcfile", "getmailrc"],
        capture_output=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    got = sorted(out_dir.iterdir())
    assert len(got) == 2
    bodies = sorted(p.read_bytes().replace(b"\r\n", b"\n") for p in got)
    expected = sorted(m.replace(b"\r\n", b"\n") for m in stored)
    for b, e in zip(bodies, expected, strict=True):
        assert b.decode() == e.decode()
    assert email.message_from_bytes(got[0].read_bytes())["Subject"].startswith("message")
    assert inbox(server, "alice@example.test") == []  # delete = true removed them


def test_a_large_message_is_formatted_off_the_event_loop(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RETR and TOP of a message over `SLICE` octets are formatted in a thread
    (40 MB cost the loop 23-145 ms of C calls, the other sessions waiting); a
    small one on the loop. What the client reads is the same."""
    import threading

    from postier.pop3 import server as pop3_server

    on_loop: list[bool] = []
    real = pop3_server.format_message_parts

    def spy(*args: Any, **kw: Any) -> Any:
        on_loop.append(threading.current_thread() is server._thread)
        return real(*args, **kw)

    monkeypatch.setattr(pop3_server, "format_message_parts", spy)
    big = b"Subject: big\r\n\r\n" + b".line of text\r\n" * (pop3_server.SLICE // 14 + 1)
    with smtplib.SMTP("127.0.0.1", server.port("mx")) as c:
        c.sendmail("s@remote.test", ["alice@example.test"], big)
    stored = inbox(server, "alice@example.test")[0]
    p = _login(server)
    _, lines, octets = p.retr(1)
    assert octets == len(stored)
    assert b"\r\n".join(lines) + b"\r\n" == stored
    _, lines, _ = p.top(1, 2)
    assert lines[-2:] == [b".line of text", b".line of text"]
    assert on_loop == [False, False]
    p.quit()
