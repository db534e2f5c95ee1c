"""The sum of every worker's metric files, read while a worker creates its own."""

from __future__ import annotations

from pathlib import Path

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
