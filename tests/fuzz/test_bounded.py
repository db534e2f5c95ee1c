"""A short coverage-guided run of every fuzz harness under atheris, as part of
``make test`` (deselect with ``-m 'not fuzz'``; `make fuzz` runs them for longer).

Each target runs in its own process for `SECONDS` seconds, from its seed corpus,
writing what it learns to a temporary folder (never to tests/fuzz/corpus). A
failure shows the exception and copies the input to .fuzz/crashes/; keep that
input in corpus/<target>/ once the bug is fixed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.harness import CORPUS, TARGETS, WORK

ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("POSTIER_FUZZ_TEST_SECONDS", "3"))


@pytest.mark.fuzz
@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_briefly(target: str, tmp_path: Path) -> None:
    work = tmp_path / "corpus"
    work.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "tests.fuzz",
        "--child",
        target,
        f"-max_total_time={SECONDS}",
        f"-artifact_prefix={tmp_path}/",
        "-print_final_stats=1",
        str(work),
        str(CORPUS / target),
    ]
    done = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 120, check=False
    )
    report = done.stdout + done.stderr
    if done.returncode != 0:
        # keep the input where the next run can replay it, and show the exception
        crashes = WORK / "crashes"
        crashes.mkdir(parents=True, exist_ok=True)
        kept = []
        for found in tmp_path.glob("*-*"):
            if found.is_file():
                shutil.copy(found, crashes / f"{target}-{found.name}")
                kept.append(str(crashes / f"{target}-{found.name}"))
        lines = [line for line in report.splitlines() if not line.startswith(("INFO:", "#"))]
        pytest.fail(f"fuzzing {target} failed; input kept as {kept}\n" + "\n".join(lines)[-8000:])
    runs = [
        line for line in report.splitlines() if line.startswith("stat::number_of_executed_units")
    ]
    assert runs, report[-3000:]
    assert int(runs[-1].split(":")[-1]) > 0, runs
