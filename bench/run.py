"""`make bench`: every benchmark with its default sizes, then one summary.

Runs `smtp_intake` (postier vs aiosmtpd vs Postfix), `pop3` (postier vs Dovecot),
`imap` (postier vs Dovecot) and `outbound` (postier, and Postfix relaying) one
after the other, so they never compete for the CPUs, and prints each bench's
full table followed by the ratios against the targets of issues 3 and 6. Peers that
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
from common import table


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

    # --- targets ------------------------------------------------------------------------
    rows: list[list[object]] = []
    s = {(r.server, r.body, r.concurrency): r for r in smtp_runs}
    mine = s.get(("postier", 1024, 50))
    if mine is not None:
        rows.append(["smtp 1 KB c=50 msgs/s", ">= 1,000", f"{mine.rate:,.0f}"])
        rows.append(["smtp 1 KB c=50 cpu ms/msg", "< 1", f"{1000 * mine.cpu_s / mine.count:.2f}"])
        for peer, want in (("aiosmtpd", 3.0), ("postfix", 5.0)):
            p = s.get((peer, 1024, 50))
            if p is not None:
                rows.append(
                    [f"smtp 1 KB c=50 vs {peer}", f">= {want:.0f}x", f"{mine.rate / p.rate:.2f}x"]
                )
    big = s.get(("postier", 51200, 50))
    pf = s.get(("postfix", 51200, 50))
    if big is not None and pf is not None:
        rows.append(["smtp 50 KB c=50 vs postfix", ">= 2x", f"{big.rate / pf.rate:.2f}x"])
    rss = max((r.rss_mb or 0.0 for r in smtp_runs if r.server == "postier"), default=None)
    if rss:
        rows.append(["smtp postier peak RSS MB", "< 100", f"{rss:.0f}"])
    pp = {(r.server, r.users, r.label): r for r in pop_runs}
    for users in (1, 10):
        a, d = pp.get(("postier", users, "first")), pp.get(("dovecot", users, "first"))
        if a is not None and d is not None:
            rows.append([f"pop3 {users} user(s) vs dovecot", ">= 0.5x", f"{a.rate / d.rate:.2f}x"])
    print()
    print(table(["target (issues 3, 6)", "wanted", "measured"], rows))
    # IMAP (issue 5) and outbound (issue 4) print their own tables and ratios
    here = Path(__file__).resolve().parent
    for bench in ("imap.py", "outbound.py"):
        print(f"\n--- bench/{bench}", flush=True)
        extra = ["--postfix"] if bench == "outbound.py" and shutil.which("postfix") else []
        subprocess.run([sys.executable, str(here / bench), *extra], check=False)
    print(f"\nall benches done in {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
