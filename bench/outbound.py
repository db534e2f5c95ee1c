"""Outbound delivery benchmark: N queued messages to D recipient domains, all served
by one fast SMTP sink on loopback (as a relay farm or one big provider would be).

postier: the real queue runner and SQLite store in this process; the messages are
queued with `Store.deliver` in batches (as intake does, group-committed, with a
wake-up after each) while the runner delivers; timed until the sink has them all.
Printed: delivered msgs/s, SMTP connections opened per message (connection
reuse), and end-to-end latency percentiles (queued → the sink's 250).

Postfix (when installed and --postfix): the same messages are submitted to a
private Postfix instance (tests/support/postfix.py) that relays everything to the
same sink; timed from the first submission to the last message at the sink.

    .venv/bin/python bench/outbound.py          # 10,000 msgs, 100 domains
    .venv/bin/python bench/outbound.py -n 2000 -d 20 --postfix

Everything listens on 127.0.0.x; every process started is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import smtplib
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from postier.config.schema import SmtpOutbound
from postier.dns.fake import FakeResolver
from postier.mime.summary import summarize
from postier.queue.runner import Runner
from postier.queue.schedule import Schedule
from postier.store.models import NewMessage, NewQueueEntry, QueueRecipient
from postier.store.sqlite import SqliteStore
from tests.support.smtppeer import Peer, ThreadPeer
from tests.unit.queue.conftest import free_port

SINK_IP = "127.0.0.20"


def message(i: int, domain: str) -> bytes:
    return (
        f"Return-Path: <sender@bench.test>\r\nFrom: sender@bench.test\r\n"
        f"To: user{i}@{domain}\r\nSubject: bench {i}\r\nMessage-ID: <b{i}@bench.test>\r\n"
        f"X-Bench-Id: {i}\r\n\r\n" + "Lorem ipsum dolor sit amet. " * 30 + "\r\n"
    ).encode()


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


async def run_postier(n: int, domains: int, port: int, workdir: Path) -> dict[str, float]:
    sink = Peer(host=SINK_IP, port=port)
    received: dict[int, float] = {}
    await sink.start()
    zones: dict[str, object] = {"mx.sink.test": {"A": [SINK_IP]}}
    for d in range(domains):
        zones[f"d{d}.test"] = {"MX": [(10, "mx.sink.test")]}
    store = SqliteStore(workdir / "data")
    await store.open()
    queued_at: dict[int, float] = {}
    runner = Runner(
        store,
        FakeResolver(zones),
        "mx.bench.test",  # type: ignore[arg-type]
        outbound=SmtpOutbound(port=port, max_per_destination=20, max_concurrency=50),
        schedule=Schedule(first_retry=5),
        max_messages=200,
        reuse_idle=2.0,
    )
    task = asyncio.create_task(runner.run())
    seen = 0

    def scan() -> None:
        nonlocal seen
        now = time.monotonic()
        for t in sink.transactions[seen:]:
            head = t.data[:400]
            k = head.find(b"X-Bench-Id: ")
            received[int(head[k + 12 : head.find(b"\r\n", k)])] = now
        seen = len(sink.transactions)

    async def enqueue(i: int) -> None:
        domain = f"d{i % domains}.test"
        queued_at[i] = time.monotonic()
        data = message(i, domain)
        await store.deliver(
            NewMessage(data, summarize(data)),
            [],
            queue=NewQueueEntry("sender@bench.test", (QueueRecipient(f"user{i}@{domain}"),)),
        )

    t1 = time.monotonic()
    batch = 100
    for start in range(0, n, batch):  # as intake would: group-committed, then a wake
        await asyncio.gather(*(enqueue(i) for i in range(start, min(n, start + batch))))
        runner.wake()
        scan()
    t_queued = time.monotonic() - t1
    while len(received) < n:
        await asyncio.sleep(0.005)
        scan()
        if time.monotonic() - t1 > 600:
            raise RuntimeError(f"only {len(received)} of {n} delivered")
    t_run = time.monotonic() - t1
    await runner.stop(5)
    task.cancel()
    left = len(await store.queue_list())
    await store.close()
    await sink.stop()
    lat = [received[i] - queued_at[i] for i in range(n)]
    return {
        "queue_s": t_queued,
        "deliver_s": t_run,
        "msgs_s": n / t_run,
        "conn_per_msg": runner.connections_opened / n,
        "p50": pct(lat, 50),
        "p90": pct(lat, 90),
        "p99": pct(lat, 99),
        "mean": statistics.mean(lat),
        "left": left,
    }


def run_postfix(n: int, domains: int, port: int) -> dict[str, float] | None:
    if shutil.which("postfix") is None:
        print("postfix: not installed, skipped")
        return None
    from tests.support.postfix import PostfixInstance

    sink = ThreadPeer(host=SINK_IP, port=port).start()
    pf = PostfixInstance("127.0.0.21", port, "pf.bench.test", f"[{SINK_IP}]:{port}").start()
    try:
        t0 = time.monotonic()

        def send(chunk: range) -> None:
            with smtplib.SMTP("127.0.0.21", port, timeout=60) as c:
                for i in chunk:
                    domain = f"d{i % domains}.test"
                    c.sendmail(
                        "sender@bench.test",
                        [f"user{i}@{domain}"],
                        message(i, domain)[len(b"Return-Path: <sender@bench.test>\r\n") :],
                    )

        step = max(1, n // 10)
        with ThreadPoolExecutor(10) as ex:
            list(ex.map(send, [range(s, min(n, s + step)) for s in range(0, n, step)]))
        t_submit = time.monotonic() - t0
        deadline = time.monotonic() + 900
        while len(sink.peer.transactions) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        total = time.monotonic() - t0
        got = len(sink.peer.transactions)
        return {
            "submit_s": t_submit,
            "total_s": total,
            "msgs_s": got / total,
            "conn_per_msg": sink.peer.connections / max(got, 1),
            "delivered": got,
        }
    finally:
        pf.stop()
        sink.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--messages", type=int, default=10_000)
    ap.add_argument("-d", "--domains", type=int, default=100)
    ap.add_argument("--postfix", action="store_true", help="also run Postfix as the peer")
    args = ap.parse_args()
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="postier-bench-outbound-"))
    try:
        r = asyncio.run(run_postier(args.messages, args.domains, port, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"outbound: {args.messages} messages to {args.domains} domains via one sink "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)"
    )
    print(
        f"  postier  all queued after {r['queue_s']:.2f}s, all at sink after "
        f"{r['deliver_s']:.2f}s = "
        f"{r['msgs_s']:.0f} msgs/s; {r['conn_per_msg']:.4f} connections/msg; latency "
        f"p50 {r['p50']:.2f}s p90 {r['p90']:.2f}s p99 {r['p99']:.2f}s; left in queue "
        f"{r['left']:.0f}"
    )
    if args.postfix:
        p = run_postfix(args.messages, args.domains, port)
        if p:
            print(
                f"  postfix  submitted in {p['submit_s']:.2f}s; all at sink after "
                f"{p['total_s']:.2f}s = {p['msgs_s']:.0f} msgs/s (submission included); "
                f"{p['conn_per_msg']:.4f} connections/msg; delivered {p['delivered']:.0f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
