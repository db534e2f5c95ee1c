"""The metrics registry: labels, the queue collector, the timed store, /metrics access."""

from __future__ import annotations

import io
import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from postier import metrics
from postier.cli.migrate import ProgressBar
from postier.mail.queueid import QueueId
from postier.queue import dsn
from postier.store.models import BlobId, QueueEntry, QueueRecipient, RcptState
from postier.web.metrics import DEFAULT_ALLOW, _allowed


@pytest.mark.parametrize(
    ("code", "enhanced", "label"),
    [
        (550, "5.1.1", "5.1.1"),
        (554, "5.7.1", "5.7.1"),
        (550, None, "5.0.0"),
        (451, "4.3.0", "4.3.0"),
        (550, "4.1.1", "5.0.0"),  # class mismatch: not trusted
        (550, "5.1.1; drop table", "5.0.0"),  # never free text
        (999, None, "4.0.0"),
    ],
)
def test_status_label(code: int, enhanced: str | None, label: str) -> None:
    assert metrics.status_label(code, enhanced) == label


def test_count_helpers_move_counters() -> None:
    before = metrics.value(
        "postier_smtp_rejections_total", {"listener": "mx", "stage": "rcpt", "status": "5.1.1"}
    )
    metrics.count_rejection("mx", "rcpt", 550, "5.1.1")
    assert (
        metrics.value(
            "postier_smtp_rejections_total", {"listener": "mx", "stage": "rcpt", "status": "5.1.1"}
        )
        == before + 1
    )
    for code, result in ((250, "accepted"), (451, "failed"), (554, "rejected")):
        b = metrics.value("postier_smtp_transactions_total", {"listener": "x", "result": result})
        metrics.count_transaction("x", code)
        assert (
            metrics.value("postier_smtp_transactions_total", {"listener": "x", "result": result})
            == b + 1
        )


def test_bounce_help_names_the_label_values() -> None:
    """The `kind` label is the DSN action the runner reports; the help says those words."""
    text = generate_latest(metrics.REGISTRY).decode()
    assert (
        "# HELP postier_bounces_total DSNs generated, by kind: the RFC 3464 action "
        "reported (failed, delayed, relayed, delivered)\n"
    ) in text
    for kind in (dsn.Action.FAILED, dsn.Action.DELAYED, dsn.Action.RELAYED, dsn.Action.DELIVERED):
        assert f"{kind}," in text or f"{kind})" in text


def entry(
    qid: str,
    *,
    held: bool = False,
    attempts: int = 0,
    age: int = 0,
    states: tuple[RcptState, ...] = (RcptState.PENDING,),
) -> QueueEntry:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    return QueueEntry(
        QueueId(qid),
        "a@x.test",
        tuple(QueueRecipient(f"r{i}@y.test", s) for i, s in enumerate(states)),
        BlobId("0" * 32),
        10,
        now - timedelta(seconds=age),
        now,
        attempts,
        held=held,
    )


def test_queue_snapshot() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    snap = metrics.QueueSnapshot.of(
        [
            entry("A", age=10),
            entry("B", attempts=2, age=300, states=(RcptState.PENDING, RcptState.DELIVERED)),
            entry("C", held=True, attempts=1, age=5, states=(RcptState.FAILED,)),
        ],
        now,
    )
    assert snap.messages == {"new": 1, "deferred": 1, "held": 1}
    assert snap.recipients == {"pending": 2, "delivered": 1, "failed": 1}
    assert snap.oldest_seconds == 300


class FakeStore:
    def __init__(self, entries: list[QueueEntry]) -> None:
        self.entries = entries

    async def queue_list(self) -> list[QueueEntry]:
        return self.entries

    def subscribe(self, user_id: int) -> str:
        return "sync"


async def test_queue_collector_exposition() -> None:
    collector = metrics.QueueCollector()
    await collector.refresh(
        FakeStore([entry("A", age=42)]),  # type: ignore[arg-type]
        now=datetime(2024, 1, 1, tzinfo=UTC),
    )
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry()
    reg.register(collector)
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(reg).decode())}
    assert {s.labels["state"]: s.value for s in families["postier_queue_messages"].samples} == {
        "deferred": 0.0,
        "held": 0.0,
        "new": 1.0,
    }
    assert families["postier_queue_oldest_seconds"].samples[0].value == 42.0


async def test_timed_store_observes_async_methods_only() -> None:
    ticks = iter([1.0, 1.25])
    store: Any = metrics.timed_store(FakeStore([]), clock=lambda: next(ticks))  # type: ignore[arg-type]
    before = metrics.value("postier_store_operation_seconds_count", {"operation": "queue_list"})
    total = metrics.value("postier_store_operation_seconds_sum", {"operation": "queue_list"})
    assert await store.queue_list() == []
    assert (
        metrics.value("postier_store_operation_seconds_count", {"operation": "queue_list"})
        == before + 1
    )
    assert (
        metrics.value("postier_store_operation_seconds_sum", {"operation": "queue_list"})
        == total + 0.25
    )
    assert store.subscribe(1) == "sync"  # not wrapped, not timed
    assert store.entries == []


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.1.2.3", True),
        ("::ffff:192.168.1.1", True),
        ("192.0.2.1", False),
        ("2001:db8::1", False),
        (None, False),
        ("testclient", False),
    ],
)
def test_metrics_access(host: str | None, allowed: bool) -> None:
    nets = [ipaddress.ip_network(n) for n in DEFAULT_ALLOW]
    assert _allowed(host, nets) is allowed


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_only() -> None:
    tty = Tty()
    bar = ProgressBar("importing", stream=tty, width=10)
    bar(5, 10)
    bar(6, 10)  # within 0.1 s of the last draw: skipped
    bar(10, 10)  # the last one is always drawn
    bar.close()
    assert tty.getvalue() == ("\rimporting 5/10 [=====>    ]\rimporting 10/10 [==========]\n")
    plain = io.StringIO()
    quiet = ProgressBar("importing", stream=plain)
    quiet(1, 1)
    quiet.close()
    assert plain.getvalue() == ""
