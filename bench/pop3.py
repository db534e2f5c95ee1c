"""POP3 retrieval benchmark (issue 6): messages/s and MB/s for whole-maildrop downloads.

Each user's maildrop holds `--messages` messages (default 1,000 of about 4 KB). A
client session is: connect, USER/PASS, STAT, UIDL, RETR every message, QUIT (nothing
deleted), the way fetchmail with "keep" or a phone with "leave on server" downloads.
Runs: 1 user alone, then 10 users at once (10 sessions in parallel, each on its own
maildrop); each run uses users that were never read, so nothing is cached yet (the
first download, the common case), then the same runs again ("again": caches warm,
\\Seen already set).

Servers, one at a time, on 127.0.0.1:
- postier: ``python -m postier serve`` (MX + POP3 listeners) in a temp dir; the
  maildrops are filled over SMTP before the timed runs (one message to all users).
- Dovecot (when ``dovecot-pop3d`` is installed and we are root): ``dovecot -F -c``
  with a config written here: base_dir, state_dir and log in the temp dir, a
  passwd-file userdb/passdb, ``mail_location = maildir:~/Maildir`` with homes in the
  temp dir, owned by nobody. The Maildir files are written as Dovecot's own LDA would
  (LF line endings, ``,S=<size>,W=<CRLF size>`` in the name). The password hash in
  both servers is the same argon2id string (postier's own `hash_password`), so a
  login costs both the same.

The client is an asyncio POP3 client in this process (uvloop when installed); it
checks every reply is +OK and counts the octets of each RETR response.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    DOMAIN,
    HOST,
    PASSWORD,
    Children,
    LoadError,
    Postier,
    check,
    dot_stuff,
    dovecot_conf,
    free_port,
    make_message,
    run_async,
    smtp_send,
    table,
    targets_table,
    tree_cpu_seconds,
    tree_peak_rss_mb,
    wait_port,
    workspace,
)

SENDER = "sender@client.test"


# --- client -----------------------------------------------------------------------------


async def _ok(reader: asyncio.StreamReader, what: str) -> bytes:
    line = await reader.readline()
    if not line.startswith(b"+OK"):
        raise LoadError(f"{what}: {line!r}")
    return line


async def _multiline(reader: asyncio.StreamReader, what: str) -> int:
    """A +OK multi-line response; returns its octets (status line to terminator)."""
    data = await reader.readuntil(b"\r\n.\r\n")
    if not data.startswith(b"+OK"):
        raise LoadError(f"{what}: {data[:200]!r}")
    return len(data)


async def download(port: int, user: str, password: str) -> tuple[int, int]:
    """One session: login, STAT, UIDL, RETR all, QUIT. Returns (messages, octets)."""
    reader, writer = await asyncio.open_connection(HOST, port, limit=64 * 1024 * 1024)
    try:
        await _ok(reader, "greeting")
        writer.write(f"USER {user}\r\n".encode())
        await _ok(reader, "USER")
        writer.write(f"PASS {password}\r\n".encode())
        await _ok(reader, "PASS")
        writer.write(b"STAT\r\n")
        count = int((await _ok(reader, "STAT")).split()[1])
        writer.write(b"UIDL\r\n")
        await _multiline(reader, "UIDL")
        octets = 0
        for n in range(1, count + 1):
            writer.write(b"RETR %d\r\n" % n)
            octets += await _multiline(reader, f"RETR {n}")
        writer.write(b"QUIT\r\n")
        await _ok(reader, "QUIT")
        return count, octets
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def download_all(port: int, users: Sequence[str], password: str) -> tuple[int, int]:
    results = await asyncio.gather(*(download(port, u, password) for u in users))
    return sum(r[0] for r in results), sum(r[1] for r in results)


# --- servers ----------------------------------------------------------------------------


class Target:
    name = ""

    def setup(self, users: Sequence[str], messages: Sequence[bytes]) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def port(self) -> int:
        raise NotImplementedError

    def cpu(self) -> float:
        raise NotImplementedError

    def rss_mb(self) -> float | None:
        return None


class PostierTarget(Target):
    name = "postier"

    def __init__(self, root: Path, children: Children) -> None:
        self.server = Postier(root / "postier", children, ["mx", "pop3"])

    def setup(self, users: Sequence[str], messages: Sequence[bytes]) -> None:
        self.server.add_users(users)
        self.server.start()
        stuffed = [dot_stuff(m) for m in messages]
        sent = run_async(smtp_send(self.server.ports["mx"], stuffed, 10, SENDER, users))
        if sent != len(messages):
            raise LoadError(f"postier took {sent} of {len(messages)} messages")

    def stop(self) -> None:
        self.server.stop()

    @property
    def port(self) -> int:
        return self.server.ports["pop3"]

    def cpu(self) -> float:
        return tree_cpu_seconds(self.server.pid)  # the supervisor and its workers

    def rss_mb(self) -> float | None:
        return tree_peak_rss_mb(self.server.pid)


class DovecotTarget(Target):
    name = "dovecot"

    def __init__(self, root: Path, children: Children) -> None:
        self.root = root / "dovecot"
        self.children = children
        self._port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def unavailable() -> str | None:
        if shutil.which("dovecot") is None or not Path("/usr/lib/dovecot/pop3").exists():
            return "dovecot-pop3d is not installed (apt-get install -y dovecot-pop3d)"
        if os.geteuid() != 0:
            return "a private Dovecot instance needs root (it drops to its own users)"
        return None

    def setup(self, users: Sequence[str], messages: Sequence[bytes]) -> None:
        from postier.auth.passwords import hash_password

        self.root.mkdir()
        self.root.chmod(0o755)
        hashed = hash_password(PASSWORD)
        lines = []
        files = [m.replace(b"\r\n", b"\n") for m in messages]  # Maildir files use LF
        now = int(time.time())
        for user in users:
            local = user.split("@")[0]
            home = self.root / "home" / local
            new = home / "Maildir" / "new"
            new.mkdir(parents=True)
            for i, (crlf, lf) in enumerate(zip(messages, files, strict=True)):
                name = f"{now}.M{i}P{os.getpid()}.bench,S={len(lf)},W={len(crlf)}"
                (new / name).write_bytes(lf)
            for d in (home, *home.rglob("*")):
                os.chown(d, 65534, 65534)
            lines.append(f"{user}:{{ARGON2ID}}{hashed}:65534:65534::{home}::")
        (self.root / "users").write_text("\n".join(lines) + "\n")
        conf = self.root / "dovecot.conf"
        extra = "pop3_uidl_format = %08Xu%08Xv\n"  # the UIDL form postier uses
        conf.write_text(dovecot_conf(self.root, HOST, self._port, "pop3", extra))
        self.proc = subprocess.Popen(
            ["dovecot", "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.children.add(self.proc.pid)
        try:
            wait_port(self._port)
        except RuntimeError:
            log = self.root / "dovecot.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"dovecot did not start: {tail}") from None

    def stop(self) -> None:
        if self.proc is not None:
            self.children.stop(self.proc.pid)  # the master stops its children on SIGTERM
            self.proc.wait()

    @property
    def port(self) -> int:
        return self._port

    def cpu(self) -> float:
        assert self.proc is not None
        return tree_cpu_seconds(self.proc.pid)


# --- runs -------------------------------------------------------------------------------


@dataclass
class Run:
    server: str
    users: int
    label: str  # "first" or "again"
    messages: int
    octets: int
    seconds: float
    cpu_s: float
    client_cpu_s: float
    rss_mb: float | None

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def mbps(self) -> float:
        return self.octets / self.seconds / 1e6


def measure(target: Target, users: Sequence[str], label: str, expected: int) -> Run:
    cpu0, client0 = target.cpu(), time.process_time()
    t0 = time.perf_counter()
    messages, octets = run_async(download_all(target.port, users, PASSWORD))
    seconds = time.perf_counter() - t0
    if messages != expected * len(users):
        raise LoadError(f"{target.name}: {messages} messages, expected {expected * len(users)}")
    return Run(
        target.name,
        len(users),
        label,
        messages,
        octets,
        seconds,
        target.cpu() - cpu0,
        time.process_time() - client0,
        target.rss_mb(),
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--messages", type=int, default=1000, help="messages in each maildrop (default 1000)"
    )
    p.add_argument(
        "--size", type=int, default=4096, help="body octets of each message (default 4096)"
    )
    p.add_argument(
        "--concurrency",
        default="1,10",
        help="users downloading at once, comma-separated (default 1,10)",
    )
    p.add_argument(
        "--servers",
        default="postier,dovecot",
        help="which servers to run (default postier,dovecot)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp directory")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> list[Run]:
    concs = [int(x) for x in args.concurrency.split(",")]
    groups: list[list[str]] = []
    n = 0
    for c in concs:
        groups.append([f"u{i}@{DOMAIN}" for i in range(n, n + c)])
        n += c
    users = [u for g in groups for u in g]
    messages = [
        make_message(i, args.size, SENDER, "undisclosed-recipients:;") for i in range(args.messages)
    ]
    print(
        f"POP3 retrieval: {args.messages} messages of {args.size} body octets per "
        f"maildrop, users at once {concs}, {os.cpu_count()} CPUs"
    )
    runs: list[Run] = []
    children = Children()
    with workspace("pop3", keep=args.keep) as root:
        try:
            for name in args.servers.split(","):
                target: Target
                if name == "postier":
                    target = PostierTarget(root, children)
                elif name == "dovecot":
                    why = DovecotTarget.unavailable()
                    if why:
                        print(f"  note: Dovecot skipped: {why}")
                        continue
                    target = DovecotTarget(root, children)
                else:
                    raise SystemExit(f"unknown server {name!r}")
                t0 = time.perf_counter()
                try:
                    target.setup(users, messages)
                    print(
                        f"  {name}: {len(users)} maildrops filled in "
                        f"{time.perf_counter() - t0:.1f}s",
                        flush=True,
                    )
                    for label in ("first", "again"):
                        for group in groups:
                            r = measure(target, group, label, args.messages)
                            runs.append(r)
                            print(
                                f"  {r.server:<8} users={r.users:<3} {label:<5} "
                                f"{r.rate:8.0f} msgs/s {r.mbps:6.1f} MB/s",
                                flush=True,
                            )
                finally:
                    target.stop()
        finally:
            children.stop_all()
    return runs


def report(runs: Sequence[Run]) -> str:
    rows = [
        [
            r.server,
            r.users,
            r.label,
            r.messages,
            r.rate,
            r.mbps,
            f"{1000 * r.cpu_s / r.messages:.3f}",
            f"{1000 * r.client_cpu_s / r.messages:.3f}",
            f"{r.rss_mb:.0f}" if r.rss_mb is not None else "-",
        ]
        for r in runs
    ]
    out = [
        table(
            [
                "server",
                "users",
                "pass",
                "msgs",
                "msgs/s",
                "MB/s",
                "cpu ms/msg",
                "client ms/msg",
                "peak RSS MB",
            ],
            rows,
        )
    ]
    by = {(r.server, r.users, r.label): r for r in runs}
    ratio = []
    for r in runs:
        d = by.get(("dovecot", r.users, r.label))
        if r.server == "postier":
            ratio.append(
                [
                    r.users,
                    r.label,
                    r.rate,
                    d.rate if d else "-",
                    f"{r.rate / d.rate:.2f}x" if d else "-",
                ]
            )
    if ratio:
        out.append("")
        out.append(table(["users", "pass", "postier/s", "dovecot/s", "postier/dovecot"], ratio))
    return "\n".join(out)


def targets(runs: Sequence[Run]) -> str:
    """Issue 14's POP3 targets (downloads of mail never read), each with its verdict."""
    by = {(r.server, r.users, r.label): r for r in runs}

    def ratio(users: int) -> float | None:
        mine, peer = by.get(("postier", users, "first")), by.get(("dovecot", users, "first"))
        return mine.rate / peer.rate if mine and peer else None

    return targets_table(
        [
            check("pop3 10 users vs dovecot", ratio(10), ">=", 1, "x"),
            check("pop3 1 user vs dovecot", ratio(1), ">=", 0.9, "x"),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    runs = run(parse_args(argv))
    print()
    print(report(runs))
    print()
    print(targets(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
