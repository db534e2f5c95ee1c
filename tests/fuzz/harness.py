"""What every fuzz target shares: the list of targets, the corpus, the run under
atheris, and the check for super-linear time.

Rules:
- A target is a module `tests.fuzz.fuzz_<name>` with ``check(data: bytes) -> None``.
  `check` returns for every input the target's contract allows (replies, events,
  documented parse errors) and raises for anything else; it is deterministic.
- Time: a single input may not take longer than libFuzzer's ``-timeout`` (set by
  `fuzz_main`), and `assert_linear` times an input repeated to about 16 KiB and to
  four times that: a ratio far above 4 is super-linear growth, which is a bug (the
  working rules: nothing costs more than linear time in what a client sent).
  `scale_pass` applies it to every input of a corpus after a fuzzing run (not
  during it: the larger inputs would reach new coverage, so the fuzzer would learn
  to trigger the check and slow itself down); the corpus replay applies it to every
  file named ``slow-*``.
- This module imports nothing from postier: under atheris the target module is
  imported inside `atheris.instrument_imports`, so postier's code is instrumented
  for coverage only if nothing loaded it before.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

TARGETS = ("smtp", "imap", "pop3", "mime", "address", "spf", "dkim", "dmarc", "filters")
CORPUS = Path(__file__).resolve().parent / "corpus"
#: where atheris keeps what it learns (not committed): .fuzz/<target>/ and crashes in
#: .fuzz/crashes/<target>-*; a crash worth keeping goes to CORPUS/<target>/ by hand
WORK = Path(__file__).resolve().parents[2] / ".fuzz"

#: repeated input sizes of the scaling check, and what counts as super-linear
SCALE_UNIT = 16 * 1024
SCALE_RATIO = 10.0  # linear gives about 4, quadratic about 16
SCALE_FLOOR = 0.1  # CPU seconds: below this a ratio is noise
#: libFuzzer options used unless the command line gives its own
DEFAULT_OPTIONS = ("-timeout=10", "-max_len=65536", "-rss_limit_mb=2048")


class SuperLinear(AssertionError):
    """An input whose cost grows faster than its length."""


def load(target: str) -> ModuleType:
    if target not in TARGETS:
        raise SystemExit(f"unknown fuzz target {target!r} (known: {', '.join(TARGETS)})")
    return importlib.import_module(f"tests.fuzz.fuzz_{target}")


def corpus_files(target: str) -> list[Path]:
    folder = CORPUS / target
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def _seconds(check: Callable[[bytes], None], data: bytes) -> float:
    # CPU time of this process: on a loaded machine wall-clock time counts the
    # time other processes ran, which made linear inputs look super-linear
    start = time.process_time()
    check(data)
    return time.process_time() - start


def assert_linear(check: Callable[[bytes], None], data: bytes) -> None:
    """Raise `SuperLinear` when ``data`` repeated 4k times costs far more than 4 times
    ``data`` repeated k times (k so that the smaller input is about SCALE_UNIT)."""
    if not data:
        return
    k = max(1, SCALE_UNIT // len(data))
    small, large = data * k, data * (4 * k)

    def suspicious(t1: float, t4: float) -> bool:
        return t4 > SCALE_FLOOR and t4 > SCALE_RATIO * t1

    t1, t4 = _seconds(check, small), _seconds(check, large)
    if not suspicious(t1, t4):
        return
    # a loaded machine can stall one run: the best of three decides
    t1 = min(_seconds(check, small) for _ in range(3))
    t4 = min(_seconds(check, large) for _ in range(3))
    if suspicious(t1, t4):
        raise SuperLinear(
            f"{len(small)} octets took {t1:.4f}s, {len(large)} octets took {t4:.4f}s "
            f"(ratio {t4 / max(t1, 1e-9):.1f}, linear is 4)"
        )


def scale_pass(target: str, folders: list[Path]) -> list[Path]:
    """Run `assert_linear` on every input in `folders`; the inputs that fail are
    copied to .fuzz/crashes/<target>-slow-<hash> and returned."""
    check = load(target).check
    crashes = WORK / "crashes"
    slow: list[Path] = []
    for folder in folders:
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            data = path.read_bytes()
            try:
                assert_linear(check, data)
            except SuperLinear as e:
                crashes.mkdir(parents=True, exist_ok=True)
                kept = crashes / f"{target}-slow-{hashlib.sha1(data).hexdigest()}"
                kept.write_bytes(data)
                print(f"super-linear: {path} ({e}); kept as {kept}", flush=True)
                slow.append(kept)
    close = getattr(sys.modules[f"tests.fuzz.fuzz_{target}"], "close", None)
    if close is not None:
        close()
    return slow


def fuzz_main(target: str, argv: list[str]) -> None:
    """Run one target under atheris (never returns). ``argv``: libFuzzer options and
    corpus folders; by default the work folder .fuzz/<target>/ (where new inputs
    are written) and the seed corpus (only read)."""
    import atheris

    with atheris.instrument_imports(include=["postier"]):
        module = load(target)
    check: Callable[[bytes], None] = module.check

    work = WORK / target
    crashes = WORK / "crashes"
    work.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    args = [argv[0]]
    given = argv[1:]
    defaults = [*DEFAULT_OPTIONS, f"-artifact_prefix={crashes}/{target}-"]
    for option in defaults:
        name = option.split("=", 1)[0] + "="
        if not any(a.startswith(name) for a in given):
            args.append(option)
    args += given
    if not any(not a.startswith("-") for a in given):
        args += [str(work), str(CORPUS / target)]
    atheris.Setup(args, check)
    atheris.Fuzz()
