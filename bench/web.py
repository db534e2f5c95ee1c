"""Webmail benchmark (issue 15): one INBOX of N messages, U logged-in users at once.

A plain HTTP/1.1 client (asyncio, keep-alive, no browser), each user with its own
session, measures over the web port:

- list: the INBOX's first page (`/folder/ID`: the whole folder's rows read,
  sorted, one page rendered);
- view: a message (`/folder/ID/UID`: the blob parsed, the page rendered);
- search: the search box (`?q=from:senderN`: the IMAP matcher over the folder);
- live: the delay from a delivery's 250 over SMTP to the `change` event on every
  user's open `/events` stream;
- RSS: the server's resident memory before and after `--streams` more open
  streams.

p50/p99 latency and requests/s for each, beside the same operations over IMAP
for reference (a page of envelopes, one message's BODY[], SEARCH FROM). Targets
(issue 15, 2 cores): list p50 < 30 ms, p99 < 150 ms at 10 users; view p50 < 20
ms; live p99 < 1 s; 100 streams < 20 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import HOST, PASSWORD, Children, LoadError, Postier, run_async, table, workspace
from imap import USER, Client, corpus, tree_rss_mb

_CSRF = re.compile(rb'name="csrf" value="([^"]+)"')


class Http:
    """One keep-alive HTTP/1.1 connection with a session cookie."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie = ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port, limit=1 << 24)

    async def request(
        self, method: str, path: str, body: bytes = b"", ctype: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            await self._connect()
        assert self.reader is not None
        assert self.writer is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        if self.cookie:
            head.append(f"Cookie: postier_session={self.cookie}")
        if body or method == "POST":
            head += [f"Content-Length: {len(body)}", f"Content-Type: {ctype}"]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise LoadError(f"connection closed on {method} {path}")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
            if k.strip().lower() == "set-cookie" and v.strip().startswith("postier_session="):
                self.cookie = v.strip().split("=", 1)[1].split(";", 1)[0]
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        else:  # chunked (not for the pages measured here)
            data = b""
            while (size := int((await self.reader.readline()).strip() or b"0", 16)) > 0:
                data += await self.reader.readexactly(size)
                await self.reader.readline()
            await self.reader.readline()
        return status, headers, data

    async def login(self) -> None:
        _, _, page = await self.request("GET", "/")
        m = _CSRF.search(page)
        if m is None:
            raise LoadError("no CSRF token on the login page")
        form = urllib.parse.urlencode(
            {"csrf": m.group(1).decode(), "email": USER, "password": PASSWORD}
        ).encode()
        status, _, _ = await self.request(
            "POST", "/login", form, "application/x-www-form-urlencoded"
        )
        if status != 303:
            raise LoadError(f"login answered {status}")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _load(
    users: Sequence[Http], rounds: int, path: Callable[[int, int], str]
) -> tuple[float, float, float]:
    """Every user requests `path(user, round)` `rounds` times, all users at once:
    (p50 ms, p99 ms, requests/s)."""
    times: list[float] = []

    async def one(k: int, h: Http) -> None:
        for i in range(rounds):
            t0 = time.perf_counter()
            status, _, _ = await h.request("GET", path(k, i))
            times.append(time.perf_counter() - t0)
            if status != 200:
                raise LoadError(f"{path(k, i)} answered {status}")

    t0 = time.perf_counter()
    await asyncio.gather(*(one(k, h) for k, h in enumerate(users)))
    wall = time.perf_counter() - t0
    return 1000 * _pct(times, 0.5), 1000 * _pct(times, 0.99), len(times) / wall


async def _stream(port: int, cookie: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(
        f"GET /events HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Cookie: postier_session={cookie}\r\n\r\n".encode()
    )
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    return reader, writer


async def _wait_change(reader: asyncio.StreamReader) -> None:
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        if not line:
            raise LoadError("event stream closed")
        if b"event: change" in line:
            return


async def _smtp(port: int, rcpt: str, i: int) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)

    async def reply() -> bytes:
        while True:
            line = await reader.readline()
            if line[3:4] != b"-":
                return line

    await reply()
    for cmd in ("EHLO bench.test", "MAIL FROM:<live@client.test>", f"RCPT TO:<{rcpt}>", "DATA"):
        writer.write(cmd.encode() + b"\r\n")
        await reply()
    writer.write(f"Subject: live {i}\r\n\r\nlive\r\n.\r\n".encode())
    if not (await reply()).startswith(b"250"):
        raise LoadError("delivery refused")
    writer.write(b"QUIT\r\n")
    writer.close()


async def measure_web(
    server: Postier, messages: int, users: int, rounds: int, streams: int
) -> dict[str, float]:
    port = server.ports["web"]
    r: dict[str, float] = {}
    clients = [Http(port) for _ in range(users)]
    for h in clients:
        await h.login()
    status, headers, _ = await clients[0].request("GET", "/")
    inbox = headers.get("location", "")
    if status != 303 or not inbox.startswith("/folder/"):
        raise LoadError(f"/ answered {status} {inbox!r}")
    rnd = random.Random(7)
    uids = [rnd.randint(1, messages) for _ in range(users * rounds)]
    await _load(clients, 1, lambda k, i: inbox)  # warm up
    search_rounds = max(1, rounds // 5)
    loads: list[tuple[str, int, Callable[[int, int], str]]] = [
        ("list", rounds, lambda k, i: inbox),
        ("view", rounds, lambda k, i: f"{inbox}/{uids[k * rounds + i]}"),
        ("search", search_rounds, lambda k, i: f"{inbox}?q=from:sender{(k + i) % 97}@"),
    ]
    for name, n, path in loads:
        r[f"{name} p50 ms"], r[f"{name} p99 ms"], r[f"{name} req/s"] = await _load(clients, n, path)

    # live: every user has a stream open; a delivery's change reaches each
    opened = [await _stream(port, h.cookie) for h in clients]
    delays: list[float] = []
    for i in range(20):
        await _smtp(server.ports["mx"], USER, i)
        sent = time.perf_counter()
        for reader, _ in opened:
            await _wait_change(reader)
            delays.append(time.perf_counter() - sent)
        await asyncio.sleep(0.05)
    r["live p50 ms"] = 1000 * statistics.median(delays)
    r["live p99 ms"] = 1000 * _pct(delays, 0.99)
    await asyncio.sleep(0.5)
    before = tree_rss_mb(server.pid)
    more = [await _stream(port, clients[i % users].cookie) for i in range(streams)]
    await asyncio.sleep(1)
    r[f"RSS MB, +{streams} streams"] = tree_rss_mb(server.pid) - before
    r["RSS MB"] = tree_rss_mb(server.pid)
    # every extra stream is live: one delivery reaches all of them
    await _smtp(server.ports["mx"], USER, 99)
    await asyncio.gather(*(_wait_change(reader) for reader, _ in more))
    for _, w in opened + more:
        w.close()
    for h in clients:
        await h.close()
    return r


async def measure_imap(port: int, messages: int) -> dict[str, float]:
    c = await Client.connect(port)
    await c.login_select()
    r: dict[str, float] = {}
    times = []
    for i in range(20):
        lo = max(1, messages - 50 - i)
        t0 = time.perf_counter()
        await c.cmd(f"FETCH {lo}:{lo + 49} (FLAGS ENVELOPE RFC822.SIZE)")
        times.append(time.perf_counter() - t0)
    r["IMAP 50 envelopes p50 ms"] = 1000 * statistics.median(times)
    times = []
    for i in range(20):
        t0 = time.perf_counter()
        await c.cmd(f"FETCH {i * 37 % messages + 1} BODY.PEEK[]")
        times.append(time.perf_counter() - t0)
    r["IMAP one BODY[] p50 ms"] = 1000 * statistics.median(times)
    times = []
    for i in range(5):
        t0 = time.perf_counter()
        await c.cmd(f"SEARCH FROM sender{i}@")
        times.append(time.perf_counter() - t0)
    r["IMAP SEARCH FROM p50 ms"] = 1000 * statistics.median(times)
    await c.close()
    return r


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--messages", type=int, default=10_000, help="INBOX size (default 10000)")
    p.add_argument("--users", type=int, default=10, help="users at once (default 10)")
    p.add_argument("--rounds", type=int, default=20, help="requests per user (default 20)")
    p.add_argument("--streams", type=int, default=100, help="extra open streams (default 100)")
    p.add_argument("--keep", action="store_true", help="keep the temp directory")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, float]:
    from imap import PostierTarget

    messages = corpus(args.messages)
    print(f"web: INBOX of {len(messages)} messages, {args.users} users")
    children = Children()
    with workspace("web", args.keep) as root:
        try:
            target = PostierTarget(root, children)
            target.server = Postier(root / "postier", children, ["imap", "web", "mx"])
            print("  filling and starting ...", flush=True)
            target.setup(messages)
            try:
                r = run_async(
                    measure_web(target.server, len(messages), args.users, args.rounds, args.streams)
                )
                r.update(run_async(measure_imap(target.port, len(messages))))
            finally:
                target.stop()
        finally:
            children.stop_all()
    return r


def main(argv: Sequence[str] | None = None) -> int:
    r = run(parse_args(argv))
    print(table(["web", "postier"], [[k, v] for k, v in r.items()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
