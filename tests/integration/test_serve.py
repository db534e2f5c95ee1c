"""`postier serve` as an operator meets it: clean stop, clear errors. (What `make run`
does is tests/integration/test_readme.py, on ports of its own.)"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.support.server import ServerProcess, write_config


def test_port_taken_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = write_config(tmp_path, ports={"pop3": port})
        out = subprocess.run(
            [sys.executable, "-m", "postier", "-c", str(cfg), "serve"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 1
    assert (
        f"listeners.pop3: cannot listen on 127.0.0.1 port {port}: address already in use"
        in out.stderr
    )


def test_unusable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file, not a directory")
    cfg = write_config(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "postier", "-c", str(cfg), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "server.data_dir:" in out.stderr and "is not usable" in out.stderr


def test_sigterm_stops_a_configured_server(tmp_path: Path) -> None:
    srv = ServerProcess(write_config(tmp_path)).start()
    try:
        assert "mx" in srv.ports and "imap" in srv.ports
        assert not any("login:" in x for x in srv.banner)  # no demo user in a real config
    finally:
        assert srv.terminate() == 0
