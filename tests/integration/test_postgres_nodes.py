"""Two postier nodes (`postier serve` processes) over one PostgreSQL database (issue 16).

Each node has its own data directory and ports (B runs two worker processes) and
shares nothing with the other but the database: an account added with the command
line through one node logs in on the other, mail taken by SMTP on A is read by
IMAP and POP3 on B, an IMAP IDLE on B wakes within a second of a delivery on A,
and a message moved on B is seen moved on A. The state the nodes share while they
run is in the database too: a POP3 maildrop locked through A is locked on B until
A's session ends or A dies, login failures through A and B add up, a client's
connections to A and B count together against its limit, and a triplet
greylisted by A passes its retry on B.
"""

from __future__ import annotations

import http.client
import imaplib
import poplib
import re
import smtplib
import socket
import subprocess
import sys
import time
import urllib.parse
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


#: the login limiter locks an account after four failures (quickly, for the test)
AUTH = '[auth]\nfailure_delay = "0.01s"\nmax_delay = "0.05s"\nlockout_after = 4\n'


def node_config(root: Path, name: str, dsn: str, workers: int = 1, extra: str = "") -> Path:
    directory = root / name
    directory.mkdir()
    extra = (
        f'[server]\nworkers = {workers}\n[store]\nbackend = "postgres"\npostgres_dsn = "{dsn}"\n'
        + AUTH
        + extra
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


def _pop3_login(port: int) -> poplib.POP3:
    pop = poplib.POP3("127.0.0.1", port, timeout=10)
    try:
        pop.user("alice@example.test")
        pop.pass_(PASSWORD)
    except poplib.error_proto:
        pop.close()
        raise
    return pop


def _add_alice(config: Path) -> None:
    cli(config, "domain", "add", "example.test")
    cli(config, "user", "add", "alice@example.test", "--password-stdin", stdin=PASSWORD + "\n")


def test_a_pop3_maildrop_lock_holds_on_every_node_until_its_node_dies(
    nodes: tuple[Path, ServerProcess, Path, ServerProcess],
) -> None:
    config_a, a, _config_b, b = nodes
    _add_alice(config_a)
    held = _pop3_login(a.ports["pop3"])
    # refused on B, whichever of its two workers takes the connection
    for _ in range(4):
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            _pop3_login(b.ports["pop3"])
    held.quit()  # the session ends: B may have the maildrop
    on_b = _pop3_login(b.ports["pop3"])
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        _pop3_login(a.ports["pop3"])
    on_b.quit()
    # A dies holding the lock (SIGKILL: no session ends, nothing is released)
    dying = _pop3_login(a.ports["pop3"])
    a.kill()
    dying.close()
    start = time.monotonic()
    while True:
        try:
            _pop3_login(b.ports["pop3"]).quit()
            break
        except poplib.error_proto:
            assert time.monotonic() - start < 5, "the dead node's lock was never freed"
            time.sleep(0.05)
    # its database session closed with it: freed at once, not after a lease
    assert time.monotonic() - start < 2


def test_login_failures_through_both_nodes_lock_the_account_on_both(
    nodes: tuple[Path, ServerProcess, Path, ServerProcess],
) -> None:
    config_a, a, _config_b, b = nodes
    _add_alice(config_a)
    for node in (a, b, a, b):  # four failures (lockout_after), two through each node
        pop = poplib.POP3("127.0.0.1", node.ports["pop3"], timeout=10)
        pop.user("alice@example.test")
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            pop.pass_("wrong password")
        pop.close()
    for node in (a, b):
        with pytest.raises(poplib.error_proto, match="Too many failed logins"):
            _pop3_login(node.ports["pop3"])
        imap = imaplib.IMAP4("127.0.0.1", node.ports["imap"], timeout=10)
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("alice@example.test", PASSWORD)
        imap.logout()


def test_a_triplet_greylisted_on_a_passes_its_retry_on_b(tmp_path: Path, pg_dsn: str) -> None:  # noqa: F811
    greylist = '[greylist]\nenabled = true\ndelay = "1s"\nwindow = "1h"\nallow = []\n'
    config_a = node_config(tmp_path, "a", pg_dsn, extra=greylist)
    config_b = node_config(tmp_path, "b", pg_dsn, extra=greylist)
    a = ServerProcess(config_a).start()
    b = ServerProcess(config_b).start()
    try:
        _add_alice(config_a)
        first = smtplib.SMTP("127.0.0.1", a.ports["mx"], timeout=10)
        first.ehlo("mx.remote.test")
        first.mail("sender@remote.test")
        code, text = first.rcpt("alice@example.test")
        assert (code, b"Greylisting" in text) == (451, True)
        first.quit()
        time.sleep(1.2)
        with smtplib.SMTP("127.0.0.1", b.ports["mx"], timeout=10) as retry:
            retry.sendmail("sender@remote.test", ["alice@example.test"], MESSAGE)
    finally:
        for node in (a, b):
            if node.proc is not None and node.proc.poll() is None:
                node.terminate()


def _imap_greeting(port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock, sock.recv(1024)


def _admitted(port: int, timeout: float = 5.0) -> socket.socket:
    """A connection the node admits within `timeout` (a count may lag a little)."""
    deadline = time.monotonic() + timeout
    while True:
        sock, greeting = _imap_greeting(port)
        if greeting.startswith(b"* OK"):
            return sock
        sock.close()
        assert time.monotonic() < deadline, greeting
        time.sleep(0.05)


def _refused(port: int) -> None:
    sock, greeting = _imap_greeting(port)
    sock.close()
    assert greeting.startswith(b"* BYE [UNAVAILABLE] Too many connections"), greeting


def test_a_clients_connections_to_both_nodes_count_against_one_limit(
    tmp_path: Path,
    pg_dsn: str,  # noqa: F811
) -> None:
    limit = "[smtp.limits]\nmax_connections_per_ip = 3\n"
    a = ServerProcess(node_config(tmp_path, "a", pg_dsn, extra=limit))
    b = ServerProcess(node_config(tmp_path, "b", pg_dsn, workers=2, extra=limit))
    held: list[socket.socket] = []
    try:
        with ThreadPoolExecutor(2) as pool:
            for started in [pool.submit(n.start) for n in (a, b)]:
                started.result()
        imap_a, imap_b = a.ports["imap"], b.ports["imap"]
        held += [_admitted(imap_a, 0), _admitted(imap_a, 0), _admitted(imap_b, 0)]
        # three at once from this address on A and B together: a fourth is
        # refused on either node (on B, by whichever worker takes it)
        for port in (imap_a, imap_b, imap_b):
            _refused(port)
        # one ends on A: B admits one more once A has published its count
        held.pop(0).close()
        held.append(_admitted(imap_b))
        _refused(imap_b)
        # A dies holding one: its connections stop counting with its session
        a.kill()
        start = time.monotonic()
        held.append(_admitted(imap_b))
        assert time.monotonic() - start < 2
        _refused(imap_b)
    finally:
        for sock in held:
            sock.close()
        for node in (a, b):
            if node.proc is not None and node.proc.poll() is None:
                node.terminate()


def _recent(imap: imaplib.IMAP4) -> bytes | None:
    got = imap.untagged_responses.pop("RECENT", None)
    return got[-1] if got else None


def test_recent_goes_to_one_session_of_all_nodes(
    nodes: tuple[Path, ServerProcess, Path, ServerProcess],
) -> None:
    config_a, a, _config_b, b = nodes
    _add_alice(config_a)
    with smtplib.SMTP("127.0.0.1", a.ports["mx"], timeout=10) as smtp:
        for _ in range(2):
            smtp.sendmail("sender@remote.test", ["alice@example.test"], MESSAGE)
    sessions = []
    for node in (b, a):
        imap = imaplib.IMAP4("127.0.0.1", node.ports["imap"], timeout=10)
        imap.login("alice@example.test", PASSWORD)
        sessions.append(imap)
    on_b, on_a = sessions
    assert on_b.select("INBOX")[0] == "OK"
    assert _recent(on_b) == b"2"  # the first session to see them, on B
    assert on_a.select("INBOX")[0] == "OK"
    assert _recent(on_a) == b"0"  # not again on A
    with smtplib.SMTP("127.0.0.1", b.ports["mx"], timeout=10) as smtp:
        smtp.sendmail("sender@remote.test", ["alice@example.test"], MESSAGE)
    recent = []
    for imap in (on_a, on_b):  # A looks first (as soon as its feed heard of it)
        deadline = time.monotonic() + 10
        while b"3" not in imap.untagged_responses.get("EXISTS", []):
            assert time.monotonic() < deadline, "the new message was never announced"
            imap.noop()
        recent.append(_recent(imap))
    # the new one is A's only \Recent; B keeps its two
    assert recent == [b"1", b"2"]
    for imap in sessions:
        imap.logout()


def _web(port: int, method: str, path: str, cookie: str = "", form: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Cookie": cookie} if cookie else {}
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return (
            resp.status,
            resp.getheader("Set-Cookie") or "",
            resp.getheader("Location"),
            (resp.read().decode()),
        )
    finally:
        conn.close()


def test_a_webmail_session_made_on_a_works_on_b_until_logout_on_b(
    nodes: tuple[Path, ServerProcess, Path, ServerProcess],
) -> None:
    config_a, a, _config_b, b = nodes
    _add_alice(config_a)
    status, anonymous, _, page = _web(b.ports["web"], "GET", "/")  # the form from B
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert status == 200 and csrf
    status, cookie, _, _ = _web(  # the login through A
        a.ports["web"],
        "POST",
        "/login",
        anonymous.split(";")[0],
        {"csrf": csrf.group(1), "email": "alice@example.test", "password": PASSWORD},
    )
    assert status == 303
    cookie = cookie.split(";")[0]
    status, _, inbox, _ = _web(b.ports["web"], "GET", "/", cookie)
    assert status == 303 and inbox and inbox.startswith("/folder/")
    for node in (a, b):
        status, _, _, page = _web(node.ports["web"], "GET", inbox, cookie)
        assert status == 200 and "alice@example.test" in page
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token
    status, _, _, _ = _web(b.ports["web"], "POST", "/logout", cookie, {"csrf": token.group(1)})
    assert status == 303
    status, _, location, _ = _web(a.ports["web"], "GET", inbox, cookie)
    assert (status, location) == (303, "/")
