"""Several nodes (issue 16): SQLite, one PostgreSQL node and two PostgreSQL nodes,
side by side, on SMTP intake and IMAP FETCH/SEARCH.

Setups, each started in turn on this machine and given the same load:

- ``sqlite``: one node on the embedded SQLite store, `server.workers` = W;
- ``pg-1``: one node over PostgreSQL, W workers;
- ``pg-1x1``: one node over PostgreSQL with one worker (half of W when W is 2);
- ``pg-2``: two nodes over the same PostgreSQL database (two ``postier serve``
  processes, their own data directories and ports), W/2 workers each: as many
  worker processes as ``pg-1``, so ``pg-2`` against ``pg-1`` compares like with
  like, and ``pg-2`` against ``pg-1x1`` is what adding a node adds.

W is ``--workers`` (default: the CPU count, a node's own default). The load client
spreads its connections over the nodes of a setup (connection i goes to node
i mod n). PostgreSQL is the machine's (`POSTIER_BENCH_PG`), on a database of this
run that is filled once and dropped at the end; it runs on the same CPUs, so its
sessions' CPU is shown too (``db cpu``).

Measured per setup:

- SMTP intake: N messages of 1 KB to one local user over C connections (10 and
  50), `smtp-source` (one per node, started together) or the Python client;
  msgs/s until the last 250, then checked to be N more messages in the mailbox;
- IMAP, K clients (default 10) for T seconds each, on an INBOX of M messages
  (`bench/imap.py`'s corpus, filled through the store before the nodes start):
  ``meta``: ``UID FETCH a:a+49 (FLAGS ENVELOPE RFC822.SIZE)`` at a random a
  (messages/s); ``bodies``: ``UID FETCH a:a+4 BODY.PEEK[]`` (MB/s);
  ``search``: ``SEARCH FROM <one of 97 senders>`` and
  ``SEARCH SUBJECT "bench message <n>"`` in turn (searches/s and the median ms).

Then the targets of issue 16, with ✓/✗: one PostgreSQL node at 0.7x of SQLite or
better on SMTP intake (1 KB, 50 connections), and two nodes faster than one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (
    DOMAIN,
    HOST,
    Children,
    LoadError,
    PgDatabase,
    Postier,
    check,
    dot_stuff,
    fill_inbox,
    make_message,
    pg_unavailable,
    run_async,
    smtp_send,
    table,
    targets_table,
    tree_cpu_seconds,
    workspace,
)
from imap import USER as READER
from imap import Client, corpus, flagged

RCPT = f"bench@{DOMAIN}"
SENDER = "sender@client.test"
SETUPS = ("sqlite", "pg-1", "pg-1x1", "pg-2")
#: the INBOX's messages delivered to RCPT (either backend: the same schema shape)
COUNT_SQL = (
    "SELECT count(*) FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id "
    f"JOIN users u ON u.id = x.user_id WHERE u.address = '{RCPT}'"
)


# --- setups -----------------------------------------------------------------------------


@dataclass
class Setup:
    name: str
    nodes: list[Postier]
    count: Callable[[], int]
    #: CPU seconds of the database's sessions so far (PostgreSQL), else None
    db_cpu: Callable[[], float | None] = field(default=lambda: None)

    def smtp_ports(self) -> list[int]:
        return [n.ports["mx"] for n in self.nodes]

    def imap_ports(self) -> list[int]:
        return [n.ports["imap"] for n in self.nodes]

    def cpu(self) -> float:
        return sum(tree_cpu_seconds(n.pid) for n in self.nodes)

    def describe(self) -> str:
        workers = self.nodes[0].workers or os.cpu_count()
        return f"{len(self.nodes)} node(s) x {workers} worker(s)"


def prepare(node: Postier, messages: Sequence[bytes]) -> None:
    node.add_users([RCPT, READER])
    t0 = time.perf_counter()
    fill_inbox(node.config, READER, messages, flagged)
    print(f"  filled {len(messages)} messages in {time.perf_counter() - t0:.0f}s", flush=True)


# --- load -------------------------------------------------------------------------------


def smtp_load(client: str, ports: Sequence[int], count: int, conns: int) -> float:
    """`count` 1 KB messages over `conns` connections spread over `ports`;
    seconds until the last 250."""
    shares = [
        (port, count // len(ports) + (i < count % len(ports)), conns // len(ports))
        for i, port in enumerate(ports)
    ]
    t0 = time.perf_counter()
    if client == "smtp-source":
        procs = [
            subprocess.Popen(
                [
                    *("smtp-source", "-d", "-s", str(c), "-m", str(n), "-l", "1024"),
                    *("-M", "client.test", "-f", SENDER, "-t", RCPT, f"{HOST}:{port}"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for port, n, c in shares
        ]
        for p in procs:
            _, err = p.communicate(timeout=1800)
            if p.returncode != 0:
                raise LoadError(f"smtp-source failed: {err.decode(errors='replace')[-500:]}")
    else:

        async def go() -> int:
            sent = await asyncio.gather(
                *(
                    smtp_send(
                        port,
                        [dot_stuff(make_message(i, 1024, SENDER, RCPT)) for i in range(n)],
                        c,
                        SENDER,
                        [RCPT],
                    )
                    for port, n, c in shares
                )
            )
            return sum(sent)

        if run_async(go()) != count:
            raise LoadError("not every message was accepted")
    return time.perf_counter() - t0


@dataclass
class ImapResult:
    ops: int = 0
    messages: int = 0
    octets: int = 0
    latencies: list[float] = field(default_factory=list)


async def imap_load(
    ports: Sequence[int], clients: int, seconds: float, messages: int, op: str
) -> tuple[ImapResult, float]:
    """`clients` IMAP sessions (client k on node k mod n) each repeating `op`
    for `seconds`; the results and the elapsed time."""
    result = ImapResult()

    async def one(k: int) -> None:
        rnd = random.Random(k)
        c = await Client.connect(ports[k % len(ports)])
        await c.login_select()
        deadline = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < deadline:
            if op == "meta":
                a = rnd.randint(1, max(1, messages - 49))
                text, count = f"UID FETCH {a}:{a + 49} (FLAGS ENVELOPE RFC822.SIZE)", 50
            elif op == "bodies":
                a = rnd.randint(1, max(1, messages - 4))
                text, count = f"UID FETCH {a}:{a + 4} BODY.PEEK[]", 5
            elif n % 2:
                text, count = f"SEARCH FROM sender{rnd.randrange(97)}@client.test", 0
            else:
                text, count = f'SEARCH SUBJECT "bench message {rnd.randrange(messages)}"', 0
            t0 = time.perf_counter()
            responses, octets = await c.cmd(text)
            result.latencies.append(time.perf_counter() - t0)
            if count and responses != count:
                raise LoadError(f"{text!r}: {responses} responses, {count} expected")
            result.ops += 1
            result.messages += count
            result.octets += octets
            n += 1
        await c.cmd("LOGOUT")
        await c.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(clients)))
    return result, time.perf_counter() - t0


def measure(setup: Setup, args: argparse.Namespace, client: str) -> dict[str, float]:
    r: dict[str, float] = {}
    smtp_load(client, setup.smtp_ports(), 20, 2)  # warm-up, not measured
    for conns in args.concurrency:
        before = setup.count()
        cpu0, db0 = setup.cpu(), setup.db_cpu()
        secs = smtp_load(client, setup.smtp_ports(), args.count, conns)
        cpu1, db1 = setup.cpu(), setup.db_cpu()
        if setup.count() != before + args.count:
            raise LoadError(f"{setup.name}: {setup.count() - before} of {args.count} delivered")
        r[f"smtp c={conns} msgs/s"] = args.count / secs
        r[f"smtp c={conns} cpu ms/msg"] = 1000 * (cpu1 - cpu0) / args.count
        if db0 is not None and db1 is not None:
            r[f"smtp c={conns} db cpu ms/msg"] = 1000 * (db1 - db0) / args.count
        print(f"  {setup.name:<7} smtp c={conns:<3} {args.count / secs:7.0f} msgs/s", flush=True)
    ports = setup.imap_ports()
    for op in ("meta", "bodies", "search"):
        cpu0 = setup.cpu()
        res, secs = run_async(imap_load(ports, args.clients, args.seconds, args.messages, op))
        cpu = setup.cpu() - cpu0
        if op == "meta":
            r["imap meta msgs/s"] = res.messages / secs
        elif op == "bodies":
            r["imap bodies MB/s"] = res.octets / secs / 1e6
        else:
            r["imap search /s"] = res.ops / secs
            r["imap search p50 ms"] = 1000 * statistics.median(res.latencies)
        r[f"imap {op} cpu ms/op"] = 1000 * cpu / max(1, res.ops)
        print(f"  {setup.name:<7} imap {op:<6} {res.ops / secs:7.0f} commands/s", flush=True)
    return r


# --- main -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--setups", default=",".join(SETUPS), help=f"default {','.join(SETUPS)}")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="W (default: CPUs)")
    p.add_argument("--count", type=int, default=1000, help="SMTP messages per run (default 1000)")
    p.add_argument(
        "--concurrency", default="10,50", help="SMTP connections, comma-separated (default 10,50)"
    )
    p.add_argument("--messages", type=int, default=2000, help="IMAP INBOX size (default 2000)")
    p.add_argument("--clients", type=int, default=10, help="IMAP clients (default 10)")
    p.add_argument("--seconds", type=float, default=4.0, help="per IMAP operation (default 4)")
    p.add_argument(
        "--client",
        choices=("auto", "smtp-source", "python"),
        default="auto",
        help="SMTP load client (auto: smtp-source when installed)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = p.parse_args(argv)
    args.concurrency = [int(x) for x in args.concurrency.split(",")]
    args.setups = args.setups.split(",")
    if unknown := set(args.setups) - set(SETUPS):
        p.error(f"unknown setups {sorted(unknown)}")
    return args


def run(args: argparse.Namespace) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    client = args.client
    if client == "auto":
        client = "smtp-source" if shutil.which("smtp-source") else "python"
    w, half = args.workers, max(1, args.workers // 2)
    print(
        f"nodes: {os.cpu_count()} CPUs, W = {w} workers, SMTP {args.count} x 1 KB over "
        f"{args.concurrency} connections ({client}), IMAP {args.clients} clients x "
        f"{args.seconds:.0f}s per operation on {args.messages} messages, load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    messages = corpus(args.messages)
    results: dict[str, dict[str, float]] = {}
    described: dict[str, str] = {}
    pg_setups = [s for s in args.setups if s.startswith("pg")]
    if pg_setups and (why := pg_unavailable()):
        print(f"  note: PostgreSQL setups skipped: {why}")
        pg_setups = []
    children = Children()
    database = PgDatabase("nodes")
    with workspace("nodes", keep=args.keep) as root:
        try:
            if "sqlite" in args.setups:
                node = Postier(root / "sqlite", children, ["mx", "imap"], workers=w)
                prepare(node, messages)
                db = node.root / "data" / "postier.db"

                def count_sqlite() -> int:
                    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                    try:
                        n: int = conn.execute(COUNT_SQL).fetchone()[0]
                        return n
                    finally:
                        conn.close()

                node.start()
                try:
                    setup = Setup("sqlite", [node], count_sqlite)
                    described["sqlite"] = setup.describe()
                    results["sqlite"] = measure(setup, args, client)
                finally:
                    node.stop()
            if pg_setups:
                database.create()
                first = Postier(root / "pg-fill", children, [], database.config)
                prepare(first, messages)
                backends: list[int] = []

                def db_cpu() -> float:
                    backends[:] = sorted(set(backends) | set(database.backend_pids()))
                    return database.backend_cpu(backends)

                def count_pg() -> int:
                    return int(database.value(COUNT_SQL))  # type: ignore[call-overload]

                for name in pg_setups:
                    shape = {"pg-1": (1, w), "pg-1x1": (1, half), "pg-2": (2, half)}[name]
                    nodes = [
                        Postier(
                            root / f"{name}-{i}",
                            children,
                            ["mx", "imap"],
                            database.config,
                            workers=shape[1],
                        )
                        for i in range(shape[0])
                    ]
                    for n in nodes:
                        n.start()
                    try:
                        backends.clear()
                        setup = Setup(name, nodes, count_pg, db_cpu)
                        described[name] = setup.describe()
                        results[name] = measure(setup, args, client)
                    finally:
                        for n in nodes:
                            n.stop()
        finally:
            children.stop_all()
            if pg_setups:
                database.drop()
    return results, described


def _ratio(results: dict[str, dict[str, float]], a: str, b: str, key: str) -> float | None:
    x, y = results.get(a, {}).get(key), results.get(b, {}).get(key)
    return x / y if x is not None and y else None


def report(results: dict[str, dict[str, float]], described: dict[str, str]) -> str:
    names = list(results)
    if not names:
        return "nodes: nothing measured"
    # the measures in the order of the setup that has the most (PostgreSQL's db cpu)
    keys = list(max(results.values(), key=len))
    for r in results.values():
        keys += [k for k in r if k not in keys]
    pairs = [
        (a, b, label)
        for a, b, label in (
            ("pg-1", "sqlite", "pg-1/sqlite"),
            ("pg-2", "pg-1", "pg-2/pg-1"),
            ("pg-2", "pg-1x1", "pg-2/pg-1x1"),
        )
        if a in results and b in results
    ]
    rows: list[list[object]] = [["setup", *(described[n] for n in names), *("" for _ in pairs)]]
    for k in keys:
        row: list[object] = [k, *(results[n].get(k, "-") for n in names)]
        for a, b, _ in pairs:
            ratio = _ratio(results, a, b, k)
            row.append(f"{ratio:.2f}x" if ratio is not None else "-")
        rows.append(row)
    return table(["measure", *names, *(label for _, _, label in pairs)], rows)


def targets(results: dict[str, dict[str, float]], conns: int) -> str:
    """Issue 16's targets: one PostgreSQL node within 0.7x of SQLite on SMTP
    intake, and two nodes faster than one (like with like: as many workers in
    all; and against one node of the same size, what adding a node adds)."""
    smtp = f"smtp c={conns} msgs/s"
    rows = [
        check(f"pg-1 vs sqlite, {smtp}", _ratio(results, "pg-1", "sqlite", smtp), ">=", 0.7, "x")
    ]
    for other, what in (("pg-1", "same workers in all"), ("pg-1x1", "a node added")):
        for key in (smtp, "imap meta msgs/s", "imap bodies MB/s", "imap search /s"):
            ratio = _ratio(results, "pg-2", other, key)
            rows.append(check(f"pg-2 vs {other} ({what}), {key}", ratio, ">", 1.0, "x"))
    return targets_table(rows, issue=16)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results, described = run(args)
    print()
    print(report(results, described))
    print()
    print(targets(results, max(args.concurrency)))
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
