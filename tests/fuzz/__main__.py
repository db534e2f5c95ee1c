"""``python -m tests.fuzz [TARGET ...] [libFuzzer options]`` (what `make fuzz` runs).

- No target: every target in turn. Several: each in turn, one process at a time
  (the fuzzers are CPU-bound; running them side by side only slows each down).
- One target: run it in this process under atheris.
- Without ``-max_total_time`` or ``-runs`` each target runs ``FUZZ_SECONDS``
  seconds (environment, default 60).

Examples::

    python -m tests.fuzz                              # all, 60 s each
    FUZZ_SECONDS=600 python -m tests.fuzz imap mime   # ten minutes each
    python -m tests.fuzz smtp -runs=100000 -jobs=1
    python -m tests.fuzz mime .fuzz/crashes/mime-crash-1234   # replay one input
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.fuzz.harness import TARGETS, fuzz_main


def main(argv: list[str]) -> int:
    targets = [a for a in argv if a in TARGETS]
    rest = [a for a in argv if a not in TARGETS]
    unknown = [a for a in rest if not a.startswith("-") and not os.path.exists(a)]
    if unknown:
        print(f"unknown fuzz target {unknown[0]!r} (known: {', '.join(TARGETS)})")
        return 2
    if not any(a.startswith(("-max_total_time=", "-runs=")) for a in rest):
        rest.append(f"-max_total_time={int(os.environ.get('FUZZ_SECONDS', '60'))}")
    if len(targets) == 1:
        fuzz_main(targets[0], [sys.argv[0], *rest])
        return 0  # not reached: atheris exits
    failed = []
    for target in targets or TARGETS:
        print(f"=== fuzz {target}", flush=True)
        done = subprocess.run([sys.executable, "-m", "tests.fuzz", target, *rest], check=False)
        if done.returncode != 0:
            failed.append(target)
    if failed:
        print(f"fuzzing found problems in: {', '.join(failed)} (inputs in .fuzz/crashes/)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
