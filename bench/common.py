"""Shared pieces of the benchmarks: temp workspaces, child processes, /proc readings,
message generation, the Python load clients and the result table.

Rules:
- Everything listens and connects on 127.0.0.1 only; ports come from binding port 0.
- Every process a bench starts is recorded in a `Children` registry and stopped by
  its PID (SIGTERM, then SIGKILL after a grace period) when the bench ends, whatever
  happened. Daemons that detach (Postfix's master) are registered by the PID they
  write in their pid file.
- CPU time is read from /proc/<pid>/stat (utime+stime of the process and every
  thread, plus cutime+cstime of children it reaped), so a server's CPU cost per
  message is measured, not guessed. Peak RSS is /proc/<pid>/status VmHWM.
- Workspaces are temp directories removed at the end (``--keep`` leaves them for
  inspection). They are chmod 0755 so daemons that drop privileges (postfix,
  dovecot, nobody) can reach their files inside.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
DOMAIN = "bench.test"
PASSWORD = "bench password 42"
T = TypeVar("T")


# --- workspace and processes ------------------------------------------------------------


@contextlib.contextmanager
def workspace(prefix: str, keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"postier-{prefix}-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        if keep:
            print(f"  (kept {path})")
        else:
            shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout}s")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def stop_pid(pid: int, grace: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL: for one PID this bench started."""
    if not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


@dataclass
class Children:
    """The processes a bench started; `stop_all()` stops each by PID, newest first."""

    pids: list[int] = field(default_factory=list)

    def add(self, pid: int) -> int:
        self.pids.append(pid)
        return pid

    def stop(self, pid: int) -> None:
        stop_pid(pid)
        if pid in self.pids:
            self.pids.remove(pid)

    def stop_all(self) -> None:
        while self.pids:
            stop_pid(self.pids.pop())


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()  # fields from 3 (state) on


def cpu_seconds(pid: int) -> float:
    """utime+stime+cutime+cstime of `pid` (all its threads, and reaped children)."""
    f = _stat_fields(pid)
    return sum(int(x) for x in f[11:15]) / CLK_TCK  # stat fields 14..17


def descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                ppid = int(_stat_fields(int(entry.name))[1])
                kids.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for k in kids.get(p, []):
            out.append(k)
            todo.append(k)
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process tree: the root (with what it reaped) plus live descendants."""
    total = cpu_seconds(pid)
    for k in descendants(pid):
        with contextlib.suppress(OSError, IndexError):
            f = _stat_fields(k)
            total += (int(f[11]) + int(f[12])) / CLK_TCK  # children of children: own only
    return total


def tree_peak_rss_mb(pid: int) -> float:
    """The peak RSS of a process and its live descendants, added up (a supervisor
    and its workers; an upper bound, since their peaks need not coincide)."""
    total = peak_rss_mb(pid)
    for k in descendants(pid):
        with contextlib.suppress(OSError):
            total += peak_rss_mb(k)
    return total


def peak_rss_mb(pid: int) -> float:
    """VmHWM of `pid` in MiB (peak resident set since it started)."""
    m = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(m.group(1)) / 1024 if m else 0.0


# --- messages ---------------------------------------------------------------------------


def make_message(index: int, body_size: int, sender: str, rcpt: str) -> bytes:
    """A plain message with CRLF endings: a few headers and `body_size` octets of text
    lines (78 characters + CRLF), so the server sees ordinary line structure."""
    head = (
        f"From: <{sender}>\r\n"
        f"To: <{rcpt}>\r\n"
        f"Subject: bench message {index}\r\n"
        f"Date: Mon, 30 Nov 2026 04:00:00 +0000\r\n"
        f"Message-ID: <bench.{index}@client.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen.\r\n"
    body = (line * (body_size // len(line) + 1))[:body_size]
    if not body.endswith(b"\r\n"):
        body = body[: max(0, len(body) - 2)] + b"\r\n"
    return head + body


def dot_stuff(message: bytes) -> bytes:
    """RFC 5321 §4.5.2 transparency, and the terminating line."""
    data = message.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    return data + b".\r\n"


# --- Python SMTP load client ------------------------------------------------------------


class LoadError(Exception):
    pass


async def _reply(reader: asyncio.StreamReader) -> bytes:
    """One (possibly multi-line) SMTP reply; its last line."""
    while True:
        line = await reader.readline()
        if not line:
            raise LoadError("connection closed")
        if line[3:4] != b"-":
            return line


async def _expect(reader: asyncio.StreamReader, code: bytes, what: str) -> None:
    line = await _reply(reader)
    if not line.startswith(code):
        raise LoadError(f"{what}: {line!r}")


async def _smtp_session(
    port: int, jobs: asyncio.Queue[bytes], sender: str, rcpts: Sequence[str], done: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        await _expect(reader, b"220", "greeting")
        writer.write(b"EHLO client.test\r\n")
        await _expect(reader, b"250", "EHLO")
        rcpt_lines = b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts)
        while True:
            try:
                data = jobs.get_nowait()
            except asyncio.QueueEmpty:
                break
            writer.write(f"MAIL FROM:<{sender}>\r\n".encode())
            await _expect(reader, b"250", "MAIL")
            writer.write(rcpt_lines)
            for _ in rcpts:
                await _expect(reader, b"250", "RCPT")
            writer.write(b"DATA\r\n")
            await _expect(reader, b"354", "DATA")
            writer.write(data)
            await _expect(reader, b"250", "end of data")
            done[0] += 1
        writer.write(b"QUIT\r\n")
        await _expect(reader, b"221", "QUIT")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def smtp_send(
    port: int, messages: Sequence[bytes], concurrency: int, sender: str, rcpts: Sequence[str]
) -> int:
    """Send `messages` (already dot-stuffed) over `concurrency` connections, one
    transaction at a time per connection (no PIPELINING, as smtp-source). Returns
    the count of 250s; raises `LoadError` on any unexpected reply."""
    jobs: asyncio.Queue[bytes] = asyncio.Queue()
    for m in messages:
        jobs.put_nowait(m)
    done = [0]
    await asyncio.gather(
        *(
            _smtp_session(port, jobs, sender, rcpts, done)
            for _ in range(min(concurrency, len(messages)))
        )
    )
    return done[0]


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run with uvloop when installed (as the server runs)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: T = uvloop.run(coro)
    return result


# --- postier as a child process ---------------------------------------------------------


class Postier:
    """`python -m postier serve` with its own config and data dir in `root`."""

    def __init__(
        self,
        root: Path,
        children: Children,
        listeners: Sequence[str],
        extra: str = "",
        workers: int | None = None,
    ) -> None:
        self.root = root
        #: `server.workers`; None leaves the default (one per CPU)
        self.workers = workers
        root.mkdir(parents=True, exist_ok=True)
        self.children = children
        self.config = root / "postier.toml"
        self.listeners = tuple(listeners)
        self.extra = extra
        self.ports: dict[str, int] = {}
        self._write_config()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "postier.log"

    def _write_config(self) -> None:
        """A config with fresh free ports for our listeners, every other one disabled."""
        self.ports = {name: free_port() for name in self.listeners}
        lines = [
            "[server]",
            'hostname = "mail.bench.test"',
            'data_dir = "./data"',
            *([] if self.workers is None else [f"workers = {self.workers}"]),
            "[dns]",
            "offline = true",
            "[log]",
            'level = "warning"',
            "[smtp.limits]",
            "max_connections_per_ip = 1000",
        ]
        for name in ("mx", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "web"):
            if name in self.ports:
                lines += [
                    f"[listeners.{name}]",
                    f'address = "{HOST}"',
                    f"port = {self.ports[name]}",
                ]
            else:
                lines += [f"[listeners.{name}]", "enabled = false"]
        self.config.write_text("\n".join(lines) + "\n" + self.extra)

    def cli(self, *args: str, stdin: str | None = None) -> None:
        subprocess.run(
            [PYTHON, "-m", "postier", "-c", str(self.config), *args],
            input=stdin.encode() if stdin is not None else None,
            check=True,
            capture_output=True,
            cwd=self.root,
        )

    def add_users(self, addresses: Sequence[str], password: str = PASSWORD) -> None:
        """The domain and users, through the CLI (`postier domain add`, `user add`)."""
        self.cli("domain", "add", DOMAIN)
        for a in addresses:
            self.cli("user", "add", "--password-stdin", a, stdin=password + "\n")

    def start(self, launcher: Sequence[str] = (PYTHON, "-m", "postier")) -> int:
        """Serve; `launcher` replaces ``python -m postier`` (e.g. a profiling wrapper).
        A port taken by someone else between our probe and the server's bind (the
        machine is shared) is retried with new ports."""
        for attempt in range(3):
            try:
                return self._start(launcher)
            except RuntimeError as e:
                if "address already in use" not in str(e) or attempt == 2:
                    raise
                self._write_config()
        raise AssertionError("unreachable")

    def _start(self, launcher: Sequence[str]) -> int:
        out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [*launcher, "-c", str(self.config), "serve"],
            stdout=subprocess.PIPE,
            stderr=out,
            cwd=self.root,
        )
        self.children.add(self.proc.pid)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                self.children.stop(self.proc.pid)
                self.proc.stdout.close()
                raise RuntimeError(f"postier exited: {self.log.read_text()[-2000:]}")
            if line.startswith(b"ready"):
                break
        for port in self.ports.values():
            wait_port(port)
        return self.proc.pid

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            self.children.stop(self.proc.pid)
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def fill_inbox(
    config: Path,
    user: str,
    messages: Sequence[bytes],
    flagged: Callable[[int], bool] = lambda i: False,
) -> None:
    """The messages into `user`'s INBOX through the store, as a delivery would
    (before the server starts: the benches measure reading, not this)."""

    async def go() -> None:
        from postier.config.load import load
        from postier.mime.summary import summarize
        from postier.store import open_store
        from postier.store.models import NewMessage

        store = open_store(load(config))
        await store.open()
        try:
            owner = await store.get_user(user)
            assert owner is not None
            inbox = await store.get_mailbox(owner.id, "INBOX")
            assert inbox is not None
            sem = asyncio.Semaphore(64)  # concurrent appends share group commits

            async def put(i: int, m: bytes) -> None:
                flags = frozenset({"\\Flagged"}) if flagged(i) else frozenset()
                async with sem:
                    await store.append(inbox.id, NewMessage(m, summarize(m)), flags)

            await asyncio.gather(*(put(i, m) for i, m in enumerate(messages)))
        finally:
            await store.close()

    run_async(go())


# --- PostgreSQL -------------------------------------------------------------------------

#: a role that may create databases; every bench database is created and dropped here
PG_ADMIN = os.environ.get("POSTIER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_value(sql: str, dsn: str = PG_ADMIN) -> object:
    """One statement on PostgreSQL, its first value (asyncpg, a short-lived connection)."""
    import asyncpg

    async def go() -> object:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return run_async(go())


def pg_unavailable() -> str | None:
    """Why no PostgreSQL bench can run here, or None."""
    try:
        pg_value("SELECT 1")
    except Exception as e:  # any failure to reach it: say why and skip
        return f"PostgreSQL at {PG_ADMIN} does not answer ({e})"
    return None


class PgDatabase:
    """A fresh database of its own on `PG_ADMIN`'s server for one bench run
    (``create``, then ``drop``, which ends the sessions still connected)."""

    def __init__(self, label: str = "bench") -> None:
        self.name = f"postier_{label}_{os.getpid()}_{os.urandom(4).hex()}"
        self.dsn = PG_ADMIN.partition("?")[0].rpartition("/")[0] + "/" + self.name

    @property
    def config(self) -> str:
        """The postier config section that selects it."""
        return f'[store]\nbackend = "postgres"\npostgres_dsn = "{self.dsn}"\n'

    def create(self) -> None:
        pg_value(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        pg_value(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def value(self, sql: str) -> object:
        return pg_value(sql, self.dsn)

    def backend_pids(self) -> list[int]:
        """The server processes of the sessions connected to this database now."""
        pids = pg_value(
            f"SELECT array_agg(pid) FROM pg_stat_activity WHERE datname = '{self.name}'"
        )
        return [int(p) for p in pids or ()]  # type: ignore[attr-defined]

    def backend_cpu(self, pids: Sequence[int]) -> float:
        """user+system seconds of those server processes (the ones still alive).
        PostgreSQL's shared processes (WAL writer, checkpointer) are not counted."""
        total = 0.0
        for pid in pids:
            with contextlib.suppress(OSError, IndexError, ValueError):
                f = _stat_fields(pid)
                total += (int(f[11]) + int(f[12])) / CLK_TCK
        return total


# --- output -----------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        lines.append(
            "  ".join(
                c.rjust(w) if n and _numeric(c) else c.ljust(w)
                for c, w in zip(r, widths, strict=True)
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def check(what: str, value: float | None, op: str, want: float, unit: str = "") -> list[object]:
    """One row of a bench's targets table (issue 14): the target, what was measured,
    and ✓ or ✗; a dash when it could not be measured (a peer not installed).
    `op` is ">=", ">", "<=" or "<"; `unit` "x" shows ratios."""
    wanted = f"{op} {_fmt(float(want))}{unit}"
    if value is None:
        return [what, wanted, "-", "-"]
    met = {">=": value >= want, ">": value > want, "<=": value <= want, "<": value < want}[op]
    return [what, wanted, f"{_fmt(value)}{unit}", "✓" if met else "✗"]


def targets_table(rows: Sequence[Sequence[object]], issue: int = 14) -> str:
    met = sum(1 for r in rows if r[-1] == "✓")
    measured = sum(1 for r in rows if r[-1] != "-")
    summary = f"issue {issue} targets met: {met} of {measured} measured ({len(rows)} in all)"
    return table([f"target (issue {issue})", "wanted", "measured", "met"], rows) + "\n" + summary


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if v >= 100:
            return f"{v:,.0f}"
        if v >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return str(v)


def _numeric(s: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[\d,.]+[x%]?", s))


def dovecot_conf(root: Path, host: str, port: int, protocol: str, extra: str = "") -> str:
    """A self-contained Dovecot config for one protocol ("imap" or "pop3") on one
    loopback port: state, logs and passwd-file users under `root`, no TLS."""
    return f"""\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = {protocol}
listen = {host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:~/Maildir
first_valid_uid = 100
default_internal_user = dovecot
default_login_user = dovenull
{extra}passdb {{
  driver = passwd-file
  args = {root}/users
}}
userdb {{
  driver = passwd-file
  args = {root}/users
}}
service {protocol}-login {{
  inet_listener {protocol} {{
    address = {host}
    port = {port}
  }}
  inet_listener {protocol}s {{
    port = 0
  }}
}}
"""
