"""Two postier nodes (`postier serve` processes) over one PostgreSQL database (issue 16).

Each node has its own data directory and ports (B runs two worker processes) and
shares nothing with the other but the database: an account added with the command
line through one node logs in on the other, mail taken by SMTP on A is read by
IMAP and POP3 on B, an IMAP IDLE on B wakes within a second of a delivery on A,
and a message moved on B is seen moved on A.
"""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.postgres import pg_dsn  # noqa: F401  (a fixture)
from tests.support.server import ServerProcess, write_config

pytestmark = pytest.mark.postgres

PASSWORD = "correct horse battery staple"
MESSAGE = (
    b"From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: across nodes\r\n"
    b"Message-ID: <n1@remote.test>\r\n\r\nwritten on A, read on B\r\n"
)


def node_config(root: Path, name: str, dsn: str, workers: int = 1) -> Path:
    directory = root / name
    directory.mkdir()
    extra = (
        f'[server]\nworkers = {workers}\n[store]\nbackend = "postgres"\npostgres_dsn = "{dsn}"\n'
    )
    return write_config(directory, extra, hostname=f"{name}.example.test")


def cli(config: Path, *args: str, stdin: str = "") -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "postier", "-c", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=config.parent,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def nodes(tmp_path: Path, pg_dsn: str) -> Iterator[tuple[Path, ServerProcess, Path, ServerProcess]]:  # noqa: F811
    config_a = node_config(tmp_path, "a", pg_dsn)
    config_b = node_config(tmp_path, "b", pg_dsn, workers=2)  # sessions on either worker
    # both start at once: the schema migration runs once, under the advisory lock
    a = ServerProcess(config_a)
    b = ServerProcess(config_b)
    try:
        with ThreadPoolExecutor(2) as pool:
            for started in [pool.submit(a.start), pool.submit(b.start)]:
                started.result()
        yield config_a, a, config_b, b
    finally:
        for node in (a, b):
            if node.proc is not None and node.proc.poll() is None:
                node.terminate()


class Idle:
    """An IMAP session on a raw socket, for IDLE (imaplib has none)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.line()  # greeting

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def cmd(self, text: str) -> list[bytes]:
        tag = text.split(" ", 1)[0].encode()
        self.sock.sendall(text.encode() + b"\r\n")
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                assert line.startswith(tag + b" OK"), lines
                return lines


def test_two_nodes_share_accounts_mail_and_changes(
    nodes: tuple[Path, ServerProcess, Path, ServerProcess],
) -> None:
    config_a, a, config_b, b = nodes
    # administration through A is visible on B at once
    cli(config_a, "domain", "add", "example.test")
    cli(config_a, "user", "add", "alice@example.test", "--password-stdin", stdin=PASSWORD + "\n")
    listed = cli(config_b, "user", "list")
    assert "alice@example.test" in listed

    imap_b = imaplib.IMAP4("127.0.0.1", b.ports["imap"], timeout=10)
    imap_b.login("alice@example.test", PASSWORD)
    assert imap_b.select("INBOX") == ("OK", [b"0"])

    idle = Idle(b.ports["imap"])
    idle.cmd(f'l LOGIN alice@example.test "{PASSWORD}"')
    idle.cmd("s SELECT INBOX")
    idle.sock.sendall(b"i IDLE\r\n")
    assert idle.line().startswith(b"+ ")

    with smtplib.SMTP("127.0.0.1", a.ports["mx"], timeout=10) as smtp:
        start = time.monotonic()
        smtp.sendmail("sender@remote.test", ["alice@example.test"], MESSAGE)
    assert idle.line() == b"* 1 EXISTS"
    assert time.monotonic() - start < 1.0
    idle.sock.sendall(b"DONE\r\n")
    while not idle.line().startswith(b"i OK"):
        pass
    idle.sock.close()

    # IMAP on B reads what A stored (the session learns of it at its next command)
    imap_b.noop()
    typ, data = imap_b.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK"
    raw = data[0][1]  # type: ignore[index]
    assert raw.endswith(MESSAGE)
    assert b"Received:" in raw  # the trace A's intake wrote

    # POP3 on B too
    pop = poplib.POP3("127.0.0.1", b.ports["pop3"], timeout=10)
    pop.user("alice@example.test")
    pop.pass_(PASSWORD)
    count, _size = pop.stat()
    assert count == 1
    assert b"\r\n".join(pop.retr(1)[1]) + b"\r\n" == raw
    pop.quit()

    # a message moved on B is seen moved on A, and the session on A hears of it
    imap_a = imaplib.IMAP4("127.0.0.1", a.ports["imap"], timeout=10)
    imap_a.login("alice@example.test", PASSWORD)
    assert imap_a.select("INBOX") == ("OK", [b"1"])
    assert imap_b.uid("MOVE", "1", "Archive")[0] == "OK"
    deadline = time.monotonic() + 2
    expunged = False
    while time.monotonic() < deadline and not expunged:
        typ, _ = imap_a.noop()
        expunged = any(re.fullmatch(rb"1", r) for r in imap_a.untagged_responses.get("EXPUNGE", []))
        time.sleep(0.05)
    assert expunged
    assert imap_a.select("INBOX") == ("OK", [b"0"])
    assert imap_a.select("Archive") == ("OK", [b"1"])
    typ, data = imap_a.fetch("1", "(BODY.PEEK[])")
    assert data[0][1] == raw  # type: ignore[index]
    imap_a.logout()
    imap_b.logout()

    # a node stopping leaves the other serving
    a.terminate()
    imap_b = imaplib.IMAP4("127.0.0.1", b.ports["imap"], timeout=10)
    imap_b.login("alice@example.test", PASSWORD)
    assert imap_b.select("Archive") == ("OK", [b"1"])
    imap_b.logout()
