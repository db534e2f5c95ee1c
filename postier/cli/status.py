"""`postier status`: is the server running, on which ports, with what queue, store
and recent errors — whether it runs or not.

Rules:
- Running or not is the pid lock of `postier.server.status` (never a pid alone);
  the details (bound ports, open sessions, background tasks, the last warnings
  and errors) come from the status file a running server rewrites every few
  seconds, and that a stopped one leaves behind with the errors of its last run.
- Not running: the configured listeners are shown instead of the bound ones.
- The queue and the store are read from the store itself (safe while the server
  writes), so these numbers are right in both cases.
- Exit status 0 when the server runs, 1 when it does not (for scripts and
  monitoring: ``postier status >/dev/null || alert``), 2 for a bad config.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from postier.cli.common import (
    EXIT_FAILURE,
    Subparsers,
    load_settings,
    opened_store,
    out,
    run,
)
from postier.cli.queue import duration
from postier.config.schema import Settings
from postier.metrics import QueueSnapshot
from postier.server.status import is_running, read_status


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "status",
        help="is the server running: listeners, tasks, queue, store, last errors",
        description="Show whether the server runs (and since when), its listeners and "
        "background tasks, the queue, the store's size and the last warnings and "
        "errors. Works whether the server runs or not. Exit status 0 when it runs.",
        allow_abbrev=False,
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    data_dir = settings.server.data_dir
    pid = is_running(data_dir)
    last = read_status(data_dir)
    doc = run(_gather(settings))
    doc["running"] = pid is not None
    doc["pid"] = pid
    doc["config"] = str(settings.source)
    doc["data_dir"] = str(data_dir)
    doc["last_run"] = last
    if args.json:
        out(json.dumps(doc, indent=2))
    else:
        for line in render(doc, settings):
            out(line)
    return 0 if pid is not None else EXIT_FAILURE


async def _gather(settings: Settings) -> dict[str, Any]:
    async with opened_store(settings) as store:
        entries = await store.queue_list()
        domains = len(await store.list_domains())
        users = len(await store.list_users())
    now = datetime.now(UTC)
    snap = QueueSnapshot.of(entries, now)
    return {
        "queue": {
            "messages": len(entries),
            "by_state": snap.messages,
            "recipients_pending": snap.recipients.get("pending", 0),
            "oldest_seconds": round(snap.oldest_seconds),
        },
        "store": {"domains": domains, "users": users, **_disk(settings)},
    }


def _disk(settings: Settings) -> dict[str, Any]:
    """Bytes on disk: the database (with its WAL) and the message files."""
    if settings.store.backend != "sqlite":
        return {"backend": settings.store.backend}
    data = settings.server.data_dir
    db = sum(_size(data / name) for name in ("postier.db", "postier.db-wal"))
    files = total = 0
    for fan in _fan_dirs(data / "blobs"):
        with os.scandir(fan) as entries:
            for e in entries:
                if e.is_file(follow_symlinks=False):
                    files += 1
                    total += e.stat(follow_symlinks=False).st_size
    return {"backend": "sqlite", "database_bytes": db, "files": files, "file_bytes": total}


def _fan_dirs(blobs: Path) -> list[str]:
    """blobs/xx folders ("tmp" holds no stored message)."""
    try:
        with os.scandir(blobs) as it:
            return [d.path for d in it if len(d.name) == 2 and d.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def human(size: int) -> str:
    for unit, factor in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size >= factor:
            return f"{size / factor:.1f}{unit}"
    return f"{size}B"


def render(doc: dict[str, Any], settings: Settings) -> list[str]:
    last = doc["last_run"] or {}
    lines = []
    if doc["running"]:
        since = last.get("started", "?") if last.get("pid") == doc["pid"] else "?"
        lines.append(f"postier: running (pid {doc['pid']}, since {since})")
    elif last.get("state") == "running":
        lines.append(
            f"postier: not running (the last run, pid {last.get('pid')}, ended without "
            "a clean stop)"
        )
    elif last.get("state") == "stopped":
        lines.append(f"postier: not running (stopped at {last.get('stopped', '?')})")
    else:
        lines.append("postier: not running")
    lines.append(f"config:  {doc['config']}")
    live = doc["running"] and last.get("pid") == doc["pid"]
    if live:
        lines.append("listeners:")
        for name, li in last.get("listeners", {}).items():
            sessions = li.get("sessions")
            tail = "" if sessions is None else f"  {sessions} session(s)"
            lines.append(f"  {name:<12} {li.get('address')}{tail}")
        tasks = ", ".join(f"{n} {state}" for n, state in last.get("tasks", {}).items())
        n = int(last.get("workers", 1))
        procs = (
            f"1 process (pid {doc['pid']})"
            if n == 1
            else f"{n} worker processes, supervisor pid {doc['pid']} (sessions: all of them)"
        )
        lines.append(f"workers: {procs}; tasks: {tasks or 'none'}")
    else:
        lines.append("listeners (configured):")
        for name, ls in settings.listeners.items():
            where = f"{ls.address}:{ls.port}" if ls.enabled else "disabled"
            lines.append(f"  {name:<12} {where}")
    q = doc["queue"]
    by = q["by_state"]
    oldest = f"; oldest {duration(q['oldest_seconds'])}" if q["messages"] else ""
    lines.append(
        f"queue:   {q['messages']} message(s): {by['new']} new, {by['deferred']} deferred, "
        f"{by['held']} held; {q['recipients_pending']} recipient(s) pending{oldest}"
    )
    st = doc["store"]
    disk = (
        f"; database {human(st['database_bytes'])}, {st['files']} message file(s) "
        f"{human(st['file_bytes'])}"
        if st.get("backend") == "sqlite"
        else f" ({st.get('backend')})"
    )
    lines.append(
        f"store:   {doc['data_dir']}: {st['domains']} domain(s), {st['users']} user(s){disk}"
    )
    errors = last.get("errors", [])
    which = "last errors" if live or not last else "last errors (of the last run)"
    lines.append(f"{which}:" + ("" if errors else " none"))
    for e in errors[-10:]:
        lines.append(f"  {e['at']} {e['level']} {e['logger']}: {e['message']}")
    return lines
