"""`postier serve` as an operator meets it: make-run defaults, clean stop, clear errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from postier.config.schema import DEV_PORTS
from tests.support.server import ServerProcess, write_config


def _wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"port {port} never opened")


def _ports_free() -> bool:
    for port in DEV_PORTS.values():
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return False
    return True


def test_make_run_defaults_serve_and_stop_cleanly(tmp_path: Path) -> None:
    """What `make run` does: no config → ./data, dev ports, demo user printed."""
    if not _ports_free():
        pytest.fail("a development port is taken: is a `make run` server running?")
    env = {k: v for k, v in os.environ.items() if k != "POSTIER_CONFIG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "postier", "serve"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        banner = []
        assert proc.stdout is not None
        for line in proc.stdout:
            banner.append(line.rstrip("\n"))
            if line.startswith("ready"):
                break
        text = "\n".join(banner)
        for name, port in DEV_PORTS.items():
            assert f":{port}" in text, (name, text)
            _wait_port(port)
        login = [x for x in banner if x.strip().startswith("login:")]
        assert login and "demo@example.test" in login[0], text
        password = login[0].split("password:")[1].strip()
        assert len(password) >= 12
        assert (tmp_path / "data" / "postier.db").exists()
        assert (tmp_path / "data" / "tls" / "cert.pem").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    # a second start prints the same password (kept in data/demo-password)
    proc2 = subprocess.Popen(
        [sys.executable, "-m", "postier", "serve"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc2.stdout is not None
        again = []
        for line in proc2.stdout:
            again.append(line)
            if line.startswith("ready"):
                break
        assert any(password in x for x in again)
        proc2.send_signal(signal.SIGINT)
        assert proc2.wait(20) == 0
    finally:
        if proc2.poll() is None:
            proc2.kill()
            proc2.wait()
        assert proc2.stdout is not None
        proc2.stdout.close()


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
