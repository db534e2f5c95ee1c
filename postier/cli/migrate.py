"""`postier import USER SOURCE` and `postier export USER DIR`: mail in and out.

Rules:
- The work is `postier.ops.migrate`; this module parses, shows progress and the
  summary. Progress is a one-line bar on stderr, drawn only when stderr is a
  terminal (logs and cron mails stay clean); the summary goes to stdout (``--json``
  for scripts).
- Exit status: 0 when every message was imported or already present; 1 when some
  failed (each is listed on stderr); 2 for an unknown user or unusable source.
- The store is written directly (durable per message), so a running server's
  IMAP sessions see imported messages arrive as they are added.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TextIO

from postier.cli.common import (
    EXIT_FAILURE,
    CliError,
    Subparsers,
    load_settings,
    opened_store,
    out,
    parse_address,
    run,
    warn,
)
from postier.ops.migrate import MigrateError, Summary, export_maildir, import_source


def register(sub: Subparsers) -> None:
    imp = sub.add_parser(
        "import",
        help="import mail from a Maildir tree or mbox files into an account",
        description="Import a Maildir tree (Dovecot/Courier Maildir++, fs or mbsync "
        "layouts; flags from the file names, folders from the hierarchy, dates from "
        "the file times), one mbox file, or a directory of mbox files. Messages "
        "already in the target mailbox are skipped, so importing twice is harmless.",
        allow_abbrev=False,
    )
    imp.add_argument("user", metavar="USER", help="the account's address")
    imp.add_argument("source", metavar="SOURCE", type=Path, help="Maildir directory or mbox")
    imp.add_argument(
        "--folder", metavar="F", help="import under this mailbox (INBOX of the source becomes F)"
    )
    imp.add_argument("--json", action="store_true", help="print the summary as JSON")
    imp.set_defaults(handler=_import)

    exp = sub.add_parser(
        "export",
        help="export an account's mail as a Maildir tree",
        description="Write every mailbox of an account as a Maildir++ tree (Dovecot "
        "and Courier layout): flags in the file names, keywords in dovecot-keywords, "
        "internal dates as file times, message bytes unchanged.",
        allow_abbrev=False,
    )
    exp.add_argument("user", metavar="USER", help="the account's address")
    exp.add_argument("target", metavar="DIR", type=Path, help="a new or empty directory")
    exp.add_argument("--json", action="store_true", help="print the summary as JSON")
    exp.set_defaults(handler=_export)


class ProgressBar:
    """``importing  412/1000 [=========>          ]`` redrawn at most 10 times a second."""

    def __init__(self, label: str, *, stream: TextIO | None = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = self.stream.isatty()
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        filled = self.width * done // total if total else self.width
        bar = "=" * filled + (">" if filled < self.width else "") + " " * (self.width - filled - 1)
        self.stream.write(f"\r{self.label} {done}/{total} [{bar[: self.width]}]")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def _report(summary: Summary, as_json: bool, verb: str) -> int:
    for line in summary.errors:
        print(f"postier: {line}", file=sys.stderr)
    for line in summary.warnings:
        warn(line)
    if as_json:
        out(json.dumps(summary.as_dict(), sort_keys=True))
    elif verb == "imported":
        folders = sum(1 for n in summary.folders.values() if n)
        out(
            f"imported {summary.imported} message{'s' if summary.imported != 1 else ''} "
            f"into {folders} folder{'s' if folders != 1 else ''}; "
            f"{summary.duplicates} already present, {summary.failed} failed"
        )
        for name, n in sorted(summary.folders.items()):
            out(f"  {name}: {n}")
    else:
        out(
            f"exported {summary.exported} message{'s' if summary.exported != 1 else ''} "
            f"in {len(summary.folders)} folder{'s' if len(summary.folders) != 1 else ''}"
        )
        for name, n in sorted(summary.folders.items()):
            out(f"  {name}: {n}")
    return EXIT_FAILURE if summary.failed else 0


def _import(args: argparse.Namespace) -> int:
    address = parse_address(args.user)
    settings = load_settings(args)
    if args.folder is not None and (not args.folder.strip("/") or args.folder.upper() == "INBOX"):
        args.folder = None  # "--folder INBOX" is the default mapping
    bar = ProgressBar("importing")

    async def go() -> Summary:
        async with opened_store(settings) as store:
            user = await store.get_user(address.key)
            if user is None:
                raise CliError(f"unknown user {address.key}")
            try:
                return await import_source(
                    store,
                    user,
                    args.source,
                    folder=args.folder,
                    max_message_size=settings.smtp.limits.max_message_size,
                    progress=bar,
                )
            except MigrateError as e:
                raise CliError(str(e)) from None

    try:
        summary = run(go())
    finally:
        bar.close()
    return _report(summary, args.json, "imported")


def _export(args: argparse.Namespace) -> int:
    address = parse_address(args.user)
    settings = load_settings(args)
    bar = ProgressBar("exporting")

    async def go() -> Summary:
        async with opened_store(settings) as store:
            user = await store.get_user(address.key)
            if user is None:
                raise CliError(f"unknown user {address.key}")
            try:
                return await export_maildir(
                    store, user, args.target, hostname=settings.server.hostname, progress=bar
                )
            except MigrateError as e:
                raise CliError(str(e)) from None
            except OSError as e:
                raise CliError(f"{args.target}: {e.strerror or e}", EXIT_FAILURE) from None

    try:
        summary = run(go())
    finally:
        bar.close()
    return _report(summary, args.json, "exported")
