"""The supervisor: `server.workers` processes serving one data dir together.

Rules:
- The supervisor does once what must happen once per run, before any worker
  exists: checks the data dir, sweeps the spool, opens the store (creating or
  migrating the schema, sweeping orphan blobs) and closes it again, makes the
  TLS certificate, makes the run's shared state fresh (``data_dir/run``: the
  login limiter's records and the \\Recent claims), and binds every listening
  socket. A taken port is an error naming the key and exit 1, as with one
  process. All but the binding run in a short-lived child process
  (`_prepare_in_child`): what they allocate never stays in the supervisor, nor
  in the workers forked from it.
- Then it forks the workers. Each inherits the bound sockets and accepts on them
  (the kernel gives each connection to one worker), opens the store itself (one
  SQLite database in WAL mode: each worker's writer thread commits its own
  groups, `BEGIN IMMEDIATE` serialises them, and every counter — UIDNEXT,
  MODSEQ, the queue's claims, greylisting — is read and written inside the write
  transaction, so no process trusts a cached value), and learns the others'
  changes from the change log table (`SqliteStore._poll`, for IDLE and NOTIFY).
  Worker 0 runs the queue and writes the status file; a worker restarted in its
  place takes both over. The others wake its runner when they queued a message,
  with a byte on a datagram socket pair every worker inherits.
- Metrics: each worker keeps its counters in the mmap files of its slot under
  ``data_dir/run/metrics`` (`metrics.share`), and `/metrics`, the Status page
  and the status file sum every slot's. A dead worker's counters stay and its
  replacement goes on from them; its open-session gauge is dropped when it is
  reaped (`metrics.forget_sessions`).
- The supervisor forks from a single thread with no event loop running (the
  store's threads are joined before), so a child starts from a clean state; it
  runs no loop of its own either: it waits for signals with `sigtimedwait`.
- "ready" is printed when every worker said so (a byte on its pipe). A worker
  that dies before that fails the start: the others are stopped, exit 1.
- A worker that dies later (a crash, the OOM killer, kill -9) is replaced with
  the same index; what it had acknowledged was durable (a 250 follows the
  commit), what it had not was never acknowledged. One that keeps dying within
  `FAST_DEATH` seconds of its start is restarted after a delay that doubles up
  to `MAX_BACKOFF`.
- SIGTERM or SIGINT: every worker gets SIGTERM and stops as a single process
  does (stop accepting, drain, close the store); the supervisor waits
  `server.drain_timeout` plus `STOP_MARGIN` seconds, SIGKILLs what is left, and
  exits 0. Workers die with the supervisor (`PR_SET_PDEATHSIG`), so killing it
  never leaves orphans accepting on the sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import os
import select
import shutil
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass
from typing import NoReturn

from postier import metrics
from postier.auth import shared as shared_limiter
from postier.auth.demo import DemoLogin, demo_login
from postier.config.schema import Settings
from postier.server import app as server_app
from postier.server import logs, status, tls
from postier.server.listeners import ListenError, WorkerLoad, bind
from postier.server.root import LOGINS_DB, RECENT_FILE, Worker, run_dir
from postier.store import open_store

log = logging.getLogger("postier.server")

#: a worker dying this soon after its start is restarted after a growing delay
FAST_DEATH = 5.0
MAX_BACKOFF = 30.0
#: seconds beyond drain_timeout the workers get to close their stores on SIGTERM
STOP_MARGIN = 10.0
#: seconds the workers get to say they are ready
READY_TIMEOUT = 60.0

_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


@dataclass
class _Child:
    index: int
    pid: int
    started: float


def _prepare(settings: Settings) -> DemoLogin | None:
    """Everything done once per run, before the workers (see the module rules)."""
    data_dir = settings.server.data_dir
    server_app.check_data_dir(data_dir)
    server_app.sweep_spool(data_dir)

    async def once() -> DemoLogin | None:
        store = open_store(settings)
        try:
            await store.open()
        except Exception as e:
            raise server_app.StartupError(f"store: cannot open: {e}") from e
        try:
            return await demo_login(store, data_dir)
        finally:
            await store.close()

    demo = asyncio.run(once())
    tls.cert_paths(settings)  # the certificate every worker loads
    run = run_dir(settings)
    run.mkdir(mode=0o700, exist_ok=True)
    shared_limiter.create(run / LOGINS_DB)
    with contextlib.suppress(FileNotFoundError):
        (run / RECENT_FILE).unlink()
    shutil.rmtree(run / metrics.SHARED_DIR, ignore_errors=True)  # counts start at 0
    (run / metrics.SHARED_DIR).mkdir(mode=0o700)
    return demo


def _prepare_in_child(settings: Settings) -> DemoLogin | None:
    """`_prepare` in a short-lived child process. What those steps allocate
    (opening, creating or migrating the database, generating the certificate
    with cryptography's code) is then never part of the supervisor, which lives
    as long as the server and whose pages every worker inherits; a child that
    fails reports why, as `_prepare` would have raised it (`StartupError`)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the supervisor's code
        code = 0
        try:
            os.close(r)
            try:
                demo = _prepare(settings)
                said: dict[str, object] = {"demo": None if demo is None else asdict(demo)}
            except server_app.StartupError as e:
                said = {"error": str(e)}
            except BaseException as e:
                log.exception("preparing the data directory failed")
                said = {"error": f"cannot prepare the data directory: {e}"}
                code = 70  # EX_SOFTWARE
            os.write(w, json.dumps(said).encode())
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    try:
        told = json.loads(b"".join(chunks))
    except ValueError:
        told = {"error": "preparing the data directory failed (see the log above)"}
    if "error" in told:
        raise server_app.StartupError(str(told["error"]))
    login = told.get("demo")
    return None if login is None else DemoLogin(login["address"], login["password"])


def _bind_all(settings: Settings) -> dict[str, socket.socket]:
    sockets: dict[str, socket.socket] = {}
    try:
        for name, ls in settings.listeners.items():
            if ls.enabled and name in server_app.PROTOCOLS:
                sockets[name] = bind(name, ls.address, ls.port)
    except ListenError:
        for sock in sockets.values():
            sock.close()
        raise
    return sockets


def _release_free_memory() -> None:
    """glibc: hand the heap's free pages back to the system before forking. What
    the once-per-run steps (store migration, certificate) allocated and freed would
    otherwise stay resident in the supervisor and be inherited, resident too, by
    every worker (about 3 MB each)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when its parent (the supervisor) dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)


class Supervisor:
    def __init__(self, settings: Settings, sockets: dict[str, socket.socket]) -> None:
        self.settings = settings
        self.count = settings.server.worker_count
        self.sockets = sockets
        self.pid = os.getpid()
        self.children: dict[int, _Child] = {}  # pid → child
        self.backoff: dict[int, float] = {}  # index → delay before its next restart
        self.restart_at: dict[int, float] = {}  # index → when to start it again
        self.stopping = False
        # non-blocking both ways: a sender never waits, worker 0 drains what came
        self.queue_wake = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for sock in self.queue_wake:
            sock.setblocking(False)
        self.load = WorkerLoad(self.count)

    # --- starting ------------------------------------------------------------
    def spawn(self, index: int) -> int:
        """Fork worker `index`; returns the read end of its ready pipe."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker; it never returns into the supervisor's code
            os.close(r)
            self._worker(index, w)
        os.close(w)
        self.children[pid] = _Child(index, pid, time.monotonic())
        return r

    def _worker(self, index: int, ready_fd: int) -> NoReturn:
        code = 70  # EX_SOFTWARE: an exception escaped
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            logs.tag_worker(index)
            _die_with_parent()
            if os.getppid() != self.pid:  # the supervisor died before prctl
                os._exit(0)
            # before anything counts: this worker's metrics go to its slot's files
            metrics.share(run_dir(self.settings) / metrics.SHARED_DIR, index)
            worker = Worker(index, self.count, self.pid, self.sockets, self.queue_wake, self.load)

            def ready() -> None:
                with contextlib.suppress(OSError):
                    os.write(ready_fd, b"r")
                    os.close(ready_fd)

            code = server_app.run_loop(server_app.serve_worker(self.settings, worker, ready))
        except BaseException:
            with contextlib.suppress(BaseException):
                log.exception("worker %d failed", index)
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def start_all(self) -> bool:
        """Fork every worker and wait until each is ready; False if one died first."""
        pending = {self.spawn(i) for i in range(self.count)}
        deadline = time.monotonic() + READY_TIMEOUT
        ok = True
        while pending and ok:
            left = deadline - time.monotonic()
            if left <= 0:
                print("postier: the workers did not start in time", file=sys.stderr)
                ok = False
                break
            readable, _, _ = select.select(list(pending), [], [], left)
            for fd in readable:
                if os.read(fd, 1) != b"r":  # EOF: that worker died before it was ready
                    ok = False
                os.close(fd)
                pending.discard(fd)
        for fd in pending:
            os.close(fd)
        return ok

    # --- running ---------------------------------------------------------------
    def run(self) -> int:
        """Wait for signals: reap and replace dead workers until told to stop."""
        while not self.stopping:
            timeout = None
            if self.restart_at:
                timeout = max(0.0, min(self.restart_at.values()) - time.monotonic())
            info = signal.sigtimedwait(_SIGNALS, 3600.0 if timeout is None else timeout)
            if info is None:
                self._restart_due()
            elif info.si_signo == signal.SIGCHLD:
                self._reap()
                self._restart_due()
            else:
                log.info("stopping: %d worker(s) finish their sessions", len(self.children))
                self.stop()
        return 0

    def _reap(self) -> None:
        while self.children:
            try:
                pid, wstatus = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None or self.stopping:
                continue
            how = (
                f"killed by {signal.Signals(os.WTERMSIG(wstatus)).name}"
                if os.WIFSIGNALED(wstatus)
                else f"exited with status {os.waitstatus_to_exitcode(wstatus)}"
            )
            lived = time.monotonic() - child.started
            delay = 0.0
            if lived < FAST_DEATH:
                delay = min(MAX_BACKOFF, max(1.0, 2 * self.backoff.get(child.index, 0.5)))
            self.backoff[child.index] = delay
            # its open sessions died with it; its counters stay for its successor
            metrics.forget_sessions(run_dir(self.settings) / metrics.SHARED_DIR, child.index)
            self.load.gone(child.index)
            log.warning(
                "worker %d (pid %d) %s after %.0fs; starting another%s",
                child.index,
                pid,
                how,
                lived,
                f" in {delay:.0f}s" if delay else "",
            )
            self.restart_at[child.index] = time.monotonic() + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for index, when in list(self.restart_at.items()):
            if when <= now:
                del self.restart_at[index]
                os.close(self.spawn(index))  # nobody waits for its "ready"

    # --- stopping --------------------------------------------------------------
    def stop(self) -> None:
        """SIGTERM every worker, wait for them (then SIGKILL), reap them all."""
        self.stopping = True
        self.restart_at.clear()
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.server.drain_timeout + STOP_MARGIN
        while self.children:
            self._reap_stopped()
            left = deadline - time.monotonic()
            if not self.children or left <= 0:
                break
            signal.sigtimedwait({signal.SIGCHLD}, min(left, 1.0))
        for pid in list(self.children):
            log.warning("worker pid %d did not stop in time; killed", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        while self.children:
            with contextlib.suppress(ChildProcessError):
                pid, _ = os.waitpid(-1, 0)
                self.children.pop(pid, None)
                continue
            break

    def _reap_stopped(self) -> None:
        while self.children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.pop(pid, None)


def banner(
    settings: Settings, sockets: dict[str, socket.socket], demo: DemoLogin | None, sup: Supervisor
) -> str:
    s = settings
    where = (
        f"config {s.source}, data in {s.server.data_dir}"
        if s.source
        else f"data in {s.server.data_dir}"
    )
    lines = [f"postier {s.server.hostname}: {where}"]
    for name, sock in sockets.items():
        host, port = sock.getsockname()[:2]
        host = host if ":" not in host else f"[{host}]"
        scheme = "https" if s.web.tls else "http"
        tail = f"  {scheme}://{host}:{port}/" if name == "web" else ""
        lines.append(f"  {name:<12} {host}:{port}{tail}")
    lines += server_app.banner_notes(s, demo)
    pids = ", ".join(str(c.pid) for c in sorted(sup.children.values(), key=lambda c: c.index))
    lines.append(f"{sup.count} workers (pids {pids}); worker 0 runs the queue")
    lines.append(f"ready (pid {os.getpid()}); stop with Ctrl-C or SIGTERM")
    return "\n".join(lines)


def supervise(settings: Settings) -> int:
    """`postier serve` with `server.workers` above 1 (see the module rules)."""
    # signals wait for `sigtimedwait` from now on; each worker unblocks them
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        demo = _prepare_in_child(settings)
        sockets = _bind_all(settings)
        # the protocol stacks of the listeners served, loaded once here and shared
        # with every worker (those of listeners not served are never loaded)
        for name in sockets:
            server_app.load_protocol(name)
        server_app.load_event_loop()  # uvloop's module state, shared the same way
    except (server_app.StartupError, ListenError) as e:
        print(f"postier: {e}", file=sys.stderr)
        return 1
    pid_fd = status.hold_pid_lock(settings.server.data_dir)
    sup = Supervisor(settings, sockets)
    # what the supervisor has loaded stays shared with every worker: the cyclic
    # GC of a worker then never writes to (and so copies) those pages
    gc.freeze()
    _release_free_memory()
    try:
        if not sup.start_all():
            sup.stop()
            print("postier: a worker failed to start (see the log above)", file=sys.stderr)
            return 1
        print(banner(settings, sockets, demo, sup), flush=True)
        log.info("ready: %d workers", sup.count)
        code = sup.run()
        log.info("stopped")
        return code
    finally:
        for sock in (*sockets.values(), *sup.queue_wake):
            sock.close()
        os.close(pid_fd)
