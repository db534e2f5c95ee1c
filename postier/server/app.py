"""Server lifecycle: turns `Settings` into a running server, and stops it cleanly.

Rules:
- Every service is built once, by the composition root (`root.build`), and
  handed to the components that use it; this module only orders the start
  and the stop.
- One asyncio loop (uvloop when installed) runs every listener and background
  task. Each listener's protocol comes from `PROTOCOLS`: a module exposing
  `make_handler(app, listener_name) -> Handler`; a protocol whose module is not
  present is reported and skipped, so new protocols start here by existing.
- Start order: data dir → store → TLS → listeners (all bound, or none: a taken
  port is a clear error and exit 1) → background tasks → status file and pid
  lock (`status.py`, what `postier status` reads) → "ready" line.
- Stop order (SIGTERM/SIGINT): stop accepting → `stopping` is set so idle
  sessions say goodbye → in-flight sessions get `server.drain_timeout` → tasks
  cancelled → the last status written, the pid lock released → store closed
  (its pending commits finished) → exit 0.
- `server.workers` above 1: `server.workers.supervise` prepares the data dir
  once, binds the sockets and forks the workers; each runs `serve_worker`, which
  is `start` with the supervisor's sockets, without the once-per-run steps (data
  dir check, spool sweep), with the queue runner and the status file in worker 0
  only. Every worker serves every listener, the web one included (webmail
  sessions are rows in the store, `web.webmail.sessions`).
- Once started, a process (the one of `server.workers = 1`, or each worker)
  collects its startup garbage and freezes what is left (`settle_heap`): the
  modules, the app, its caches live as long as the process, and a full
  collection — which holds the GIL, so every thread and the event loop wait —
  no longer scans them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import importlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from postier import metrics
from postier.auth.demo import DemoLogin, demo_login
from postier.config.schema import IMPLICIT_TLS, Settings
from postier.queue import service as queue_service
from postier.server import logs, tls
from postier.server.listeners import Handler, Listener, ListenError
from postier.server.root import App, Worker, build
from postier.store import open_store

__all__ = ["App", "StartupError", "serve", "start", "stop"]

log = logging.getLogger("postier.server")

#: listener name → module providing `make_handler(app, name)`
PROTOCOLS = {
    "mx": "postier.smtp.server",
    "submission": "postier.smtp.server",
    "submissions": "postier.smtp.server",
    "imap": "postier.imap.server",
    "imaps": "postier.imap.server",
    "pop3": "postier.pop3.server",
    "pop3s": "postier.pop3.server",
    "web": "postier.web.server",
}
#: listeners whose connections the workers spread by number (`listeners.WorkerLoad`):
#: a mail client stays connected or downloads a whole maildrop, and ten of them
#: connecting at once should not all land on one worker. SMTP sessions are short
#: and keep coming, so every worker soon has its share; there the loop's own
#: server accepts, which costs less per connection (bench/smtp_intake.py, 1 KB
#: c=50 with a connection per message: 0.96 ms CPU per message, 1.02 spread)
SPREAD = frozenset({"imap", "imaps", "pop3", "pop3s"})


class ProtocolModule(Protocol):
    def make_handler(self, app: App, name: str) -> Handler | None: ...


class StartupError(Exception):
    """The server cannot start; the message is for the operator."""


def sweep_spool(data_dir: Path) -> None:
    """Spool files are only ever partial messages of sessions that died: the
    store consumed every accepted one. Startup removes what is left."""
    spool = data_dir / "spool"
    if spool.is_dir():
        for p in spool.glob("*.tmp"):
            with contextlib.suppress(OSError):
                p.unlink()


def check_data_dir(path: Path) -> None:
    """Create the data dir owner-only (it holds password hashes, keys and mail);
    warn, without changing it, about an existing one that others may read."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = path / f".write-test.{os.getpid()}"  # two servers may start at once
        probe.write_bytes(b"ok")
        probe.unlink()
        mode = path.stat().st_mode & 0o777
    except OSError as e:
        raise StartupError(f"server.data_dir: {path} is not usable: {e.strerror}") from None
    if mode & 0o077:
        log.warning(
            "server.data_dir %s has mode %04o: other users may read its mail and "
            "password hashes (chmod 700 %s)",
            path,
            mode,
            path,
        )


def load_protocol(name: str) -> ProtocolModule | None:
    """The module serving listener `name`, imported; None when this build lacks it."""
    return _protocol(name)


def _protocol(name: str) -> ProtocolModule | None:
    try:
        mod: Any = importlib.import_module(PROTOCOLS[name])
    except ModuleNotFoundError as e:
        if e.name and PROTOCOLS[name].startswith(e.name):
            return None
        raise
    return mod  # type: ignore[no-any-return]


async def start(settings: Settings, worker: Worker | None = None) -> App:
    """Bind everything; raise StartupError with an operator-facing message.
    A `worker` accepts on the supervisor's sockets instead of binding its own."""
    if worker is None:  # else the supervisor did, once for all workers
        check_data_dir(settings.server.data_dir)
        sweep_spool(settings.server.data_dir)
    store = metrics.timed_store(open_store(settings))  # latencies on /metrics
    try:
        await store.open()
    except Exception as e:
        raise StartupError(f"store: cannot open: {e}") from e
    try:
        app = build(settings, store, await asyncio.to_thread(tls.server_context, settings), worker)
        limits = settings.smtp.limits
        load = None
        if worker is not None and worker.load is not None:
            worker.load.clear(worker.index)  # what a predecessor left counts no more
            load = worker.load.slot(worker.index)
        for name, ls in settings.listeners.items():
            if not ls.enabled:
                continue
            module = _protocol(name)
            if module is None:
                log.warning("listener %s: protocol not available in this build, skipped", name)
                continue
            handler = module.make_handler(app, name)
            if handler is None:  # the module starts its own server (web)
                continue
            listener = Listener(
                name,
                ls.address,
                ls.port,
                handler,
                ssl_context=app.tls_context if name in IMPLICIT_TLS else None,
                max_connections=limits.max_connections,
                max_per_ip=limits.max_connections_per_ip,
                busy=_busy_reply(name),
                sock=worker.sockets.get(name) if worker is not None else None,
                clients=app.clients,
                load=load if name in SPREAD else None,
            )
            await listener.start()
            app.listeners[name] = listener
        # background tasks start after every listener is bound; of several workers,
        # one runs the queue (the store's claims would keep two apart, but one
        # runner per data dir is what `queue_release_claims` at its start assumes)
        if worker is not None and worker.runs_queue and worker.queue_wake is not None:
            _listen_for_queue_wakes(app, worker.queue_wake[0])
        if worker is None or worker.runs_queue:
            queue_service.start(
                app.queue,
                store,
                spawn=app.spawn,
                on_stop=app.on_stop.append,
                drain_timeout=settings.server.drain_timeout,
            )
        if worker is None or worker.index == 0:
            app.status.start()  # `postier status` sees a running server from now on
        else:
            app.status.watch()
    except BaseException:
        built: App | None = locals().get("app")
        await _close_listeners_now(built)
        if built is not None:
            built.status.stop()  # only if it started
        await store.close()
        raise
    return app


def _listen_for_queue_wakes(app: App, sock: socket.socket) -> None:
    """Worker 0: another worker queued a message; the runner looks now."""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        with contextlib.suppress(OSError):
            while sock.recv(64):
                pass  # drain: one look at the queue serves them all
        app.queue.wake()

    loop.add_reader(sock.fileno(), readable)

    async def stop() -> None:
        loop.remove_reader(sock.fileno())

    app.on_stop.append(stop)


def _busy_reply(name: str) -> bytes:
    if name in ("mx", "submission", "submissions"):
        return b"421 4.7.0 Too many connections, try again later\r\n"
    if name in ("imap", "imaps"):
        return b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n"
    if name in ("pop3", "pop3s"):
        return b"-ERR [SYS/TEMP] Too many connections, try again later\r\n"
    return b""


async def _close_listeners_now(app: App | None) -> None:
    if app is None:
        return
    for listener in app.listeners.values():
        listener.stop_accepting()
        await listener.drain(0)


async def stop(app: App) -> None:
    app.stopping.set()
    for wake in list(app.stopping_hooks):
        try:
            wake()
        except Exception:
            log.exception("stopping hook failed")
    for listener in app.listeners.values():
        listener.stop_accepting()
    await asyncio.gather(
        *(li.drain(app.settings.server.drain_timeout) for li in app.listeners.values())
    )
    for hook in app.on_stop:
        try:
            await hook()
        except Exception:
            log.exception("stop hook failed")
    for task in app.tasks:
        task.cancel()
    if app.tasks:
        await asyncio.wait(app.tasks, timeout=5)
    await asyncio.to_thread(app.status.stop)
    await app.store.close()


def settle_heap() -> None:
    """Collect the garbage of the start, then move every object left to the
    cyclic GC's permanent generation (`gc.freeze`), which no collection scans.
    What a started process holds lives until it exits: scanning it bought
    nothing and cost each full collection of one process 60,000 objects
    (modules, functions, the app; ~55 % of a single process's gen2 in a census)."""
    gc.collect()
    gc.freeze()


def banner_notes(s: Settings, demo: DemoLogin | None) -> list[str]:
    """The banner's lines after the listeners (the supervisor's banner too)."""
    lines = []
    if s.smtp.outbound.capture:
        lines.append(
            "  outbound: capture = true: remote mail is kept in the outbox "
            "(/admin/outbox, postier queue captured), never sent"
        )
    if demo is not None:
        if demo.password is not None:
            lines.append(f"  login: {demo.address}  password: {demo.password}")
        else:  # never print a password that no longer works
            lines.append(f"  login: {demo.address}  (password changed since it was generated)")
    return lines


def banner(app: App, demo: DemoLogin | None) -> str:
    s = app.settings
    where = (
        f"config {s.source}, data in {s.server.data_dir}"
        if s.source
        else f"data in {s.server.data_dir}"
    )
    lines = [f"postier {s.server.hostname}: {where}"]
    for name, li in app.listeners.items():
        lines.append(f"  {name:<12} {li.address}:{li.bound_port}")
    web = app.web_address
    if web:
        scheme = "https" if s.web.tls else "http"
        lines.append(f"  {'web':<12} {web[0]}:{web[1]}  {scheme}://{web[0]}:{web[1]}/")
    lines += banner_notes(s, demo)
    lines.append("1 worker: this process serves everything (server.workers = 1)")
    lines.append(f"ready (pid {os.getpid()}); stop with Ctrl-C or SIGTERM")
    return "\n".join(lines)


async def serve(settings: Settings, *, ready: Callable[[App], None] | None = None) -> int:
    try:
        app = await start(settings)
    except (StartupError, ListenError) as e:
        print(f"postier: {e}", file=sys.stderr)
        return 1
    demo = await demo_login(app.store, settings.server.data_dir)
    settle_heap()
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop_event.set)
    print(banner(app, demo), flush=True)
    log.info("ready")
    if ready is not None:
        ready(app)
    await stop_event.wait()
    log.info("stopping: finishing in-flight sessions (up to %.0fs)", settings.server.drain_timeout)
    await stop(app)
    log.info("stopped")
    return 0


async def serve_worker(settings: Settings, worker: Worker, ready: Callable[[], None]) -> int:
    """One worker of several: serve until SIGTERM/SIGINT; `ready` once listening
    (the supervisor prints the banner when every worker said so)."""
    try:
        app = await start(settings, worker)
    except (StartupError, ListenError) as e:
        print(f"postier: worker {worker.index}: {e}", file=sys.stderr)
        return 1
    settle_heap()  # what the supervisor loaded it froze before forking
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)
    log.info("worker %d ready (pid %d)", worker.index, os.getpid())
    ready()
    await stop_event.wait()
    log.info("worker %d stopping: finishing in-flight sessions", worker.index)
    await stop(app)
    log.info("worker %d stopped", worker.index)
    return 0


def load_event_loop() -> None:
    """Import uvloop (when installed) without starting a loop: the supervisor does
    it before forking, so its module state is one copy every worker shares
    rather than one imported in each (about 0.2 MB a worker)."""
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


#: glibc's mallopt parameter for the number of malloc arenas
_M_ARENA_MAX = -8


def limit_malloc_arenas(count: int = 2) -> None:
    """Let at most `count` malloc arenas serve the process's threads. glibc gives
    each thread that allocates an arena of its own (up to eight per core), and
    memory freed into one stays there: the store's reader threads and the search
    threads each kept megabytes after a large FETCH or SEARCH TEXT (bench/imap.py,
    two workers: 9 MB less PSS). Threads take turns under the GIL, so they hardly
    contend for an arena. Elsewhere than glibc this does nothing."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, count)


def run(settings: Settings, log_format: str | None = None) -> int:
    logs.setup(settings.log.level, log_format or settings.log.format)
    limit_malloc_arenas()  # before any thread starts (workers inherit it)
    if settings.server.worker_count > 1:
        from postier.server import workers

        return workers.supervise(settings)
    return run_loop(serve(settings))
