"""Run a command with a pseudo-terminal as its controlling TTY, typing answers."""

from __future__ import annotations

import os
import pty
import select
import signal
from pathlib import Path


def on_tty(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    typed: list[str],
    *,
    prompts: tuple[bytes, ...] = (b"password:",),
) -> tuple[int, str]:
    """Run `argv`; type each of `typed` after a prompt (output ending, case-folded,
    in one of `prompts`); return (exit code, everything the terminal showed, with
    ``<typed>`` where an answer went)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdin/stdout/stderr and /dev/tty are the pty
        os.chdir(cwd)
        os.execve(argv[0], argv, env)
    shown = b""
    pending = list(typed)
    status = None
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 30)
            assert ready, f"no output from {argv}; so far: {shown!r}"
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            if pending and shown.rstrip().lower().endswith(prompts):
                os.write(fd, pending.pop(0).encode() + b"\n")
                shown += b"<typed>"
        _, status = os.waitpid(pid, 0)
    finally:
        if status is None:  # the test failed while the child still runs
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode().replace("\r\n", "\n")
