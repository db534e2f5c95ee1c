"""CPU of SMTP intake's protocol work per message, without sockets, store or filters.

A micro-benchmark for issue 14 (SMTP CPU per message): whole-server runs
(`smtp_intake.py`) move ±10% from run to run on a shared machine, too much to see a
change of a few microseconds. This one is deterministic: it repeats the work of one
message as ``smtp-source -d -l 1024`` sends it (MAIL, RCPT, DATA, the 1 KB message;
one reply each, no pipelining) in one process and reports the best of several runs
(time.process_time):

- ``core``: `smtp.core.ServerConnection` fed those bytes, every decision accepted;
- ``spool``: `Intake.open_spool` (Return-Path:, Received:) and the message written
  to its `Spool` up to the parsed header.

Usage: ``python bench/smtp_core_cpu.py [--count N]``; compare two trees with
``PYTHONPATH=<tree>``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from postier.mail.address import Address
from postier.mail.queueid import QueueId
from postier.mail.replies import R220_READY, R250_QUEUED
from postier.mail.role import IntakeRole
from postier.smtp.core import ServerConnection
from postier.smtp.events import DECISIONS, NEED_DATA, DataEnd, MailParams, RcptParams
from postier.smtp.intake import Envelope, Intake, Recipient, SessionInfo

HOSTNAME = "mail.bench.test"
SENDER = "sender@client.test"
RCPT = "bench@bench.test"


def message() -> bytes:
    """What smtp-source sends after DATA for ``-l 1024`` (its header, 78-octet lines)."""
    header = (
        f"From: <{SENDER}>\r\nTo: <{RCPT}>\r\n"
        "Date: Sun,  6 Dec 2026 17:16:48 +0000 (UTC)\r\n"
        "Message-Id: <3648.0003.0001@client.test>\r\n\r\n"
    ).encode()
    lines = [b"%d" % (i % 10) + b"X" * 77 for i in range(1, 13)] + [b"X" * 64]
    return header + b"\r\n".join(lines) + b"\r\n.\r\n"


TRANSACTION = [
    f"MAIL FROM:<{SENDER}>\r\n".encode(),
    f"RCPT TO:<{RCPT}>\r\n".encode(),
    b"DATA\r\n",
    message(),
]


def core(count: int) -> None:
    conn = ServerConnection(hostname=HOSTNAME, max_message_size=10 << 20, tls_available=True)
    conn.greet(R220_READY(HOSTNAME))
    queued = R250_QUEUED("ABCDEFGHJKLM")

    def feed(data: bytes) -> None:
        conn.receive_data(data)
        while (event := conn.next_event()) is not NEED_DATA:
            if isinstance(event, DECISIONS):
                conn.accept(queued if isinstance(event, DataEnd) else None)
        conn.data_to_send()

    feed(b"HELO client.test\r\n")
    for _ in range(count):
        for data in TRANSACTION:
            feed(data)


def spool(count: int) -> None:
    intake = Intake.__new__(Intake)  # only what open_spool reads: no store, no filters
    intake.hostname = HOSTNAME
    intake.spool_dir = Path("/nonexistent")  # never spilled: under the threshold
    intake.threshold = 1 << 20
    session = SessionInfo(sid="1", role=IntakeRole.MX, peer_ip="127.0.0.1", helo="client.test")
    env = Envelope(Address.parse(SENDER), MailParams(), qid=QueueId("ABCDEFGHJKLM"))
    env.recipients.append(Recipient(Address.parse(RCPT), RcptParams()))
    data = TRANSACTION[-1][:-3]  # the core passes the message on without its "."
    for _ in range(count):
        sp = intake.open_spool(session, env, crlf_only=True)
        sp.write(data)
        sp.ensure_header()


def best_us(work: Callable[[int], None], count: int, runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        work(count)
        best = min(best, time.process_time() - started)
    return best / count * 1e6


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="messages per run")
    args = parser.parse_args(argv)
    for name, work in (("core", core), ("spool", spool)):
        print(f"{name:6} {best_us(work, args.count):7.2f} us per message", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
