"""Replay every file of tests/fuzz/corpus/<target>/ through its harness: the seeds, and
each input fuzzing once found a bug with (kept under a descriptive name, so the fix
stays fixed). Files named ``slow-*`` also get the scaling check (harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.fuzz.harness import CORPUS, TARGETS, assert_linear, corpus_files, load

CASES = [(target, path) for target in TARGETS for path in corpus_files(target)]


@pytest.fixture(scope="module")
def harnesses() -> Iterator[dict[str, ModuleType]]:
    modules: dict[str, ModuleType] = {}
    yield modules
    for module in modules.values():
        close = getattr(module, "close", None)
        if close is not None:
            close()


def test_every_target_has_seeds() -> None:
    assert sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) == sorted(TARGETS)
    for target in TARGETS:
        assert any(p.name.startswith("seed-") for p in corpus_files(target)), target


@pytest.mark.parametrize(("target", "path"), CASES, ids=[f"{t}/{p.name}" for t, p in CASES])
def test_replay(target: str, path: Path, harnesses: dict[str, ModuleType]) -> None:
    module = harnesses.get(target) or harnesses.setdefault(target, load(target))
    data = path.read_bytes()
    module.check(data)
    if path.name.startswith("slow-"):
        assert_linear(module.check, data)
