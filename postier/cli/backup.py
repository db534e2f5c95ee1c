"""`postier backup DIR` and `postier restore DIR`: the whole store, copied and verified.

Rules:
- The work is `postier.store.sqlite.backup` (its docstring says what consistent
  and verified mean); this module checks, asks and prints.
- `backup` works while the server runs (an online snapshot); DIR must be empty
  or missing. It ends by verifying what it wrote.
- `restore` refuses while a server runs on the data dir (the pid lock of
  `postier.server.status`), verifies the backup before touching anything, asks
  at a terminal or needs ``--yes`` when a store exists, and keeps the old data
  dir beside the new one.
- Only the embedded store (sqlite); for PostgreSQL use pg_dump.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from postier.cli.common import (
    EXIT_FAILURE,
    CliError,
    Subparsers,
    add_yes_option,
    confirm,
    load_settings,
    out,
)
from postier.cli.status import human
from postier.config.schema import Settings
from postier.server.status import is_running
from postier.store.sqlite.backup import (
    BackupError,
    Manifest,
    backup,
    restore,
    store_counts,
    verify,
)


def register(sub: Subparsers) -> None:
    b = sub.add_parser(
        "backup",
        help="copy the store (database, messages, DKIM keys) to DIR, verified",
        description="Take a consistent snapshot of the store, online (the server may "
        "run), with every message file, the DKIM keys and the TLS certificate, into "
        "the empty or missing folder DIR; then verify it (SHA-256 of every file, "
        "SQLite integrity check, row counts).",
        allow_abbrev=False,
    )
    b.add_argument("dir", metavar="DIR", type=Path)
    b.set_defaults(handler=_backup)
    r = sub.add_parser(
        "restore",
        help="replace the store with a verified backup (server stopped)",
        description="Verify the backup in DIR, then make it the data directory; the "
        "previous one is kept, renamed. The server must be stopped.",
        allow_abbrev=False,
    )
    r.add_argument("dir", metavar="DIR", type=Path)
    add_yes_option(r, "replacing the current store")
    r.set_defaults(handler=_restore)


def _sqlite_only(settings: Settings) -> None:
    if settings.store.backend != "sqlite":
        raise CliError(
            "backup and restore handle the sqlite store; for "
            f"{settings.store.backend} use its own tools (pg_dump)"
        )


def describe(m: Manifest) -> str:
    c = m.counts
    return (
        f"{c['domains']} domain(s), {c['users']} user(s), {c['messages']} message(s), "
        f"{len(m.files)} file(s), {human(m.size)}"
    )


def _backup(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    _sqlite_only(settings)
    try:
        manifest = backup(settings.server.data_dir, args.dir)
    except BackupError as e:
        raise CliError(str(e), EXIT_FAILURE) from None
    except OSError as e:
        raise CliError(
            f"backup failed: {e.strerror or e}: {e.filename or ''}", EXIT_FAILURE
        ) from None
    out(f"backup of {settings.server.data_dir} in {args.dir.resolve()}: {describe(manifest)}")
    out("verified: SHA-256 of every file, SQLite integrity check, row counts")
    return 0


def _restore(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    _sqlite_only(settings)
    data_dir = settings.server.data_dir
    pid = is_running(data_dir)
    if pid is not None:
        raise CliError(
            f"a server is running on {data_dir} (pid {pid}): stop it first", EXIT_FAILURE
        )
    try:
        manifest = verify(args.dir)
        current = store_counts(data_dir)
    except BackupError as e:
        raise CliError(str(e), EXIT_FAILURE) from None
    if current is not None:
        confirm(
            args,
            f"replace the store in {data_dir} ({current['users']} user(s), "
            f"{current['messages']} message(s)) with the backup of {manifest.created} "
            f"({manifest.counts['users']} user(s), {manifest.counts['messages']} message(s))?",
        )
    try:
        manifest, old = restore(args.dir, data_dir)
    except BackupError as e:
        raise CliError(str(e), EXIT_FAILURE) from None
    except OSError as e:
        raise CliError(
            f"restore failed: {e.strerror or e}: {e.filename or ''}", EXIT_FAILURE
        ) from None
    out(f"restored the backup of {manifest.created} into {data_dir}: {describe(manifest)}")
    if old is not None:
        out(f"the previous data is in {old}")
    return 0
