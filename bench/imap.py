"""IMAP benchmark (issue 5): postier against Dovecot on one INBOX of N messages.

Each server gets the same INBOX (varied 2–50 KB messages, every fifth one
multipart with a base64 attachment). Measured, one client unless said:

- login+select: LOGIN then SELECT INBOX, mean latency over 10 sessions;
- meta: ``UID FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE)``, messages/s, the
  second pass (issue 14's figure: Dovecot's cache is warm then, its first pass parses
  every message file); the first pass is printed too (``meta msgs/s, 1st pass``);
- bodies: ``FETCH 1:* BODY.PEEK[]``, MB/s of message octets;
- SEARCH FROM, SUBJECT, TO (every message matches), TEXT, FLAGGED (one message in
  50 flagged) and UNSEEN (every message), milliseconds each, the median of
  ``--search-rounds`` runs (``--search-only``: login, select and these alone);
- small: 10 clients each sending NOOP and ``UID FETCH <n> FLAGS`` for 3 s, commands/s;
- server CPU (its process tree, from /proc, in 10 ms ticks) per message of the meta
  pass, per MB of the bodies and per small command: the figures for A/B runs on a
  shared machine, where throughput moves with the load;
- idle RSS and PSS: the server's resident memory (its process tree) with K logged-in,
  selected, silent connections.

postier is filled through its store before it starts (as a delivery would: blob,
summary, index); Dovecot through Maildir files. Dovecot needs dovecot-imapd and
root (it drops privileges); otherwise it is skipped with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (
    HOST,
    PASSWORD,
    Children,
    LoadError,
    PgDatabase,
    Postier,
    check,
    descendants,
    dovecot_conf,
    fill_inbox,
    free_port,
    make_message,
    pg_unavailable,
    run_async,
    table,
    targets_table,
    tree_cpu_seconds,
    wait_port,
    workspace,
)

USER = "reader@bench.test"
_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


# --- messages ---------------------------------------------------------------------------


def corpus(count: int, seed: int = 5) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        size = rnd.randint(2_000, 50_000)
        msg = make_message(i, size, f"sender{i % 97}@client.test", USER)
        if i % 5 == 0:  # multipart/mixed with a small attachment
            head, body = msg.split(b"\r\n\r\n", 1)
            head = head.replace(
                b"Content-Type: text/plain; charset=us-ascii",
                b'Content-Type: multipart/mixed; boundary="=b="',
            )
            attach = base64.encodebytes(rnd.randbytes(1500)).replace(b"\n", b"\r\n")
            body = (
                b"--=b=\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                + body
                + b"\r\n--=b=\r\nContent-Type: application/octet-stream; name=a.bin\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n" + attach + b"--=b=--\r\n"
            )
            msg = head + b"\r\n\r\n" + body
        out.append(msg)
    return out


def flagged(i: int) -> bool:
    """One message in 50 is \\Flagged (SEARCH FLAGGED and UNSEEN)."""
    return i % 50 == 0


# --- the client -------------------------------------------------------------------------


class Client:
    """A minimal asyncio IMAP client that reads literals by their length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.n = 0

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 24)
        c = cls(reader, writer)
        await reader.readline()  # greeting
        return c

    async def cmd(self, text: str) -> tuple[int, int]:
        """Send one command; (untagged responses, literal octets) until its tagged OK."""
        self.n += 1
        tag = f"t{self.n}".encode()
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        responses = octets = 0
        while True:
            line = await self.reader.readline()
            if not line:
                raise LoadError(f"connection closed during {text!r}")
            while m := _LITERAL.search(line):
                n = int(m.group(1))
                await self.reader.readexactly(n)
                octets += n
                line = await self.reader.readline()
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise LoadError(f"{text!r}: {line!r}")
                return responses, octets
            responses += 1

    async def login_select(self) -> int:
        await self.cmd(f'LOGIN {USER} "{PASSWORD}"')
        responses, _ = await self.cmd("SELECT INBOX")
        return responses

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def login_select(port: int, rounds: int = 10) -> float:
    total = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        c = await Client.connect(port)
        await c.login_select()
        total += time.perf_counter() - t0
        await c.cmd("LOGOUT")
        await c.close()
    return total / rounds


async def one_client(
    port: int, pid: int, commands: Sequence[str]
) -> list[tuple[float, int, int, float]]:
    """Each command's (seconds, untagged responses, literal octets, server CPU
    seconds: the server's process tree)."""
    c = await Client.connect(port)
    await c.login_select()
    out = []
    for text in commands:
        cpu = tree_cpu_seconds(pid)
        t0 = time.perf_counter()
        responses, octets = await c.cmd(text)
        out.append((time.perf_counter() - t0, responses, octets, tree_cpu_seconds(pid) - cpu))
    await c.close()
    return out


async def small_commands(
    port: int, pid: int, clients: int, seconds: float, messages: int
) -> tuple[float, float]:
    """Commands per second, and the server's CPU seconds per command (measured
    once every client is logged in: LOGIN's argon2 is not in it)."""
    sessions = []
    for _ in range(clients):
        c = await Client.connect(port)
        await c.login_select()
        sessions.append(c)

    async def worker(k: int) -> int:
        c = sessions[k]
        done = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            await c.cmd("NOOP")
            await c.cmd(f"UID FETCH {(done * 7 + k) % messages + 1} FLAGS")
            done += 2
        return done

    cpu = tree_cpu_seconds(pid)
    t0 = time.perf_counter()
    counts = await asyncio.gather(*(worker(k) for k in range(clients)))
    elapsed = time.perf_counter() - t0
    used = tree_cpu_seconds(pid) - cpu
    await asyncio.gather(*(c.close() for c in sessions))
    return sum(counts) / elapsed, used / sum(counts)


def _tree_kb(pid: int, file: str, field: str) -> float:
    """The sum over the process tree of one ``kB`` field of a /proc file, in MB."""
    total = 0
    for p in (pid, *descendants(pid)):
        try:
            text = Path(f"/proc/{p}/{file}").read_text()
        except OSError:
            continue
        m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
        total += int(m.group(1)) if m else 0
    return total / 1024


def tree_rss_mb(pid: int) -> float:
    return _tree_kb(pid, "status", "VmRSS")


def tree_pss_mb(pid: int) -> float:
    """The tree's proportional set size: pages shared by the forked workers (the
    code and data the supervisor loaded before forking) count once, split among
    them, where summing RSS counts them once per process."""
    return _tree_kb(pid, "smaps_rollup", "Pss")


async def idle_memory(port: int, pid: int, count: int) -> tuple[float, float]:
    """The server tree's (RSS, PSS) in MB with `count` logged-in, selected, silent
    clients. PSS is the figure for "in all": RSS counts the pages the forked
    workers share with their supervisor once per process."""
    clients = []
    sem = asyncio.Semaphore(50)

    async def open_one() -> None:
        async with sem:
            c = await Client.connect(port)
            await c.login_select()
            clients.append(c)

    await asyncio.gather(*(open_one() for _ in range(count)))
    await asyncio.sleep(1)
    rss, pss = tree_rss_mb(pid), tree_pss_mb(pid)
    await asyncio.gather(*(c.close() for c in clients))
    return rss, pss


# --- servers ----------------------------------------------------------------------------


class PostierTarget:
    name = "postier"

    def __init__(self, root: Path, children: Children) -> None:
        # the listener limits (smtp.limits: 1000 connections, 1000 per address) fit
        self.server = Postier(root / "postier", children, ["imap"])

    def setup(self, messages: Sequence[bytes]) -> None:
        self.server.add_users([USER])

        fill_inbox(self.server.config, USER, messages, flagged)
        self.server.start()

    @property
    def port(self) -> int:
        return self.server.ports["imap"]

    @property
    def pid(self) -> int:
        return self.server.pid

    def stop(self) -> None:
        self.server.stop()


class PostierPgTarget(PostierTarget):
    """postier over PostgreSQL (a database of its own, dropped afterwards)."""

    name = "postier-pg"

    def __init__(self, root: Path, children: Children) -> None:
        self.database = PgDatabase("imap")
        self.server = Postier(root / "postier-pg", children, ["imap"], self.database.config)

    def setup(self, messages: Sequence[bytes]) -> None:
        self.database.create()
        super().setup(messages)

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.database.drop()


class DovecotTarget:
    name = "dovecot"

    def __init__(self, root: Path, children: Children) -> None:
        self.root = root / "dovecot"
        self.children = children
        self._port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def unavailable() -> str | None:
        if shutil.which("dovecot") is None or not Path("/usr/lib/dovecot/imap").exists():
            return "dovecot-imapd is not installed (apt-get install -y dovecot-imapd)"
        if os.geteuid() != 0:
            return "a private Dovecot instance needs root (it drops to its own users)"
        return None

    def setup(self, messages: Sequence[bytes]) -> None:
        from postier.auth.passwords import hash_password

        self.root.mkdir()
        self.root.chmod(0o755)
        home = self.root / "home" / "reader"
        new = home / "Maildir" / "new"
        new.mkdir(parents=True)
        cur = new.parent / "cur"  # flagged messages: the flags are in the name
        cur.mkdir()
        now = int(time.time())
        for i, m in enumerate(messages):
            lf = m.replace(b"\r\n", b"\n")
            # W= is Dovecot's virtual size: a CR added before every LF that lacks one
            w = len(lf) + lf.count(b"\n") - lf.count(b"\r\n")
            name = f"{now}.M{i}P{os.getpid()}.bench,S={len(lf)},W={w}"
            if flagged(i):
                (cur / f"{name}:2,F").write_bytes(lf)
            else:
                (new / name).write_bytes(lf)
        for d in (home, *home.rglob("*")):
            os.chown(d, 65534, 65534)
        (self.root / "users").write_text(
            f"{USER}:{{ARGON2ID}}{hash_password(PASSWORD)}:65534:65534::{home}::\n"
        )
        conf = self.root / "dovecot.conf"
        extra = (  # a thousand idle clients from one address
            "default_client_limit = 5000\ndefault_process_limit = 5000\n"
            "mail_max_userip_connections = 2000\n"
        )
        conf.write_text(dovecot_conf(self.root, HOST, self._port, "imap", extra))
        self.proc = subprocess.Popen(
            ["dovecot", "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.children.add(self.proc.pid)
        wait_port(self._port)

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            self.children.stop(self.proc.pid)
            self.proc.wait()


# --- runs -------------------------------------------------------------------------------


#: the searches timed, after the FETCHes (so Dovecot's cache holds what they read)
SEARCHES = {
    "FROM": "SEARCH FROM sender13@client.test",
    "SUBJECT": 'SEARCH SUBJECT "bench message 4242"',
    "TO": f"SEARCH TO {USER}",
    "TEXT": 'SEARCH TEXT "no such words anywhere"',
    "FLAGGED": "SEARCH FLAGGED",
    "UNSEEN": "SEARCH UNSEEN",
}


def measure(target: PostierTarget | DovecotTarget, args: argparse.Namespace) -> dict[str, float]:
    port = target.port
    n = args.messages
    r: dict[str, float] = {}
    run_async(login_select(port, 2))  # warm up (Dovecot indexes the Maildir here)
    r["login+select ms"] = 1000 * run_async(login_select(port))
    rounds = args.search_rounds
    meta = "UID FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE)"
    timings = run_async(one_client(port, target.pid, [
        meta,
        meta,
        "FETCH 1:* BODY.PEEK[]",
        *(text for text in SEARCHES.values() for _ in range(rounds)),
    ]))  # fmt: skip
    (cold_s, cold_n, _, _), (meta_s, meta_n, _, meta_cpu), *rest = timings
    (body_s, _, body_octets, body_cpu), *searched = rest
    if meta_n != n or cold_n != n:
        raise LoadError(f"{target.name}: metadata FETCH returned {min(meta_n, cold_n)} of {n}")
    if not args.search_only:
        r["meta msgs/s"] = n / meta_s  # the second pass: Dovecot's cache warm
        r["meta msgs/s, 1st pass"] = n / cold_s
        r["meta server CPU us/msg"] = 1e6 * meta_cpu / n  # 10 ms ticks: a coarse figure
        r["bodies MB/s"] = body_octets / body_s / 1e6
        r["bodies server CPU ms/MB"] = 1000 * body_cpu / (body_octets / 1e6)
    for i, key in enumerate(SEARCHES):  # the median of the rounds: the machine is shared
        secs = statistics.median(t for t, _, _, _ in searched[i * rounds : (i + 1) * rounds])
        r[f"SEARCH {key} ms"] = 1000 * secs
    if args.search_only:
        return r
    rate, cpu = run_async(small_commands(port, target.pid, 10, 3.0, n))
    r["small cmds/s (10 clients)"] = rate
    r["small server CPU us/cmd"] = 1e6 * cpu
    rss, pss = run_async(idle_memory(port, target.pid, args.idle))
    r[f"RSS MB, {args.idle} idle"] = rss
    r[f"PSS MB, {args.idle} idle"] = pss
    return r


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--messages", type=int, default=10_000, help="INBOX size (default 10000)")
    p.add_argument("--idle", type=int, default=1000, help="idle connections (default 1000)")
    p.add_argument(
        "--servers",
        default="postier,dovecot",
        help="postier, postier-pg (over PostgreSQL) and/or dovecot (default postier,dovecot)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp directory")
    p.add_argument(
        "--search-only", action="store_true", help="measure LOGIN, SELECT and SEARCH only"
    )
    p.add_argument(
        "--search-rounds", type=int, default=5, help="each SEARCH this many times (median)"
    )
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    messages = corpus(args.messages)
    print(f"imap: INBOX of {len(messages)} messages, {sum(map(len, messages)) / 1e6:.0f} MB")
    children = Children()
    with workspace("imap", args.keep) as root:
        try:
            for name in args.servers.split(","):
                if name == "dovecot" and (why := DovecotTarget.unavailable()):
                    print(f"  dovecot skipped: {why}")
                    continue
                if name == "postier-pg" and (why := pg_unavailable()):
                    print(f"  postier-pg skipped: {why}")
                    continue
                target: PostierTarget | DovecotTarget = (
                    PostierTarget(root, children) if name == "postier"
                    else PostierPgTarget(root, children) if name == "postier-pg"
                    else DovecotTarget(root, children)
                )  # fmt: skip
                print(f"  {name}: filling and starting ...", flush=True)
                target.setup(messages)
                try:
                    results[name] = measure(target, args)
                finally:
                    target.stop()
        finally:
            children.stop_all()
    return results


def report(results: dict[str, dict[str, float]]) -> str:
    names = list(results)
    if not names:
        return "imap: nothing measured"
    keys = list(results[names[0]])
    # ratios of one run: postier against Dovecot, and PostgreSQL against SQLite
    pairs = [
        (a, b)
        for a, b in (("postier", "dovecot"), ("postier-pg", "postier"))
        if a in results and b in results
    ]
    rows: list[list[object]] = []
    for k in keys:
        row: list[object] = [k, *(results[n].get(k, "-") for n in names)]
        for a, b in pairs:
            mine, peer = results[a].get(k), results[b].get(k)
            row.append(f"{mine / peer:.2f}x" if mine is not None and peer else "-")
        rows.append(row)
    headers = [
        "imap",
        *names,
        *(f"{a}/{b}".replace("postier-pg/postier", "pg/sqlite") for a, b in pairs),
    ]
    return table(headers, rows)


def targets(results: dict[str, dict[str, float]], idle: int) -> str:
    """Issue 14's IMAP targets, each with its verdict: ratios postier / Dovecot (for
    latencies and times, lower is better), and the idle connections' memory."""
    mine, peer = results.get("postier", {}), results.get("dovecot", {})

    def ratio(key: str) -> float | None:
        return mine[key] / peer[key] if key in mine and peer.get(key) else None

    pss = f"PSS MB, {idle} idle"
    return targets_table(
        [
            check(
                "imap small commands vs dovecot", ratio("small cmds/s (10 clients)"), ">=", 1, "x"
            ),
            check("imap LOGIN+SELECT latency vs dovecot", ratio("login+select ms"), "<=", 1.5, "x"),
            check("imap FETCH bodies vs dovecot", ratio("bodies MB/s"), ">=", 0.8, "x"),
            check("imap metadata FETCH vs dovecot", ratio("meta msgs/s"), ">=", 1.5, "x"),
            check("imap SEARCH FROM time vs dovecot", ratio("SEARCH FROM ms"), "<=", 2, "x"),
            check("imap SEARCH SUBJECT time vs dovecot", ratio("SEARCH SUBJECT ms"), "<=", 2, "x"),
            check(f"imap {idle} idle connections, PSS MB", mine.get(pss), "<", 100),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    print(report(results))
    print()
    print(targets(results, args.idle))
    return 0


if __name__ == "__main__":
    sys.exit(main())
