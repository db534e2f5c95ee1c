"""SMTP intake benchmark (issue 3): messages/s durably delivered to one local user.

Servers, each started here as a child process on 127.0.0.1, one at a time, measured
with the same load client:

- postier: ``python -m postier serve`` with its own config and data dir in a temp dir,
  log level warning, only the MX listener; a 250 means blob fsynced and the SQLite
  commit done (group commit across sessions).
- postier-pg: the same over PostgreSQL (``store.backend = "postgres"``, a fresh
  database on the server `POSTIER_BENCH_PG` names, by default the machine's at
  127.0.0.1:5432, dropped afterwards); a 250 means the PostgreSQL commit is done.
  Skipped with a note when no server answers. Target (issue 16): within 0.7x of
  postier on SQLite.
- aiosmtpd: `peer_aiosmtpd.py`, a handler writing each message into a Maildir and
  fsyncing it before its 250 (the Python peer).
- Postfix (when the ``postfix`` package is installed and we are root): a private
  instance (``postfix -c <temp>/conf``) with its queue, data directory and log in the
  temp dir, smtpd on a loopback port, delivering with virtual(8) into a Maildir in the
  temp dir. Postfix answers 250 once the message is in its queue; delivery follows, so
  its msgs/s counts until the last message is in the Maildir (its intake rate is
  shown too). virtual(8) rather than local(8): local delivery needs a Unix account
  whose home is the Maildir, and creating one would change /etc/passwd of the
  machine; both agents write the Maildir the same way (tmp/, fsync, link to new/).

Load: N messages of 1 KB and 50 KB of body, over C concurrent connections (1, 10, 50),
several messages per connection, one transaction at a time (no PIPELINING). The
client is Postfix's ``smtp-source`` when installed (C; a Python client saturates near
3,000 msgs/s and would share the 2 CPUs with the server), else the asyncio client in
`common.py` (``--client`` chooses).

Each run checks that the server's mailbox holds exactly N more messages afterwards.
CPU per message is the server's user+system time over the run (for Postfix the whole
process tree: smtpd, cleanup, qmgr, trivial-rewrite, virtual ...). postier's peak RSS is
VmHWM of its process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
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
    PYTHON,
    Children,
    LoadError,
    PgDatabase,
    Postier,
    check,
    cpu_seconds,
    dot_stuff,
    free_port,
    make_message,
    peak_rss_mb,
    pg_unavailable,
    run_async,
    smtp_send,
    table,
    targets_table,
    tree_cpu_seconds,
    tree_peak_rss_mb,
    wait_port,
    workspace,
)

RCPT = f"bench@{DOMAIN}"
SENDER = "sender@client.test"
BENCH_DIR = Path(__file__).resolve().parent


# --- servers ----------------------------------------------------------------------------


class Target:
    name = ""
    #: Postfix: 250 = queued; delivery into the Maildir follows
    async_delivery = False

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def port(self) -> int:
        raise NotImplementedError

    def delivered(self) -> int:
        raise NotImplementedError

    def cpu(self) -> float:
        raise NotImplementedError

    def rss_mb(self) -> float | None:
        return None

    def db_cpu(self) -> float | None:
        """CPU seconds of the database server's sessions (PostgreSQL only)."""
        return None


class PostierTarget(Target):
    name = "postier"

    def __init__(self, root: Path, children: Children, workers: int | None = None) -> None:
        self.server = Postier(root / "postier", children, ["mx"], workers=workers)
        self.db = root / "postier" / "data" / "postier.db"

    def start(self) -> None:
        self.server.add_users([RCPT])
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    @property
    def port(self) -> int:
        return self.server.ports["mx"]

    def delivered(self) -> int:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            n: int = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
            return n
        finally:
            conn.close()

    def cpu(self) -> float:
        return tree_cpu_seconds(self.server.pid)  # the supervisor and its workers

    def rss_mb(self) -> float | None:
        return tree_peak_rss_mb(self.server.pid)


class PostierPgTarget(PostierTarget):
    """postier with the PostgreSQL store, on a database of its own."""

    name = "postier-pg"

    def __init__(self, root: Path, children: Children, workers: int | None = None) -> None:
        self.database = PgDatabase()
        self.server = Postier(
            root / "postier-pg", children, ["mx"], self.database.config, workers=workers
        )
        self._backends: list[int] = []

    @staticmethod
    def unavailable() -> str | None:
        return pg_unavailable()

    def start(self) -> None:
        self.database.create()
        super().start()

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.database.drop()

    def delivered(self) -> int:
        return int(self.database.value("SELECT count(*) FROM messages"))  # type: ignore[call-overload]

    def db_cpu(self) -> float | None:
        # the sessions of the run: those open before it and those opened since
        self._backends = sorted(set(self._backends) | set(self.database.backend_pids()))
        return self.database.backend_cpu(self._backends)


def _maildir_count(new: Path) -> int:
    try:
        return sum(1 for _ in os.scandir(new))
    except FileNotFoundError:
        return 0


class AiosmtpdTarget(Target):
    name = "aiosmtpd"

    def __init__(self, root: Path, children: Children) -> None:
        self.root = root / "aiosmtpd"
        self.children = children
        self._port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.mkdir()
        self.proc = subprocess.Popen(
            [
                PYTHON,
                str(BENCH_DIR / "peer_aiosmtpd.py"),
                str(self._port),
                str(self.root / "Maildir"),
            ],
            stdout=subprocess.PIPE,
        )
        self.children.add(self.proc.pid)
        assert self.proc.stdout is not None
        if not self.proc.stdout.readline().startswith(b"ready"):
            raise RuntimeError("aiosmtpd peer did not start")
        wait_port(self._port)

    def stop(self) -> None:
        if self.proc is not None:
            self.children.stop(self.proc.pid)
            self.proc.wait()
            assert self.proc.stdout is not None
            self.proc.stdout.close()

    @property
    def port(self) -> int:
        return self._port

    def delivered(self) -> int:
        return _maildir_count(self.root / "Maildir" / "new")

    def cpu(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    def rss_mb(self) -> float | None:
        assert self.proc is not None
        return peak_rss_mb(self.proc.pid)


POSTFIX_MASTER_CF = """\
{port} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

POSTFIX_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.{domain}
mydomain = {domain}
myorigin = $myhostname
mydestination =
inet_interfaces = {host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = reject_unauth_destination
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = 0
default_process_limit = {processes}
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = inline:{{ {{{rcpt} = bench/Maildir/}} }}
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
virtual_mailbox_limit = 0
default_transport = error:bench: no remote delivery
relay_transport = error:bench: no remote delivery
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = {root}/postfix.log
maillog_file_prefixes = {root}
biff = no
append_dot_mydomain = no
message_size_limit = 60000000
"""


class PostfixTarget(Target):
    """A self-contained Postfix instance: every file it writes is under `root`."""

    name = "postfix"
    async_delivery = True

    def __init__(self, root: Path, children: Children, max_concurrency: int) -> None:
        self.root = root / "postfix"
        self.children = children
        self._port = free_port()
        self.processes = max(100, 2 * max_concurrency + 20)
        self.master_pid: int | None = None

    @staticmethod
    def unavailable() -> str | None:
        """Why Postfix cannot run here, or None."""
        if shutil.which("postfix") is None or not Path("/usr/lib/postfix/sbin/master").exists():
            return "the postfix package is not installed (apt-get install -y postfix)"
        if os.geteuid() != 0:
            return "a private Postfix instance needs root (master drops to mail_owner)"
        return None

    def start(self) -> None:
        conf = self.root / "conf"
        conf.mkdir(parents=True)
        self.root.chmod(0o755)
        (self.root / "queue").mkdir()
        mail = self.root / "mail"
        mail.mkdir()
        os.chown(mail, 65534, 65534)  # virtual(8) writes as nobody
        (conf / "main.cf").write_text(
            POSTFIX_MAIN_CF.format(
                root=self.root, domain=DOMAIN, host=HOST, rcpt=RCPT, processes=self.processes
            )
        )
        (conf / "master.cf").write_text(POSTFIX_MASTER_CF.format(port=f"{HOST}:{self._port}"))
        r = subprocess.run(["postfix", "-c", str(conf), "start"], capture_output=True)
        pidfile = self.root / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + 30
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if r.returncode != 0 or not pidfile.exists():
            log = self.root / "postfix.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"postfix did not start ({r.returncode}): {tail}")
        self.master_pid = self.children.add(int(pidfile.read_text().strip()))
        wait_port(self._port)

    def stop(self) -> None:
        if self.master_pid is not None:
            self.children.stop(self.master_pid)  # master stops its children on SIGTERM
            self.master_pid = None

    @property
    def port(self) -> int:
        return self._port

    def delivered(self) -> int:
        return _maildir_count(self.root / "mail" / "bench" / "Maildir" / "new")

    def cpu(self) -> float:
        assert self.master_pid is not None
        return tree_cpu_seconds(self.master_pid)


# --- load -------------------------------------------------------------------------------


def run_load(client: str, port: int, count: int, body: int, concurrency: int) -> None:
    if client == "smtp-source":
        cmd = [
            "smtp-source",
            "-d",
            "-s",
            str(concurrency),
            "-m",
            str(count),
            "-l",
            str(body),
            "-M",
            "client.test",
            "-f",
            SENDER,
            "-t",
            RCPT,
            f"{HOST}:{port}",
        ]
        r = subprocess.run(cmd, capture_output=True, timeout=1800)
        if r.returncode != 0:
            raise LoadError(f"smtp-source failed: {r.stderr.decode(errors='replace')[-500:]}")
        return
    messages = [dot_stuff(make_message(i, body, SENDER, RCPT)) for i in range(count)]
    sent = run_async(smtp_send(port, messages, concurrency, SENDER, [RCPT]))
    if sent != count:
        raise LoadError(f"{sent} of {count} messages accepted")


@dataclass
class Run:
    server: str
    body: int
    concurrency: int
    count: int
    intake_s: float  # until the client had its last 250
    total_s: float  # until the last message was in the mailbox
    cpu_s: float
    rss_mb: float | None
    #: the database server's sessions (PostgreSQL), not in cpu_s
    db_cpu_s: float | None = None

    @property
    def rate(self) -> float:
        return self.count / self.total_s

    @property
    def intake_rate(self) -> float:
        return self.count / self.intake_s


def wait_delivered(target: Target, expected: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while target.delivered() < expected and time.monotonic() < deadline:
        time.sleep(0.01)


def measure(target: Target, client: str, count: int, body: int, concurrency: int) -> Run:
    before = target.delivered()
    cpu0 = target.cpu()
    db0 = target.db_cpu()
    t0 = time.perf_counter()
    run_load(client, target.port, count, body, concurrency)
    t1 = time.perf_counter()
    expected = before + count
    if target.async_delivery:
        wait_delivered(target, expected)
    t2 = time.perf_counter()
    got = target.delivered()
    if got != expected:
        raise LoadError(f"{target.name}: {got - before} of {count} messages in the mailbox")
    return Run(
        target.name,
        body,
        concurrency,
        count,
        t1 - t0,
        t2 - t0,
        target.cpu() - cpu0,
        target.rss_mb(),
        None if db0 is None else (target.db_cpu() or 0.0) - db0,
    )


# --- main -------------------------------------------------------------------------------


def size_label(body: int) -> str:
    return f"{body // 1024} KB" if body % 1024 == 0 else f"{body} B"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--count", type=int, default=1000, help="messages per run for small bodies (default 1000)"
    )
    p.add_argument(
        "--count-large",
        type=int,
        default=300,
        help="messages per run for bodies over 10 KB (default 300)",
    )
    p.add_argument(
        "--sizes",
        default="1024,51200",
        help="body sizes in octets, comma-separated (default 1024,51200)",
    )
    p.add_argument(
        "--concurrency",
        default="1,10,50",
        help="concurrent connections, comma-separated (default 1,10,50)",
    )
    p.add_argument(
        "--servers",
        default="postier,postier-pg,aiosmtpd,postfix",
        help="which servers to run (default postier,postier-pg,aiosmtpd,postfix)",
    )
    p.add_argument(
        "--client",
        choices=("auto", "smtp-source", "python"),
        default="auto",
        help="load client (auto: smtp-source when installed)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="postier's server.workers (default: its own default, one per CPU)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp directory")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> list[Run]:
    sizes = [int(x) for x in args.sizes.split(",")]
    concs = [int(x) for x in args.concurrency.split(",")]
    servers = args.servers.split(",")
    client = args.client
    if client == "auto":
        client = "smtp-source" if shutil.which("smtp-source") else "python"
    print(
        f"SMTP intake: sizes {[size_label(s) for s in sizes]}, connections {concs}, "
        f"{args.count} msgs per run ({args.count_large} for large), client {client}, "
        f"{os.cpu_count()} CPUs"
    )
    runs: list[Run] = []
    children = Children()
    with workspace("smtp", keep=args.keep) as root:
        try:
            for name in servers:
                target: Target
                if name == "postier":
                    target = PostierTarget(root, children, args.workers)
                elif name == "postier-pg":
                    why = PostierPgTarget.unavailable()
                    if why:
                        print(f"  note: postier-pg skipped: {why}")
                        continue
                    target = PostierPgTarget(root, children, args.workers)
                elif name == "aiosmtpd":
                    target = AiosmtpdTarget(root, children)
                elif name == "postfix":
                    why = PostfixTarget.unavailable()
                    if why:
                        print(f"  note: Postfix skipped: {why}")
                        continue
                    target = PostfixTarget(root, children, max(concs))
                else:
                    raise SystemExit(f"unknown server {name!r}")
                target.start()
                try:
                    run_load(client, target.port, 20, 1024, 2)  # warm-up, not measured
                    wait_delivered(target, 20)
                    for body in sizes:
                        count = args.count_large if body > 10240 else args.count
                        for c in concs:
                            r = measure(target, client, count, body, c)
                            runs.append(r)
                            print(
                                f"  {r.server:<9} {size_label(body):>6} c={c:<3} "
                                f"{r.rate:8.0f} msgs/s  ({r.total_s:.2f}s)",
                                flush=True,
                            )
                finally:
                    target.stop()
        finally:
            children.stop_all()
    return runs


def report(runs: Sequence[Run]) -> str:
    rows = []
    for r in runs:
        rows.append(
            [
                r.server,
                size_label(r.body),
                r.concurrency,
                r.count,
                r.rate,
                r.intake_rate if r.intake_s != r.total_s else "-",
                f"{1000 * r.cpu_s / r.count:.2f}",
                f"{1000 * r.db_cpu_s / r.count:.2f}" if r.db_cpu_s is not None else "-",
                f"{r.rss_mb:.0f}" if r.rss_mb is not None else "-",
            ]
        )
    out = [
        table(
            [
                "server",
                "size",
                "conns",
                "msgs",
                "msgs/s",
                "intake/s",
                "cpu ms/msg",
                "db cpu ms/msg",
                "peak RSS MB",
            ],
            rows,
        )
    ]
    by = {(r.server, r.body, r.concurrency): r for r in runs}
    ratio_rows = []
    for r in runs:
        if r.server != "postier":
            continue
        a = by.get(("aiosmtpd", r.body, r.concurrency))
        p = by.get(("postfix", r.body, r.concurrency))
        g = by.get(("postier-pg", r.body, r.concurrency))
        ratio_rows.append(
            [
                size_label(r.body),
                r.concurrency,
                r.rate,
                g.rate if g else "-",
                a.rate if a else "-",
                p.rate if p else "-",
                f"{g.rate / r.rate:.2f}x" if g else "-",
                f"{r.rate / a.rate:.2f}x" if a else "-",
                f"{r.rate / p.rate:.2f}x" if p else "-",
            ]
        )
    if ratio_rows:
        out.append("")
        out.append(
            table(
                [
                    "size",
                    "conns",
                    "postier/s",
                    "pg/s",
                    "aiosmtpd/s",
                    "postfix/s",
                    "pg vs sqlite",
                    "vs aiosmtpd",
                    "vs postfix",
                ],
                ratio_rows,
            )
        )
    return "\n".join(out)


def targets(runs: Sequence[Run]) -> str:
    """Issue 14's SMTP targets, each with its verdict (sizes and concurrencies that
    were not run, or peers not installed, show a dash)."""
    by = {(r.server, r.body, r.concurrency): r for r in runs}

    def ratio(mine: Run | None, peer: str) -> float | None:
        other = by.get((peer, mine.body, mine.concurrency)) if mine else None
        return mine.rate / other.rate if mine and other else None

    small, big = by.get(("postier", 1024, 50)), by.get(("postier", 51200, 50))
    return targets_table(
        [
            check("smtp 1 KB c=50 msgs/s", small.rate if small else None, ">=", 2400),
            check("smtp 1 KB c=50 vs postfix", ratio(small, "postfix"), ">=", 2, "x"),
            check("smtp 1 KB c=50 vs aiosmtpd", ratio(small, "aiosmtpd"), ">=", 1, "x"),
            check(
                "smtp 1 KB c=50 cpu ms/msg",
                1000 * small.cpu_s / small.count if small else None,
                "<=",
                0.5,
            ),
            check("smtp 50 KB c=50 vs postfix", ratio(big, "postfix"), ">=", 1.5, "x"),
            # "all workers together < 150 MB RSS under that load": the 1 KB c=50 run's
            # (each run's peak is in the table above)
            check(
                "smtp 1 KB c=50 peak RSS MB, all workers",
                small.rss_mb if small else None,
                "<",
                150,
            ),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    runs = run(args)
    print()
    print(report(runs))
    print()
    print(targets(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
