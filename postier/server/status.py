"""What a running server tells `postier status`: the status file, the lock that
says it runs, and the last errors.

Rules:
- ``data_dir/postier.pid`` holds the server's pid and a shared `flock` for the
  server's whole life. `is_running` tries an exclusive lock without waiting: it
  fails exactly while a server (any number of them) runs on that data dir, and
  a server killed with SIGKILL releases it with its last file descriptor. No pid
  is trusted alone (pids are reused).
- With several workers the supervisor holds the lock and writes its pid; worker 0
  writes the status file: every worker's open sessions (the shared
  ``postier_sessions_open`` gauge) and recent errors (each worker keeps its own
  in a `metrics.SlotLog`), its own tasks; the pid is the supervisor's.
- ``data_dir/status.json`` is rewritten every `interval` seconds while the server
  runs and once when it stops: pid, start time, bound listeners with their open
  sessions, background tasks and their state, and the last `MAX_ERRORS` log
  records at level ERROR (and WARNING) with their time. After a stop it stays,
  so the errors of the last run can still be read.
- Writing happens off the event loop (`asyncio.to_thread`); a failure to write
  is logged once and never stops the server. The log handler only appends to a
  bounded deque under a lock, so logging from any thread stays cheap.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from postier import metrics
from postier.durable import write_atomically

if TYPE_CHECKING:
    from postier.server.app import App

log = logging.getLogger("postier.server")

PID_FILE = "postier.pid"
STATUS_FILE = "status.json"
MAX_ERRORS = 20
_OPEN = "postier_sessions_open"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class RecentErrors(logging.Handler):
    """Keeps the last `MAX_ERRORS` warning and error records, for the status file.
    With several workers (`share`) each worker's are also in its `SlotLog`, and
    `snapshot` merges every worker's."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._records_lock = threading.Lock()
        self.records: collections.deque[dict[str, str]] = collections.deque(maxlen=MAX_ERRORS)
        self._log: metrics.SlotLog | None = None

    def share(self, log: metrics.SlotLog) -> None:
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            at = dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="seconds")
            entry = {
                "at": at,
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage().splitlines()[0][:500],
            }
        except Exception:  # a broken record must not break logging
            return
        with self._records_lock:
            self.records.append(entry)
            if self._log is not None:
                self._log.append(entry)

    def snapshot(self) -> list[dict[str, str]]:
        """Oldest first."""
        if self._log is None:
            with self._records_lock:
                return list(self.records)
        got = [
            {k: str(v) for k, v in r.items()}
            for r in metrics.read_slot_logs(self._log.path.parent, "errors")
        ]
        got.sort(key=lambda r: r.get("at", ""))  # stable: a worker's order kept
        return got[-MAX_ERRORS:]


def is_running(data_dir: Path) -> int | None:
    """The pid of a server running on `data_dir`, or None (see the module rules)."""
    path = data_dir / PID_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 64).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def hold_pid_lock(data_dir: Path) -> int:
    """Take the shared lock of a running server and write our pid; the lock is
    held as long as the returned descriptor (or a child's copy of it) is open."""
    fd = os.open(data_dir / PID_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def read_status(data_dir: Path) -> dict[str, Any] | None:
    """The last status file written on `data_dir`, or None."""
    try:
        data = json.loads((data_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class StatusWriter:
    """Built by the composition root; started once every listener is bound."""

    app: App
    interval: float = 5.0
    errors: RecentErrors = field(default_factory=RecentErrors)
    started: str = field(default_factory=_now)
    _pid_fd: int | None = None
    _started: bool = False
    _failed: bool = False
    _addresses: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self._started = True
        if self.app.worker is None:  # else the supervisor holds it, for all workers
            self._pid_fd = hold_pid_lock(self.app.settings.server.data_dir)
        # bound ports read now: a listener that stopped accepting has no socket left
        self._addresses = {
            name: f"{li.address}:{li.bound_port}" for name, li in self.app.listeners.items()
        }
        logging.getLogger().addHandler(self.errors)
        # written before "ready": a status read after the banner finds this run
        self._write(self.document("running"))
        self.app.spawn(self._run(), "status")

    def document(self, state: str) -> dict[str, Any]:
        app = self.app
        # every worker's sessions: the gauge the listeners of all workers move
        open_now = {dict(k).get("listener"): v for k, v in metrics.samples(_OPEN).items()}
        listeners: dict[str, dict[str, Any]] = {
            name: {
                "address": self._addresses.get(name, "?"),
                "sessions": int(open_now.get(name, li.active)),
            }
            for name, li in app.listeners.items()
        }
        web = app.web_address
        if web:
            listeners["web"] = {"address": f"{web[0]}:{web[1]}", "sessions": None}
        tasks = {
            t.get_name(): ("running" if not t.done() else "crashed" if _crashed(t) else "stopped")
            for t in app.tasks
        }
        worker = app.worker
        return {
            "state": state,
            # the process to signal: with several workers, their supervisor
            "pid": os.getpid() if worker is None else worker.supervisor,
            "workers": 1 if worker is None else worker.count,
            "started": self.started,
            "updated": _now(),
            "config": str(app.settings.source) if app.settings.source else None,
            "listeners": listeners,
            "tasks": tasks,
            "errors": self.errors.snapshot(),
        }

    def _write(self, doc: dict[str, Any]) -> None:
        path = self.app.settings.server.data_dir / STATUS_FILE
        try:
            write_atomically(path, json.dumps(doc, indent=1).encode(), 0o600)
        except OSError as e:
            if not self._failed:
                self._failed = True
                log.warning("cannot write %s: %s", path, e.strerror or e)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await asyncio.to_thread(self._write, self.document("running"))

    def watch(self) -> None:
        """In a worker that does not write the status file: keep its warnings and
        errors too (they reach the status file through its `SlotLog`)."""
        logging.getLogger().addHandler(self.errors)

    def stop(self) -> None:
        """The last status (errors kept for `postier status`); the lock released.
        Nothing when `start` was never called: no server ran."""
        logging.getLogger().removeHandler(self.errors)
        if not self._started:
            return
        doc = self.document("stopped")
        doc["stopped"] = _now()
        self._write(doc)
        if self._pid_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pid_fd)  # releases the flock
            self._pid_fd = None


def _crashed(task: asyncio.Task[Any]) -> bool:
    return not task.cancelled() and task.exception() is not None
