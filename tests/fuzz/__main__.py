"""``python -m tests.fuzz [TARGET ...] [libFuzzer options]`` (what `make fuzz` runs).

- No target: every target in turn. Several: each in turn, one process at a time
  (the fuzzers are CPU-bound; running them side by side only slows each down).
- Each target is fuzzed in a child process under atheris, then its whole corpus
  (.fuzz/<target>/ and the seeds) goes through the super-linear time check
  (`harness.scale_pass`). ``--no-scale`` leaves that pass out.
- Without ``-max_total_time`` or ``-runs`` each target runs ``FUZZ_SECONDS``
  seconds (environment, default 60).
- Exit status 1 when any target crashed or found a slow input; the inputs are in
  .fuzz/crashes/.

Examples::

    python -m tests.fuzz                              # all, 60 s each
    FUZZ_SECONDS=600 python -m tests.fuzz imap mime   # ten minutes each
    python -m tests.fuzz smtp -runs=100000
    python -m tests.fuzz mime .fuzz/crashes/mime-crash-1234   # replay one input
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.fuzz.harness import CORPUS, TARGETS, WORK, fuzz_main, scale_pass


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:  # the child process: fuzz one target, never returns
        fuzz_main(argv[1], [sys.argv[0], *argv[2:]])
        return 0
    scale = "--no-scale" not in argv
    argv = [a for a in argv if a != "--no-scale"]
    targets = [a for a in argv if a in TARGETS]
    rest = [a for a in argv if a not in TARGETS]
    unknown = [a for a in rest if not a.startswith("-") and not os.path.exists(a)]
    if unknown:
        print(f"unknown fuzz target {unknown[0]!r} (known: {', '.join(TARGETS)})")
        return 2
    replay = any(not a.startswith("-") for a in rest)  # inputs or folders given
    if not replay and not any(a.startswith(("-max_total_time=", "-runs=")) for a in rest):
        rest.append(f"-max_total_time={int(os.environ.get('FUZZ_SECONDS', '60'))}")
    failed = []
    for target in targets or TARGETS:
        print(f"=== fuzz {target}", flush=True)
        cmd = [sys.executable, "-m", "tests.fuzz", "--child", target, *rest]
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(target)
        elif scale and not replay:
            print(f"=== super-linear time check of the {target} corpus", flush=True)
            if scale_pass(target, [WORK / target, CORPUS / target]):
                failed.append(target)
    if failed:
        print(f"fuzzing found problems in: {', '.join(failed)} (inputs in .fuzz/crashes/)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
