"""Webmail benchmark (issue 15): the web listener under 10 logged-in users, beside IMAP.

One INBOX of N messages (default 10,000; 2–12 KB, every fifth multipart with a small
attachment, 97 senders), filled through the store before the server starts, as
bench/imap.py does. postier runs with its MX, IMAP and web listeners and its default
workers (every worker serves both: webmail sessions are rows in the store). Then, with U
concurrent clients (default 10; each its own web session, made by the login form
with its CSRF token, and its own IMAP connection), each operation for S seconds:

| web                                  | IMAP, for reference                          |
|--------------------------------------|----------------------------------------------|
| list: GET /folder/ID?page=P (50 rows) | FETCH of 50 messages (FLAGS ENVELOPE RFC822.SIZE) |
| view: GET /folder/ID/UID             | UID FETCH UID BODY[] (both set \\Seen)       |
| search: GET /folder/ID?q=from:ADDR   | SEARCH FROM ADDR (about N/97 messages)       |

p50 and p99 latency, requests/s, the server's CPU time per request (every process,
/proc utime+stime, the warm-up calls included: what the work costs, whatever else
the machine runs) and its RSS (every process, VmRSS added up) after each. Then
live updates: U open event streams (`/events`, one per session), deliveries over
SMTP, and the time from the start of each SMTP transaction until the `change`
event arrives on every stream; and the RSS 100 more open streams cost.
The client is a small HTTP/1.1 client on asyncio streams (keep-alive, chunked
bodies): no browser, no dependency. It shares the CPUs with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import platform
import random
import re
import statistics
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (
    HOST,
    PASSWORD,
    Children,
    LoadError,
    Postier,
    dot_stuff,
    fill_inbox,
    make_message,
    run_async,
    smtp_send,
    table,
    tree_cpu_seconds,
    tree_peak_rss_mb,
    workspace,
)
from imap import Client as ImapClient
from imap import tree_rss_mb

USER = "reader@bench.test"
SEARCH_FROM = "sender13@client.test"
PAGE = 50
_CSRF = re.compile(rb'name="csrf" value="([^"]+)"')


# --- messages ---------------------------------------------------------------------------


def corpus(count: int, seed: int = 15) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        msg = make_message(i, rnd.randint(2_000, 12_000), f"sender{i % 97}@client.test", USER)
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


# --- a minimal HTTP/1.1 client ----------------------------------------------------------


class Http:
    """One keep-alive connection with a session cookie; reads Content-Length and
    chunked bodies, reconnects when the server closes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie = ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port, limit=1 << 22)
        return self.reader, self.writer

    async def send(self, method: str, path: str, body: bytes = b"") -> asyncio.StreamReader:
        """Write a request; the reader positioned at its response."""
        reader, writer = await self._connect()
        head = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        if self.cookie:
            head.append(f"Cookie: postier_session={self.cookie}")
        if method == "POST":
            head += [
                "Content-Type: application/x-www-form-urlencoded",
                f"Content-Length: {len(body)}",
            ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        return reader

    async def head(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
        status = await reader.readline()
        if not status:
            raise LoadError("connection closed")
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode("latin-1").partition(":")
            k, v = k.strip().lower(), v.strip()
            if k == "set-cookie" and v.startswith("postier_session="):
                self.cookie = v.split(";", 1)[0].split("=", 1)[1]
            headers[k] = v
        return int(status.split()[1]), headers

    @staticmethod
    async def chunk(reader: asyncio.StreamReader) -> bytes:
        size = int((await reader.readline()).split(b";", 1)[0], 16)
        data = await reader.readexactly(size) if size else b""
        await reader.readline()
        return data

    async def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        body = urllib.parse.urlencode(form or {}).encode()
        reused = self.reader is not None
        reader = await self.send(method, path, body)
        try:
            status, headers = await self.head(reader)
        except (LoadError, ConnectionError):
            if not reused:
                raise
            # uvicorn closes a connection idle for 5 s (while the IMAP half ran)
            await self.close()
            reader = await self.send(method, path, body)
            status, headers = await self.head(reader)
        if "content-length" in headers:
            data = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            parts = []
            while part := await self.chunk(reader):
                parts.append(part)
            data = b"".join(parts)
        else:
            data = await reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, data

    async def get(self, path: str) -> bytes:
        status, _, data = await self.request("GET", path)
        if status != 200:
            raise LoadError(f"GET {path}: {status}")
        return data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def web_login(port: int) -> tuple[Http, int]:
    """A logged-in session (the login page's cookie and CSRF token, then the form);
    the client and the Inbox's folder id."""
    h = Http(port)
    page = await h.get("/")
    m = _CSRF.search(page)
    if m is None:
        raise LoadError("no CSRF token on the login page")
    form = {"email": USER, "password": PASSWORD, "csrf": m.group(1).decode()}
    status, _, _ = await h.request("POST", "/login", form)
    if status != 303:
        raise LoadError(f"login: {status}")
    status, headers, _ = await h.request("GET", "/")
    loc = headers.get("location", "")
    if status != 303 or not loc.startswith("/folder/"):
        raise LoadError(f"after login: {status} {loc!r}")
    return h, int(loc.rsplit("/", 1)[1])


class Events:
    """An open `/events` stream: yields each event's name as it arrives."""

    def __init__(self, h: Http, reader: asyncio.StreamReader) -> None:
        self.h = h
        self.reader = reader
        self.buf = b""

    @classmethod
    async def open(cls, port: int, cookie: str) -> Events:
        h = Http(port)
        h.cookie = cookie
        reader = await h.send("GET", "/events")
        status, headers = await h.head(reader)
        if status != 200 or headers.get("transfer-encoding") != "chunked":
            raise LoadError(f"/events: {status} {headers}")
        return cls(h, reader)

    async def next(self) -> str:
        while b"\n\n" not in self.buf:
            data = await Http.chunk(self.reader)
            if not data:
                raise LoadError("event stream ended")
            self.buf += data
        event, self.buf = self.buf.split(b"\n\n", 1)
        for line in event.split(b"\n"):
            if line.startswith(b"event:"):
                return line[6:].strip().decode()
        return ""  # retry: or a keep-alive comment

    async def next_change(self) -> None:
        while await self.next() != "change":
            pass

    async def close(self) -> None:
        await self.h.close()


# --- load -------------------------------------------------------------------------------


class Result:
    def __init__(
        self, name: str, latencies: list[float], seconds: float, rss: float, cpu: float = 0.0
    ) -> None:
        self.name = name
        self.latencies = sorted(latencies)
        self.rate = len(latencies) / seconds
        self.rss = rss
        #: the server's CPU seconds over the run, per request, in ms
        self.cpu_ms = 1000 * cpu / max(1, len(latencies))

    def pct(self, p: float) -> float:
        xs = self.latencies
        return 1000 * xs[min(len(xs) - 1, int(p / 100 * len(xs)))]

    @property
    def p50(self) -> float:
        return 1000 * statistics.median(self.latencies)


Op = Callable[[int, random.Random], Awaitable[None]]


async def drive(ops: Sequence[Op], seconds: float) -> tuple[list[float], float]:
    """Client k runs ops[k] back to back for `seconds` (after one warm-up call);
    every call's latency, and the wall time."""

    async def client(k: int) -> list[float]:
        rnd = random.Random(k)
        await ops[k](k, rnd)
        out = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await ops[k](k, rnd)
            out.append(time.perf_counter() - t0)
        return out

    t0 = time.perf_counter()
    per = await asyncio.gather(*(client(k) for k in range(len(ops))))
    return [x for xs in per for x in xs], time.perf_counter() - t0


async def measure(server: Postier, args: argparse.Namespace) -> dict[str, object]:
    n, users, secs = args.messages, args.users, args.seconds
    web, imap = server.ports["web"], server.ports["imap"]
    sessions = [await web_login(web) for _ in range(users)]
    mid = sessions[0][1]
    imaps = [await ImapClient.connect(imap) for _ in range(users)]
    for c in imaps:
        await c.login_select()
    pages = max(1, n // PAGE)
    q = urllib.parse.quote(f"from:{SEARCH_FROM}")

    def web_op(path: Callable[[random.Random], str]) -> list[Op]:
        async def op(k: int, rnd: random.Random) -> None:
            await sessions[k][0].get(path(rnd))

        return [op] * users

    def imap_op(command: Callable[[random.Random], str]) -> list[Op]:
        async def op(k: int, rnd: random.Random) -> None:
            await imaps[k].cmd(command(rnd))

        return [op] * users

    def top_page(rnd: random.Random) -> str:  # the newest pages, as people read them
        hi = n - PAGE * rnd.randrange(min(pages, 5))
        return f"FETCH {max(1, hi - PAGE + 1)}:{hi} (FLAGS ENVELOPE RFC822.SIZE)"

    plan: list[tuple[str, list[Op]]] = [
        ("list", web_op(lambda r: f"/folder/{mid}?page={r.randint(1, min(pages, 5))}")),
        ("list", imap_op(top_page)),
        ("view", web_op(lambda r: f"/folder/{mid}/{r.randint(1, n)}")),
        ("view", imap_op(lambda r: f"UID FETCH {r.randint(1, n)} BODY[]")),
        ("search", web_op(lambda r: f"/folder/{mid}?q={q}")),
        ("search", imap_op(lambda r: f"SEARCH FROM {SEARCH_FROM}")),
    ]
    results: dict[str, object] = {}
    # the memory of open streams, measured first, on a server not yet loaded (after
    # the load, the allocators' free lists hide what the streams take)
    await sessions[0][0].get(f"/folder/{mid}")
    await asyncio.sleep(1)
    before = tree_rss_mb(server.pid)
    more = []
    for i in range(args.streams):
        more.append(await Events.open(web, sessions[i % users][0].cookie))
    for s in more:  # no `since`: each stream starts with one change event
        await s.next_change()
    await asyncio.sleep(1)
    after = tree_rss_mb(server.pid)
    results["sse streams MB"] = after - before
    results["rss before streams"] = before
    for s in more:
        await s.close()

    for i, (name, ops) in enumerate(plan):
        proto = "web" if i % 2 == 0 else "imap"
        print(f"  {proto} {name}: {users} clients for {secs:.0f}s ...", flush=True)
        cpu = tree_cpu_seconds(server.pid)
        lat, wall = await drive(ops, secs)
        cpu = tree_cpu_seconds(server.pid) - cpu
        results[f"{proto} {name}"] = Result(name, lat, wall, tree_rss_mb(server.pid), cpu)

    # live updates: a delivery over SMTP until every session's stream has the event
    print(f"  live: {users} event streams, {args.deliveries} deliveries ...", flush=True)
    streams = [await Events.open(web, h.cookie) for h, _ in sessions]
    for s in streams:  # no `since`: the stream starts with one change event
        await s.next_change()
    delays: list[float] = []
    mx = server.ports["mx"]
    for i in range(args.deliveries):
        msg = dot_stuff(make_message(n + i, 2000, "live@client.test", USER))
        t0 = time.perf_counter()
        waits = [asyncio.ensure_future(s.next_change()) for s in streams]
        if await smtp_send(mx, [msg], 1, "live@client.test", [USER]) != 1:
            raise LoadError("delivery refused")
        for w in asyncio.as_completed(waits):
            await asyncio.wait_for(w, 10)
            delays.append(time.perf_counter() - t0)
        await asyncio.sleep(0.05)
    results["sse delivery"] = Result("live", delays, 1.0, tree_rss_mb(server.pid))

    results["peak RSS MB"] = tree_peak_rss_mb(server.pid)
    for s in streams:
        await s.close()
    for h, _ in sessions:
        await h.close()
    for c in imaps:
        await c.close()
    return results


# --- the run ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--messages", type=int, default=10_000, help="INBOX size (default 10000)")
    p.add_argument("--users", type=int, default=10, help="concurrent clients (default 10)")
    p.add_argument("--seconds", type=float, default=10.0, help="per operation (default 10)")
    p.add_argument("--deliveries", type=int, default=50, help="SMTP deliveries (default 50)")
    p.add_argument("--streams", type=int, default=100, help="open streams (default 100)")
    p.add_argument("--workers", type=int, default=None, help="server.workers (default: CPUs)")
    p.add_argument("--keep", action="store_true", help="keep the temp directory")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, object]:
    messages = corpus(args.messages)
    print(
        f"web: INBOX of {len(messages)} messages, {sum(map(len, messages)) / 1e6:.0f} MB; "
        f"{os.cpu_count()} CPUs, load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    children = Children()
    with workspace("web", args.keep) as root:
        try:
            server = Postier(
                root / "postier", children, ["mx", "imap", "web"], workers=args.workers
            )
            server.add_users([USER])
            print("  postier: filling and starting ...", flush=True)
            t0 = time.perf_counter()
            fill_inbox(server.config, USER, messages)
            server.start()
            print(f"  ({time.perf_counter() - t0:.0f}s)", flush=True)
            try:
                return run_async(measure(server, args))
            finally:
                server.stop()
        finally:
            children.stop_all()


def report(r: dict[str, object], args: argparse.Namespace) -> str:
    rows: list[list[object]] = []
    for op in ("list", "view", "search"):
        for proto in ("web", "imap"):
            x = r[f"{proto} {op}"]
            assert isinstance(x, Result)
            rows.append([f"{op} ({proto})", x.p50, x.pct(99), x.rate, x.cpu_ms, x.rss])
    out = [
        f"web vs IMAP, {args.users} clients, INBOX of {args.messages} "
        f"(machine shared: load average {', '.join(f'{x:.2f}' for x in os.getloadavg())})",
        table(["operation", "p50 ms", "p99 ms", "req/s", "CPU ms/req", "RSS MB after"], rows),
    ]
    live = r["sse delivery"]
    assert isinstance(live, Result)
    lst, view = r["web list"], r["web view"]
    assert isinstance(lst, Result)
    assert isinstance(view, Result)
    streams = r["sse streams MB"]
    assert isinstance(streams, float)

    def verdict(ok: bool) -> str:
        return "✓" if ok else "✗"

    targets = [
        ["list page p50 ms", "< 30", lst.p50, verdict(lst.p50 < 30)],
        ["list page p99 ms", "< 150", lst.pct(99), verdict(lst.pct(99) < 150)],
        ["message view p50 ms", "< 20", view.p50, verdict(view.p50 < 20)],
        [
            "SMTP delivery → SSE event p99 ms",
            "< 1,000",
            live.pct(99),
            verdict(live.pct(99) < 1000),
        ],
        [f"{args.streams} open SSE streams MB", "< 20", streams, verdict(streams < 20)],
    ]
    out += [
        "",
        f"SMTP delivery → SSE event on {args.users} streams: p50 {live.p50:.1f} ms, "
        f"p99 {live.pct(99):.1f} ms over {len(live.latencies)} arrivals; "
        f"{args.streams} open streams: RSS {r['rss before streams']:.1f} → "
        f"{r['rss before streams'] + streams:.1f} MB; "
        f"peak RSS (all processes) {r['peak RSS MB']:.0f} MB",
        "",
        table(["target (issue 15)", "wanted", "measured", ""], targets),
    ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"postier web bench on {platform.node()}, Python {platform.python_version()}")
    print(report(run(args), args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
