"""The sum of every worker's metric files, read while a worker creates its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from postier.metrics import slots_collector


def test_a_file_being_created_is_passed_over(tmp_path: Path) -> None:
    made = MmapedDict(str(tmp_path / "counter_0.db"))
    key = mmap_key("postier_demo", "postier_demo_total", [], [], "a demo")
    made.write_value(key, 3.0, 0.0)
    made.close()
    # what prometheus_client leaves for an instant: the file made, not grown yet
    (tmp_path / "counter_1.db").write_bytes(b"")
    registry = CollectorRegistry()
    slots_collector()(registry, path=str(tmp_path))
    assert registry.get_sample_value("postier_demo_total") == 3.0


_WORKER = """
import sys
from pathlib import Path
from postier import metrics
metrics.share(Path(sys.argv[1]), int(sys.argv[2]))
metrics.labelled(metrics.SMTP_TRANSACTIONS, "mx", "accepted").inc()
metrics.labelled(metrics.SMTP_TRANSACTIONS, "mx", "accepted").inc(2)
metrics.STORE_SECONDS.labels("deliver").observe(0.003)
metrics.STORE_SECONDS.labels("deliver").observe(7.0)
metrics.SESSIONS_OPEN.labels("mx").inc()
metrics.SESSIONS_OPEN.labels("mx").dec()
print(metrics.labelled(metrics.SMTP_TRANSACTIONS, "mx", "accepted")._value.get())
"""


def test_worker_values_are_written_where_every_worker_reads_them(tmp_path: Path) -> None:
    """`share`'s value class: counts, histogram buckets and sums land in the slot's
    files as prometheus_client reads them; a worker restarted in the slot goes on
    from them (each run is its own process, as a worker is)."""
    import subprocess
    import sys

    runs = [
        subprocess.run(
            [sys.executable, "-c", _WORKER, str(tmp_path), "3"],
            capture_output=True,
            text=True,
            check=True,
        )
        for _ in range(2)
    ]
    assert [r.stdout.split() for r in runs] == [["3.0"], ["6.0"]]
    registry = CollectorRegistry()
    slots_collector()(registry, path=str(tmp_path))
    total = registry.get_sample_value
    accepted = {"listener": "mx", "result": "accepted"}
    assert total("postier_smtp_transactions_total", accepted) == 6.0
    deliver = {"operation": "deliver"}
    assert total("postier_store_operation_seconds_count", deliver) == 4.0
    assert total("postier_store_operation_seconds_sum", deliver) == pytest.approx(14.006)
    assert total("postier_store_operation_seconds_bucket", {**deliver, "le": "0.005"}) == 2.0
    assert total("postier_store_operation_seconds_bucket", {**deliver, "le": "5.0"}) == 2.0
    assert total("postier_store_operation_seconds_bucket", {**deliver, "le": "+Inf"}) == 4.0
    assert total("postier_sessions_open", {"listener": "mx"}) == 0.0
