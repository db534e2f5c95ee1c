"""`postier store copy --to postgresql://…|sqlite:DIR`: move the store to another backend.

Rules:
- The work is `postier.store.copy` (its docstring says what is copied, how it
  resumes and what verified means); this module checks, shows progress and prints.
- The source is the configured store (``-c``). The server must be stopped: the
  command refuses while one runs on a SQLite data dir (its pid lock); for a
  PostgreSQL source the operator stops every node.
- Progress goes to stderr: a bar redrawn in place at a terminal, else one plain
  line per table and every `_PLAIN_EVERY` seconds (logs of a script stay short).
- Exit 0 only when the copy verified; a run that was interrupted is run again
  with the same arguments and goes on where it stopped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

from postier.cli.common import EXIT_FAILURE, CliError, Subparsers, load_settings, out, run
from postier.cli.status import human
from postier.config.schema import Settings
from postier.server.status import is_running
from postier.store.copy import CopyError, Report, copy, open_rows, parse_target, verify
from postier.store.tables import TABLES

#: seconds between progress lines when stderr is not a terminal
_PLAIN_EVERY = 10.0


def register(sub: Subparsers) -> None:
    s = sub.add_parser(
        "store",
        help="move the store to another backend (store copy)",
        description="Commands on the store as a whole.",
        allow_abbrev=False,
    )
    ssub = s.add_subparsers(dest="store_command", metavar="COMMAND", title="commands")
    ssub.required = True
    c = ssub.add_parser(
        "copy",
        help="copy the whole store to PostgreSQL or to a SQLite data dir, verified",
        description="Copy every account, alias, domain, DKIM key, mailbox, message (with "
        "its flags, UID, UIDVALIDITY and MODSEQ), queue entry, greylisting and Bayes "
        "state of the configured store into an empty PostgreSQL database "
        "(postgresql://user@host:port/db) or SQLite data dir (sqlite:DIR), then compare "
        "both sides row by row and every message by SHA-256. Stop the server first. An "
        "interrupted copy goes on where it stopped when run again.",
        allow_abbrev=False,
    )
    c.add_argument(
        "--to",
        required=True,
        metavar="TARGET",
        help="postgresql://user@host:port/db or sqlite:DIR",
    )
    c.add_argument(
        "--batch",
        type=int,
        default=500,
        metavar="N",
        help="rows per transaction (default 500)",
    )
    c.add_argument(
        "--verify-only",
        action="store_true",
        help="compare a finished copy with the source, copy nothing",
    )
    c.set_defaults(handler=_copy)


def _source(settings: Settings) -> tuple[str, str]:
    if settings.store.backend == "postgres":
        return "postgres", settings.store.postgres_dsn
    return "sqlite", str(settings.server.data_dir)


def _copy(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if args.batch < 1:
        raise CliError("--batch must be at least 1")
    try:
        backend, where = parse_target(args.to)
    except CopyError as e:
        raise CliError(str(e)) from None
    src_backend, src_where = _source(settings)
    if (backend, _norm(backend, where)) == (src_backend, _norm(src_backend, src_where)):
        raise CliError("the destination is the configured store itself")
    for b, w in ((src_backend, src_where), (backend, where)):
        if b == "sqlite":
            pid = is_running(Path(w))
            if pid is not None:
                raise CliError(
                    f"a server is running on {w} (pid {pid}): stop it first", EXIT_FAILURE
                )
    bar = Progress(sys.stderr)
    try:
        report = run(_go(src_backend, src_where, backend, where, args, bar))
    except CopyError as e:
        bar.end()
        raise CliError(str(e), EXIT_FAILURE) from None
    bar.end()
    _print(report, args.verify_only)
    if not report.ok:
        for p in report.problems:
            print(f"  {p}", file=sys.stderr)
        if report.more_problems:
            print(f"  … and {report.more_problems} more", file=sys.stderr)
        raise CliError(
            f"the copy in {report.destination} does not match the source "
            f"({len(report.problems) + report.more_problems} difference(s))",
            EXIT_FAILURE,
        )
    return 0


def _norm(backend: str, where: str) -> str:
    return str(Path(where).resolve()) if backend == "sqlite" else where


async def _go(
    src_backend: str,
    src_where: str,
    backend: str,
    where: str,
    args: argparse.Namespace,
    bar: Progress,
) -> Report:
    try:
        src = await open_rows(src_backend, src_where)
    except (OSError, RuntimeError) as e:
        raise CopyError(f"cannot open the source store: {e}") from e
    try:
        try:
            dst = await open_rows(backend, where)
        except (OSError, RuntimeError) as e:
            raise CopyError(f"cannot open the destination {args.to}: {e}") from e
        except Exception as e:  # asyncpg's connection errors have no common base
            raise CopyError(f"cannot open the destination: {e}") from e
        try:
            if args.verify_only:
                return await verify(src, dst, progress=bar.update, batch=args.batch)
            return await copy(src, dst, batch=args.batch, progress=bar.update)
        finally:
            await dst.close()
    finally:
        await src.close()


def _print(report: Report, verify_only: bool) -> None:
    c = report.counts
    what = (
        f"{c.get('domains', 0)} domain(s), {c.get('users', 0)} user(s), "
        f"{c.get('aliases', 0)} alias(es), {c.get('mailboxes', 0)} mailbox(es), "
        f"{c.get('messages', 0)} message(s), {c.get('queue', 0)} queue entr(ies)"
    )
    if verify_only:
        out(f"compared {report.source} with {report.destination}: {what}")
    elif report.already_done:
        out(f"{report.destination} already holds a finished copy of {report.source}: {what}")
    else:
        resumed = " (went on with an interrupted copy)" if report.resumed else ""
        out(f"copied {report.source} to {report.destination}{resumed}: {what}")
    if report.ok:
        out(
            f"verified: every row of {len(TABLES)} tables, {c.get('dkim_keys', 0)} DKIM "
            f"key(s), and {report.blobs_checked} message bod(ies) "
            f"({human(report.bytes_checked)}) by SHA-256"
        )


class Progress:
    """Progress on stderr: a bar at a terminal, plain lines otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last_line = 0.0
        self._last_key = ("", "")
        self._drawn = False
        self._finished = False

    def update(self, phase: str, table: str, done: int, total: int) -> None:
        now = time.monotonic()
        if self.tty:
            if now - self._last_line < 0.1 and done < total:
                return
            self._last_line = now
            width = 30
            filled = width if total == 0 else min(width, width * done // total)
            pct = 100 if total == 0 else min(100, 100 * done // total)
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r{phase:6} {table:16} [{bar}] {pct:3}% {done}/{total}\033[K")
            self.stream.flush()
            self._drawn = True
            return
        key = (phase, table)
        finished = done >= total
        if key != self._last_key:
            self._last_key = key
        elif not (finished and not self._finished) and now - self._last_line < _PLAIN_EVERY:
            return
        self._finished = finished
        self._last_line = now
        self.stream.write(f"{phase} {table}: {done}/{total} rows\n")
        self.stream.flush()

    def end(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
