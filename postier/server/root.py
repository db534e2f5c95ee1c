"""The composition root: `build` turns `Settings`, an open store and a TLS
context into the `App` of one server process, every service built once.

Rules:
- This module is the only place that decides which shared services exist and
  who gets which: the DNS resolver, the filter pipelines, intake, the
  submission pipeline (`smtp.submission`), the queue runner (made by
  `queue.service.build`) and its wake-up, the login service, the IMAP
  literal budget and the status writer. Each component receives what it uses as typed constructor
  arguments; none looks another up at run time, so there is no registry to
  read a wrong or missing entry from.
- A process that is not the server (`postier send`) gets the same submission
  pipeline from `build_submission`, never a stand-in `App`.
- One resolver per process: the filters (SPF, DKIM, DNSBL...) and the queue
  runner share it, and with it its cache.
- Nothing here starts anything: the queue runner and the status writer are
  built here and started by `app.start` after every listener is bound.
- A worker of several (`Worker`, from `server.workers`) gets the variants that
  share their state with the other workers: the login limiter in
  ``data_dir/run/logins.db`` (`auth.shared`) and the \\Recent claims in
  ``data_dir/run/recent`` (`imap.recent`). POP3 maildrop locks are lock files
  (`pop3.locks`); the store and the change feed are shared through the database.
- Over PostgreSQL (``store.backend = "postgres"``) every node of the site must
  agree: the login limiter, the POP3 maildrop locks, the connections per
  client address and the \\Recent claims are kept in the database
  (`store.postgres.shared`), one worker or several.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from postier import metrics
from postier.auth.service import AuthService, Limiter
from postier.auth.shared import DatabaseLimiter, SharedLimiter
from postier.config.schema import Settings
from postier.dns.resolver import Resolver, make_resolver
from postier.filters.bayes import MoveLearner
from postier.filters.build import Filters
from postier.pop3.locks import DatabaseMaildrops, MaildropLocks, Maildrops
from postier.queue import service as queue_service
from postier.queue.runner import Runner
from postier.server.listeners import ClientCounts, Listener, WorkerLoad
from postier.server.status import MAX_ERRORS, StatusWriter
from postier.smtp.intake import Intake, QueuePrepare
from postier.smtp.submission import Submission
from postier.store.api import Store

if TYPE_CHECKING:
    from postier.imap.literals import LiteralBudget
    from postier.imap.session import RecentClaims
    from postier.store.postgres import PostgresStore
    from postier.store.postgres.shared import SharedState

log = logging.getLogger("postier.server")

#: state the workers of one run share, under data_dir (made fresh by the supervisor)
RUN_DIR = "run"
LOGINS_DB = "logins.db"
RECENT_FILE = "recent"
MAILDROPS_DIR = "pop3"


def run_dir(settings: Settings) -> Path:
    return settings.server.data_dir / RUN_DIR


@dataclass(frozen=True)
class Worker:
    """What a worker process knows of its place among the others."""

    index: int  # 0 .. count-1; index 0 runs the queue and writes the status file
    count: int
    supervisor: int  # pid: the process operators signal
    #: listener name → the socket the supervisor bound, shared by every worker
    sockets: Mapping[str, socket.socket]
    #: a datagram socket pair every worker inherits: the others send a byte on
    #: [1] when they queued a message, the queue runner (worker 0) reads [0]
    queue_wake: tuple[socket.socket, socket.socket] | None = None
    #: every worker's open connections, to spread new ones (`listeners.WorkerLoad`)
    load: WorkerLoad | None = None

    @property
    def runs_queue(self) -> bool:
        return self.index == 0

    def wake_runner(self) -> None:
        """Tell worker 0 that this worker queued a message (never blocks: a
        full socket already holds a wake-up; the runner also looks every second)."""
        if self.queue_wake is not None:
            with contextlib.suppress(OSError):
                self.queue_wake[1].send(b"w")


@dataclass
class App:
    """One server process: its services (built once by `build`) and its
    runtime state (listeners, background tasks, the stop signal)."""

    settings: Settings
    store: Store
    auth: AuthService
    tls_context: ssl.SSLContext
    intake: Intake
    #: accepts a message from an authenticated user: the submission listeners,
    #: and the webmail's Send
    submission: Submission
    queue: Runner
    #: how `recent` is made (`recent_claims`): on first use, by the imap listeners
    make_recent: Callable[[], RecentClaims]
    #: POP3 maildrop locks (every worker; every node over PostgreSQL)
    maildrops: Maildrops
    #: connections per client address in every process of every node (over
    #: PostgreSQL; else each listener counts its process's own)
    clients: ClientCounts | None
    #: learns IMAP moves into and out of Junk in the background
    move_learner: MoveLearner
    #: None: the only process; else this worker's place among several
    worker: Worker | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    listeners: dict[str, Listener] = field(default_factory=dict)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    #: the web listener's bound (host, port), once it listens
    web_address: tuple[str, int] | None = None
    #: what `postier status` reads; started once every listener is bound
    status: StatusWriter = field(init=False)
    #: called after listeners stop, before the store closes
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: called at once when the stop begins: sessions waiting on a read wake up
    stopping_hooks: set[Callable[[], None]] = field(default_factory=set)

    # The IMAP services are built when the imap listeners ask for them: a process
    # that serves no IMAP (an SMTP-only worker) never imports the IMAP stack.
    @functools.cached_property
    def literal_budget(self) -> LiteralBudget:
        """The one APPEND budget of the process, shared by the imap and imaps listeners."""
        from postier.imap.literals import LiteralBudget

        return LiteralBudget(self.settings.imap.user_literal_budget)

    @functools.cached_property
    def recent(self) -> RecentClaims:
        """Who saw which message as \\Recent first (imap and imaps; every worker)."""
        return self.make_recent()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a background task for the server's lifetime; a crash is logged."""
        task = asyncio.create_task(coro, name=name)

        def done(t: asyncio.Task[Any]) -> None:
            if not t.cancelled() and t.exception() is not None:
                log.error("background task %s crashed", name, exc_info=t.exception())

        task.add_done_callback(done)
        self.tasks.append(task)
        return task


def build_intake(
    settings: Settings,
    store: Store,
    resolver: Resolver,
    *,
    queue_wake: Callable[[], None] | None = None,
    queue_prepare: QueuePrepare | None = None,
) -> Intake:
    """Intake and its filters. Without `queue_wake` (a process that is not the
    server) a queued message waits for the server's next look at the queue."""
    return Intake(
        settings,
        store,
        Filters(settings, store, resolver),
        queue_wake=queue_wake,
        queue_prepare=queue_prepare,
    )


def build_submission(settings: Settings, store: Store) -> Submission:
    """The submission pipeline for a process that is not the server (`postier
    send`, `postier-sendmail`): its own resolver and filters, no queue runner
    (a running server's runner finds the entry within `Runner.max_idle`)."""
    return Submission(
        build_intake(
            settings,
            store,
            make_resolver(settings.dns),
            queue_prepare=queue_service.enqueue(settings, store).prepare,
        )
    )


def _postgres(store: Store) -> PostgresStore | None:
    """The PostgreSQL backend under `store`'s metrics wrapper, if it is one."""
    from postier.store.postgres import PostgresStore

    backend = metrics.untimed(store)
    return backend if isinstance(backend, PostgresStore) else None


def recent_claims(
    settings: Settings, worker: Worker | None, state: SharedState | None
) -> RecentClaims:
    """Where \\Recent is claimed: in memory (one process), in a record-locked file
    of the run (several workers), in the database (PostgreSQL: every node)."""
    from postier.imap.recent import DatabaseRecentClaims, SharedRecentClaims
    from postier.imap.session import RecentClaims

    if state is not None:
        return DatabaseRecentClaims(state)
    if worker is not None:
        return SharedRecentClaims(run_dir(settings) / RECENT_FILE)
    return RecentClaims()


def build(
    settings: Settings, store: Store, tls_context: ssl.SSLContext, worker: Worker | None = None
) -> App:
    """Every service of a server process, each built once (see the module rules)."""
    resolver = make_resolver(settings.dns)
    queue = queue_service.build(settings, store, resolver)
    limiter: Limiter | None = None
    clients: ClientCounts | None = None
    state: SharedState | None = None
    maildrops: Maildrops = MaildropLocks(run_dir(settings) / MAILDROPS_DIR)
    pg = _postgres(store) if settings.store.backend == "postgres" else None
    if pg is not None:
        from postier.store.postgres.shared import SharedState

        state = SharedState(pg)
        limiter = DatabaseLimiter(settings.auth, state)
        maildrops = DatabaseMaildrops(state)
        clients = state
    elif worker is not None:
        limiter = SharedLimiter(settings.auth, run_dir(settings) / LOGINS_DB)
    intake = build_intake(
        settings,
        store,
        resolver,
        queue_wake=queue.wake if worker is None or worker.runs_queue else worker.wake_runner,
        queue_prepare=queue_service.enqueue(settings, store, queue).prepare,
    )
    app = App(
        settings=settings,
        store=store,
        auth=AuthService(
            store,
            settings.auth,
            limiter=limiter,
        ),
        tls_context=tls_context,
        intake=intake,
        submission=Submission(intake),
        queue=queue,
        make_recent=functools.partial(recent_claims, settings, worker, state),
        maildrops=maildrops,
        clients=clients,
        move_learner=MoveLearner(store),
        worker=worker,
    )
    app.on_stop.append(app.move_learner.close)
    app.status = StatusWriter(app)
    if worker is not None:  # every worker's errors, for the status file and page
        shared = run_dir(settings) / metrics.SHARED_DIR
        app.status.errors.share(metrics.SlotLog(shared, "errors", worker.index, MAX_ERRORS))
    return app
