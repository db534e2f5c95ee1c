"""Several worker processes (`server.workers = 2`) serving one data dir as one server.

Each test runs a real `postier serve` with two workers and finds which worker
holds a connection the way an operator would: the worker pids are the
supervisor's children (/proc/*/stat), and the worker whose file table holds the
server end of a TCP connection (/proc/net/tcp → socket inode → /proc/PID/fd) is
the one serving it. A client connects until it has a connection on each worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import imaplib
import os
import poplib
import re
import signal
import smtplib
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from postier.auth.passwords import hash_password
from postier.config.load import load
from postier.server.status import read_status
from postier.store import open_store
from tests.support.server import PASSWORD, ServerProcess, write_config

pytestmark = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="needs Linux /proc to find a connection's worker"
)

T = TypeVar("T")
USER = "alice@example.test"


# --- which process is which ----------------------------------------------------
def children(pid: int) -> set[int]:
    out = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(d.name))
    return out


def owner(sock: socket.socket, pids: set[int]) -> int:
    """The worker holding the server end of the connection `sock` (after the
    greeting: the worker has accepted it by then)."""
    client_port = sock.getsockname()[1]
    server_port = sock.getpeername()[1]
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                local, remote = int(f[1].split(":")[1], 16), int(f[2].split(":")[1], 16)
                if local == server_port and remote == client_port:
                    inodes.add(f[9])
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        return pid
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def one_per_worker(
    connect: Callable[[], T], sock_of: Callable[[T], socket.socket], pids: set[int]
) -> dict[int, T]:
    """Connect until there is a connection on every worker; the extra ones close."""
    got: dict[int, T] = {}
    extra: list[T] = []
    for _ in range(200):
        conn = connect()
        pid = owner(sock_of(conn), pids)
        if pid in got:
            extra.append(conn)
        else:
            got[pid] = conn
        if len(got) == len(pids):
            break
    for conn in extra:
        close(conn)
    assert len(got) == len(pids), f"connections landed on {set(got)} only"
    return got


def close(conn: Any) -> None:
    """Close a client of any kind without a word to the server."""
    with contextlib.suppress(Exception):
        if isinstance(conn, imaplib.IMAP4):
            conn.shutdown()
        else:
            conn.close()


def wait_for(check: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


# --- the server ----------------------------------------------------------------
def _setup(cfg: Path) -> None:
    async def go() -> None:
        store = open_store(load(cfg))
        await store.open()
        await store.add_domain("example.test")
        await store.add_user(USER, hash_password(PASSWORD))
        await store.close()

    asyncio.run(go())


class Group:
    def __init__(self, srv: ServerProcess) -> None:
        self.srv = srv
        assert srv.proc is not None
        self.pid = srv.proc.pid

    @property
    def workers(self) -> set[int]:
        return children(self.pid)

    def port(self, name: str) -> int:
        return self.srv.ports[name]


@pytest.fixture
def group_factory(tmp_path: Path) -> Iterator[Callable[[str], Group]]:
    started: list[ServerProcess] = []

    def make(extra: str = "") -> Group:
        cfg = write_config(tmp_path, "[server]\nworkers = 2\n" + extra)
        _setup(cfg)
        srv = ServerProcess(cfg).start()
        started.append(srv)
        g = Group(srv)
        wait_for(lambda: len(g.workers) == 2)
        return g

    yield make
    for srv in started:
        assert srv.proc is not None
        if srv.proc.poll() is None:
            srv.terminate()


@pytest.fixture
def group(group_factory: Callable[[str], Group]) -> Group:
    return group_factory("")


def _stored(cfg: Path) -> list[bytes]:
    async def go() -> list[bytes]:
        store = open_store(load(cfg))
        await store.open()
        try:
            user = await store.get_user(USER)
            mb = await store.get_mailbox(user.id, "INBOX")
            return [await store.read_blob(m.blob_id) for m in await store.list_messages(mb.id)]
        finally:
            await store.close()

    return asyncio.run(go())


def _message(n: int) -> bytes:
    return (
        f"From: bob@example.org\r\nTo: {USER}\r\nSubject: {n}\r\n"
        f"Message-ID: <workers-{n}@test>\r\n\r\nbody {n}\r\n"
    ).encode()


# --- tests -----------------------------------------------------------------------
def test_serve_prints_its_workers_and_sigterm_stops_them_all(group: Group) -> None:
    line = next(x for x in group.srv.banner if " workers (pids " in x)
    m = re.match(r"^2 workers \(pids (\d+), (\d+)\)", line)
    assert m, line
    assert {int(m.group(1)), int(m.group(2))} == group.workers
    workers = group.workers
    # a session in progress on each worker is let finish, then all go
    assert group.srv.terminate(timeout=30) == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert children(group.pid) == set()


def _maps_cryptography(pid: int) -> bool:
    """Whether `pid` has cryptography's native library (its own OpenSSL) mapped."""
    return "/cryptography/" in Path(f"/proc/{pid}/maps").read_text()


def test_no_server_process_holds_cryptography_yet_tls_and_mail_work(group: Group) -> None:
    """cryptography is for making a certificate or a DKIM key: the supervisor makes
    the certificate in a short-lived child, and the processes that live as long as
    the server load the files with `ssl` alone (about 18 MB resident each saved)."""
    smtp = smtplib.SMTP("127.0.0.1", group.port("mx"), timeout=10)
    smtp.starttls()
    smtp.sendmail("bob@example.org", [USER], _message(1))
    smtp.quit()
    imap = imaplib.IMAP4("127.0.0.1", group.port("imap"), timeout=10)
    imap.starttls()
    imap.login(USER, PASSWORD)
    assert imap.select("INBOX")[1] == [b"1"]
    imap.logout()
    for pid in (group.pid, *group.workers):
        assert not _maps_cryptography(pid), pid
    with contextlib.suppress(OSError):  # the check itself can see it
        import cryptography.hazmat.bindings._rust  # noqa: F401
    assert _maps_cryptography(os.getpid())


class Idler:
    """A raw IMAP connection that logs in, selects INBOX and IDLEs."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.line()  # greeting

    def close(self) -> None:
        self.sock.close()

    def line(self, timeout: float = 10) -> bytes:
        self.sock.settimeout(timeout)
        while b"\r\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def command(self, tag: str, text: str) -> None:
        self.sock.sendall(f"{tag} {text}\r\n".encode())
        while not (line := self.line()).startswith(tag.encode() + b" "):
            pass
        assert line.startswith(tag.encode() + b" OK"), line

    def until_exists(self, n: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            line = self.line(max(deadline - time.monotonic(), 0.01))
            if line.endswith(b" EXISTS"):
                return line

    def idle(self) -> None:
        self.command("a", f'LOGIN {USER} "{PASSWORD}"')
        self.command("b", "SELECT INBOX")
        self.sock.sendall(b"c IDLE\r\n")
        assert self.line().startswith(b"+ ")


def test_delivery_through_one_worker_wakes_idle_in_the_other_within_a_second(
    group: Group,
) -> None:
    pids = group.workers
    idlers = one_per_worker(lambda: Idler(group.port("imap")), lambda i: i.sock, pids)
    for idler in idlers.values():
        idler.idle()
    smtp = one_per_worker(
        lambda: smtplib.SMTP("127.0.0.1", group.port("mx"), timeout=10),
        lambda s: s.sock,
        pids,
    )
    for n, (via, client) in enumerate(smtp.items(), start=1):
        client.sendmail("bob@example.org", [USER], _message(n))
        acked = time.monotonic()
        # the IDLE on the other worker hears of it from the change log
        other = next(p for p in pids if p != via)
        for pid in (other, via):
            line = idlers[pid].until_exists(n, timeout=5)
            assert line == f"* {n} EXISTS".encode(), line
        assert time.monotonic() - acked < 1.0
    for client in smtp.values():
        client.quit()
        close(client)
    for idler in idlers.values():
        idler.close()


def test_pop3_lock_is_seen_by_the_other_worker_and_freed_when_its_worker_dies(
    group: Group,
) -> None:
    pids = group.workers
    clients = one_per_worker(
        lambda: poplib.POP3("127.0.0.1", group.port("pop3"), timeout=10), lambda c: c.sock, pids
    )
    (first, a), (_, b) = clients.items()
    a.user(USER)
    assert a.pass_(PASSWORD).startswith(b"+OK")
    b.user(USER)
    with pytest.raises(poplib.error_proto, match=r"IN-USE"):
        b.pass_(PASSWORD)
    # the worker holding the lock dies (kill -9): its lock goes with it
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: first not in group.workers and len(group.workers) == 2)
    c = poplib.POP3("127.0.0.1", group.port("pop3"), timeout=10)
    c.user(USER)
    assert c.pass_(PASSWORD).startswith(b"+OK")
    c.quit()
    close(c)
    close(a)
    close(b)


def test_login_failures_count_across_workers(group_factory: Callable[[str], Group]) -> None:
    g = group_factory('[auth]\nlockout_after = 3\nlockout_period = "60s"\n')
    pids = g.workers
    clients = one_per_worker(
        lambda: imaplib.IMAP4("127.0.0.1", g.port("imap"), timeout=10), lambda c: c.sock, pids
    )
    (_, a), (_, b) = clients.items()
    # three failures, spread over the two workers: worker b saw only one of them
    for client in (a, b, a):
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login(USER, "wrong password")
    with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
        b.login(USER, PASSWORD)
    for client in clients.values():
        with contextlib.suppress(Exception):
            client.logout()
        close(client)


def test_recent_goes_to_one_session_of_all_workers(group: Group) -> None:
    pids = group.workers
    smtp = smtplib.SMTP("127.0.0.1", group.port("mx"), timeout=10)
    smtp.sendmail("bob@example.org", [USER], _message(1))
    smtp.quit()
    close(smtp)
    clients = one_per_worker(
        lambda: imaplib.IMAP4("127.0.0.1", group.port("imap"), timeout=10), lambda c: c.sock, pids
    )
    recent = []
    for client in clients.values():  # IMAP4rev1: \Recent is announced
        client.login(USER, PASSWORD)
        client.select("INBOX")
        recent.append(client.untagged_responses.get("RECENT", [b"0"])[-1])
        client.logout()
        close(client)
    assert recent == [b"1", b"0"]  # the first session to see it, whatever its worker


def test_mail_queued_by_another_worker_is_sent_by_worker_0s_runner(group: Group) -> None:
    line = next(x for x in group.srv.banner if " workers (pids " in x)
    first = int(re.search(r"pids (\d+),", line).group(1))  # type: ignore[union-attr]
    others = group.workers - {first}
    clients = one_per_worker(
        lambda: smtplib.SMTP("127.0.0.1", group.port("submission"), timeout=10),
        lambda s: s.sock,
        group.workers,
    )
    [other] = others
    client = clients[other]
    client.login(USER, PASSWORD)
    # dns.offline: the remote domain does not exist, so the runner bounces it at once
    client.sendmail(
        USER, ["bob@remote.example"], _message(1).replace(b"bob@example.org", USER.encode())
    )
    for c in clients.values():
        c.quit()
        close(c)
    imap = imaplib.IMAP4("127.0.0.1", group.port("imap"), timeout=10)
    imap.login(USER, PASSWORD)

    def bounced() -> bool:
        _, data = imap.status("INBOX", "(MESSAGES)")
        return b"MESSAGES 1" in data[0]

    wait_for(bounced, timeout=10)  # the report from the one runner, in worker 0
    imap.logout()
    close(imap)


def test_greylisting_counts_across_workers(group_factory: Callable[[str], Group]) -> None:
    g = group_factory('[greylist]\nenabled = true\ndelay = "1s"\nwindow = "1h"\nallow = []\n')
    pids = g.workers
    clients = one_per_worker(
        lambda: smtplib.SMTP("127.0.0.1", g.port("mx"), timeout=10), lambda s: s.sock, pids
    )
    (_, a), (_, b) = clients.items()
    for client in (a, b):
        client.ehlo("client.example.org")
        assert client.mail("bob@example.org")[0] == 250
    code, text = a.rcpt(USER)
    assert (code, b"Greylisting" in text) == (451, True)
    time.sleep(1.2)
    # the retry after the delay reaches the other worker, which knows the triplet
    # (a worker counting alone would see a first attempt and answer 451 again)
    assert b.rcpt(USER)[0] == 250
    for client in (a, b):
        client.quit()
        close(client)


def test_a_sigkilled_worker_is_replaced_and_no_acknowledged_message_is_lost(
    group: Group, tmp_path: Path
) -> None:
    total, connections = 200, 10
    acked: list[int] = []
    lock = threading.Lock()
    counter = iter(range(total))
    port = group.port("mx")

    def sender() -> None:
        client: smtplib.SMTP | None = None
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                break
            while client is None:  # nothing sent yet: connecting again is safe
                try:
                    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
                except OSError:
                    time.sleep(0.05)
            try:
                client.sendmail("bob@example.org", [USER], _message(n))
            except (OSError, smtplib.SMTPException):
                close(client)
                client = None  # cut off with its worker: n was never acknowledged
                continue
            with lock:
                acked.append(n)
        if client is not None:
            with contextlib.suppress(Exception):
                client.quit()
            close(client)

    before = group.workers
    threads = [threading.Thread(target=sender) for _ in range(connections)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= total // 4)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    for t in threads:
        t.join(120)
    # a new worker took the dead one's place
    after = wait_for(lambda: g if len(g := group.workers) == 2 else None)
    assert victim not in after and len(after - before) == 1
    # only the transactions in flight on the dead worker went unacknowledged
    assert len(acked) >= total - connections
    assert group.srv.terminate(timeout=30) == 0
    found = [re.search(rb"Message-ID: <workers-(\d+)@test>", m) for m in _stored(group.srv.config)]
    assert all(found)
    ids = [int(f.group(1)) for f in found if f]
    assert len(ids) == len(set(ids))  # each message was sent once: stored at most once
    assert set(acked) <= set(ids)  # every acknowledged one is there


def _scrape(group: Group) -> dict[str, float]:
    """/metrics (served by worker 0) as {'name{labels}': value}."""
    url = f"http://127.0.0.1:{group.port('web')}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def test_metrics_and_status_count_every_worker_and_survive_a_restart(group: Group) -> None:
    line = next(x for x in group.srv.banner if " workers (pids " in x)
    m = re.match(r"^2 workers \(pids (\d+), (\d+)\)", line)
    assert m, line
    first = int(m.group(1))  # worker 0: it serves /metrics and writes the status file
    made = 0

    def connect() -> smtplib.SMTP:
        nonlocal made
        made += 1
        return smtplib.SMTP("127.0.0.1", group.port("mx"), timeout=10)

    conns = one_per_worker(connect, lambda c: c.sock, group.workers)
    opened = 'postier_sessions_open{listener="mx"}'
    accepted = 'postier_connections_total{protocol="mx"}'
    wait_for(lambda: _scrape(group).get(opened) == 2)  # the extra ones closed
    assert _scrape(group)[accepted] == made  # both workers' connections
    data_dir = group.srv.config.parent / "data"
    wait_for(lambda: (read_status(data_dir) or {})["listeners"]["mx"]["sessions"] == 2, 15)

    # the other worker dies with its session open: the session no longer counts,
    # its connections still do, and its replacement counts on from there
    victim = next(pid for pid in conns if pid != first)
    os.kill(victim, signal.SIGKILL)
    after = wait_for(lambda: g if len(g := group.workers) == 2 and victim not in g else None)
    wait_for(lambda: _scrape(group).get(opened) == 1)
    assert _scrape(group)[accepted] == made
    again = one_per_worker(connect, lambda c: c.sock, after)  # one on the new worker
    wait_for(lambda: _scrape(group).get(opened) == 3)
    assert _scrape(group)[accepted] == made
    for c in (*conns.values(), *again.values()):
        close(c)
    wait_for(lambda: _scrape(group).get(opened) == 0)


# --- the web listener in every worker ------------------------------------------
_SSE_DATA = re.compile(rb"data: \[\d")


def _read_until(sock: socket.socket, buf: bytes, done: Callable[[bytes], bool]) -> bytes:
    """`buf` and what the socket sends until `done(buf)`, at most 10 s."""
    deadline = time.monotonic() + 10
    while not done(buf):
        assert time.monotonic() < deadline, buf
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(65536)
        assert data, ("the connection closed", buf)
        buf += data
    return buf


def _read_quiet(sock: socket.socket, buf: bytes, quiet: float) -> bytes:
    """`buf` and what the socket sends until it has been silent `quiet` seconds."""
    sock.settimeout(quiet)
    for _ in range(20):
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return buf
        assert data, ("the connection closed", buf)
        buf += data
    return buf


class Web:
    """One keep-alive HTTP connection (so one worker) with a cookie jar of one."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.cookie = ""
        self.get("/healthz")  # accepted by a worker by now

    @property
    def sock(self) -> socket.socket:
        assert self.conn.sock is not None
        return self.conn.sock

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        text = resp.read().decode()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, text

    def get(self, path: str) -> tuple[int, dict[str, str], str]:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, str], str]:
        return self.request("POST", path, form)

    def close(self) -> None:
        self.conn.close()


def _cookie_of(headers: dict[str, str]) -> str:
    return headers["set-cookie"].split(";", 1)[0]


def _csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, page[:500]
    return m.group(1)


def test_web_sessions_work_on_every_worker_and_logout_ends_them_everywhere(
    group: Group,
) -> None:
    pids = group.workers
    web = one_per_worker(lambda: Web(group.port("web")), lambda w: w.sock, pids)
    first, second = (web[p] for p in sorted(pids))
    # the login form from one worker, the login through the other
    status, headers, page = first.get("/")
    assert status == 200 and "Log in" in page
    anonymous = _cookie_of(headers)
    second.cookie = anonymous
    status, headers, _ = second.post(
        "/login", {"csrf": _csrf_of(page), "email": USER, "password": PASSWORD}
    )
    assert status == 303, status
    cookie = _cookie_of(headers)
    assert cookie != anonymous and cookie.startswith("postier_session=")
    # the session works on both workers, and so do the forms its token signs
    for w in web.values():
        w.cookie = cookie
    status, headers, _ = first.get("/")
    assert status == 303
    inbox = headers["location"]
    for w in (first, second):
        status, _, page = w.get(inbox)
        assert status == 200 and USER in page, status
    csrf = _csrf_of(page)
    status, _, _ = first.post("/folders/create", {"csrf": csrf, "name": "Made on one"})
    assert status == 303
    status, _, page = second.get("/folders")
    assert "Made on one" in page
    # live updates on each worker hear a delivery through any worker (raw sockets:
    # a read that times out leaves them usable, unlike http.client's responses)
    streams = one_per_worker(lambda: Web(group.port("web")), lambda w: w.sock, pids)
    got: dict[int, bytes] = {}
    for pid, w in streams.items():
        w.sock.sendall(
            f"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n".encode()
        )
        got[pid] = _read_until(w.sock, b"", lambda b: b"retry:" in b)
        assert got[pid].startswith(b"HTTP/1.1 200"), got[pid]
    with smtplib.SMTP("127.0.0.1", group.port("mx"), timeout=10) as smtp:
        smtp.sendmail("bob@example.org", [USER], _message(1))
    for pid, w in streams.items():
        got[pid] = _read_until(w.sock, got[pid], lambda b: _SSE_DATA.search(b) is not None)
        # the same delivery may send a second event a moment later: take it now
        got[pid] = _read_quiet(w.sock, got[pid], 0.5)
    # logout through one worker: the other refuses the cookie at once, and the
    # open streams end at the next change without sending it
    status, _, _ = second.post("/logout", {"csrf": csrf})
    assert status == 303
    status, headers, _ = first.get(inbox)
    assert status == 303 and headers["location"] == "/"
    with smtplib.SMTP("127.0.0.1", group.port("mx"), timeout=10) as smtp:
        smtp.sendmail("bob@example.org", [USER], _message(2))
    for pid, w in streams.items():
        before = len(got[pid])
        got[pid] = _read_until(w.sock, got[pid], lambda b: b.endswith(b"\r\n0\r\n\r\n"))
        rest = got[pid][before:]
        assert _SSE_DATA.search(rest) is None, rest
    for w in (*web.values(), *streams.values()):
        w.close()
