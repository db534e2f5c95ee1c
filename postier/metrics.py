"""Prometheus metrics: the registry, and the counters and histograms every package moves.

What it owns: the names, labels and meaning of every metric postier exports, in
one place, so the `/metrics` page (`postier.web.metrics`) is documented here and
a package adds one line (``metrics.X.labels(...).inc()``) where the event happens.

Rules:
- One process-wide `REGISTRY` (not prometheus_client's global default, so tests
  and embedders never collide with other libraries' metrics); it also carries the
  standard process and Python collectors.
- Labels are bounded sets, never free text from a peer: listener names, fixed
  result words, RFC 3463 enhanced status codes (``5.1.1``; a reply without one is
  labelled by its class ``5.0.0``). A peer cannot create new time series.
- Queue sizes are not counted as events: `QueueCollector` reads the store when
  `/metrics` is scraped (`refresh`), so the numbers are right whichever process
  queued or delivered, and stay right across restarts.
- Store latencies: `timed_store(store)` wraps a store so every async method
  call is observed in `STORE_SECONDS` by method name; the composition root
  decides whether to wrap.
- `REFUSALS` keeps the last `MAX_REFUSALS` refused SMTP commands with their
  reply text and client, for the web admin's Status page (a bounded deque: the
  text is shown to an admin, never used as a label). With several workers each
  one also writes its own to a `SlotLog` file, and the page merges them all.
- One process (``server.workers = 1``, tests, CLI commands such as `postier send`
  in their own short-lived process): `REGISTRY` is the whole picture.
- Several workers: each worker calls `share(dir, slot)` before it serves, and
  its metrics live from then on in mmap files ``data_dir/run/metrics/<type>_<slot>.db``
  (prometheus_client's multiprocess mode, keyed by the worker's slot instead of
  its pid), written in place with no lock between processes. `registry()` —
  what `/metrics`, the Status page and the status file read, in whichever worker
  serves them — sums every slot's files (plus the queue gauges); the `process_*`
  and Python collectors are left out there, since they would describe one worker.
- A worker that dies (even by SIGKILL) leaves its files: its counters still
  count, and the worker restarted in its slot opens the same files and goes on
  from those values, so a counter never goes backwards. Its open sessions
  (`SESSIONS_OPEN`, a "livesum" gauge) are removed by the supervisor when it
  reaps it (`forget_sessions`): they ended with it. The supervisor empties the
  directory when a run starts: counts start at 0 with the server, as they do
  for one process.

Who increments what (the package named owns the call site):

======================================  =================================  ==========
metric                                   labels                             where
======================================  =================================  ==========
postier_connections_total                protocol (listener name)           smtp, pop3, imap
postier_smtp_transactions_total          listener, result                   smtp.intake
postier_smtp_rejections_total            listener, stage, status            smtp.server
postier_messages_delivered_total         destination (local, remote)        intake, queue
postier_delivery_attempt_seconds         result (delivered, deferred, ...)  queue.runner
postier_bounces_total                    kind (failed, delayed, relayed...) queue
postier_greylist_decisions_total         decision (pass, defer, allow)      filters
postier_spam_verdicts_total              verdict (ham, spam, reject)        filters
postier_filter_errors_total              stage, kind (error, timeout)       filters
postier_logins_total                     protocol, result (ok, failed, ...) auth.service
postier_store_operation_seconds          operation (method name)            timed_store
postier_sessions_open (gauge)            listener                           server.listeners
postier_queue_messages (gauge)           state (new, deferred, held)        QueueCollector
postier_queue_recipients (gauge)         state (pending, delivered, failed) QueueCollector
postier_queue_oldest_seconds (gauge)     —                                  QueueCollector
======================================  =================================  ==========
"""

from __future__ import annotations

import collections
import contextlib
import functools
import glob
import inspect
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from postier.store.api import Store
    from postier.store.models import QueueEntry

REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

#: delivery attempts take from milliseconds (local peer) to minutes (slow MX)
ATTEMPT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: store calls: sub-millisecond reads to fsync-bound group commits
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

CONNECTIONS = Counter(
    "postier_connections",
    "Connections accepted, by protocol listener (mx, submission, imap, pop3, ...)",
    ["protocol"],
    registry=REGISTRY,
)
SMTP_TRANSACTIONS = Counter(
    "postier_smtp_transactions",
    "SMTP transactions that reached the end of DATA/BDAT, by listener and result "
    "(accepted: 250 sent; rejected: 5xx; failed: 4xx local error)",
    ["listener", "result"],
    registry=REGISTRY,
)
SMTP_REJECTIONS = Counter(
    "postier_smtp_rejections",
    "Refused SMTP commands, by listener, stage (mail, rcpt, data) and the reply's "
    "RFC 3463 status code (the rejection reason: 5.1.1 unknown user, 5.7.1 relay...)",
    ["listener", "stage", "status"],
    registry=REGISTRY,
)
MESSAGES_DELIVERED = Counter(
    "postier_messages_delivered",
    "Message copies delivered: local (into a mailbox) or remote (2xx from a remote host)",
    ["destination"],
    registry=REGISTRY,
)
DELIVERY_ATTEMPT_SECONDS = Histogram(
    "postier_delivery_attempt_seconds",
    "Duration of one outbound delivery attempt to one destination, by result "
    "(delivered, deferred, failed)",
    ["result"],
    buckets=ATTEMPT_BUCKETS,
    registry=REGISTRY,
)
BOUNCES = Counter(
    "postier_bounces",
    "DSNs generated, by kind: the RFC 3464 action reported (failed, delayed, relayed, delivered)",
    ["kind"],
    registry=REGISTRY,
)
GREYLIST_DECISIONS = Counter(
    "postier_greylist_decisions",
    "Greylisting decisions: pass (known triplet), defer (first try), allow (allow-listed)",
    ["decision"],
    registry=REGISTRY,
)
SPAM_VERDICTS = Counter(
    "postier_spam_verdicts",
    "Spam filter verdicts on accepted messages (ham, spam, reject)",
    ["verdict"],
    registry=REGISTRY,
)
FILTER_ERRORS = Counter(
    "postier_filter_errors",
    "Filter stages that could not judge a message, by stage and kind: error (the "
    "stage raised: our bug, the traceback is logged) or timeout (its CPU-bound work "
    "ran past filters.scan_timeout); the message went on with a small score",
    ["stage", "kind"],
    registry=REGISTRY,
)
LOGINS = Counter(
    "postier_logins",
    "Login attempts, by protocol (smtp, imap, pop3, web) and result (ok, failed, locked)",
    ["protocol", "result"],
    registry=REGISTRY,
)
SESSIONS_OPEN = Gauge(
    "postier_sessions_open",
    "Sessions open now, by listener (mx, submission, imap, pop3, ...)",
    ["listener"],
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
STORE_SECONDS = Histogram(
    "postier_store_operation_seconds",
    "Latency of store operations, by operation (Store method name)",
    ["operation"],
    buckets=STORE_BUCKETS,
    registry=REGISTRY,
)

_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")

M = TypeVar("M", bound=MetricWrapperBase)
_CHILDREN: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}


def labelled(metric: M, *labels: str) -> M:
    """``metric.labels(*labels)``, looked up once per label set: what a count per
    message calls (prometheus_client's `labels` checks and locks at every call).
    Bounded: label values are bounded sets (module rules). The child stays valid
    when `share` moves the metrics into the workers' files (it re-initialises
    every child in place)."""
    key = (metric, labels)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*labels)
    return cast("M", child)


def status_label(code: int, enhanced: str | None) -> str:
    """The bounded label for a reply: its RFC 3463 code, else "<class>.0.0"."""
    if enhanced and _STATUS.match(enhanced) and enhanced[0] == str(code)[0]:
        return enhanced
    return f"{str(code)[0]}.0.0" if 200 <= code < 600 else "4.0.0"


@dataclass(frozen=True)
class Refusal:
    at: datetime
    listener: str
    stage: str  # mail, rcpt, data
    client: str
    reply: str  # "550 5.7.1 text"


#: refusals kept for the Status page
MAX_REFUSALS = 50


class RecentRefusals:
    """The last `MAX_REFUSALS` refusals, newest last; appended from the event loop.
    With several workers (`share`) each one's are also in its `SlotLog`, and
    `newest_first` merges every worker's."""

    def __init__(self, size: int = MAX_REFUSALS) -> None:
        self._items: collections.deque[Refusal] = collections.deque(maxlen=size)
        self._log: SlotLog | None = None

    def share(self, log: SlotLog) -> None:
        self._log = log

    def add(self, refusal: Refusal) -> None:
        self._items.append(refusal)
        if self._log is not None:
            self._log.append(
                {
                    "at": refusal.at.isoformat(),
                    "listener": refusal.listener,
                    "stage": refusal.stage,
                    "client": refusal.client,
                    "reply": refusal.reply,
                }
            )

    def newest_first(self) -> list[Refusal]:
        if self._log is None:
            return list(reversed(self._items))
        got = []
        for r in read_slot_logs(self._log.path.parent, "refusals"):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                got.append(
                    Refusal(
                        datetime.fromisoformat(r["at"]),
                        str(r["listener"]),
                        str(r["stage"]),
                        str(r["client"]),
                        str(r["reply"]),
                    )
                )
        got.sort(key=lambda x: x.at, reverse=True)
        return got[: self._items.maxlen]


REFUSALS = RecentRefusals()


def count_rejection(
    listener: str,
    stage: str,
    code: int,
    enhanced: str | None,
    *,
    text: str = "",
    client: str = "",
) -> None:
    """One refused MAIL/RCPT/DATA; `stage` is "mail", "rcpt" or "data"."""
    SMTP_REJECTIONS.labels(listener, stage, status_label(code, enhanced)).inc()
    note_refusal(listener, stage, code, enhanced, text=text, client=client)


def note_refusal(
    listener: str, stage: str, code: int, enhanced: str | None, *, text: str, client: str
) -> None:
    """Keep one refusal with its reason in `REFUSALS` (Status page)."""
    reply = " ".join(str(p) for p in (code, enhanced, text[:300]) if p)
    REFUSALS.add(Refusal(datetime.now(UTC), listener, stage, client, reply))


def count_transaction(listener: str, code: int, local_copies: int = 0) -> None:
    """The end-of-data reply of one transaction, and the local copies it made."""
    result = "accepted" if code < 400 else ("failed" if code < 500 else "rejected")
    labelled(SMTP_TRANSACTIONS, listener, result).inc()
    if local_copies:
        labelled(MESSAGES_DELIVERED, "local").inc(local_copies)


# --- the queue, read from the store at scrape time ---------------------------------


@dataclass
class QueueSnapshot:
    messages: dict[str, int] = field(default_factory=lambda: {"new": 0, "deferred": 0, "held": 0})
    recipients: dict[str, int] = field(
        default_factory=lambda: {"pending": 0, "delivered": 0, "failed": 0}
    )
    oldest_seconds: float = 0.0

    @classmethod
    def of(cls, entries: list[QueueEntry], now: datetime) -> QueueSnapshot:
        """new: never tried; deferred: tried and waiting; held: held by the admin."""
        snap = cls()
        for e in entries:
            state = "held" if e.held else ("deferred" if e.attempts else "new")
            snap.messages[state] += 1
            for r in e.recipients:
                snap.recipients[str(r.state)] = snap.recipients.get(str(r.state), 0) + 1
            age = (now - e.created).total_seconds()
            snap.oldest_seconds = max(snap.oldest_seconds, age)
        return snap


class QueueCollector(Collector):
    """Gauges of the outbound queue; `refresh(store)` before each scrape."""

    def __init__(self) -> None:
        self.snapshot = QueueSnapshot()

    async def refresh(self, store: Store, now: datetime | None = None) -> None:
        entries = await store.queue_list()
        self.snapshot = QueueSnapshot.of(entries, now or datetime.now(UTC))

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        msgs = GaugeMetricFamily(
            "postier_queue_messages",
            "Messages in the outbound queue, by state (new, deferred, held)",
            labels=["state"],
        )
        for state, n in sorted(snap.messages.items()):
            msgs.add_metric([state], n)
        yield msgs
        rcpts = GaugeMetricFamily(
            "postier_queue_recipients",
            "Recipients of queued messages, by state (pending, delivered, failed)",
            labels=["state"],
        )
        for state, n in sorted(snap.recipients.items()):
            rcpts.add_metric([state], n)
        yield rcpts
        yield GaugeMetricFamily(
            "postier_queue_oldest_seconds",
            "Age of the oldest queued message (0 when the queue is empty)",
            value=snap.oldest_seconds,
        )


QUEUE = QueueCollector()
REGISTRY.register(QUEUE)


# --- recent records of every worker ------------------------------------------------

#: a slot's log file is rewritten with its last records when it grows past this
SLOT_LOG_BYTES = 64 * 1024


class SlotLog:
    """The last `keep` records of one worker slot, in ``<dir>/<name>-<slot>.jsonl``
    where the other workers read them (`read_slot_logs`): the Status page's recent
    refusals and errors, with several workers.

    One JSON object a line, appended with one `write` (O_APPEND; one writer per
    slot, callers serialise their calls); a reader skips a line it cannot parse.
    Past `SLOT_LOG_BYTES` the file is rewritten with the last `keep` records (a
    temp file renamed over it: readers see one whole file). Nothing is fsynced:
    run state. A worker restarted in a dead one's slot goes on after its records.
    """

    def __init__(self, directory: Path, name: str, slot: int, keep: int) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = directory / f"{name}-{slot}.jsonl"
        self._tmp = directory / f".{name}-{slot}.tmp"
        self._recent: collections.deque[bytes] = collections.deque(maxlen=keep)
        with contextlib.suppress(OSError):
            self._recent.extend(
                line + b"\n" for line in self.path.read_bytes().splitlines() if line
            )
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        self._recent.append(line)
        try:
            if self._size + len(line) <= SLOT_LOG_BYTES:
                os.write(self._fd, line)
                self._size += len(line)
                return
            data = b"".join(self._recent)
            self._tmp.write_bytes(data)
            os.replace(self._tmp, self.path)
            os.close(self._fd)
            self._fd = self._open()
            self._size = len(data)
        except OSError:
            pass  # a full disk must not break what is being recorded


def read_slot_logs(directory: Path, name: str) -> list[dict[str, Any]]:
    """Every slot's records (each slot's oldest first, slot after slot)."""
    out: list[dict[str, Any]] = []
    for path in sorted(directory.glob(f"{name}-*.jsonl")):
        try:
            lines = path.read_bytes().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # being written, or cut short by a crash
            if isinstance(record, dict):
                out.append(record)
    return out


# --- several workers: every worker's counts, wherever /metrics is served --------------

#: under ``data_dir/run``: one set of mmap files per worker slot
SHARED_DIR = "metrics"

_shared: CollectorRegistry | None = None


def _ours() -> list[MetricWrapperBase]:
    return [m for m in globals().values() if isinstance(m, MetricWrapperBase)]


def share(directory: Path, slot: int) -> None:
    """In worker `slot`, before it serves: this process's metrics live from now on
    in mmap files ``directory/<type>_<slot>.db`` (prometheus_client's
    multiprocess mode, with the worker slot for a pid), and `registry()` is the
    sum of every slot's files. See the module rules."""
    global _shared
    from prometheus_client import values

    directory.mkdir(mode=0o700, exist_ok=True)
    forget_sessions(directory, slot)  # a dead predecessor's sessions died with it
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = slot_value_class(slot)
    for metric in _ours():  # the children made before (label sets held anywhere) too
        parent = metric._is_parent()  # type: ignore[no-untyped-call]
        for child in list(metric._metrics.values()) if parent else [metric]:
            child._metric_init()  # type: ignore[no-untyped-call]
    REFUSALS.share(SlotLog(directory, "refusals", slot, MAX_REFUSALS))
    registry = CollectorRegistry(auto_describe=True)
    slots_collector()(registry, path=str(directory))
    registry.register(QUEUE)
    _shared = registry


def slot_value_class(slot: int) -> type[Any]:
    """prometheus_client's mmap-backed value (multiprocess mode) for worker
    `slot`, whose writes skip what a worker does not need, at 12 writes per
    message at SMTP intake: the check for a fork before each write (the slot of
    a process never changes, and `share` runs in the worker after its fork). The
    file format and the place of each value in it are prometheus_client's own
    (`MmapedDict.write_value`). Every write of a value holds one lock."""
    from prometheus_client import values

    base: Any = values.MultiProcessValue(lambda: slot)  # type: ignore[no-untyped-call]
    lock = threading.Lock()

    class SlotValue(base):  # type: ignore[misc]
        def inc(self, amount: float) -> None:
            with lock:
                self._value += amount
                self._timestamp = 0.0
                self._file.write_value(self._key, self._value, 0.0)

        def set(self, value: float, timestamp: float | None = None) -> None:
            with lock:
                self._value = value
                self._timestamp = timestamp or 0.0
                self._file.write_value(self._key, self._value, self._timestamp)

        def get(self) -> float:
            with lock:
                value: float = self._value
                return value

    return SlotValue


def slots_collector() -> type[Any]:
    """prometheus_client's `MultiProcessCollector` that passes over a file another
    worker is creating this instant: prometheus_client makes a file empty, then
    grows it, and reading it in between raised ``struct.error`` (seen as a worker
    failing at start while another one read every worker's counts)."""
    from prometheus_client.multiprocess import MultiProcessCollector

    class SlotsCollector(MultiProcessCollector):
        def collect(self) -> Any:
            files = []
            for path in glob.glob(os.path.join(self._path, "*.db")):
                with contextlib.suppress(FileNotFoundError):  # a dead worker's gauge
                    if os.path.getsize(path) >= 8:  # its header is written
                        files.append(path)
            return self.merge(files, accumulate=True)  # type: ignore[no-untyped-call]

    return SlotsCollector


def forget_sessions(directory: Path, slot: int) -> None:
    """The supervisor, when worker `slot` died: its open sessions no longer count
    (its counters stay, and its replacement goes on from them)."""
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(slot, str(directory))  # type: ignore[no-untyped-call]


def registry() -> CollectorRegistry:
    """What `/metrics` and the Status page read: this process's `REGISTRY`, or
    with several workers the sum of them all."""
    return _shared if _shared is not None else REGISTRY


def samples(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The current values of sample `name` (``postier_connections_total``,
    ``postier_sessions_open``...) in `registry()`, by sorted label pairs."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in registry().collect():
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


# --- store latency -----------------------------------------------------------------


class _TimedStore:
    """Forwards every attribute to the store; async methods are timed."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        """Called once per name: what it returns is kept as an attribute of this
        wrapper, so later calls find it without coming here again."""
        attr = getattr(self._store, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(attr):
            return attr  # not kept: a plain attribute may change
        histogram = STORE_SECONDS.labels(name)
        clock = self._clock

        @functools.wraps(attr)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return await attr(*args, **kwargs)
            finally:
                histogram.observe(clock() - start)

        setattr(self, name, timed)
        return timed


def timed_store(store: Store, *, clock: Callable[[], float] = time.perf_counter) -> Store:
    """`store` with each async method's latency observed in `STORE_SECONDS`."""
    return cast("Store", _TimedStore(store, clock))


def untimed(store: Store) -> Store:
    """The store `timed_store` wraps (`store` itself when it is not wrapped)."""
    return store._store if isinstance(store, _TimedStore) else store


def value(name: str, labels: dict[str, str] | None = None) -> float:
    """The current value of one sample (0.0 when absent): for tests and `postier` CLI."""
    got = REGISTRY.get_sample_value(name, labels or {})
    return got if got is not None else 0.0
