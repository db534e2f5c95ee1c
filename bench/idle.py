"""Idle connections (issue 14): postier's resident memory with 0 and K silent clients.

One INBOX of N messages; K clients each LOGIN and SELECT INBOX and then stay silent
(``--mode selected``), or go on to IDLE (``--mode idle``), or only LOGIN
(``--mode auth``). POP3 (``--protocol pop3``: USER/PASS then silence, each client
its own user, since a maildrop is locked by one session) and SMTP
(``--protocol smtp``: EHLO then silence) are measured the same way. The figure is
the server's process tree RSS (supervisor and workers) once every client is in
place, against the same tree with none; the difference over K is the cost of one
connection. The clients spread over the workers as the kernel's SO_REUSEPORT
hashing puts them.

```
.venv/bin/python bench/idle.py                          # 1000 selected IMAP clients
.venv/bin/python bench/idle.py --mode idle --workers 1
.venv/bin/python bench/idle.py --protocol pop3
```
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import DOMAIN, HOST, PASSWORD, Children, run_async, table, workspace
from imap import USER, Client, PostierTarget, corpus, tree_pss_mb, tree_rss_mb

TARGET_MB = 100  # issue 14: 1,000 idle IMAP connections < 100 MB in all


async def _imap(port: int, mode: str) -> Client:
    c = await Client.connect(port)
    await c.cmd(f'LOGIN {USER} "{PASSWORD}"')
    if mode in ("selected", "idle"):
        await c.cmd("SELECT INBOX")
    if mode == "idle":
        c.n += 1
        c.writer.write(f"t{c.n} IDLE\r\n".encode())
        line = await c.reader.readline()
        if not line.startswith(b"+"):
            raise RuntimeError(f"IDLE refused: {line!r}")
    return c


class _Line:
    """A POP3 or SMTP client that sends a few commands and then stays silent."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def pop3_user(i: int) -> str:
    return f"idle{i}@{DOMAIN}"


async def add_pop3_users(config: Path, count: int) -> None:
    """`count` users with one password hash between them (hashing each would take
    longer than the measure); written while the server runs, as the CLI would."""
    from postier.auth.passwords import hash_password
    from postier.config.load import load
    from postier.store import open_store

    store = open_store(load(config))
    await store.open()
    try:
        h = hash_password(PASSWORD)
        for i in range(count):
            await store.add_user(pop3_user(i), h)
    finally:
        await store.close()


async def _pop3(port: int, user: str) -> _Line:
    reader, writer = await asyncio.open_connection(HOST, port)
    await reader.readline()
    for cmd in (f"USER {user}", f"PASS {PASSWORD}"):
        writer.write(cmd.encode() + b"\r\n")
        line = await reader.readline()
        if not line.startswith(b"+OK"):
            raise RuntimeError(f"{cmd.split()[0]}: {line!r}")
    return _Line(reader, writer)


async def _smtp(port: int) -> _Line:
    reader, writer = await asyncio.open_connection(HOST, port)
    while (await reader.readline())[3:4] == b"-":
        pass
    writer.write(b"EHLO client.bench.test\r\n")
    while (await reader.readline())[3:4] == b"-":
        pass
    return _Line(reader, writer)


async def hold(protocol: str, port: int, pid: int, count: int, mode: str) -> tuple[float, float]:
    """Open `count` clients, wait for the server to settle; its tree (RSS, PSS)."""
    clients: list[Client | _Line] = []
    sem = asyncio.Semaphore(50)

    async def open_one(i: int) -> None:
        async with sem:
            if protocol == "imap":
                clients.append(await _imap(port, mode))
            elif protocol == "pop3":
                clients.append(await _pop3(port, pop3_user(i)))
            else:
                clients.append(await _smtp(port))

    try:
        await asyncio.gather(*(open_one(i) for i in range(count)))
        await asyncio.sleep(2)
        return tree_rss_mb(pid), tree_pss_mb(pid)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--protocol", choices=("imap", "pop3", "smtp"), default="imap")
    p.add_argument("--mode", choices=("auth", "selected", "idle"), default="selected")
    p.add_argument("--count", type=int, default=1000, help="idle clients (default 1000)")
    p.add_argument("--messages", type=int, default=1000, help="INBOX size (default 1000)")
    p.add_argument("--workers", type=int, default=None, help="server.workers (default: CPUs)")
    p.add_argument("--keep", action="store_true", help="keep the temp directory")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    listener = {"imap": "imap", "pop3": "pop3", "smtp": "mx"}[args.protocol]
    children = Children()
    with workspace("idle", args.keep) as root:
        try:
            target = PostierTarget(root, children)
            server = target.server
            server.listeners = (listener,)
            server.workers = args.workers
            server.extra = ""
            server._write_config()
            target.setup(corpus(args.messages))
            port = server.ports[listener]
            if args.protocol == "pop3":
                run_async(add_pop3_users(server.config, max(args.count, 5)))
            run_async(hold(args.protocol, port, target.pid, 5, args.mode))  # warm up
            base = run_async(hold(args.protocol, port, target.pid, 0, args.mode))
            full = run_async(hold(args.protocol, port, target.pid, args.count, args.mode))
            target.stop()
        finally:
            children.stop_all()
    what = args.protocol + (f" {args.mode}" if args.protocol == "imap" else "")
    rows: list[list[object]] = [
        [f"{what}, 0 idle", f"{base[0]:.1f}", f"{base[1]:.1f}"],
        [f"{what}, {args.count} idle", f"{full[0]:.1f}", f"{full[1]:.1f}"],
        [
            "KB per connection",
            *(
                f"{1024 * (f - b) / max(args.count, 1):.1f}"
                for f, b in zip(full, base, strict=True)
            ),
        ],
    ]
    if args.protocol == "imap" and args.count == 1000:
        verdict = ["✓" if full[0] < TARGET_MB else "✗", "✓" if full[1] < TARGET_MB else "✗"]
        rows.append(["target < 100 MB in all", *verdict])
    print(f"postier, workers: {args.workers or 'one per CPU'}")
    print(table(["MB", "tree RSS", "tree PSS"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
