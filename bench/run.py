"""`make bench`: every benchmark with its default sizes, then one summary.

Runs `smtp_intake` (postier vs aiosmtpd vs Postfix), `pop3` (postier vs Dovecot),
`imap` (postier vs Dovecot), `outbound` (postier, and Postfix relaying), `web`
(the webmail beside IMAP) and `nodes` (SQLite, one and two PostgreSQL nodes) one
after the other, so they never compete for the CPUs, and prints each bench's
full table followed by each issue-14 target with its verdict (✓/✗). Peers that
are not installed are skipped with a note. Options are passed to neither bench: run
``bench/smtp_intake.py --help`` or ``bench/pop3.py --help`` for bigger runs.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pop3
import smtp_intake


def main() -> int:
    started = time.perf_counter()
    print(
        f"postier benchmarks on {platform.node()}: {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print()
    smtp_runs = smtp_intake.run(smtp_intake.parse_args([]))
    print()
    print(smtp_intake.report(smtp_runs))
    print()
    pop_runs = pop3.run(pop3.parse_args([]))
    print()
    print(pop3.report(pop_runs))

    print()
    print(smtp_intake.targets(smtp_runs))
    print()
    print(pop3.targets(pop_runs))
    # IMAP prints its own table and issue-14 verdicts; outbound (issue 4) its ratios;
    # web (issue 15) and nodes (issue 16) their own verdicts
    here = Path(__file__).resolve().parent
    for bench in ("imap.py", "outbound.py", "web.py", "nodes.py"):
        print(f"\n--- bench/{bench}", flush=True)
        extra = ["--postfix"] if bench == "outbound.py" and shutil.which("postfix") else []
        subprocess.run([sys.executable, str(here / bench), *extra], check=False)
    print(f"\nall benches done in {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
