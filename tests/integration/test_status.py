"""`postier status` with the server running, stopped, and killed."""

from __future__ import annotations

import json
import poplib
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.server import ServerProcess, write_config


def status(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postier", "status", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_status_running_stopped_and_killed(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[smtp.limits]\nmax_connections_per_ip = 1\n")
    srv = ServerProcess(config).start()
    try:
        # one warning for the status file: a second POP3 connection from one address
        first = poplib.POP3("127.0.0.1", srv.ports["pop3"], timeout=10)
        with socket.create_connection(("127.0.0.1", srv.ports["pop3"]), timeout=10) as second:
            assert second.makefile("rb").readline() == (
                b"-ERR [SYS/TEMP] Too many connections, try again later\r\n"
            )
        deadline = time.monotonic() + 30
        while True:  # the status file is rewritten every 5 seconds
            r = status(config)
            if "too many connections" in r.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert (r.returncode, r.stderr) == (0, ""), r.stderr
        lines = r.stdout.splitlines()
        assert srv.proc is not None
        assert re.fullmatch(rf"postier: running \(pid {srv.proc.pid}, since \S+\)", lines[0])
        assert lines[1] == f"config:  {config.resolve()}"
        assert lines[2] == "listeners:"
        assert f"  pop3         127.0.0.1:{srv.ports['pop3']}  1 session(s)" in lines
        assert f"  mx           127.0.0.1:{srv.ports['mx']}  0 session(s)" in lines
        assert any(
            x.startswith(f"workers: 1 process (pid {srv.proc.pid}); tasks: ")
            and "queue-runner running" in x
            for x in lines
        )
        assert "queue:   0 message(s): 0 new, 0 deferred, 0 held; 0 recipient(s) pending" in lines
        assert any(
            re.fullmatch(r"store:   \S+: 0 domain\(s\), 0 user\(s\); database .*", x) for x in lines
        )
        assert lines[-2] == "last errors:"
        assert re.fullmatch(
            r"  \S+ warning postier.server: refused connection listener=pop3 "
            r"client=127\.0\.0\.1: too many connections",
            lines[-1],
        )
        doc = json.loads(status(config, "--json").stdout)
        assert (doc["running"], doc["pid"]) == (True, srv.proc.pid)
        first.quit()
    finally:
        assert srv.terminate() == 0
    r = status(config)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert re.fullmatch(r"postier: not running \(stopped at \S+\)", lines[0])
    assert "listeners (configured):" in lines
    assert lines[-2] == "last errors (of the last run):"  # still readable after the stop
    assert "too many connections" in lines[-1]

    killed = ServerProcess(config).start()
    assert killed.proc is not None
    pid = killed.proc.pid
    killed.kill()
    r = status(config)
    assert r.returncode == 1
    assert r.stdout.splitlines()[0] == (
        f"postier: not running (the last run, pid {pid}, ended without a clean stop)"
    )
