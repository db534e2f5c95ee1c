"""CPU of the IMAP session core per small command, without sockets.

A micro-benchmark for issue 14 (IMAP CPU per command): the whole-server
``small_commands`` load of `imap.py` (NOOP, then ``UID FETCH n FLAGS``, one command
at a time, on a selected INBOX) moves ±20% from run to run on a shared machine, too
much to see a change of a few microseconds. This one is deterministic: one
`postier.imap.core.ImapSession` over a SQLite store with `--messages` messages,
logged in and INBOX selected, is fed those command lines one at a time, each
followed by ``next_event`` until it needs data and ``data_to_send_parts``, as the
adapter does. It reports the median over `--runs` runs of time.thread_time per
command (a pair of commands counts two), and checks the answers are what the bench
client expects; ``--dump FILE`` writes the answers to `--count` commands, to compare
two trees byte for byte.

- ``core``: the loop above (receiver, parser, dispatch, FETCH FLAGS, responses);
- ``parse``: `parse_command` alone on the same two command shapes.

Usage: ``python bench/imap_core_cpu.py [--count N] [--runs N]``; compare two trees
with ``PYTHONPATH=<tree>``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from postier.auth.passwords import hash_password
from postier.auth.service import AuthService
from postier.config.schema import Settings
from postier.imap.core import NEED_DATA, ImapSession
from postier.imap.literals import LiteralFile
from postier.imap.parse import parse_command
from postier.imap.receiver import RawCommand
from postier.mime.summary import summarize_source
from postier.store.models import NewMessage
from postier.store.sqlite import SqliteStore

USER = "bench@bench.test"
PASSWORD = "bench-password"
MESSAGE = (
    b"From: Bob <bob@example.test>\r\nTo: bench@bench.test\r\nSubject: lunch %d\r\n"
    b"Message-ID: <%d@example.test>\r\n\r\nPizza at noon?\r\n"
)


async def _session(root: Path, messages: int) -> tuple[SqliteStore, ImapSession]:
    s = Settings()
    cfg = replace(s, server=replace(s.server, data_dir=root))
    store = SqliteStore(root / "db")
    await store.open()
    await store.add_domain("bench.test")
    user = await store.add_user(USER, hash_password(PASSWORD))
    inbox = await store.get_mailbox(user.id, "INBOX")
    assert inbox is not None
    for i in range(messages):
        data = MESSAGE % (i, i)
        flags = frozenset({"\\Seen"}) if i % 3 else frozenset()
        await store.append(inbox.id, NewMessage(data, summarize_source(data)), flags)

    async def no_delay(seconds: float) -> None:
        pass

    core = ImapSession(
        store,
        cfg,
        AuthService(store, cfg.auth, sleep=no_delay),
        sid="bench",
        tls=False,
        peer_ip="127.0.0.1",
        plaintext_ok=True,
        spool=lambda: LiteralFile(root / "spool"),
    )
    await _say(core, b"")
    await _say(core, f'a LOGIN {USER} "{PASSWORD}"\r\n'.encode())
    out = await _say(core, b"b SELECT INBOX\r\n")
    assert out.endswith(b"b OK [READ-WRITE] SELECT completed\r\n"), out
    return store, core


async def _say(core: ImapSession, data: bytes) -> bytes:
    if data:
        core.receive_data(data)
    out = []
    while True:
        ev = await core.next_event()
        out += core.data_to_send_parts()
        if ev is NEED_DATA:
            return b"".join(out)
        raise AssertionError(ev)


def _lines(count: int, messages: int) -> list[bytes]:
    """`count` command lines as `imap.small_commands` sends them (tags t1, t2, …)."""
    out = []
    for n in range(1, count + 1):
        if n % 2:
            out.append(b"t%d NOOP\r\n" % n)
        else:
            out.append(b"t%d UID FETCH %d FLAGS\r\n" % (n, (n * 7) % messages + 1))
    return out


async def _core_runs(count: int, runs: int, messages: int, dump: Path | None) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        store, core = await _session(Path(tmp), messages)
        try:
            lines = _lines(count, messages)
            # the answers are those the bench client expects
            assert (await _say(core, lines[0])) == b"t1 OK NOOP completed\r\n"
            out = await _say(core, lines[1])
            expected = rb"\* \d+ FETCH \(FLAGS \([^)]*\) UID \d+\)\r\nt2 OK FETCH completed\r\n"
            assert re.fullmatch(expected, out), out
            if dump is not None:  # the answers to every line, to compare two trees
                with dump.open("wb") as f:
                    for line in lines[2:]:
                        f.write(await _say(core, line))
            results = []
            for _ in range(runs):
                started = time.thread_time()
                for line in lines:
                    core.receive_data(line)
                    while await core.next_event() is not NEED_DATA:
                        pass
                    core.data_to_send_parts()
                results.append((time.thread_time() - started) / count * 1e6)
            return results
        finally:
            core.close()
            await store.close()


def core(count: int, runs: int, messages: int, dump: Path | None = None) -> list[float]:
    return asyncio.run(_core_runs(count, runs, messages, dump))


def parse(count: int, runs: int, messages: int, dump: Path | None = None) -> list[float]:
    raws = [
        RawCommand(line.split(b" ", 1)[0].decode(), (line[:-2],))
        for line in _lines(count, messages)
    ]
    results = []
    for _ in range(runs):
        started = time.thread_time()
        for raw in raws:
            parse_command(raw, utf8=False)
        results.append((time.thread_time() - started) / count * 1e6)
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="commands per run")
    parser.add_argument("--runs", type=int, default=7, help="runs (the median is reported)")
    parser.add_argument("--messages", type=int, default=2000, help="INBOX size")
    parser.add_argument("--dump", type=Path, help="write the core's answers to this file")
    args = parser.parse_args(argv)
    work: Callable[[int, int, int, Path | None], list[float]]
    for name, work in (("core", core), ("parse", parse)):
        got = work(args.count, args.runs, args.messages, args.dump)
        spread = f"{min(got):.2f}-{max(got):.2f}"
        print(f"{name:6} {statistics.median(got):7.2f} us per command ({spread})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
